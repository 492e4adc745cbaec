"""Exact accounting of Skellam noise: what it costs and what it saves.

Three measurements, one results file (``results/skellam_accounting.md`` / ``.json``):

1. ``constant``: c(mu) of privacy.accountants.skellam_dominance (the exact pmf, 17 sqrt(mu) points), first call and
   cached, over the noise variances the shipped configs reach (7e7 for the devices at 16 bits, 1e11-7e11
   for the silos at 24 bits).
2. ``noise``: the noise multiplier sqrt(mu) / Delta_2 a target needs under the exact accounting and under
   the general RDP subsampling bound (Zhu & Wang 2019, ``secagg.accountant = "zhu_wang"``), beside the
   subsampled Gaussian's, for the three cases of docs/privacy.md; with the calibration's wall time.
3. ``ledger``: one round of the against-the-server ledger at a cohort of 200 out of 1,000 clients: booking
   the survivors' events and reporting the worst client, with one epsilon per round (what the ledger does)
   against one epsilon per survivor, alternated.

    python benchmarks/skellam_accounting.py [--parts constant,noise,ledger]
"""

from __future__ import annotations

import argparse
import math
import time

import common
import numpy as np

CASES = [  # (name, q, steps, target epsilon), delta 1e-5: the cases of docs/privacy.md, "Threat model"
    ("q = 256/6000, T = 703, eps = 1", 256 / 6000, 703, 1.0),
    ("q = 256/6000, T = 703, eps = 3", 256 / 6000, 703, 3.0),
    ("q = 0.2, T = 100, eps = 2", 0.2, 100, 2.0),
]
L2 = 2000.0  # Delta_2 on the grid: mu = (sigma L2)^2 ~ 1e7-1e8, the devices' scale


def constant_part(args) -> tuple[str, list]:
    from privacy.accountants.skellam_dominance import gdp_constant

    rows = []
    for mu in (1e4, 1e6, 7e7, 1e9, 1e11, 7e11):
        gdp_constant.cache_clear()
        t0 = time.perf_counter()
        c = gdp_constant(mu)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        gdp_constant(mu)
        rows.append({"mu": mu, "c_minus_1": c - 1, "first_s": first, "cached_s": time.perf_counter() - t0})
    lines = ["| mu | c(mu) - 1 | first call | cached |", "|---|---|---|---|"]
    lines += [f"| {r['mu']:.0e} | {r['c_minus_1']:.3g} | {r['first_s']:.3f} s | {r['cached_s'] * 1e6:.1f} us |"
              for r in rows]
    return "\n".join(lines), rows


def _sigma_needed(eps_of, target: float) -> float:
    """Smallest sigma (1e-4 relative) with eps_of(sigma) <= target: bisection on log sigma."""
    lo, hi = 0.3, 500.0
    while hi / lo > 1 + 1e-4:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if eps_of(mid) > target else (lo, mid)
    return hi


def noise_part(args) -> tuple[str, list]:
    from privacy.accountants.accounting import epsilon as gaussian_epsilon
    from privacy.accountants.skellam import epsilon

    rows = []
    for name, q, steps, target in CASES:
        out = {"case": name}
        for label, eps_of in (
                ("exact", lambda s: epsilon([((s * L2) ** 2, L2 * L2, L2, q, steps)], delta=1e-5)),
                ("zhu_wang", lambda s: epsilon([((s * L2) ** 2, L2 * L2, L2, q, steps)], delta=1e-5,
                                               accountant="zhu_wang")),
                ("gaussian_pld", lambda s: gaussian_epsilon([(s, q, steps)], delta=1e-5))):
            t0 = time.perf_counter()
            out[label] = _sigma_needed(eps_of, target)
            out[f"{label}_s"] = time.perf_counter() - t0
        rows.append(out)
    lines = ["| case | exact (this accountant) | Zhu-Wang RDP | subsampled Gaussian PLD | search time exact / Zhu-Wang |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['exact']:.4g} | {r['zhu_wang']:.4g} | {r['gaussian_pld']:.4g} | "
              f"{r['exact_s']:.1f} s / {r['zhu_wang_s']:.1f} s |" for r in rows]
    return "\n".join(lines), rows


def ledger_part(args) -> tuple[str, list]:
    from privacy.config.experiment import load_config
    from privacy.accountants.skellam import skellam_event
    from privacy.accountants.ledgers import PrivacyLedgers
    from privacy.accountants.skellam_dominance import gdp_epsilon

    cfg = load_config(overrides=["secagg.enabled=true", "server.clip=1", "server.noise_multiplier=4",
                                 "data.num_clients=1000", "server.clients_per_round=200", "server.delta=1e-5"])
    rng = np.random.default_rng(0)
    event = skellam_event(mu=6.5e7, l1=1.0, l2=1927.0, sample_rate=1.0)
    rounds = 20
    times = {"one epsilon per round": [], "one epsilon per survivor": []}
    for name in list(times) * 2:  # alternated, twice
        book = PrivacyLedgers(cfg, sample_rates=[0.1] * 1000, steps=[1] * 1000)
        t0 = time.perf_counter()
        for _ in range(rounds):
            survivors = rng.choice(1000, size=200, replace=False)
            book.book_server_events({int(k): event for k in survivors})
            if name == "one epsilon per survivor":
                [gdp_epsilon(mu_gdp=math.sqrt(book._server_gdp_sq[k]), delta=1e-5) for k in survivors]
            book.eps_client_server_max()
        times[name].append((time.perf_counter() - t0) / rounds)
    rows = [{"how": k, "seconds_per_round": min(v)} for k, v in times.items()]
    base = rows[1]["seconds_per_round"]
    lines = ["| against-the-server ledger, cohort 200 of 1,000 | per round | ratio |", "|---|---|---|"]
    lines += [f"| {r['how']} | {r['seconds_per_round'] * 1e3:.1f} ms | {r['seconds_per_round'] / base:.3f}x |"
              for r in rows]
    return "\n".join(lines), rows


PARTS = {"constant": constant_part, "noise": noise_part, "ledger": ledger_part}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS))
    args = ap.parse_args()
    sections, data = [], {}
    for part in args.parts.split(","):
        print(f"{part} ...", flush=True)
        text, rows = PARTS[part](args)
        print(text, flush=True)
        sections.append(f"## {part}\n\n{text}\n")
        data[part] = rows
    common.write_results("skellam_accounting", {"machine": common.machine(), **data}, "\n".join(sections))


if __name__ == "__main__":
    main()
