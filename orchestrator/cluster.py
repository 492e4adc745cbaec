"""Connecting to Ray: attach to a running cluster, or start a private local one safely."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
# Ray's switch for its single-machine mode (its default on macOS and Windows): with it off, Ray takes
# the loopback address as the node IP instead of the host's outward address.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(num_cpus: int | None = None) -> bool:
    """Attach to ``RAY_ADDRESS`` (e.g. under ``ray job submit``) or start a private local Ray whose
    every server (GCS, raylet, object manager, workers, agents) listens on 127.0.0.1 only, with no
    dashboard: nothing of a local run is reachable from another machine (tests/test_loopback.py).
    True if this call connected (False: this process was connected already)."""
    import ray

    if ray.is_initialized():
        return False
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:  # address="local": always a fresh private instance, never a cluster some `ray start` left here
        with _loopback_node_ip():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK,
                     log_to_driver=True, configure_logging=True, logging_level="warning")
    _shorten_worker_deaths()
    _terminate_on_sigterm(previous)
    return True


class Terminated(BaseException):
    """SIGTERM reached the driver (``kill``, ``ray job stop``): raised in the main thread, so that the run
    unwinds as from Ctrl-C -- actors killed, Ray stopped, no file half-written (orchestrator/files.py) -- and
    the CLI prints one line. A BaseException, so no ``except Exception`` on the way swallows it."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


_previous_sigterm: list = []  # the handler before ensure_ray's, put back by stop_ray (a notebook's kernel keeps its own)


def _terminate_on_sigterm(previous) -> None:
    """SIGTERM raises :class:`Terminated` in the main thread. Installed after ``ray.init``, whose core worker
    puts a C++ handler there that prints a six-line stack dump and exits without our clean-up; ``previous``
    (the handler before ``ray.init``) comes back with :func:`stop_ray`."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        _previous_sigterm[:] = [previous]


def stop_ray() -> None:
    """``ray.shutdown()`` (disconnect; stop the local Ray this process started), less two waits of Ray's
    own: the half second its exit hook sleeps, and the second it gives the autoscaler monitor, whose
    SIGTERM handler reports to the GCS that Ray has stopped just before (so it always waits the full
    second and is then killed). The monitor is killed first instead: it keeps nothing a run needs."""
    import ray

    try:
        from ray._private import ray_constants, worker

        node = worker._global_node
        monitors = node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []) if node is not None else []
    except (ImportError, AttributeError):  # another Ray layout: a plain shutdown
        monitors = []
    for info in monitors:
        info.process.kill()
    ray.shutdown()
    if _previous_sigterm and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _previous_sigterm.pop() or signal.SIG_DFL)


def start_ray_while(work: Callable[[], T], num_cpus: int | None = None) -> tuple[T, bool]:
    """``work()`` in a thread while this thread starts Ray (:func:`ensure_ray`); returns what ``work`` returns
    and whether Ray was started (or attached to) here.

    ``ray.init`` spends seconds waiting on the processes it spawns, in which the driver's own start-up
    (importing torch and the actors' modules, loading the data, ``resolve_config``) fits. ``ray.init``
    stays in this thread, the main one, where it installs Ray's SIGTERM handler. What ``work`` raises is
    raised here, after Ray is up, and what Ray logged meanwhile is dropped, so that an input error is still
    the one line the CLI prints for it (and a Ray started here for nothing is stopped); otherwise Ray's
    messages are printed once ``work`` is done."""
    done: dict = {}

    def run() -> None:
        try:
            done["value"] = work()
        except BaseException as exc:  # handed to the main thread
            done["error"] = exc

    thread = threading.Thread(target=run, name="fedfrontier-start", daemon=True)
    thread.start()
    import ray  # noqa: F401  (configures Ray's logger, whose output is held back below)

    held = _Held()
    try:
        with _held_ray_logs(held):
            started = ensure_ray(num_cpus)
            thread.join()
    except BaseException:  # Ray's messages say why it did not start
        held.release()
        raise
    if "error" in done:
        if started:
            stop_ray()
        raise done["error"]
    held.release()
    return done["value"], started


class _Held(list):
    """Records held back from Ray's log handlers, as (handler, record)."""

    def release(self) -> None:
        """Print them (through the handlers they were meant for), once."""
        for handler, record in self:
            handler.handle(record)
        self.clear()


@contextlib.contextmanager
def _held_ray_logs(held: _Held):
    """Within the block, what Ray's logger (``ray``) would print is held back in ``held``; its handlers print
    as before afterwards. What is not released (after the block) is dropped."""
    class Hold(logging.Filter):
        def __init__(self, handler: logging.Handler):
            super().__init__()
            self.handler = handler

        def filter(self, record: logging.LogRecord) -> bool:
            held.append((self.handler, record))
            return False

    filters = [(h, Hold(h)) for h in logging.getLogger("ray").handlers]
    for handler, f in filters:
        handler.addFilter(f)
    try:
        yield
    finally:
        for handler, f in filters:
            handler.removeFilter(f)


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
