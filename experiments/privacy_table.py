"""The epsilon table of docs/privacy.md: our three accountants against Google's dp-accounting.

    python -m experiments.privacy_table

prints the Markdown table; tests/test_privacy_doc.py checks that the table in the doc is
what this computes.
"""

from __future__ import annotations

import dp_accounting
from dp_accounting import pld, rdp

from privacy.accountants.accounting import RDP_ORDERS, epsilon

# (noise multiplier z, sample rate q, steps T, delta): the two pins, then DP-SGD- and DP-FedAvg-like
# schedules (q = 0.05 with T = 500: 100 of 2,000 clients for 500 rounds).
SETTINGS: tuple[tuple[float, float, int, float], ...] = (
    (4.0, 0.01, 10_000, 1e-5),
    (1.1, 0.004, 15_000, 1e-5),
    (1.0, 0.1, 100, 1e-5),
    (0.8, 0.01, 1000, 1e-6),
    (1.0, 0.05, 500, 1e-6),
)
COLUMNS = ("ours_rdp", "ours_prv", "ours_pld", "ref_rdp", "ref_pld")


def reference(z: float, q: float, steps: int, delta: float) -> tuple[float, float]:
    """dp-accounting's RDP (on our orders) and PLD (its default, finer grid) epsilons."""
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    r = rdp.RdpAccountant(list(RDP_ORDERS))
    r.compose(event, steps)
    p = pld.PLDAccountant()
    p.compose(event, steps)
    return float(r.get_epsilon(delta)), float(p.get_epsilon(delta))


def rows() -> list[dict]:
    out = []
    for z, q, steps, delta in SETTINGS:
        ours = {f"ours_{a}": epsilon([(z, q, steps)], delta=delta, accountant=a) for a in ("rdp", "prv", "pld")}
        ref_rdp, ref_pld = reference(z, q, steps, delta)
        out.append({"z": z, "q": q, "T": steps, "delta": delta, **ours, "ref_rdp": ref_rdp, "ref_pld": ref_pld})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| z | q | T | δ | ours RDP | ours PRV | ours PLD | dp-accounting RDP | dp-accounting PLD |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['z']:g} | {r['q']:g} | {r['T']} | {r['delta']:g} | "
                     + " | ".join(f"{r[c]:.3f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(rows()))
