"""`fedfrontier config`: the printed TOML is the default config, every key explained; --set errors point to it."""

import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config_doc import config_toml, field_comments, sections
from privacy.config.experiment import ConfigError, ExperimentConfig, from_dict
from privacy.config.schema import key_note

ROOT = Path(__file__).resolve().parents[1]


def test_printed_toml_loads_back_into_the_default_config(capsys):
    assert main(["config"]) == 0
    text = capsys.readouterr().out

    raw = tomllib.loads(text)

    assert list(raw) == ["data", "model", "client", "server", "secagg", "audit", "run"]  # ExperimentConfig's order
    assert from_dict(raw) == ExperimentConfig()


def test_every_field_is_printed_with_its_meaning():
    text = config_toml()
    lines = text.splitlines()

    for section, cls in sections():
        meanings = field_comments(cls)
        start = lines.index(f"[{section}]")
        block = lines[start + 1:]
        block = block[:block.index("")] if "" in block else block
        for f in fields(cls):
            line = next(ln for ln in block if ln.lstrip("# ").startswith(f"{f.name} ="))
            meaning = line.split("  # ", 1)[1].strip()
            assert meaning == f"{meanings[f.name]} [{key_note(section, cls, f.name)}]", f"{section}.{f.name}"
        assert len(block) == len(fields(cls))


def test_unset_optional_keys_are_commented_out():
    text = config_toml()

    assert "# target_epsilon =" in text and "\ntarget_epsilon" not in text
    assert "# noise_seed =" in text


def test_meanings_are_read_from_the_source():
    class Example:  # a stand-in for a config dataclass
        a: int = 1  # the meaning of a
        b: str = (
            "x")  # a field over two lines keeps the comment of its last line

    assert field_comments(Example) == {"a": "the meaning of a", "b": "a field over two lines keeps the comment "
                                                                     "of its last line"}


def test_a_field_without_a_meaning_is_an_error():
    class Bare:
        a: int = 1

    with pytest.raises(ValueError, match="Bare.a has no trailing comment"):
        field_comments(Bare)


def test_sweep_table_loads_back_into_the_default_sweep_config():
    from orchestrator.sweep_config import SweepConfig

    raw = tomllib.loads(config_toml(sweep=True))
    sweep = SweepConfig(**raw.pop("sweep"))

    assert sweep == SweepConfig()
    assert from_dict(raw) == ExperimentConfig()
    assert all(field_comments(SweepConfig).values())


def test_unknown_set_key_points_to_fedfrontier_config_and_exits_2():
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", "--set", "client.nope=1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)

    assert out.returncode == 2
    assert out.stderr.count("\n") == 1  # one line
    assert "client.nope" in out.stderr and "fedfrontier config" in out.stderr


def test_only_key_errors_carry_the_hint(capsys):
    from orchestrator.cli import error_line

    assert "fedfrontier config`" in error_line(ConfigError("nope", {}, "unknown section; allowed: data"))
    assert "fedfrontier config --sweep" in error_line(ConfigError("sweep.nope", 1, "unknown key; allowed: grid"))
    assert "fedfrontier config" not in error_line(ConfigError("client.lr", -1, "must be > 0"))


def test_a_config_file_started_from_the_output_loads_with_run_config(tmp_path, capsys):
    from privacy.config.experiment import load_config

    main(["config"])
    path = tmp_path / "my.toml"
    path.write_text(capsys.readouterr().out.replace("num_clients = 10", "num_clients = 12"))

    cfg = load_config(path, ["client.lr=0.1"])

    assert cfg == ExperimentConfig().replace(data={"num_clients": 12}, client={"lr": 0.1})
