"""Cluster entry point for a frontier sweep, unchanged from laptop to cluster:

    export RAY_AUTH_MODE=token   # Ray token authentication (README, "On a cluster")
    ray job submit --working-dir . -- python -m experiments.frontier \
        --config experiments/configs/mnist_cluster.toml --storage-path /shared/fedfrontier

It attaches to the running cluster (RAY_ADDRESS, set by ``ray job submit``), never overrides
its resources, writes Tune's trial state under ``--storage-path`` (a shared directory or an
object-store URI such as ``s3://bucket/prefix``) and the result tables to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from orchestrator.cli import default_sweep_config, print_frontier
    from orchestrator.cluster import ensure_ray
    from privacy.config import ConfigError
    from orchestrator.sweep import run_sweep
    from orchestrator.sweep_config import load_sweep_config

    p = argparse.ArgumentParser(prog="python -m experiments.frontier", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML config with a [sweep] table (default: experiments/configs/frontier.toml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a value")
    p.add_argument("--storage-path", help="Tune storage: shared directory or URI (overrides sweep.storage_path)")
    p.add_argument("--out", default="results/frontier", help="where trials/rounds/frontier tables are written")
    args = p.parse_args(argv)
    try:
        cfg, sweep = load_sweep_config(args.config or default_sweep_config(), args.set)
        if args.storage_path:
            sweep = replace(sweep, storage_path=args.storage_path)
        if cfg.client.num_actors == 0:
            cfg = cfg.replace(client={"num_actors": 1})
    except ConfigError as exc:
        print(f"experiments.frontier: error: {exc}", file=sys.stderr)
        return 2
    ensure_ray()
    out = Path(args.out)
    print(f"sweep {sweep.name!r}: {len(sweep.points()) * sweep.num_samples} trials -> {out}", flush=True)
    trials, _ = run_sweep(cfg, sweep, out)
    print_frontier(trials)
    print(f"wrote {out / 'trials.parquet'}, {out / 'rounds.parquet'}, {out / 'frontier.parquet'}, "
          f"{out / 'frontier.png'}")
    return 0 if len(trials) and (trials["status"] == "TERMINATED").all() else 1


if __name__ == "__main__":
    sys.exit(main())
