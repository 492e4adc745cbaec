"""Kill test: the default run, clean and with a client actor SIGKILLed from outside 4 times, side by side.

Issue 15, point 4: a client actor that dies mid-round must cost a retry, not its clients' updates.
The configuration is the default ``fedfrontier run`` with

    --set server.rounds=10 --set client.num_actors=2 --set client.num_cpus=1 --set run.noise_seed=0

(``mnist5k``, 10 IID clients, all of them every round, 5 to each of the 2 client actors, record-level
DP-SGD). ``run.noise_seed`` fixes every noise and sampling stream, so the two runs are comparable
round by round: a client's update is a function of (weights, client, round, noise seed) alone, and a
retried client gives exactly the update its first try would have.

Both runs go through ``orchestrator.federation.run_federated`` in this process on one local Ray
(``orchestrator.cluster.ensure_ray``): first the clean run, then the killed run, during which a
background thread follows the progress callback (one line per finished round) and, in rounds
2, 4, 6 and 8, sleeps ``--delay`` x the clean run's median round time after the round has started,
then SIGKILLs the process of one alive ``ClientActor`` (its ``pid`` from Ray's state API, ``list_actors``,
or, as the local default runs without the dashboard that API needs, from the GCS actor table it reads;
the two actors take turns, so neither runs out of ``client.max_restarts`` = 3).

Checks, printed PASS/FAIL: the killed run completes all rounds; retries (or failures) appear in its
table; its final accuracy is within 1 point of the clean run's; its ``eps_record_max`` is never lower
than the clean run's, round by round. Results: ``benchmarks/results/kill_test.{md,json}``.

    python benchmarks/kill_test.py [--kill-rounds 2,4,6,8] [--delay 0.3]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import threading
import time
import warnings

import common

OVERRIDES = ["server.rounds=10", "client.num_actors=2", "client.num_cpus=1", "run.noise_seed=0"]
COLUMNS = ["round", "clients_sampled", "clients_failed", "clients_retried", "failures", "test_accuracy",
           "eps_record_max", "seconds"]
ROUND_LINE = re.compile(r"^round\s+(\d+)/(\d+)")


def client_actor_pids() -> dict[str, int]:
    """actor id -> pid of every alive ClientActor of *this* driver's Ray. Ray's state API (``list_actors``)
    asks the dashboard, so it is pointed at this cluster's own dashboard (never a default address, which may be
    another Ray on the machine); the local default runs without one (``ensure_ray``), and then the GCS actor
    table that the state API reads is asked directly (``ray._private.state.actors()``, the same ``pid``)."""
    import ray
    from ray.util.state import list_actors

    dashboard = ray.get_runtime_context().worker.node.address_info.get("webui_url") if ray.is_initialized() else None
    if dashboard:
        actors = list_actors(address=f"http://{dashboard}", detail=True, limit=1000, raise_on_missing_output=False,
                             filters=[("class_name", "=", "ClientActor"), ("state", "=", "ALIVE")])
        return {a.actor_id: int(a.pid) for a in actors if a.pid}
    from ray._private import state

    return {a["ActorID"]: int(a["Pid"]) for a in state.actors().values()
            if a["ActorClassName"] == "ClientActor" and a["State"] == "ALIVE" and a["Pid"]}


class Killer(threading.Thread):
    """SIGKILLs one client actor ``delay_s`` after each round in ``rounds`` has started (that is, after the
    progress line of the round before it)."""

    def __init__(self, rounds: list[int], delay_s: float):
        super().__init__(daemon=True)
        self.rounds, self.delay_s = sorted(rounds), delay_s
        self.finished = 0  # rounds finished so far, from the progress lines
        self.cond = threading.Condition()
        self.stopping = False
        self.kills: list[dict] = []
        self.kills_per_actor: dict[str, int] = {}
        self.round_started_at = time.monotonic()

    def progress(self, line: str) -> None:
        print(line, flush=True)
        m = ROUND_LINE.match(line)
        if m:
            with self.cond:
                self.finished = int(m.group(1))
                self.round_started_at = time.monotonic()
                self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def run(self) -> None:
        for r in self.rounds:
            with self.cond:  # round r starts when round r - 1 is reported finished
                self.cond.wait_for(lambda: self.stopping or self.finished >= r - 1)
                if self.stopping or self.finished >= r:
                    return
                started = self.round_started_at
            time.sleep(max(0.0, started + self.delay_s - time.monotonic()))
            try:
                self.kills.append(self.kill_one(r, started))
            except Exception as exc:  # reported in the results, never a silent thread death
                self.kills.append({"round": r, "killed": False, "why": f"{type(exc).__name__}: {exc}"})
                print(f"  no kill in round {r}: {type(exc).__name__}: {exc}", flush=True)

    def kill_one(self, r: int, started: float) -> dict:
        pids = client_actor_pids()
        if not pids:
            return {"round": r, "killed": False, "why": "no alive ClientActor"}
        actor = min(pids, key=lambda a: (self.kills_per_actor.get(a, 0), a))  # take turns
        try:
            os.kill(pids[actor], signal.SIGKILL)
        except ProcessLookupError:
            return {"round": r, "killed": False, "why": f"pid {pids[actor]} already gone"}
        self.kills_per_actor[actor] = self.kills_per_actor.get(actor, 0) + 1
        with self.cond:
            finished = self.finished
        at = time.monotonic() - started
        print(f"  killed ClientActor {actor[:8]} (pid {pids[actor]}) {at:.1f}s into round {r}"
              + ("" if finished == r - 1 else f" -- but round {finished} had already finished"), flush=True)
        return {"round": r, "killed": True, "actor_id": actor, "pid": pids[actor], "seconds_into_round": at,
                "round_still_running": finished == r - 1}


def one_run(name: str, killer: Killer | None) -> dict:
    from orchestrator.federation import run_federated
    from privacy.config.experiment import load_config

    cfg = load_config(overrides=OVERRIDES)
    print(f"--- {name} run", flush=True)
    if killer is not None:
        killer.start()
    t0 = time.perf_counter()
    error = ""
    try:
        df = run_federated(cfg, progress=killer.progress if killer else (lambda s: print(s, flush=True)))
    except Exception as exc:  # the check "completes" reports it
        df, error = None, f"{type(exc).__name__}: {exc}"
        print(f"{name} run failed: {error}", flush=True)
    finally:
        if killer is not None:
            killer.stop()
            killer.join(timeout=5)
    wall = time.perf_counter() - t0
    rows = [] if df is None else [{c: _plain(r[c]) for c in COLUMNS} for r in df.to_dict("records")]
    return {"name": name, "wall_s": wall, "error": error, "rows": rows, "rounds": cfg.server.rounds,
            "kills": killer.kills if killer else []}


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


def checks(clean: dict, killed: dict) -> list[tuple[str, bool, str]]:
    c, k = clean["rows"], killed["rows"]
    complete = not killed["error"] and len(k) == killed["rounds"]
    retried = sum(r["clients_retried"] for r in k)
    failed = sum(r["clients_failed"] for r in k)
    acc_c = c[-1]["test_accuracy"] if c else math.nan
    acc_k = k[-1]["test_accuracy"] if k else math.nan
    gap = acc_c - acc_k
    eps_ok = len(c) == len(k) and all(rk["eps_record_max"] >= rc["eps_record_max"] for rc, rk in zip(c, k))
    low = [rk["round"] for rc, rk in zip(c, k) if rk["eps_record_max"] < rc["eps_record_max"]]
    return [
        ("killed run completes", complete,
         f"{len(k)}/{killed['rounds']} rounds" + (f"; {killed['error']}" if killed["error"] else "")),
        ("retries or failures in the table", retried + failed > 0,
         f"clients_retried {retried}, clients_failed {failed} over the run"),
        ("final accuracy within 1 point of the clean run", bool(abs(gap) <= 0.01) if k and c else False,
         f"clean {acc_c:.4f}, killed {acc_k:.4f} (clean - killed = {gap:+.4f})"),
        ("eps_record_max never lower than the clean run's", eps_ok,
         "every round >= clean" if eps_ok else f"lower in rounds {low}"),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kill-rounds", default="2,4,6,8", help="rounds (1-based) in which one client actor is killed")
    p.add_argument("--delay", type=float, default=0.3,
                   help="kill this fraction of the clean run's median round time after the round starts")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import ray

    from orchestrator.cluster import ensure_ray

    machine = common.machine()
    t0 = time.perf_counter()
    ensure_ray(num_cpus=args.cpus)
    ray_init = time.perf_counter() - t0
    try:
        clean = one_run("clean", None)
        if clean["error"] or not clean["rows"]:
            raise SystemExit(f"the clean run failed: {clean['error']}")
        round_s = common.median([r["seconds"] for r in clean["rows"]])
        killer = Killer([int(r) for r in args.kill_rounds.split(",")], args.delay * round_s)
        killed = one_run("killed", killer)
    finally:
        ray.shutdown()

    results = checks(clean, killed)
    by_round = {r["round"]: r for r in clean["rows"]}
    kills = {k["round"]: k for k in killed["kills"] if k.get("killed")}
    rows = []
    for rk in killed["rows"]:
        rc = by_round.get(rk["round"], {})
        kill = kills.get(rk["round"])
        rows.append([rk["round"], f"{kill['seconds_into_round']:.1f} s in" if kill else "",
                     rc.get("clients_failed"), rc.get("clients_retried"), round(rc.get("test_accuracy", math.nan), 4),
                     round(rc.get("eps_record_max", math.nan), 3), rk["clients_failed"], rk["clients_retried"],
                     rk["failures"].replace("|", "/") or "–", round(rk["test_accuracy"], 4),
                     round(rk["eps_record_max"], 3), round(rc.get("seconds", math.nan), 1), round(rk["seconds"], 1)])
    table = common.markdown_table(
        ["round", "kill", "clean failed", "clean retried", "clean accuracy", "clean eps_record_max", "killed failed",
         "killed retried", "killed failures", "killed accuracy", "killed eps_record_max", "clean round s",
         "killed round s"], rows)
    verdict = "\n".join(f"- {'PASS' if ok else 'FAIL'}: {what} ({detail})" for what, ok, detail in results)
    same = [rk["round"] for rk in killed["rows"] if rk["round"] in by_round
            and all(rk[c] == by_round[rk["round"]][c] for c in ("test_accuracy", "eps_record_max"))]
    verdict += (f"\n\nRounds whose accuracy and eps_record_max equal the clean run's exactly: {len(same)} of "
                f"{len(killed['rows'])} (a retried client's update is a function of weights, client, round and "
                f"noise seed alone).")
    walls = (f"Wall time: clean run {clean['wall_s']:.1f} s, killed run {killed['wall_s']:.1f} s "
             f"(+ {ray_init:.1f} s to start Ray). Kills {args.delay} x the clean median round time "
             f"({round_s:.1f} s) after the round started; `fedfrontier run --set "
             + " --set ".join(OVERRIDES) + "`, run in-process.")
    print(table, verdict, walls, sep="\n\n")
    md = f"# Kill test (issue 15, point 4)\n\n{table}\n\n{verdict}\n\n{walls}"
    path = common.write_results("kill_test", {
        "machine": machine, "args": vars(args), "overrides": OVERRIDES, "ray_init_s": ray_init,
        "kill_delay_s": args.delay * round_s, "clean": clean, "killed": killed,
        "checks": [{"check": w, "pass": ok, "detail": d} for w, ok, d in results]}, md)
    print(f"wrote {path}")
    if not all(ok for _, ok, _ in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
