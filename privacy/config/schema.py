"""The one gate every config value passes before a section is built: exact types, and upper bounds on sizes.

Types come from the dataclass annotations of the sections (privacy/config/experiment.py, privacy/config/secagg_section.py,
the ``[sweep]`` table): the annotation *is* the schema, so a key cannot be added without its type.
Strict: ``true``/``false`` only for a bool (never the string ``"no"``), an integer for an int (never a
bool or a float), a number for a float (an integer is widened), text for a str, a table of
``"section.key"`` names for a mapping. Lower bounds and rules between keys stay in each section's
``__post_init__``; what needs the data is checked in :func:`orchestrator.resolve.resolve_config`.

:data:`LIMITS` caps every value that sizes work or memory, so that no input can start a run that hangs
or exhausts the machine: 10^9 rounds or 10^12 canaries are refused in milliseconds, before Ray starts.
The caps are far above any experiment this tool is for (each names its unit and reason).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from privacy.config.validation import ConfigError

SEED_MAX = 2**63 - 1  # seeds are stored as int64 (Parquet, torch) and fed to numpy's SeedSequence

# "section.key" -> (largest value, why): sizes of work, memory or waiting
LIMITS: dict[str, tuple[float, str]] = {
    "data.num_clients": (10**6, "clients (one shard and one ledger entry each)"),
    "data.shards_per_client": (10**4, "label shards per client"),
    "data.min_client_size": (10**8, "records"),
    "data.split_seed": (SEED_MAX, "2^63 - 1: a 63-bit seed"),
    "data.validation": (10**8, "records"),
    "client.batch_size": (10**6, "records per step"),
    "client.local_epochs": (10**4, "passes over a shard per round"),
    "client.local_steps": (10**6, "steps per round"),
    "client.num_actors": (10**5, "actor processes"),
    "client.max_restarts": (10**3, "restarts per actor"),
    "client.num_cpus": (10**4, "CPUs per actor"),
    "client.num_gpus": (64, "GPUs per actor"),
    "server.rounds": (10**6, "rounds"),
    "server.clients_per_round": (10**6, "clients per round"),
    "server.num_cpus": (10**4, "CPUs"),
    "server.round_timeout": (7 * 86400, "seconds (a week)"),
    "server.min_separation": (10**6, "rounds"),
    "server.max_participations": (10**6, "rounds"),
    "server.ftrl_bands": (1024, "model-sized noise vectors the server keeps between rounds"),
    "secagg.bits": (32, "bits per coordinate of the ring"),
    "secagg.threshold": (10**6, "Shamir shares"),
    "secagg.neighbours": (10**6, "masking neighbours"),
    "secagg.colluders": (10**6, "clients"),
    "audit.canaries": (10**5, "canary clients (one model-sized direction each)"),
    "audit.membership_records": (10**7, "records"),
    "run.seed": (SEED_MAX, "2^63 - 1: a 63-bit seed"),
    "run.noise_seed": (SEED_MAX, "2^63 - 1: a 63-bit seed"),
    "run.eval_every": (10**6, "rounds"),
    "run.checkpoint_every": (10**6, "rounds"),
    # values that size no work: caps far beyond any meaningful setting, so an absurd one is a typo, not a run
    "data.alpha": (10**6, "Dirichlet concentration"),
    "client.noise_multiplier": (10**6, "noise std per clip"),
    "client.max_grad_norm": (10**9, "L2 norm"),
    "client.target_epsilon": (10**4, "epsilon"),
    "client.lr": (10**6, "learning rate"),
    "server.noise_multiplier": (10**6, "noise std per clip"),
    "server.clip": (10**9, "L2 norm"),
    "server.target_epsilon": (10**4, "epsilon"),
    "server.lr": (10**6, "learning rate"),
    "server.broadcast_noise": (10**6, "noise std"),
    "server.clip_lr": (10**3, "geometric step"),
    "server.initial_clip": (10**9, "L2 norm"),
    "server.clip_count_std": (10**9, "noise std"),
    "secagg.server_target_epsilon": (10**4, "epsilon"),
    "secagg.k_stddevs": (10**3, "standard deviations"),
    "secagg.scale": (2.0**62, "integer units per model unit"),
    "sweep.selection_eta": (10**6, "negative binomial eta"),
    "sweep.max_concurrent_trials": (10**4, "trials"),
    "sweep.num_samples": (10**4, "samples per grid point"),
    "sweep.max_failures": (10**3, "retries per trial"),
    "sweep.selection_mean": (10**3, "expected trials of a private selection"),
}
WORK_MAX = 10**12  # per-sample gradients of one run (rounds x clients x steps x batch): months of a GPU
GRID_POINTS_MAX = 10**5  # trials of one sweep: the product of its grid's lengths, times num_samples


def describe(tp: Any) -> str:
    """A user's word for a type annotation: 'an integer', 'a number or none', ..."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if type(None) in typing.get_args(tp):
        return f"{describe(args[0])} or none (unset)"
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        return "true or false"
    if origin is int:
        return "an integer"
    if origin is float:
        return "a number"
    if origin is str:
        return "text"
    if origin in (Mapping, dict):
        value = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        return "a table of \"section.key\" names" + (" to lists" if value is list else "")
    return str(tp)


def _fits(tp: Any, value: Any) -> bool:
    args = typing.get_args(tp)
    if type(None) in args:
        return value is None or _fits(next(a for a in args if a is not type(None)), value)
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin in (Mapping, dict):
        item = args[1] if args else Any
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and (item is Any or isinstance(v, item)) for k, v in value.items())
    raise TypeError(f"no schema rule for the annotation {tp!r}")


def field_types(cls: type) -> dict[str, Any]:
    """``{field: type}`` of a config section, resolved from its annotations."""
    return typing.get_type_hints(cls)


def checked(section: str, cls: type, key: str, value: Any) -> Any:
    """``value`` for ``section.key`` if its type is exactly the field's and it is within :data:`LIMITS`
    (an int given for a float comes back as a float); else a ConfigError naming the key."""
    tp = field_types(cls)[key]
    name = f"{section}.{key}"
    if not _fits(tp, value):
        raise ConfigError(name, value, f"must be {describe(tp)}, not {type(value).__name__}")
    if value is None:
        return None
    bare = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    if bare is float and isinstance(value, int):
        value = float(value)
    if name in LIMITS and isinstance(value, (int, float)) and value > LIMITS[name][0]:
        limit, unit = LIMITS[name]
        raise ConfigError(name, value, f"must be <= {limit:,} ({unit})")
    return value


def checked_section(section: str, cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every key of one section through :func:`checked`; an unknown key is a ConfigError listing the known."""
    known = field_types(cls)
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}", value, f"unknown key; allowed: {', '.join(sorted(known))}")
        out[key] = checked(section, cls, key, value)
    return out


def key_note(section: str, cls: type, key: str) -> str:
    """What ``fedfrontier config`` prints after a key's meaning: its type and, for a size, its cap."""
    name = f"{section}.{key}"
    note = describe(field_types(cls)[key])
    return note + (f", <= {LIMITS[name][0]:,} ({LIMITS[name][1]})" if name in LIMITS else "")
