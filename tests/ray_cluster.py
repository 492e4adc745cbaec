"""A private Ray cluster for tests: `ray start` nodes with their own temp dir, ports and auth token,
stopped by their own process ids -- never `ray stop`, which kills every Ray on the machine.

Each node is a `ray start --block` child of the test process. Every process a node starts (GCS,
raylet, dashboard, agents, workers, job drivers) inherits the environment variable
``FEDFRONTIER_TEST_CLUSTER=<id>``, so :meth:`LocalRayCluster.pids` finds them all, also ones that
were re-parented; :meth:`LocalRayCluster.stop` sends those pids SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAG = "FEDFRONTIER_TEST_CLUSTER"
RAY = str(Path(sys.executable).with_name("ray"))


def psutil():
    """psutil, as Ray ships it (ray/thirdparty_files, on sys.path once ray is imported)."""
    import ray  # noqa: F401
    import psutil as _psutil

    return _psutil


_GIVEN: set[int] = set()  # every port this process has handed out: never the same one twice


def free_port() -> int:
    """A TCP port free on every interface right now (the OS's choice), never one this process has
    handed out before: two components of one node given the same port make `ray start` refuse."""
    while True:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped IPv6 loopback (::ffff:127.0.0.1, how a dual-stack
    gRPC server bound to 127.0.0.1 shows up)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int, str]]:
    """(ip, port, pid, process name) of every socket of ``pids`` that accepts traffic: TCP in LISTEN,
    and UDP sockets bound without a peer."""
    ps = psutil()
    found = []
    for conn in ps.net_connections(kind="inet"):
        if conn.pid not in pids or not conn.laddr:
            continue
        listening = (conn.status == ps.CONN_LISTEN if conn.type == socket.SOCK_STREAM
                     else conn.type == socket.SOCK_DGRAM and not conn.raddr)
        if listening:
            try:
                name = ps.Process(conn.pid).name()
            except ps.NoSuchProcess:
                name = "?"
            found.append((conn.laddr.ip, conn.laddr.port, conn.pid, name))
    return sorted(found)


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its live descendants."""
    ps = psutil()
    root = ps.Process(pid)
    return {pid, *(p.pid for p in root.children(recursive=True))}


class LocalRayCluster:
    """Head and extra nodes of one private Ray cluster on this machine.

    ``loopback=True`` puts every server of a single-node cluster on 127.0.0.1 (Ray's single-machine
    mode, see orchestrator/cluster.py); nodes then cannot be added. Otherwise nodes take the
    machine's address, as on a real cluster. Token authentication is always on, with a private token
    (``RAY_AUTH_TOKEN``): ``~/.ray/auth_token`` is neither read nor written.
    """

    def __init__(self, *, loopback: bool = False):
        self.loopback = loopback
        self.id = secrets.token_hex(6)
        # short: Ray's Unix sockets live under it and a socket path has at most 107 bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ffray-", dir="/tmp"))
        self.token = secrets.token_hex(32)
        self.gcs_address: str | None = None
        self.dashboard_url: str | None = None
        self._nodes: list[subprocess.Popen] = []
        self._metric_ports = {"AUTOSCALER_METRIC_PORT": str(free_port()), "DASHBOARD_METRIC_PORT": str(free_port())}
        atexit.register(self.stop)  # also when the test process ends without its teardown

    @property
    def env(self) -> dict[str, str]:
        """Environment for anything that talks to this cluster (`ray` CLI, a driver): token auth on
        with this cluster's token, no usage stats, no other cluster's address. A client of a
        loopback cluster needs Ray's single-machine mode too, or Ray rewrites 127.0.0.1 in a GCS
        address to the host's outward address, where nothing listens."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0")
        if self.loopback:
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        return env

    @property
    def driver_env(self) -> dict[str, str]:
        """:attr:`env` plus ``RAY_ADDRESS``: a driver started with it attaches to this cluster."""
        return {**self.env, "RAY_ADDRESS": self.gcs_address}

    def _node_env(self) -> dict[str, str]:
        # the autoscaler's and the dashboard's Prometheus servers have fixed ports (44217, 44227) that
        # only these variables move: another Ray on the machine would hold them
        return {**self.env, TAG: self.id, **self._metric_ports}

    def start_head(self, *, num_cpus: int, resources: dict | None = None, dashboard: bool = True) -> str:
        """Start the head; returns the GCS address. Every port that has a fixed default is given a
        free one; worker ports are the OS's choice (0)."""
        port = free_port()
        args = ["--head", f"--port={port}", f"--ray-client-server-port={free_port()}"]
        if dashboard:  # the job server and the state API live in the dashboard; loopback only
            self.dashboard_port = free_port()
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
        else:
            args += ["--include-dashboard=false"]
        if self.loopback:
            args += ["--node-ip-address=127.0.0.1"]
        self._start(args, num_cpus, resources, "head")
        host = "127.0.0.1" if self.loopback else self._head_ip()
        self.gcs_address = f"{host}:{port}"
        if dashboard:
            self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        return self.gcs_address

    def add_node(self, *, num_cpus: int, resources: dict | None = None) -> None:
        """Join one more node to the head (a real `ray start --address`)."""
        if self.loopback:
            raise ValueError("a loopback-only cluster has one node (Ray refuses nodes in single-machine mode)")
        self._start([f"--address={self.gcs_address}"], num_cpus, resources, f"node{len(self._nodes)}")

    def _start(self, args: list[str], num_cpus: int, resources: dict | None, name: str) -> None:
        ports = [f"--{flag}={free_port()}" for flag in (
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
            "metrics-export-port", "node-manager-port", "object-manager-port")]
        cmd = [RAY, "start", "--block", *args, f"--num-cpus={num_cpus}", "--num-gpus=0",
               f"--temp-dir={self.temp_dir}", "--min-worker-port=0", "--max-worker-port=0",
               "--disable-usage-stats", *ports]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        log = self.temp_dir / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self._node_env(),
                                    stdin=subprocess.DEVNULL)
        self._nodes.append(proc)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`ray start` ({name}) did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)

    def _head_ip(self) -> str:
        """The address the head advertises (ray start writes it to <temp dir>/ray_current_cluster)."""
        return (self.temp_dir / "ray_current_cluster").read_text().strip().rsplit(":", 1)[0]

    def wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        """Wait until ``count`` nodes are alive (asked through the GCS, with `ray status`)."""
        deadline = time.monotonic() + timeout
        while True:
            status = subprocess.run([RAY, "status", f"--address={self.gcs_address}"], env=self.env,
                                    capture_output=True, text=True, timeout=60)
            alive = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0].count("node_")
            if alive >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{alive} of {count} nodes up:\n{status.stdout}{status.stderr}")
            time.sleep(1)

    def pids(self) -> set[int]:
        """Every live process of this cluster: the `ray start` processes, their descendants, and any
        process carrying this cluster's tag in its environment."""
        ps = psutil()
        found = set()
        for node in self._nodes:
            try:
                root = ps.Process(node.pid)
                found |= {root.pid, *(p.pid for p in root.children(recursive=True))}
            except ps.NoSuchProcess:
                pass
        for proc in ps.process_iter(["pid"]):
            try:
                if proc.environ().get(TAG) == self.id:
                    found.add(proc.pid)
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess, OSError):
                pass
        found.discard(os.getpid())
        return found

    def stop(self, grace: float = 3) -> None:
        """SIGTERM this cluster's processes, SIGKILL what is left after ``grace`` seconds; remove the
        temp dir. Touches no process that is not this cluster's."""
        ps = psutil()
        for attempt, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            _, alive = ps.wait_procs([p for p in map(_process, pids) if p is not None], timeout=grace)
            if not alive and not self.pids():
                break
        for node in self._nodes:
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _process(pid: int):
    ps = psutil()
    try:
        return ps.Process(pid)
    except ps.NoSuchProcess:
        return None
