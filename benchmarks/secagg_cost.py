"""What secure aggregation costs per round: seconds per round of the same federation under a trusted server
(`secagg.enabled = false`) and under secure aggregation with distributed Skellam noise (`true`), the full
protocol (`secagg.protocol = "full"`: keys, masks, Shamir shares) and the sum-only path (`"sum"`), side by
side in one run, alternating (central, full, sum, central, full, sum, ...).

Two federations on MNIST with ScatterNet + linear (39,700 parameters, 65,536 after padding):
- ``silos``: 10 silos of 6,000 records, record-level DP-SGD inside each (the mnist_silos.toml recipe),
  every silo every round, client-level clip 0.1 and noise z = 1 on top;
- ``devices``: 1,000 Dirichlet(0.5) devices, Poisson cohorts of 200 (mnist_devices_secagg.toml), fixed
  clip 0.3, z = 1, 32 masking neighbours.

Reported: the median of each run's round seconds (as the server measures them: sampling, training,
every secure-aggregation stage, release and evaluation), leaving out round 1 (start-up), and the ratios of
medians to the trusted server's. Needs ../shared/data/MNIST (or --mnist).

    python benchmarks/secagg_cost.py [--rounds 5] [--repeats 2] [--cases silos,devices] [--actors 1,2] [--name secagg_cost]
"""

from __future__ import annotations

import argparse
import time

from common import ROOT, machine, markdown_table, median, write_results

CASES = {
    "silos": ("experiments/configs/mnist_silos.toml", ["server.clip=0.1", "server.noise_multiplier=1.0"]),
    "devices": ("experiments/configs/mnist_devices_secagg.toml", ["server.noise_multiplier=1.0"]),
}


MODES = ("central", "full", "sum")  # trusted server; secure aggregation, full protocol; the sum-only path


def run_case(case: str, mode: str, rounds: int, mnist: str, actors: int = 1) -> list[float]:
    from orchestrator.federation import run_federated
    from orchestrator.sweep_config import load_sweep_config

    path, extra = CASES[case]
    cfg, _ = load_sweep_config(ROOT / path, [f"data.root={mnist}", f"server.rounds={rounds}", "audit.canaries=0",
                                             "audit.membership=false", "server.target_epsilon=none",
                                             f"secagg.enabled={str(mode != 'central').lower()}",
                                             f"secagg.protocol={'sum' if mode == 'sum' else 'full'}",
                                             f"client.num_actors={actors}", *extra])
    df = run_federated(cfg, progress=None)
    return df["seconds"].tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="runs of each (central, secagg) pair")
    p.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "MNIST"))
    p.add_argument("--name", default="secagg_cost", help="results file: benchmarks/results/<name>.md")
    p.add_argument("--actors", default="1", help="client actors per run, e.g. 1,2 (each count timed in turn)")
    args = p.parse_args()

    from orchestrator.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    info, rows = machine(), []
    results: dict = {}
    for case in args.cases.split(","):
        for actors in (int(a) for a in args.actors.split(",")):
            seconds: dict[str, list[float]] = {m: [] for m in MODES}
            for rep in range(args.repeats):
                for mode in MODES:
                    t0 = time.perf_counter()
                    rounds = run_case(case, mode, args.rounds, args.mnist, actors)
                    seconds[mode] += rounds[1:]
                    print(f"{case} {mode} {actors} actor(s) run {rep + 1}: rounds {[round(s, 2) for s in rounds]} "
                          f"({time.perf_counter() - t0:.0f} s wall)", flush=True)
            med = {m: median(seconds[m]) for m in MODES}
            results[f"{case}/{actors}"] = {f"{m}_s_per_round": med[m] for m in MODES} | {
                "ratio_full": med["full"] / med["central"], "ratio_sum": med["sum"] / med["central"],
                **{f"rounds_{m}": seconds[m] for m in MODES}}
            rows.append([case, actors, len(seconds["central"]), med["central"], med["full"], med["sum"],
                         med["full"] / med["central"], med["sum"] / med["central"]])
    table = markdown_table(["federation", "client actors", "rounds measured (each)", "trusted s/round", "secagg full s/round",
                            "secagg sum s/round", "**ratio full**", "**ratio sum**"], rows)
    print(table)
    write_results(args.name, {"machine": info, "args": vars(args), "results": results}, table)


if __name__ == "__main__":
    main()
