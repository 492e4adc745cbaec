"""Nothing of a local run listens beyond loopback: every TCP/UDP server socket of every Ray process
the local default (orchestrator.cluster.ensure_ray) starts -- GCS, raylet (node and object manager),
dashboard head and agents, the driver's and each worker's gRPC server -- is bound to 127.0.0.1."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.ray_cluster import free_port, is_loopback, listening_sockets, process_tree

pytestmark = pytest.mark.slow

# A driver as `fedfrontier run` starts it: the local default, then a task and an actor so that worker
# processes (each with its own gRPC server) exist; it holds everything up until its stdin closes.
DRIVER = """
import json, os, sys
import ray
from orchestrator.cluster import ensure_ray

ensure_ray(num_cpus=2)

@ray.remote
def task():
    return os.getpid()

@ray.remote(num_cpus=1)
class Actor:
    def pid(self):
        return os.getpid()

actor = Actor.remote()
workers = [ray.get(task.remote()), ray.get(actor.pid.remote())]
print(json.dumps({"node_ip": ray.util.get_node_ip_address(), "workers": workers}), flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture
def local_run():
    """The local default started in a fresh driver process (no RAY_ADDRESS: a private local Ray)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # the autoscaler's and the dashboard's metrics servers have fixed ports (44217, 44227) that
    # another Ray on the machine may hold; free ones make sure they start and are checked
    metric_ports = {"AUTOSCALER_METRIC_PORT": free_port(), "DASHBOARD_METRIC_PORT": free_port()}
    env.update({k: str(v) for k, v in metric_ports.items()})
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line, f"the driver exited with {proc.wait()} before Ray was up"
        yield proc.pid, {**json.loads(line), "metric_ports": sorted(metric_ports.values())}
    finally:
        proc.stdin.close()  # the driver shuts its Ray down (ray.shutdown stops only what it started)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_local_default_listens_on_loopback_only(local_run):
    driver_pid, info = local_run
    pids = process_tree(driver_pid)  # ray.init's processes are the driver's children, workers the raylet's

    sockets = listening_sockets(pids)
    exposed = [s for s in sockets if not is_loopback(s[0])]

    assert info["node_ip"] == "127.0.0.1"
    assert set(info["workers"]) <= pids, "worker processes are not in the driver's process tree"
    names = {name for *_, name in sockets}
    # the servers whose binding this test is about did start (else "all loopback" would prove little)
    assert {"gcs_server", "raylet"} <= names, sockets
    assert driver_pid in {pid for _, _, pid, _ in sockets}, "the driver's gRPC server is not listening"
    assert set(info["metric_ports"]) <= {port for _, port, _, _ in sockets}, "a metrics server is not listening"
    assert set(info["workers"]) <= {pid for _, _, pid, _ in sockets}, "a worker's gRPC server is not listening"
    assert not exposed, f"listening beyond loopback (ip, port, pid, process): {exposed}"
