"""A run killed mid-way and resumed gives the same table as an uninterrupted run."""

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ARGS = ["--set", "data.dataset=digits", "--set", "data.num_clients=4", "--set", "server.clients_per_round=3",
        "--set", "server.rounds=5", "--set", "client.num_actors=2", "--set", "client.num_cpus=0.5",
        "--set", "server.clip=2.0", "--set", "server.noise_multiplier=0.05", "--set", "run.checkpoint_every=2", "--set", "run.noise_seed=4",
        # server momentum and a cosine schedule: the velocity and the round's learning rate must survive the kill
        "--set", "server.momentum=0.5", "--set", "server.lr_schedule=cosine"]


def cli(*args, cwd):
    return [sys.executable, "-m", "orchestrator.cli", *args]


SECAGG = ["--set", "secagg.enabled=true", "--set", "server.sampling=fixed"]  # the Skellam ledger must survive too
# secure FedSGD: every silo in every round, no server noise; the silos' record-level Skellam histories must survive
SECAGG_RECORD = ["--set", "secagg.enabled=true", "--set", "secagg.level=record", "--set", "secagg.bits=24",
                 "--set", "server.clients_per_round=4", "--set", "server.noise_multiplier=0",
                 "--set", "client.local_steps=1", "--set", "client.batch_size=128"]

# DP-FTRL: the correlated noise's recent past (regenerated), the min_sep records and the per-client ledger must survive
FTRL = ["--set", "server.mechanism=dp_ftrl", "--set", "server.participation=min_sep", "--set",
        "server.min_separation=2", "--set", "server.clients_per_round=2", "--set", "audit.canaries=8"]


@pytest.mark.parametrize("extra", [[], SECAGG, SECAGG_RECORD, FTRL], ids=["central", "secagg", "secagg-record", "dp-ftrl"])
def test_killed_run_resumes_to_the_uninterrupted_table(tmp_path, extra):
    args = ARGS + extra
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")

    done = subprocess.run(cli("run", *args, "--out", str(whole), cwd=tmp_path), capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(cli("run", *args, "--out", str(killed), cwd=tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path, start_new_session=True)
    for line in proc.stdout:  # kill the whole process group right after round 3: checkpoint is at round 2
        if line.startswith("round   3/"):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    partial = pd.read_parquet(killed / "rounds.parquet")
    assert list(partial["round"]) == [1, 2]

    resumed = subprocess.run(cli("run", "--resume", str(killed), cwd=tmp_path), capture_output=True, text=True,
                             timeout=600, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout

    from orchestrator.federation import TIMING_COLUMNS

    a = pd.read_parquet(whole / "rounds.parquet").drop(columns=list(TIMING_COLUMNS))
    b = pd.read_parquet(killed / "rounds.parquet").drop(columns=list(TIMING_COLUMNS))
    assert list(b["round"]) == [1, 2, 3, 4, 5]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)


def test_checkpoint_loads_without_pickle(tmp_path, ray_local):
    import torch

    from privacy.config.experiment import load_config
    from orchestrator.federation import CHECKPOINT, run_federated

    cfg = load_config(overrides=ARGS[1::2])
    run_federated(cfg.replace(server={"rounds": 2}), progress=None, run_dir=tmp_path)

    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # refuses arbitrary pickled objects

    assert state["round"] == 2 and state["weights"].dtype == torch.float32
    assert len(state["rows"]) == 2 and state["guarantees"]["client"]["histories"]
    assert state["velocity"].shape == state["weights"].shape  # server momentum is part of the state


def test_sigterm_ends_a_run_with_one_line_and_it_resumes(tmp_path):
    """`kill` (or `ray job stop`) mid-run: exit 143, our one line and no Ray stack dump, no temporary file
    left, and --resume finishes the run."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(cli("run", *ARGS, "--set", "server.rounds=30", "--out", str(out), cwd=tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    for line in proc.stdout:
        if line.startswith("round   3/"):
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "fedfrontier: terminated (SIGTERM)" in err and "SIGTERM received" not in err, err
    assert "Traceback" not in err, err
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    resumed = subprocess.run(cli("run", "--resume", str(out), cwd=tmp_path), capture_output=True, text=True,
                             timeout=600, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list(pd.read_parquet(out / "rounds.parquet")["round"]) == list(range(1, 31))
