"""Scale: seconds per round and peak memory for 100 / 1,000 / 3,000 virtual clients at a cohort of 50.

Real MNIST (60,000 training images, from ``--root``), Dirichlet(0.5) label skew, a fixed
cohort of exactly 50 clients per round, the seed's CNN (mnist_cnn, our largest: 1.2 M
parameters) with record-level DP-SGD, 2 client actors, and a fixed amount of work per
client: ``--local-steps`` Poisson batches of expected size ``--batch`` (a smaller shard: all of it per step). A
round's work is thus the same for every client count; what grows with N is the
orchestration: partitioning, per-client state, sampling, accounting, transfers.

Two phases:

- memory: each client count alone in a fresh local Ray (2 CPUs), a few rounds, sampling
  the summed RSS and PSS of all Ray processes (GCS, raylet, agents, server and client
  actors), alone and with the driver, every 0.25 s;
- time: the three federations alive together in one Ray, stepped round by round in a
  rotating order (100, 1000, 3000; 1000, 3000, 100; ...), so that the background load of
  a shared machine falls on every size alike. Only one federation computes at a time.
  Seconds per round as the server measures them, leaving out each run's first round
  (start-up work) and last (the only test-set evaluation).

    python benchmarks/scale.py [--root ../shared/data/MNIST] [--rounds 12]
"""

from __future__ import annotations

import argparse
import time

import common
from memory import PeakMemory

GIB = 2 ** 30


def config(num_clients: int, args, rounds: int):
    from privacy.config.experiment import load_config

    return load_config(overrides=[
        "data.dataset=mnist", f"data.root={args.root}", "data.partition=dirichlet", "data.alpha=0.5",
        f"data.num_clients={num_clients}", "data.min_client_size=2", "model.name=mnist_cnn",
        f"client.batch_size={args.batch}", f"client.local_steps={args.local_steps}", "client.noise_multiplier=1.0",
        "client.num_actors=2", "client.num_cpus=1", "server.sampling=fixed",
        f"server.clients_per_round={args.cohort}", f"server.rounds={rounds}", "server.clip=1.0",
        "server.noise_multiplier=1.0", f"run.eval_every={rounds}", "run.seed=0",
        # RDP as when the figures in BENCHMARKS.md were taken: PLD costs ~0.1 s per client of a distinct
        # size per round (benchmarks/results/accounting.md), which this benchmark of orchestration would measure
        "client.accountant=rdp", "server.accountant=rdp"])


def memory_run(num_clients: int, args) -> dict:
    import ray

    from orchestrator.cluster import ensure_ray
    from orchestrator.federation import Federation
    from orchestrator.resolve import resolve_config

    with PeakMemory() as mem:
        ensure_ray(num_cpus=2)
        fed = Federation(resolve_config(config(num_clients, args, args.memory_rounds))).start()
        try:
            for r in range(args.memory_rounds):
                fed.step(r)
        finally:
            fed.close()
        time.sleep(1.0)  # let the sampler see the last round's processes once more
        ray.shutdown()
    return {f"peak_{k}_gib" if k != "ray_processes" else k: v / GIB if k != "ray_processes" else v
            for k, v in mem.peak.items()}


def timing_runs(counts: list[int], args) -> dict[int, list[dict]]:
    import ray

    from actors.server import sample_cohort
    from orchestrator.cluster import ensure_ray
    from orchestrator.federation import Federation
    from orchestrator.resolve import resolve_config

    ensure_ray(num_cpus=2 * len(counts))  # logical CPUs for every federation's actors; they take turns
    plans = {n: resolve_config(config(n, args, args.rounds)) for n in counts}
    feds = {n: Federation(plans[n]).start() for n in counts}
    rows: dict[int, list[dict]] = {n: [] for n in counts}
    try:
        for r in range(args.rounds):
            order = counts[r % len(counts):] + counts[:r % len(counts)]
            for n in order:
                rows[n].append(feds[n].step(r))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n}: {rows[n][-1]['seconds']:.2f} s" for n in counts),
                  flush=True)
    finally:
        for fed in feds.values():
            fed.close()
        ray.shutdown()
    for n in counts:
        s, sizes = plans[n].config.server, plans[n].partition.sizes
        for r, row in enumerate(rows[n]):
            cohort = sample_cohort(n, s.clients_per_round, scheme=s.sampling, seed=0, round_idx=r)
            row["expected_examples"] = sum(args.local_steps * min(args.batch, int(sizes[k])) for k in cohort)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(common.ROOT.parent / "shared" / "data" / "MNIST"), help="MNIST IDX folder")
    p.add_argument("--clients", default="100,1000,3000", help="comma-separated client counts")
    p.add_argument("--cohort", type=int, default=50, help="clients per round (fixed-size cohort)")
    p.add_argument("--rounds", type=int, default=12, help="rounds per federation in the timing phase")
    p.add_argument("--memory-rounds", type=int, default=3, help="rounds per federation in the memory phase")
    p.add_argument("--local-steps", type=int, default=4, help="local DP-SGD steps per client per round")
    p.add_argument("--batch", type=int, default=8, help="expected Poisson batch size")
    args = p.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    done = common.Partial("scale")  # a killed run resumes after its last finished phase
    memory = {}
    for n in counts:
        if f"memory:{n}" not in done:
            done.add(f"memory:{n}", memory_run(n, args))
        memory[n] = m = done.items[f"memory:{n}"]
        print(f"{n:>5} clients: peak RSS of Ray processes {m['peak_ray_rss_gib']:.2f} GiB (PSS "
              f"{m['peak_ray_pss_gib']:.2f}), with the driver {m['peak_all_rss_gib']:.2f} GiB (PSS "
              f"{m['peak_all_pss_gib']:.2f})", flush=True)
    if "timing" not in done:
        done.add("timing", {str(n): r for n, r in timing_runs(counts, args).items()})
    rows = {n: done.items["timing"][str(n)] for n in counts}

    def measured(n: int) -> list[float]:
        return [row["seconds"] for row in rows[n][1:-1]]

    base = common.median(measured(counts[0]))
    table_rows = []
    for n in counts:
        med = common.median(measured(n))
        examples = sum(row["expected_examples"] for row in rows[n][1:-1]) / len(rows[n][1:-1])
        m = memory[n]
        table_rows.append([n, round(med, 2), round(sum(measured(n)) / len(measured(n)), 2), round(med / base, 2),
                           round(examples), round(m["peak_ray_rss_gib"], 2), round(m["peak_ray_pss_gib"], 2),
                           round(m["peak_all_rss_gib"], 2), round(m["peak_all_pss_gib"], 2)])
    table = common.markdown_table(["clients", "s / round (median)", "s / round (mean)", f"x {counts[0]} clients",
                                   "examples / round", "Ray RSS GiB", "Ray PSS GiB", "+ driver RSS GiB",
                                   "+ driver PSS GiB"], table_rows)
    print(table)
    payload = {"machine": common.machine(), "args": vars(args), "memory": memory,
               "rounds": {n: [{k: row[k] for k in ("round", "seconds", "clients_sampled", "clients_failed",
                                                    "expected_examples", "eps_record_max", "test_accuracy")}
                              for row in rows[n]] for n in counts}}
    path = common.write_results("scale", payload, table)
    done.finish()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
