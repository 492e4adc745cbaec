"""``import fedfrontier``: the Python front door, from a fresh interpreter the way a notebook uses it.

The README's own example is run as it is printed there; the API's overrides pass the same schema as a TOML
file; a call starts and stops a private Ray when none is running and attaches to (and leaves) one that is."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import fedfrontier as ff
from orchestrator.sweep_config import load_sweep_config
from privacy.config.experiment import ConfigError, ExperimentConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The ```python block under the README's "Python API" heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def fresh_python(code: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter (a notebook's kernel) importing this checkout, in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_readme_example_is_five_lines_of_the_api():
    code = [line for line in readme_example().splitlines() if line.strip()]

    assert len(code) <= 5 and code[0] == "import fedfrontier as ff"
    assert all(re.match(r"(import fedfrontier|\w+ = ff\.|print\()", line) for line in code), code


def test_overrides_pass_the_schema_like_a_toml_file():
    cfg = ff.load_config(server={"rounds": 3, "target_epsilon": 2.0, "clip": 1.0}, data={"num_clients": 20})

    assert cfg == load_config(None, ["server.rounds=3", "server.target_epsilon=2.0", "server.clip=1.0",
                                     "data.num_clients=20"])
    assert ff.load_config(cfg, client={"lr": 0.2}) == cfg.replace(client={"lr": 0.2})
    with pytest.raises(ConfigError, match="server.rounds"):
        ff.load_config(server={"rounds": "many"})
    with pytest.raises(ConfigError, match="server.rounds"):
        ff.load_config(server={"rounds": 3.0})  # an int key takes no float, as in TOML
    with pytest.raises(ConfigError, match="unknown"):
        ff.load_config(server={"round": 3})
    with pytest.raises(ConfigError, match="table of that section"):
        ff.load_config(server=3)
    with pytest.raises(ValueError):  # what a notebook user catches
        ff.load_config(run={"seed": -1})


def test_sweep_overrides_as_a_mapping_equal_set_strings():
    config = ROOT / "experiments" / "configs" / "frontier.toml"
    from_strings = load_sweep_config(config, ['sweep.grid={"client.noise_multiplier" = [1.0, 2.0]}',
                                              "server.rounds=4"])
    from_mapping = load_sweep_config(config, {"sweep.grid": {"client.noise_multiplier": [1.0, 2.0]},
                                              "server.rounds": 4})

    assert from_strings == from_mapping
    assert from_mapping[1].points()[0] == {"client.noise_multiplier": 1.0}


def test_plan_needs_no_ray_and_reports_the_calibrated_epsilon():
    import ray

    running = ray.is_initialized()  # another test's cluster may be up in this process: plan must not touch it
    planned = ff.plan(data={"dataset": "digits"}, client={"target_epsilon": 2.0}, server={"rounds": 4})

    assert ray.is_initialized() == running
    assert planned["rounds"] == 4 and abs(planned["eps_record_max"] - 2.0) < 0.02


def test_sweep_takes_a_toml_path_not_a_config_object():
    with pytest.raises(ConfigError, match=r"\[sweep\] table"):
        ff.sweep(ExperimentConfig())


@pytest.mark.slow
def test_readme_example_runs_in_a_fresh_interpreter_and_stops_its_ray(tmp_path):
    code = readme_example() + textwrap.dedent("""
        import ray
        assert not ray.is_initialized(), "the API left its private Ray running"
        assert isinstance(rounds, __import__("pandas").DataFrame) and len(rounds) == 5
        assert len(result.frontier) >= 1 and {"val_accuracy", "test_accuracy"} <= set(result.frontier.columns)
        again = ff.run(server={"rounds": 2}, progress=None)  # a second private Ray, started and stopped cleanly
        assert len(again) == 2 and not ray.is_initialized()
        print("checked")
        """)

    done = fresh_python(code, tmp_path)

    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.rstrip().endswith("checked")
    best = pd.read_parquet(next(tmp_path.glob("sweeps/frontier-*/best.parquet")))
    assert len(best) == 5 and best["test_accuracy"].notna().all()
    assert (next(tmp_path.glob("runs/*/rounds.parquet"))).is_file()


@pytest.mark.slow
def test_api_attaches_to_the_notebooks_ray_and_leaves_it_running(tmp_path):
    code = textwrap.dedent("""
        import ray
        import fedfrontier as ff
        ray.init(num_cpus=2, include_dashboard=False)
        rounds = ff.run(data={"dataset": "digits", "num_clients": 4}, server={"rounds": 2, "clients_per_round": 4},
                        client={"num_actors": 1, "num_cpus": 0.5}, out="r", progress=None)
        assert ray.is_initialized(), "the API stopped a Ray it did not start"
        again = ff.run(data={"dataset": "digits", "num_clients": 4}, server={"rounds": 1, "clients_per_round": 4},
                       client={"num_actors": 1, "num_cpus": 0.5}, out="r2", progress=None)  # the same Ray, reused
        assert ray.is_initialized() and len(again) == 1
        print("rounds", len(rounds), "val", rounds["val_accuracy"].notna().all())
        ray.shutdown()
        """)

    done = fresh_python(code, tmp_path)

    assert done.returncode == 0, done.stderr[-4000:]
    assert "rounds 2 val True" in done.stdout
    assert (tmp_path / "r" / "rounds.parquet").is_file() and (tmp_path / "r" / "secrets.json").is_file()
