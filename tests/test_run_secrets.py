"""The noise seed and private selection's draw live in one owner-only file, never beside the results."""

import json
import os
import stat

import pandas as pd
import pytest
import torch

from orchestrator.round_loop import config_columns
from orchestrator.run_secrets import (NOISE_SEED, REPETITIONS, SECRETS_FILE, public, read_secrets, with_noise_seed,
                                      write_secrets)
from privacy.config.experiment import ConfigError, load_config, to_dict
from tests.secret_scan import files_holding

SEED = 0x3A5C7E91D2B46F08  # 62 bits: eight bytes in every binary form


def test_secrets_file_is_owner_only_and_merges(tmp_path):
    path = write_secrets(tmp_path, {NOISE_SEED: SEED})
    write_secrets(tmp_path, {REPETITIONS: 7})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secrets(tmp_path) == {NOISE_SEED: SEED, REPETITIONS: 7}
    assert [p.name for p in tmp_path.iterdir()] == [SECRETS_FILE]  # no temporary left behind


def test_only_known_secrets_are_kept(tmp_path):
    with pytest.raises(ValueError):
        write_secrets(tmp_path, {"data.root": 1})


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"run.noise_seed": "12"}', '{"run.noise_seed": -1}',
                                     '{"other": 1}', '{"run.noise_seed": true}'])
def test_a_damaged_or_foreign_secrets_file_is_one_config_error(tmp_path, content):
    (tmp_path / SECRETS_FILE).write_text(content)
    with pytest.raises(ConfigError, match=SECRETS_FILE):
        read_secrets(tmp_path)


def test_resuming_without_the_secrets_file_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="noise seed"):
        with_noise_seed(load_config(), tmp_path)


def test_the_public_config_and_round_columns_carry_no_seed():
    cfg = load_config(overrides=[f"run.noise_seed={SEED}"])

    assert public(cfg).run.noise_seed is None and public(cfg).run.seed == cfg.run.seed
    assert "run.noise_seed" not in config_columns(cfg)
    assert str(SEED) not in json.dumps(to_dict(public(cfg)))


def test_the_scan_finds_a_seed_in_every_form_a_result_could_hold_it(tmp_path):
    """The scan the results-directory tests rely on sees the seed in Parquet, CSV, JSON and a checkpoint."""
    for name, write in {"t.parquet": lambda p: pd.DataFrame({"s": [SEED, SEED]}).to_parquet(p),
                        "f.parquet": lambda p: pd.DataFrame({"s": [float(SEED), None]}).to_parquet(p),
                        "t.csv": lambda p: pd.DataFrame({"s": [SEED]}).to_csv(p),
                        "c.json": lambda p: p.write_text(json.dumps({"run": {"noise_seed": SEED}})),
                        "c.pt": lambda p: torch.save({"config": {"run": {"noise_seed": SEED}}}, p)}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write(tmp_path / name)
        assert files_holding(tmp_path, [SEED]) == [f"{name} holds {SEED}"], name
        os.remove(tmp_path / name)


def test_a_run_directory_minus_its_secrets_file_does_not_hold_the_noise_seed(tmp_path):
    """``fedfrontier run``: the seed is in secrets.json (0600) and in no table, config, checkpoint or output."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "run"
    args = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=2", "server.rounds=2",
            "server.clip=1.0", "server.noise_multiplier=1.0", "client.num_actors=1", "audit.canaries=4",
            f"run.noise_seed={SEED}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", *sum([["--set", a] for a in args], []),
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)

    assert done.returncode == 0, done.stderr[-3000:]
    assert read_secrets(out) == {NOISE_SEED: SEED}
    assert stat.S_IMODE((out / SECRETS_FILE).stat().st_mode) == 0o600
    assert {"rounds.parquet", "rounds.csv", "config.json", "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    assert files_holding(out, [SEED], skip=(SECRETS_FILE,)) == []
    assert str(SEED) not in done.stdout + done.stderr
    assert "run.noise_seed" not in pd.read_parquet(out / "rounds.parquet").columns
    assert json.loads((out / "config.json").read_text())["run"]["noise_seed"] is None
