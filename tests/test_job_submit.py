"""A real local Ray cluster: `ray start --head` on loopback with token authentication, `ray job
submit` of a small sweep. The cluster is private (own temp dir, ports and token) and stopped by its
own process ids: no other Ray on the machine is touched."""

import subprocess
import time

import pandas as pd
import pytest

from tests.conftest import DIGITS_SWEEP_BASE, ROOT
from tests.ray_cluster import RAY, is_loopback, listening_sockets

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


def ray_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def head_node(ray_cluster):
    """`ray start --head`, every server on 127.0.0.1, the job server (dashboard) included."""
    cluster = ray_cluster(loopback=True)
    cluster.start_head(num_cpus=2)
    return cluster


def test_ray_job_submit_runs_the_sweep_on_the_cluster(head_node, tmp_path):
    cluster = head_node
    config = tmp_path / "job.toml"
    config.write_text(SMALL)
    out, storage = tmp_path / "results", tmp_path / "storage"

    for _ in range(40):  # the job server and its agent come up shortly after the head
        submitted = ray_cli("job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(ROOT), "--",
                            "python", "-m", "experiments.frontier", "--config", str(config), "--out", str(out),
                            "--storage-path", str(storage), env=cluster.env, timeout=900)
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
    exposed = [s for s in listening_sockets(cluster.pids()) if not is_loopback(s[0])]
    assert not exposed, f"the loopback head listens beyond loopback: {exposed}"


def test_job_client_needs_token_mode_set(head_node):
    """Why the README exports RAY_AUTH_MODE=token where jobs are submitted: a head with token
    authentication refuses a client that has the token but not the mode (Ray 2.60 sends the token
    only in token mode) -- the `AuthenticationError: Missing authentication token` of issue 15."""
    cluster = head_node
    without_mode = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}

    refused = ray_cli("job", "list", "--address", cluster.dashboard_url, env=without_mode)
    accepted = ray_cli("job", "list", "--address", cluster.dashboard_url, env=cluster.env)

    assert refused.returncode != 0 and "AuthenticationError" in refused.stderr, refused.stderr[-2000:]
    assert accepted.returncode == 0, accepted.stderr[-2000:]
