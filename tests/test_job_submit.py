"""A real local Ray cluster: `ray start --head` on loopback, `ray job submit` of a small sweep."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import DIGITS_SWEEP_BASE, ROOT

pytestmark = pytest.mark.slow

SMALL = DIGITS_SWEEP_BASE + """[server]
rounds = 2
clients_per_round = 4
[sweep]
name = "job"
baseline = true
[sweep.grid]
"client.noise_multiplier" = [1.0]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    ray = Path(sys.executable).with_name("ray")
    return subprocess.run([str(ray), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def head_node():
    """`ray start --head` bound to 127.0.0.1 with the dashboard (job server) on loopback; always stopped."""
    import ray

    ray.shutdown()  # the session's in-process Ray must not be connected when `ray stop` runs
    gcs, dash = free_port(), free_port()
    # every port explicit: fixed defaults (e.g. the agent's 52365) collide with any other Ray on the machine
    ports = [f"--{name}={free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port")]
    # token authentication on, for the head and for every CLI call (the token lives in ~/.ray/auth_token)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    started = ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=2",
                      "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                      "--disable-usage-stats", *ports, env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        yield f"http://127.0.0.1:{dash}", env
    finally:
        ray_cli("stop", "--force", env=env)


def test_ray_job_submit_runs_the_sweep_on_the_cluster(head_node, tmp_path):
    address, env = head_node
    config = tmp_path / "job.toml"
    config.write_text(SMALL)
    out, storage = tmp_path / "results", tmp_path / "storage"

    for _ in range(40):  # the job server and its agent come up shortly after the head
        submitted = ray_cli("job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
                            "python", "-m", "experiments.frontier", "--config", str(config), "--out", str(out),
                            "--storage-path", str(storage), env=env, timeout=900)
        if "No available agent" not in submitted.stderr:
            break
        time.sleep(3)

    log = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, log[-4000:]
    assert "succeeded" in log.lower() or "SUCCEEDED" in log, log[-4000:]
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all()
    assert (trials["round"] == 2).all()
    assert (out / "frontier.png").is_file() and (out / "frontier.parquet").is_file()
    assert any(storage.rglob("*.json")), "Tune wrote no trial state under --storage-path"
