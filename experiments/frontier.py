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


def main(argv: list[str] | None = None) -> int:
    from orchestrator.cli import report_sweep
    from orchestrator.jobs import default_sweep_config, sweep_job
    from orchestrator.sweep_config import load_sweep_config
    from privacy.config.experiment import ConfigError

    p = argparse.ArgumentParser(prog="python -m experiments.frontier", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML config with a [sweep] table (default: experiments/configs/frontier.toml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a value")
    p.add_argument("--storage-path", help="Tune storage: shared directory or URI (overrides sweep.storage_path)")
    p.add_argument("--out", default="results/frontier", help="where trials/rounds/frontier tables are written")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    args = p.parse_args(argv)
    try:
        cfg, sweep = load_sweep_config(args.config or default_sweep_config(), args.set)
        result = sweep_job(cfg, sweep, out=args.out, overwrite=args.overwrite, storage_path=args.storage_path,
                           progress=lambda s: print(s, flush=True))
    except ConfigError as exc:
        print(f"experiments.frontier: error: {exc}", file=sys.stderr)
        return 2
    return report_sweep(result)


if __name__ == "__main__":
    sys.exit(main())
