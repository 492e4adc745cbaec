"""``fedfrontier config``: every config key, its default, its meaning, its type and cap, as a TOML file.

The meanings are the trailing comments of the dataclass fields in privacy/config/experiment.py (and of
:class:`orchestrator.sweep_config.SweepConfig` for the ``[sweep]`` table), read from the source with
:mod:`ast` and :mod:`tokenize`: one source of truth, nothing copied. The output parses with
``tomllib`` back into the default config; each meaning ends with the key's type and, for a size, its cap
(``[an integer, <= 1,000,000 rounds]``, from :mod:`privacy.config.schema`); optional keys whose default is unset (``None``) have no
TOML spelling and are printed commented out.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import math
import textwrap
import tokenize
from dataclasses import MISSING, Field, fields
from typing import Any

from privacy.config.experiment import ExperimentConfig
from privacy.config.schema import key_note

HEADER = """\
# fedfrontier configuration: every key with its default and its meaning.
# Start a config with `fedfrontier config > my.toml`, keep the keys you change, then
# `fedfrontier run --config my.toml` (or `sweep`); `--set section.key=value` overrides one key.
# Keys commented out are unset by default (no TOML spelling for "none"); uncomment to give a value.
"""


def field_comments(cls: type) -> dict[str, str]:
    """``{field name: trailing comment}`` of a dataclass, read from its source.

    A field's comment is the ``#`` comment on the last line of its annotated assignment.
    Raises ``ValueError`` naming the field if one has none (every config value must say what it is)."""
    src = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(src).body[0]
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    out = {}
    for node in body.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = comments.get(node.end_lineno, "")
            if not text:
                raise ValueError(f"{cls.__name__}.{node.target.id} has no trailing comment giving its meaning")
            out[node.target.id] = text
    return out


def toml_value(value: Any) -> str:
    """A TOML literal for a default value (bool, int, float, str, list, mapping)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict) or hasattr(value, "items"):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML spelling for {value!r}")


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise ValueError(f"field {f.name} has no default")


def table(name: str, cls: type) -> str:
    """One ``[name]`` table: ``key = default  # meaning`` per field, comments aligned."""
    meanings = field_comments(cls)
    lines = []
    for f in fields(cls):
        value = _default(f)
        lines.append((f"# {f.name} =" if value is None else f"{f.name} = {toml_value(value)}",
                      f"{meanings[f.name]} [{key_note(name, cls, f.name)}]"))
    width = max(len(left) for left, _ in lines)
    return f"[{name}]\n" + "\n".join(f"{left.ljust(width)}  # {meaning}" for left, meaning in lines) + "\n"


def sections() -> list[tuple[str, type]]:
    """The config's sections in ExperimentConfig's order: ``[("data", DataConfig), ...]``."""
    return [(f.name, type(_default(f))) for f in fields(ExperimentConfig)]


def config_toml(*, sweep: bool = False) -> str:
    """The whole default config as TOML text; with ``sweep``, the ``[sweep]`` table too."""
    parts = [HEADER] + [table(name, cls) for name, cls in sections()]
    if sweep:
        from orchestrator.sweep_config import SweepConfig

        parts.append("# [sweep]: read by `fedfrontier sweep` only (`fedfrontier run` refuses it).\n"
                     + table("sweep", SweepConfig))
    return "\n".join(parts)
