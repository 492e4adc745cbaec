"""Connecting to Ray: attach to a running cluster, or start a private local one safely."""

from __future__ import annotations

import contextlib
import os
import re
import sys

LOOPBACK = "127.0.0.1"
# Ray's switch for its single-machine mode (its default on macOS and Windows): with it off, Ray takes
# the loopback address as the node IP instead of the host's outward address.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(num_cpus: int | None = None) -> None:
    """Attach to ``RAY_ADDRESS`` (e.g. under ``ray job submit``) or start a private local Ray whose
    every server (GCS, raylet, object manager, workers, agents) listens on 127.0.0.1 only, with no
    dashboard: nothing of a local run is reachable from another machine (tests/test_loopback.py)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:  # address="local": always a fresh private instance, never a cluster some `ray start` left here
        with _loopback_node_ip():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK,
                     log_to_driver=True, configure_logging=True, logging_level="warning")
    _shorten_worker_deaths()


WORKER_DIED = "A worker died or was killed while executing a task by an unexpected system error"
_AFTERMATH = ("Failed to send wait complete",)  # the raylet's follow-up lines about the same death


def death_line(line: str) -> str | None:
    """fedfrontier's one line for Ray's paragraph about a dead worker process; None for any other line."""
    if WORKER_DIED not in line:
        return None
    pid = re.search(r"Worker PID: (\d+)", line)
    kind = re.search(r"Worker exit type: (\w+)", line)
    return (f"fedfrontier: a Ray worker process died (pid {pid.group(1) if pid else '?'}, "
            f"{kind.group(1) if kind else 'unknown exit'}); a client actor is restarted and its clients retried "
            "within the round (round table: clients_retried, clients_failed, failures)")


def filter_worker_logs(data: dict, emit) -> None:
    """Pass a batch of worker log lines to ``emit``, with Ray's paragraph about a dead worker replaced by
    :func:`death_line` (printed to stderr) and its aftermath dropped."""
    keep = []
    for line in data.get("lines", []):
        short = death_line(line)
        if short is not None:
            print(short, file=sys.stderr, flush=True)
        elif not any(a in line for a in _AFTERMATH):
            keep.append(line)
    if keep:
        emit({**data, "lines": keep})


def _shorten_worker_deaths() -> None:
    """Route the driver's two printers of worker logs and raylet errors through :func:`filter_worker_logs`.
    Both are private parts of Ray (``ray._private.worker``: the handlers of
    ``global_worker_stdstream_dispatcher``, and ``print_to_stdstream``, which the error listener calls):
    where they are missing, Ray's own paragraphs stay."""
    try:
        from ray._private import worker
    except ImportError:
        return
    dispatcher = getattr(worker, "global_worker_stdstream_dispatcher", None)
    for name, handler in list(getattr(dispatcher, "handlers", [])):
        if name == "ray_print_logs" and not getattr(handler, "fedfrontier", False):
            def filtered(data, _emit=handler):
                filter_worker_logs(data, _emit)

            filtered.fedfrontier = True
            dispatcher.remove_handler(name)
            dispatcher.add_handler(name, filtered)
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is not None and not getattr(printer, "fedfrontier", False):
        def print_filtered(data, ignore_prefix, _print=printer):
            filter_worker_logs(data, lambda kept: _print(kept, ignore_prefix=ignore_prefix))

        print_filtered.fedfrontier = True
        worker.print_to_stdstream = print_filtered


@contextlib.contextmanager
def _loopback_node_ip():
    """Make the local Ray node's IP 127.0.0.1, for the duration of ``ray.init`` only.

    Ray 2.60 binds its gRPC servers to 127.0.0.1 only when the node IP is exactly 127.0.0.1, and
    otherwise to all interfaces (0.0.0.0 / ::). But ``ray.init(_node_ip_address="127.0.0.1")`` is
    rewritten to the host's outward address (``ray._private.services.resolve_ip_for_localhost``)
    unless Ray runs in its single-machine mode, set by ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` and
    read once at import into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``. So both are set
    here: the constant for this driver, the variable for the processes ``ray.init`` starts (GCS,
    raylet and, through the raylet, every worker). Both are restored afterwards, so a ``ray start``
    launched later from this process can still form a multi-node cluster.
    """
    try:
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    if ray_constants is None or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield  # another Ray layout: nothing to switch (tests/test_loopback.py says whether that suffices)
        return
    saved_env = os.environ.get(_RAY_CLUSTER_ENV)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
