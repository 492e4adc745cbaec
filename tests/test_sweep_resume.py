"""A sweep driver killed mid-way (SIGKILL) resumes with --resume; finished trials are not re-run."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import DIGITS_SWEEP_BASE

pytestmark = pytest.mark.slow

CONFIG = DIGITS_SWEEP_BASE + """[server]
rounds = 4
clients_per_round = 4
[run]
checkpoint_every = 1
[sweep]
name = "resumable"
max_concurrent_trials = 1
baseline = false
[sweep.grid]
"client.noise_multiplier" = [0.8, 1.2, 2.0]
"""


def finished_trials(storage):
    done = []
    for result in storage.rglob("result.json"):
        lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        if lines and lines[-1].get("round") == 4:
            done.append(result)
    return done


def test_killed_sweep_driver_resumes_and_runs_every_trial_once(tmp_path):
    cfg, out = tmp_path / "sweep.toml", tmp_path / "sweep"
    cfg.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(cfg), "--out", str(out)]

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while not finished_trials(out) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(8)  # let Tune save its experiment state after the first trial ended
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    first = finished_trials(out)
    assert first, "no trial finished before the kill"
    before = {p: p.read_text().splitlines() for p in first}

    resumed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "--resume", str(out)],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)

    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 3 and (trials["status"] == "TERMINATED").all()
    assert (trials["round"] == 4).all()
    assert sorted(trials["client.noise_multiplier"]) == [0.8, 1.2, 2.0]
    for path, lines in before.items():  # finished before the kill: not trained again by the resume
        after = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        assert [r["round"] for r in after] == [1, 2, 3, 4]
        assert [r["test_accuracy"] for r in after] == [json.loads(x)["test_accuracy"] for x in lines]
