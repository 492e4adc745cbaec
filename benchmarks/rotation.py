"""The randomised Hadamard rotation of secure aggregation: skipping the padding against transforming it.

A client's delta of ``dim`` values is zero-padded to the next power of two before the Walsh-Hadamard transform
(privacy.secagg.quantization.rotate). Each level of the transform now computes only the blocks that reach below
``dim`` (the rest hold zeros and stay zero); before, every block of every level was computed. Timed here, one
torch thread and the actors' allocator settings, alternated in one process: ``rotate`` (now) against the signs
and the full transform of the padded vector (before, the same float operations on every non-padding
coordinate; the script checks that both give the same vector). The lengths are the models' that run under
secure aggregation (scatter_linear on MNIST: the devices federation) and the other built-in models'.

    python benchmarks/rotation.py [--repeats 7] [--calls 200] [--name rotation]
"""

from __future__ import annotations

import argparse
import time

import common

DIMS = {"scatter_linear (MNIST devices)": 39_700, "tanh_cnn": 26_010, "cifar_cnn": 114_186, "digits_cnn": 6_186}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--calls", type=int, default=200, help="rotations per timed pass")
    p.add_argument("--name", default="rotation", help="results file name under benchmarks/results/")
    args = p.parse_args()

    import numpy as np
    import torch

    from actors.allocator import keep_freed_memory
    from privacy.secagg.quantization import _fwht_inplace, padded_dim, random_signs, rotate

    torch.set_num_threads(1)
    keep_freed_memory()

    def full(x: np.ndarray, seed: int) -> np.ndarray:  # the former rotate: every block of every level
        n = padded_dim(x.size)
        padded = np.zeros(n)
        padded[:x.size] = x
        padded *= random_signs(n, seed=seed)
        return _fwht_inplace(padded)

    runs: dict[str, dict[str, list[float]]] = {}
    for model, dim in DIMS.items():
        x = np.random.default_rng(dim).normal(size=dim) * 1e-3
        if not np.array_equal(rotate(x, seed=1), full(x, seed=1)):
            raise AssertionError(f"{model}: rotate differs from the full transform")
        times = runs[model] = {"full": [], "rotate": []}
        for rep in range(args.repeats + 1):
            for name, fn in (("full", full), ("rotate", rotate)):
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    fn(x, seed=1)
                if rep:  # the first pass warms up
                    times[name].append((time.perf_counter() - t0) / args.calls * 1e3)
        print(model, {k: round(common.median(v), 3) for k, v in times.items()}, flush=True)

    rows = []
    for model, times in runs.items():
        before, now = common.median(times["full"]), common.median(times["rotate"])
        dim = DIMS[model]
        rows.append([model, f"{dim:,}", f"{padded_dim(dim):,}", before, now, before / now])
    table = common.markdown_table(["model", "dim", "padded", "full transform ms", "rotate ms (skips padding)",
                                   "**speed-up**"], rows)
    table += (f"\n\nMedians of {args.repeats} passes of {args.calls} rotations each, the two alternated in one process, "
              "one torch thread.")
    print(table)
    common.write_results(args.name, {"machine": common.machine(), "args": vars(args), "runs": runs}, table)


if __name__ == "__main__":
    main()
