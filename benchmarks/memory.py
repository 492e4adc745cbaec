"""Peak memory of a process tree, sampled in a background thread from Linux's /proc."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children listed by the kernel per thread)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in (PROC / str(p) / "task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:  # the thread or process has exited
                pass
    return out


def rss_pss(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes from /proc/<pid>/smaps_rollup; (0, 0) for a process that has exited."""
    rss = pss = 0
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


class PeakMemory:
    """Samples, every ``interval`` seconds, the summed RSS and PSS of the processes below this one -- with
    a local ``ray.init``: GCS, raylet, agents and every worker, i.e. all Ray processes -- and of this
    driver process itself. RSS counts shared library pages once per process (an upper bound on what
    the processes use together); PSS shares them out."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.peak = {"ray_rss": 0, "ray_pss": 0, "all_rss": 0, "all_pss": 0, "ray_processes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> dict[str, int]:
        me = os.getpid()
        below = [p for p in descendants(me) if p != me]
        ray = [rss_pss(p) for p in below]
        driver = rss_pss(me)
        ray_rss, ray_pss = sum(r for r, _ in ray), sum(p for _, p in ray)
        return {"ray_rss": ray_rss, "ray_pss": ray_pss, "all_rss": ray_rss + driver[0],
                "all_pss": ray_pss + driver[1], "ray_processes": len(below)}

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, value in self.sample().items():
                self.peak[key] = max(self.peak[key], value)
            self._stop.wait(self.interval)
