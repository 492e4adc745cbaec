"""``fedfrontier``: run one federated training, sweep the privacy-utility frontier, redraw it.

Bad input ends with one line on stderr naming the key, the value and the rule, and exit code 2,
before anything is started or written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from orchestrator.config import ConfigError, load_config, to_dict


def _out_dir(out: str | None, name: str, kind: str, overwrite: bool) -> Path:
    path = Path(out) if out else Path(kind) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError("--out", str(path), "directory exists and is not empty; pass --overwrite "
                                                  "(or --resume to continue it)")
        shutil.rmtree(path)
    return path


def write_run(df, cfg, path: Path) -> None:
    """rounds.parquet, rounds.csv and config.json of one run."""
    path.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path / "rounds.parquet", index=False)
    df.to_csv(path / "rounds.csv", index=False)
    (path / "config.json").write_text(json.dumps(to_dict(cfg), indent=2, default=str) + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.federation import run_federated
    from orchestrator.resolve import resolve_config

    cfg = load_config(args.config, args.set)
    plan = resolve_config(cfg)
    out = _out_dir(args.out, cfg.run.name, "runs", args.overwrite)
    print(f"fedfrontier run: {plan.config.data.num_clients} clients on {plan.config.data.dataset} "
          f"({plan.n_train} train / {plan.n_test} test), model {plan.config.model.name}, "
          f"{plan.config.client.num_actors} client actors, {plan.config.server.rounds} rounds", flush=True)
    df = run_federated(plan.config, plan=plan, progress=lambda s: print(s, flush=True))
    write_run(df, plan.config, out)
    print(f"wrote {out / 'rounds.parquet'}, {out / 'rounds.csv'}, {out / 'config.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedfrontier", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one federated training; writes rounds.parquet/.csv and config.json")
    run.add_argument("--config", help="TOML config file (default: built-in defaults)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one config value (repeatable), e.g. --set client.noise_multiplier=1.2")
    run.add_argument("--out", help="run directory (default: runs/<run.name>-<time>)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    run.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"fedfrontier: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedfrontier: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
