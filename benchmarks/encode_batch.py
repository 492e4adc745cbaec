"""Encoding a client actor's clients of a secure round: one at a time against all at once.

200 clients of the MNIST devices federation's model (ScatterNet + linear, 39,700 parameters, 65,536 after padding
for the rotation), clip 0.3, z = 1, cohort 200, 16 bits (mnist_devices_secagg.toml), each delta random and half of
them over the clip, in one process with one torch thread, three ways alternated, 3 repetitions each:

- ``per-client, butterfly loop``: SkellamClientStep.constrain_sensitivity client by client with the Hadamard
  transform as the plain in-place butterfly loop (the transform before its small half-widths ran transposed);
- ``per-client``: SkellamClientStep.constrain_sensitivity client by client;
- ``batched``: SkellamClientStep.constrain_sensitivity_batch over all 200 (what a client actor does).

All three give the same ring vectors bit for bit (checked here). Reported: the median ms per client of the
repetitions, the ratios, and the ms per client of the two Poisson draws of a share (per client in every way).

    python benchmarks/encode_batch.py [--clients 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import time
from unittest import mock

import common
import numpy as np

DIM = 39_700  # scatter_linear on MNIST


def butterfly_loop(x):
    """The Hadamard transform as the plain loop, every level in place (same values as quantization.fwht)."""
    y = np.array(x, dtype=np.float64)
    n, h = y.shape[-1], 1
    while h < n:
        pairs = y.reshape(*y.shape[:-1], -1, 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        a += b
        b *= -2
        b += a
        h *= 2
    return y / math.sqrt(n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import torch

    from privacy.mechanisms.distributed_dp import DistributedDPConfig, DistributedSkellamMechanism, client_rng
    from privacy.mechanisms.skellam import sample_skellam
    from privacy.secagg import quantization

    torch.set_num_threads(1)
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.3, noise_multiplier=1.0, expected_cohort=200,
                                                           bits=16), dim=DIM, noise_seed=1)
    step = mech.client_step(round_idx=1, cohort=args.clients)
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(DIM, generator=gen) * (0.6 * (k % 2) + 0.2) / math.sqrt(DIM) for k in range(args.clients)]

    def rngs():
        return [client_rng(noise_seed=1, client_id=k, round_idx=1) for k in range(args.clients)]

    def per_client():
        return [step.constrain_sensitivity(d, rng=g) for d, g in zip(deltas, rngs())]

    def per_client_loop():
        with mock.patch.object(quantization, "fwht", butterfly_loop):
            return per_client()

    ways = {"per-client, butterfly loop": per_client_loop, "per-client": per_client,
            "batched": lambda: step.constrain_sensitivity_batch(deltas, rngs=rngs())}
    ms: dict[str, list[float]] = {w: [] for w in ways}
    for rep in range(args.repeats):
        vectors = {}
        for way, run in ways.items():
            t0 = time.perf_counter()
            out = run()
            ms[way].append((time.perf_counter() - t0) * 1e3 / args.clients)
            vectors[way] = np.stack([u.vector for u in out])
        first = next(iter(vectors.values()))
        if not all(np.array_equal(first, v) for v in vectors.values()):
            raise SystemExit("the ways disagree: the ring vectors differ")
        print(f"repetition {rep + 1}: " + ", ".join(f"{w} {ms[w][-1]:.2f} ms/client" for w in ways), flush=True)
    g, t0 = np.random.default_rng(0), time.perf_counter()
    for _ in range(args.clients):
        sample_skellam(step.share_variance, (mech.grid_dim,), rng=g)
    poisson = (time.perf_counter() - t0) * 1e3 / args.clients

    med = {w: common.median(v) for w, v in ms.items()}
    base = med["per-client, butterfly loop"]
    rows = [[w, args.clients, args.repeats, med[w], base / med[w], med["per-client"] / med[w]] for w in ways]
    table = common.markdown_table(["encoding", "clients", "repetitions", "ms/client (median)",
                                   "x vs butterfly loop", "x vs per-client"], rows)
    table += f"\n\nThe share's two Poisson draws of {mech.grid_dim:,} alone: {poisson:.2f} ms/client."
    print(table)
    common.write_results("encode_batch", {"machine": common.machine(), "args": vars(args), "ms_per_client": ms,
                                          "poisson_ms_per_client": poisson}, table)


if __name__ == "__main__":
    main()
