"""What glibc's default allocator costs a client's round: the same work with and without
actors/allocator.py's ``keep_freed_memory``, in fresh processes alternated (default, kept, default, ...).

Each process times, per client of a 200-client cohort of the MNIST devices federation's model (39,700 values,
65,536 after padding; clip 0.3, z = 1, 16 bits), one torch thread:

- ``Skellam share``: one alias-table draw of 65,536 values (privacy.mechanisms.skellam.sample_skellam);
- ``encoding``: the whole SkellamClientStep.constrain_sensitivity (clip, rotate, round, share, ring);
- ``local step``: a forward and backward pass of the devices model on a batch of 16 (the trusted round's work);

and counts the minor page faults of the encoding (``getrusage``). Reported: medians over the processes and
the default / kept ratio of each.

    python benchmarks/allocator.py [--processes 3] [--clients 200]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import common

DIM = 39_700


def measure(keep: bool, clients: int) -> dict:
    import numpy as np
    import torch

    from actors.allocator import keep_freed_memory
    from actors.models import build_model
    from privacy.mechanisms.distributed_dp import DistributedDPConfig, DistributedSkellamMechanism, client_rng
    from privacy.mechanisms.skellam import sample_skellam

    torch.set_num_threads(1)
    if keep and not keep_freed_memory():
        raise SystemExit("mallopt is not available here (not glibc): nothing to compare")
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.3, noise_multiplier=1.0, expected_cohort=200,
                                                           bits=16), dim=DIM, noise_seed=1)
    step = mech.client_step(round_idx=1, cohort=clients)
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(DIM, generator=gen) * 0.4 / math.sqrt(DIM) for _ in range(clients)]
    model = build_model("scatter_linear", in_channels=81, num_classes=10, image_size=7, seed=0)
    x, y = torch.randn(16, 81, 7, 7, generator=gen), torch.randint(0, 10, (16,), generator=gen)

    def timed(work) -> float:
        work()  # warm-up
        t0 = time.perf_counter()
        for k in range(clients):
            work(k)
        return (time.perf_counter() - t0) * 1e3 / clients

    def local_step(k=0):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    out = {"Skellam share": timed(lambda k=0: sample_skellam(step.share_variance, 65_536,
                                                             rng=np.random.default_rng(k))),
           "local step": timed(local_step)}
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out["encoding"] = timed(lambda k=0: step.constrain_sensitivity(
        deltas[k], rng=client_rng(noise_seed=1, client_id=k, round_idx=1)))
    out["encoding page faults per client"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / clients
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=3, help="fresh processes of each kind, alternated")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--worker", choices=["default", "kept"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker == "kept", args.clients)))
        return

    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for rep in range(args.processes):
        for kind in runs:
            done = subprocess.run([sys.executable, __file__, "--worker", kind, "--clients", str(args.clients)],
                                  check=True, capture_output=True, text=True)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{kind} {rep + 1}: {runs[kind][-1]}", flush=True)
    rows = []
    for key in runs["default"][0]:
        a, b = (common.median([r[key] for r in runs[k]]) for k in ("default", "kept"))
        rows.append([key, a, b, a / b if b else float("nan")])
    table = common.markdown_table(["per client", "glibc defaults", "keep_freed_memory", "**default / kept**"], rows)
    table += (f"\n\nms per client unless stated; {args.clients} clients, medians of {args.processes} fresh processes "
              "of each kind, alternated; one torch thread.")
    print(table)
    common.write_results("allocator", {"machine": common.machine(), "args": vars(args), "runs": runs}, table)


if __name__ == "__main__":
    main()
