"""Expected RMSE of the prefix sums (the model offsets of DP-FTRL) under four noise strategies.

    python -m experiments.factorization_error --rounds 100 --min-separation 5 --max-participations 20 \
        [--momentum 0.0] [--out docs/factorization_error.md] [--append]

prints a Markdown table: independent noise (C = I), tree aggregation, the square-root factorization and the
optimised banded Toeplitz strategy with bands = min-separation, each with its (k, b)-participation
sensitivity, per unit noise multiplier and clip (privacy.mechanisms.matrix_factorization.expected_rmse).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from privacy.mechanisms.matrix_factorization import (MAX_BANDS, MAX_DENSE_ROUNDS, banded_sensitivity,
                                                     cyclic_sensitivity, expected_rmse, optimal_banded_toeplitz,
                                                     prefix_workload, sqrt_factorization, toeplitz,
                                                     tree_aggregation)


def rows(rounds: int, min_separation: int, max_participations: int, momentum: float) -> tuple[list[dict], float]:
    """One row per strategy, and the wall time (s) of the banded Toeplitz optimisation."""
    workload = prefix_workload(rounds, momentum=momentum)
    participation = {"min_separation": min_separation, "max_participations": max_participations}
    out = []

    def add(name: str, strategy, sensitivity: float, exact: bool) -> None:
        out.append({"strategy": name, "sensitivity": sensitivity, "exact": exact,
                    "rmse": expected_rmse(workload, strategy, sensitivity=sensitivity)})

    add("independent (C = I)", [1.0], banded_sensitivity([1.0], rounds, **participation), True)
    tree = tree_aggregation(rounds)
    add("tree aggregation (least-squares decoder)", tree, cyclic_sensitivity(tree, **participation), False)
    root = sqrt_factorization(rounds)
    add("square-root factorization", root, cyclic_sensitivity(toeplitz(root, rounds), **participation), False)
    start = time.perf_counter()
    banded = optimal_banded_toeplitz(rounds, min_separation, workload=workload)
    seconds = time.perf_counter() - start
    add(f"optimised banded Toeplitz ({min_separation} bands)", banded,
        banded_sensitivity(banded, rounds, **participation), True)
    return out, seconds


def markdown(table: list[dict], seconds: float, *, rounds: int, min_separation: int, max_participations: int,
             momentum: float) -> str:
    command = (f"python -m experiments.factorization_error --rounds {rounds} --min-separation {min_separation} "
               f"--max-participations {max_participations} --momentum {momentum:g}")
    lines = [f"### T = {rounds} rounds, min-separation b = {min_separation}, "
             f"at most k = {max_participations} participations, momentum {momentum:g}", "",
             f"`{command}`", "",
             "| strategy | sensitivity (per unit clip) | RMSE of the prefix sums (per unit noise multiplier and clip) |",
             "|---|---|---|"]
    for r in table:
        mark = "" if r["exact"] else " †"
        lines.append(f"| {r['strategy']} | {r['sensitivity']:.3f}{mark} | {r['rmse']:.3f} |")
    lines += ["", f"Banded Toeplitz optimisation (L-BFGS-B, analytic gradient): {seconds:.3f} s wall time.", "",
              "† Sensitivity over the b cyclic participation patterns {g, g+b, ...} only, a lower bound on "
              "the (k, b)-min-separation sensitivity of this non-banded strategy: the RMSE shown is favourable to "
              "it. The tree's decoder is the least-squares one (B = A C^+), which also uses nodes completed after "
              "round t, again favourable to the tree. Independent noise and the banded strategy have exact "
              "sensitivities (bands <= b).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, required=True, help=f"T, the number of rounds (<= {MAX_DENSE_ROUNDS})")
    parser.add_argument("--min-separation", type=int, required=True,
                        help=f"b, rounds between two participations of one client; also the bands (<= {MAX_BANDS})")
    parser.add_argument("--max-participations", type=int, required=True, help="k, participations per client")
    parser.add_argument("--momentum", type=float, default=0.0, help="server heavy-ball momentum beta in [0, 1)")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--append", action="store_true", help="append to --out instead of overwriting it")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= MAX_DENSE_ROUNDS:
        parser.error(f"--rounds must be in [1, {MAX_DENSE_ROUNDS}] (tree aggregation is a dense matrix)")
    if not 1 <= args.min_separation <= min(args.rounds, MAX_BANDS):
        parser.error(f"--min-separation must be in [1, min(rounds, {MAX_BANDS})]")
    table, seconds = rows(args.rounds, args.min_separation, args.max_participations, args.momentum)
    text = markdown(table, seconds, rounds=args.rounds, min_separation=args.min_separation,
                    max_participations=args.max_participations, momentum=args.momentum)
    print(text)
    if args.out is not None:
        header = "" if args.append and args.out.exists() else (
            "# Expected error of the noise strategies for DP-FTRL\n\n"
            "Generated by `experiments/factorization_error.py`; the maths is in "
            "`privacy/mechanisms/matrix_factorization.py`.\n\n")
        with args.out.open("a" if args.append else "w") as f:
            f.write(header + text)


if __name__ == "__main__":
    main()
