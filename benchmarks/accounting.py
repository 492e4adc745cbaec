"""Accounting cost: first-time per-step RDP of one (noise, rate), Opacus's evaluation against ours.

Every client of a distinct shard size has its own sample rate, so a run with thousands of
Dirichlet clients evaluates the per-step RDP (all 152 orders) once per distinct rate, in
the server at the client's first round. This times that evaluation for Opacus's
``compute_rdp`` and for ``privacy.subsampled_gaussian.rdp_one_step`` (same series,
vectorised), alternating the two, over the rates of real Dirichlet partitions of MNIST.

    python benchmarks/accounting.py [--sigma 1.0] [--batch 8] [--clients 100,1000,3000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import common
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(common.ROOT.parent / "shared" / "data" / "MNIST"), help="MNIST IDX folder")
    p.add_argument("--clients", default="100,1000,3000")
    p.add_argument("--sigma", type=float, default=1.0, help="client noise multiplier")
    p.add_argument("--batch", type=int, default=8, help="expected batch size: rate = min(1, batch / shard size)")
    p.add_argument("--sample", type=int, default=30, help="distinct rates timed per client count (spread evenly)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    from opacus.accountants.analysis import rdp as opacus_rdp

    from actors.data import load_dataset
    from actors.partition import partition
    from privacy.accounting import RDP_ORDERS
    from privacy.subsampled_gaussian import rdp_one_step

    labels = load_dataset("mnist", args.root).y_train
    rows, out = [], []
    for n in (int(c) for c in args.clients.split(",")):
        sizes = partition(labels, scheme="dirichlet", num_clients=n, seed=0, alpha=0.5, min_size=2).sizes
        rates = np.unique(np.minimum(1.0, args.batch / sizes))
        rates = rates[rates < 1.0]  # rate 1 has a closed form in both
        timed = rates[np.linspace(0, len(rates) - 1, min(args.sample, len(rates))).astype(int)]
        t_opacus, t_ours, worst = [], [], 0.0
        for q in timed:  # alternate the two on every rate
            t0 = time.perf_counter()
            ref = np.asarray(opacus_rdp.compute_rdp(q=float(q), noise_multiplier=args.sigma, steps=1,
                                                    orders=list(RDP_ORDERS)))
            t1 = time.perf_counter()
            got = rdp_one_step(noise_multiplier=args.sigma, sample_rate=float(q), orders=RDP_ORDERS)
            t2 = time.perf_counter()
            t_opacus.append(t1 - t0)
            t_ours.append(t2 - t1)
            worst = max(worst, float(np.max(np.abs(got - ref))))
        mo, mu = common.median(t_opacus) * 1000, common.median(t_ours) * 1000
        rows.append([n, len(rates), round(mo, 1), round(mu, 1), round(mo / mu, 1),
                     round(len(rates) * mo / 1000, 1), round(len(rates) * mu / 1000, 1), f"{worst:.1e}"])
        out.append({"clients": n, "distinct_rates_below_1": int(len(rates)), "opacus_ms": t_opacus, "ours_ms": t_ours,
                    "max_abs_rdp_difference": worst})
    table = common.markdown_table(["clients", "distinct rates < 1", "Opacus ms / rate", "vectorised ms / rate",
                                   "speed-up", "Opacus s, all rates", "vectorised s, all rates", "max |RDP diff|"],
                                  rows)
    print(table)
    path = common.write_results("accounting", {"machine": common.machine(), "args": vars(args), "rows": out}, table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
