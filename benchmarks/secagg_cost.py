"""What secure aggregation costs per round: seconds per round of the same federation under a trusted server
(`secagg.enabled = false`) and under secure aggregation with distributed Skellam noise (`true`), side by
side in one run, alternating (central, secagg, central, secagg, ...).

Two federations on MNIST with ScatterNet + linear (39,700 parameters, 65,536 after padding):
- ``silos``: 10 silos of 6,000 records, record-level DP-SGD inside each (the mnist_silos.toml recipe),
  every silo every round, client-level clip 0.1 and noise z = 1 on top;
- ``devices``: 1,000 Dirichlet(0.5) devices, Poisson cohorts of 200 (mnist_devices_secagg.toml), fixed
  clip 0.3, z = 1, 32 masking neighbours.

Reported: the median of each run's round seconds (as the server measures them: sampling, training,
every secure-aggregation stage, release and evaluation), leaving out round 1 (start-up), and the ratio of
medians. Needs ../shared/data/MNIST (or --mnist).

    python benchmarks/secagg_cost.py [--rounds 5] [--repeats 2] [--cases silos,devices]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import ROOT, machine, markdown_table, median, write_results

CASES = {
    "silos": ("experiments/configs/mnist_silos.toml", ["server.clip=0.1", "server.noise_multiplier=1.0"]),
    "devices": ("experiments/configs/mnist_devices_secagg.toml", ["server.noise_multiplier=1.0"]),
}


def run_case(case: str, secagg: bool, rounds: int, mnist: str) -> list[float]:
    from orchestrator.federation import run_federated
    from orchestrator.sweep_config import load_sweep_config

    path, extra = CASES[case]
    cfg, _ = load_sweep_config(ROOT / path, [f"data.root={mnist}", f"server.rounds={rounds}", "audit.canaries=0",
                                             "audit.membership=false", "server.target_epsilon=none",
                                             f"secagg.enabled={str(secagg).lower()}", *extra])
    df = run_federated(cfg, progress=None)
    return df["seconds"].tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="runs of each (central, secagg) pair")
    p.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "MNIST"))
    args = p.parse_args()

    from orchestrator.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    info, rows = machine(), []
    results: dict = {}
    for case in args.cases.split(","):
        seconds = {False: [], True: []}
        for rep in range(args.repeats):
            for secagg in (False, True):
                t0 = time.perf_counter()
                rounds = run_case(case, secagg, args.rounds, args.mnist)
                seconds[secagg] += rounds[1:]
                print(f"{case} secagg={secagg} run {rep + 1}: rounds {[round(s, 2) for s in rounds]} "
                      f"({time.perf_counter() - t0:.0f} s wall)", flush=True)
        central, secure = median(seconds[False]), median(seconds[True])
        results[case] = {"central_s_per_round": central, "secagg_s_per_round": secure, "ratio": secure / central,
                         "rounds_central": seconds[False], "rounds_secagg": seconds[True]}
        rows.append([case, len(seconds[False]), central, secure, secure / central])
    table = markdown_table(["federation", "rounds measured (each)", "trusted s/round", "secagg s/round",
                            "**ratio**"], rows)
    print(table)
    write_results("secagg_cost", {"machine": info, "args": vars(args), "results": results}, table)


if __name__ == "__main__":
    main()
