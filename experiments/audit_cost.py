"""What the empirical audit costs: the same runs with the canary audit off and on.

    python -m experiments.audit_cost --seeds 0 1 2 --set data.dataset=digits --set server.clip=1 ...

For each seed, runs the config with ``audit.canaries = 0`` and with ``audit.canaries = N``
(``--canaries``; default: what the config resolves to), and prints final accuracy, claimed
and audited epsilon, the membership AUC and its bound, wall time, and the share of the run
the audit itself took (``audit_seconds``, measured on the server). Used for the figures
in docs/privacy.md.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from orchestrator.cluster import ensure_ray
from privacy.config.experiment import load_config
from orchestrator.federation import run_federated
from orchestrator.resolve import resolve_config


def measure(overrides: list[str], seeds: list[int], canaries: int | None) -> pd.DataFrame:
    ensure_ray()
    out = []
    for seed in seeds:
        base = load_config(overrides=overrides + [f"run.seed={seed}"])
        on = canaries if canaries is not None else resolve_config(base).config.audit.canaries
        for n in (0, on):
            cfg = base.replace(audit={"canaries": n})
            t0 = time.perf_counter()
            df = run_federated(cfg, progress=None)
            wall = time.perf_counter() - t0
            last = df.iloc[-1]
            out.append({"seed": seed, "canaries": n, "test_accuracy": last["test_accuracy"],
                        "eps_client": last["eps_client"], "audit_delta": last["audit_delta"],
                        "eps_claimed_at_audit_delta": last["eps_client_at_audit_delta"],
                        "eps_audit_lower": last["eps_audit_lower"],
                        "audit": f"{last['audit_correct']:.0f}/{last['audit_guesses']:.0f}" if n else "",
                        "mia_auc": last["mia_auc"], "mia_auc_bound": last["mia_auc_bound"],
                        "wall_s": wall, "rounds_s": df["seconds"].sum(), "audit_s": df["audit_seconds"].sum(),
                        "audit_share": df["audit_seconds"].sum() / df["seconds"].sum()})
    return pd.DataFrame(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--canaries", type=int, default=None)
    args = p.parse_args()
    table = measure(args.set, args.seeds, args.canaries)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
