"""Four client actors sharing one GPU: ``client.num_gpus = 0.25``, one short federated run.

Needs a machine with a CUDA GPU. Prints the trial's placement bundles, the device each
client actor trains on and the GPU share left unreserved, then the round table. Without a GPU it
says so and exits with code 2 (Ray would otherwise wait forever for GPU resources).

    python benchmarks/gpu_share.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (puts the checkout on sys.path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dataset", default="mnist5k")
    args = p.parse_args()
    import ray

    from orchestrator.cluster import ensure_ray
    from privacy.config.experiment import load_config
    from orchestrator.federation import Federation, format_row
    from orchestrator.resolve import resolve_config
    from orchestrator.resources import cluster_capacity, placement_for_config

    ensure_ray()
    cpus, gpus = cluster_capacity()
    if gpus < 1:
        print(f"gpu_share: this Ray cluster has {gpus:g} GPUs; run it where there is one", file=sys.stderr)
        ray.shutdown()
        return 2
    cfg = load_config(overrides=[f"data.dataset={args.dataset}", "data.num_clients=8", "server.clients_per_round=8",
                                 f"server.rounds={args.rounds}", "client.num_gpus=0.25",
                                 f"client.num_cpus={min(1.0, cpus / 5):g}", "client.num_actors=4"])
    plan = resolve_config(cfg, capacity=(cpus, gpus))
    print("trial bundles:", placement_for_config(plan.config).bundles)
    fed = Federation(plan).start()
    try:
        for i, device in enumerate(ray.get([c.device_name.remote() for c in fed.clients])):
            print(f"client actor {i}: trains on {device}")
        print(f"GPUs left unreserved: {ray.available_resources().get('GPU', 0.0):g} of {gpus:g}")
        for r in range(args.rounds):
            print(format_row(fed.step(r), args.rounds), flush=True)
    finally:
        fed.close()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
