"""Shared by the benchmark scripts: the machine's description, robust summaries, result files.

Every script measures the things it compares side by side in one run, alternating them
(A, B, A, B, ...) so that a neighbour's load hits both alike, and reports medians and
ratios of medians. Results go to ``benchmarks/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(ROOT))


def machine() -> dict:
    """CPU model, cores, memory and library versions: what a reader needs to compare figures."""
    import opacus
    import ray
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0.0
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "torch": torch.__version__, "opacus": opacus.__version__, "ray": ray.__version__,
            "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def median(xs) -> float:
    return float(statistics.median(xs))


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict, table_md: str) -> Path:
    """Write ``results/<name>.json`` (everything) and ``results/<name>.md`` (the table and the machine)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    m = payload.get("machine", {})
    md = (f"{table_md}\n\nMachine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
          f"torch {m.get('torch')}, opacus {m.get('opacus')}, ray {m.get('ray')}; "
          f"load average at start {m.get('load_average_at_start')}.\n")
    (RESULTS / f"{name}.md").write_text(md)
    return RESULTS / f"{name}.md"


class Partial:
    """Finished pieces of a long benchmark, kept in ``results/<name>.partial.json`` so that a run
    killed half-way (a neighbour's ``ray stop`` ends every Ray on the machine) resumes where it
    stopped when started again. :meth:`finish` removes the file."""

    def __init__(self, name: str):
        self.path = RESULTS / f"{name}.partial.json"
        self.items: dict[str, object] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def add(self, key: str, value) -> None:
        self.items[key] = value
        RESULTS.mkdir(exist_ok=True)
        self.path.write_text(json.dumps(self.items, default=str) + "\n")

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
