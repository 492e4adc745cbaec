"""Where one client's secure-aggregation encoding spends its time, stage by stage.

200 clients of the MNIST devices federation's model (ScatterNet + linear, 39,700 parameters, 65,536 after padding
for the rotation), clip 0.3, z = 1, cohort 200, 16 bits (mnist_devices_secagg.toml), each delta random and half of
them over the clip, encoded one client at a time from its own stream, as a client actor does, in one process with
one torch thread and the actors' allocator settings (actors/allocator.py). Each client's
SkellamClientStep.constrain_sensitivity is run as its four stages, timed apart (with a few more copies than the
whole call makes):

- ``clip + rotate``: the delta as a float64 vector, clipped to 0.3, zero-padded, random signs, the Walsh-Hadamard
  transform (``fwht``, also reported alone) and the scaling to the integer grid;
- ``conditional rounding``: randomised rounding to Z^65,536, redrawn until under the norm bound;
- ``Skellam share``: the client's noise share (one alias-table draw per coordinate, privacy.mechanisms.skellam),
  added to the rounded vector; beside it, not in the total, the former sampler's two numpy Poisson draws of the
  same size from another generator;
- ``ring reduction``: mod 2^16 and the count of wrapped coordinates.

The staged ring vectors are checked bit for bit against constrain_sensitivity's, which is also timed whole
(alternating: stages, whole, stages, whole, ...). Reported: per stage the median over the repetitions of its
ms per client, its share of their sum, and the whole call's ms per client.

    python benchmarks/encode_client.py [--clients 200] [--repeats 3] [--name encode_client] [--note TEXT]
"""

from __future__ import annotations

import argparse
import math
import time

import common
import numpy as np

DIM = 39_700  # scatter_linear on MNIST
STAGES = ["clip + rotate", "conditional rounding", "Skellam share", "ring reduction"]
FORMER = "Skellam share by two numpy Poisson draws (the former sampler; not part of the total)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--name", default="encode_client", help="results file: benchmarks/results/<name>.md")
    p.add_argument("--note", default="", help="a remark on the run (e.g. other load), kept with the results")
    args = p.parse_args()

    import torch

    from actors.allocator import keep_freed_memory
    from privacy.mechanisms.clipping import clip_by_l2_norm
    from privacy.mechanisms.distributed_dp import DistributedDPConfig, DistributedSkellamMechanism, client_rng
    from privacy.mechanisms.skellam import sample_skellam
    from privacy.secagg.quantization import conditional_round, fwht, l2_norm, padded_dim, random_signs, to_ring

    torch.set_num_threads(1)
    keep_freed_memory()  # as the client actors do (actors/allocator.py)
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.3, noise_multiplier=1.0, expected_cohort=200,
                                                           bits=16), dim=DIM, noise_seed=1)
    step = mech.client_step(round_idx=1, cohort=args.clients)
    q = step.quantizer
    assert q.rotate, "the devices federation rotates"
    n = padded_dim(DIM)
    bound = q.l2_sensitivity(DIM)
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(DIM, generator=gen) * (0.6 * (k % 2) + 0.2) / math.sqrt(DIM) for k in range(args.clients)]

    def rngs():
        return [client_rng(noise_seed=1, client_id=k, round_idx=1) for k in range(args.clients)]

    def staged(seconds: dict[str, float]) -> np.ndarray:
        """constrain_sensitivity of every client, stage by stage (the same calls in the same order)."""
        out, clock = [], time.perf_counter
        poisson = np.random.default_rng(12345)
        for delta, rng in zip(deltas, rngs()):
            t0 = clock()
            clipped, _ = clip_by_l2_norm(step._flat(delta), q.clip)
            x = clipped.numpy()
            if l2_norm(x) > q.clip * (1 + 1e-9):
                raise SystemExit("clipping left a vector above the clip")
            padded = np.zeros(n)
            padded[:DIM] = x
            signed = padded * random_signs(n, seed=step.rotation_seed)
            t1 = clock()
            rotated = fwht(signed)
            t2 = clock()
            y = q.scale * rotated
            t3 = clock()
            z, _ = conditional_round(y, norm_bound=bound, rng=rng, max_tries=q.max_tries)
            l2_norm(z)  # the rounded norm encode reports
            t4 = clock()
            noised = z + sample_skellam(step.share_variance, z.shape, rng=rng)
            t5 = clock()
            ring, _ = to_ring(noised, bits=q.bits)
            t6 = clock()
            lam = step.share_variance / 2  # the former sampler, for comparison: two Poisson draws, another stream
            poisson.poisson(lam, z.shape).astype(np.int64) - poisson.poisson(lam, z.shape).astype(np.int64)
            seconds[FORMER] += clock() - t6
            seconds["fwht"] += t2 - t1
            seconds["clip + rotate"] += t3 - t0
            seconds["conditional rounding"] += t4 - t3
            seconds["Skellam share"] += t5 - t4
            seconds["ring reduction"] += t6 - t5
            out.append(ring)
        return np.stack(out)

    def whole() -> np.ndarray:
        return np.stack([step.constrain_sensitivity(d, rng=g).vector for d, g in zip(deltas, rngs())])

    ms: dict[str, list[float]] = {k: [] for k in [*STAGES, "fwht", FORMER, "sum of stages", "constrain_sensitivity"]}
    for rep in range(args.repeats):
        seconds = dict.fromkeys(["fwht", *STAGES, FORMER], 0.0)
        by_stage = staged(seconds)
        for k, s in seconds.items():
            ms[k].append(s * 1e3 / args.clients)
        ms["sum of stages"].append(sum(seconds[k] for k in STAGES) * 1e3 / args.clients)
        t0 = time.perf_counter()
        at_once = whole()
        ms["constrain_sensitivity"].append((time.perf_counter() - t0) * 1e3 / args.clients)
        if not np.array_equal(by_stage, at_once):
            raise SystemExit("the stages disagree with constrain_sensitivity: the ring vectors differ")
        print(f"repetition {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in ms.items()) + " ms/client",
              flush=True)

    med = {k: common.median(v) for k, v in ms.items()}
    total = sum(med[k] for k in STAGES)  # the shares add up to 100 %
    rows = [[k, med[k], f"{100 * med[k] / total:.0f} %"] for k in STAGES]
    rows.insert(1, ["of which fwht (Walsh-Hadamard transform)", med["fwht"], f"{100 * med['fwht'] / total:.0f} %"])
    rows += [["**total** (sum of the stages' medians)", total, "100 %"],
             ["constrain_sensitivity, whole call", med["constrain_sensitivity"], ""],
             [FORMER, med[FORMER], f"{med[FORMER] / med['Skellam share']:.2f}x the share's time"]]
    table = common.markdown_table(["stage", "ms/client (median)", "share"], rows)
    table += (f"\n\n{args.clients} clients, {args.repeats} repetitions, {DIM:,} values padded to {n:,}, "
              "one torch thread; the staged ring vectors equal constrain_sensitivity's bit for bit.")
    if args.note:
        table += f"\n\n{args.note}"
    print(table)
    common.write_results(args.name, {"machine": common.machine(), "args": vars(args), "ms_per_client": ms,
                                           "median_ms_per_client": med}, table)


if __name__ == "__main__":
    main()
