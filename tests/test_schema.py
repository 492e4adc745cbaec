"""Every key of every section, generated from the schema itself: a wrong type, an out-of-bounds value and an
absurd size each end ``fedfrontier run`` (or ``sweep``) with one line and exit code 2, before Ray starts."""

import typing

import pytest

from orchestrator.cli import main
from orchestrator.sweep_config import SweepConfig
from privacy.config.experiment import _SECTION_CLASSES, load_config
from privacy.config.schema import LIMITS, field_types

SECTIONS = {**_SECTION_CLASSES, "sweep": SweepConfig}
KEYS = {f"{s}.{k}": tp for s, cls in SECTIONS.items() for k, tp in field_types(cls).items()}
FREE_TEXT = {"data.root", "sweep.storage_path"}  # any path is a value; its file is checked once the data loads


def bare(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return typing.get_origin(args[0] if args else tp) or (args[0] if args else tp)


def wrong_type(tp) -> str:
    """A TOML literal of another type than the key's."""
    return {bool: '"no"', int: "2.5", float: '"0.5"', str: "12"}.get(bare(tp), '"a string"')


def out_of_bounds(key: str, tp) -> str | None:
    kind = bare(tp)
    if kind in (int, float):
        return "-1"
    if kind is str:
        return '""' if key in ("run.name", "sweep.name") else '"no-such-choice"'
    if kind is typing.Mapping or kind is dict:
        return '{"nodot" = [1]}'
    return None  # a bool has no bounds, only a type


NUMERIC = [k for k, tp in KEYS.items() if bare(tp) in (int, float)]
CASES = ([(k, "type", wrong_type(tp)) for k, tp in KEYS.items()]
         + [(k, "bounds", v) for k, tp in KEYS.items() if k not in FREE_TEXT
            for v in [out_of_bounds(k, tp)] if v is not None]
         + [(k, "cap", str(int(LIMITS[k][0]) + 1) if bare(KEYS[k]) is int else repr(float(LIMITS[k][0]) * 10))
            for k in LIMITS]
         + [(k, "absurd", "10000000000000000000000000000000" if bare(KEYS[k]) is int else "1e300") for k in NUMERIC])


def test_every_numeric_key_is_bounded_above():
    """Each number has a cap (schema.LIMITS) or a rule of its own below 1 (a momentum, a fraction, a delta):
    no input can hang a run, and every key gets an absurd-size case above."""
    own_rule = {k for k in NUMERIC if k not in LIMITS}
    assert own_rule == {"data.test_fraction", "client.delta", "client.momentum", "server.delta", "server.momentum",
                        "server.target_quantile", "audit.confidence", "sweep.selection_gamma"}
    assert {k for k in NUMERIC if bare(KEYS[k]) is int} <= set(LIMITS)
    assert set(LIMITS) <= set(KEYS)


@pytest.mark.parametrize("key,kind,value", CASES, ids=[f"{k}-{kind}" for k, kind, _ in CASES])
def test_a_bad_value_of_any_key_is_one_line_and_exit_2_before_ray(key, kind, value, tmp_path, capsys, monkeypatch):
    from orchestrator import cluster

    def refuse(*args, **kwargs):
        raise AssertionError(f"{key} = {value} was accepted: Ray is starting")

    monkeypatch.setattr(cluster, "ensure_ray", refuse)  # the CLI's only ways to Ray
    monkeypatch.setattr(cluster, "start_ray_while", refuse)

    command = "sweep" if key.startswith("sweep.") else "run"
    code = main([command, "--set", f"{key}={value}", "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith(f"fedfrontier: error: {key}"), err
    assert not (tmp_path / "out").exists()


def test_a_string_is_never_taken_for_a_bool():
    from privacy.config.experiment import ConfigError

    for text in ('"no"', '"false"', "0", "1"):
        with pytest.raises(ConfigError, match="must be true or false"):
            load_config(overrides=[f"data.download={text}"])


def test_keys_within_their_caps_can_still_not_multiply_into_a_run_of_years(capsys):
    code = main(["plan", "--set", "data.dataset=digits", "--set", "server.rounds=1000000",
                 "--set", "client.local_steps=1000000"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "per-sample gradients; at most 1e+12" in err[0], err


def test_a_sampled_sweep_key_is_checked_against_its_type_before_tune(tmp_path, capsys, monkeypatch):
    from orchestrator import cluster

    monkeypatch.setattr(cluster, "ensure_ray", lambda *a, **k: (_ for _ in ()).throw(AssertionError("Ray started")))
    code = main(["sweep", "--set", 'sweep.uniform={"client.batch_size"=[8, 64]}', "--out", str(tmp_path / "o")])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "client.batch_size = 8.0: must be an integer" in err[0], err
