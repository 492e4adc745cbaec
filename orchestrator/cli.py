"""``fedfrontier``: run one federated training, sweep the privacy-utility frontier, redraw and compare frontiers.

``fedfrontier config`` prints every config key with its default and meaning (a TOML file to start from);
``fedfrontier plan`` prints every calibrated noise multiplier and the epsilon each guarantee will reach.

Bad input ends with one line on stderr naming the key, the value and the rule, and exit code 2,
before anything is started or written.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from orchestrator.cluster import Terminated
from orchestrator.files import OutputError
from orchestrator.run_secrets import SECRETS_FILE
from privacy.config.experiment import ConfigError, load_config


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.jobs import run_job

    # bad input fails here, before torch and Ray are imported (~6 s)
    cfg = None if args.resume else load_config(args.config, args.set)
    if args.resume and (args.config or args.set):
        raise ConfigError("--resume", args.resume, "takes its config from the run directory; drop --config/--set")
    _, out = run_job(cfg, out=args.out, overwrite=args.overwrite, resume=args.resume,
                     progress=lambda s: print(s, flush=True))
    print(f"wrote {out / 'rounds.parquet'}, {out / 'rounds.csv'}, {out / 'config.json'} "
          f"(and {out / SECRETS_FILE}: the noise seed, for --resume only; never share it)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    from orchestrator.plan import plan_lines, privacy_plan

    plan = privacy_plan(cfg)
    if args.json:
        print(json.dumps(plan, indent=2, default=float))
    else:
        print("\n".join(plan_lines(plan)))
    return 0


def print_frontier(trials) -> None:
    import pandas as pd

    from orchestrator.frontier import best_per_level, frontier_table

    table, best = frontier_table(trials), best_per_level(trials)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print("Pareto frontier (least epsilon for the most validation accuracy; test accuracy is the one to publish):")
        print(table.to_string(index=False) if len(table) else "  (no finished trial)")
        if len(best):
            print("Best trial per privacy level, chosen on validation (publish its test accuracy):")
            print(best.to_string(index=False))


def cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.jobs import default_sweep_config, sweep_job
    from orchestrator.sweep_config import load_sweep_config

    if args.resume:
        if args.config or args.set:
            raise ConfigError("--resume", args.resume, "takes its config from the sweep directory; "
                                                       "drop --config/--set")
        result = sweep_job(None, None, resume=args.resume, progress=lambda s: print(s, flush=True))
    else:
        cfg, sweep = load_sweep_config(args.config or default_sweep_config(), args.set)
        result = sweep_job(cfg, sweep, out=args.out, overwrite=args.overwrite, progress=lambda s: print(s, flush=True))
    return report_sweep(result)


def report_sweep(result) -> int:
    """Print a finished sweep's frontier and files; exit code 0 when every trial finished."""
    print_frontier(result.trials)
    out = result.out
    print(f"wrote {out / 'trials.parquet'}, {out / 'rounds.parquet'}, {out / 'frontier.parquet'}, "
          f"{out / 'best.parquet'}, {out / 'frontier.png'}")
    return 0 if result.finished else 1


def cmd_frontier(args: argparse.Namespace) -> int:
    from orchestrator.frontier import NoValidation, check_validation, load_sweep, plot_frontier, plot_rounds

    try:
        trials, rounds = load_sweep(args.directory)
        check_validation(trials, args.directory)
    except (FileNotFoundError, NoValidation) as exc:
        raise ConfigError("DIRECTORY", args.directory, str(exc)) from exc
    from orchestrator.sweep import SWEEP_FILE, release_line, sweep_title

    print_frontier(trials)
    saved = Path(args.directory) / SWEEP_FILE
    release = json.loads(saved.read_text()).get("release", {}) if saved.is_file() else {}
    if release:
        print(release_line(release))
    png = plot_frontier(trials, Path(args.directory) / "frontier.png", title=sweep_title(release))
    written = [png]
    if len(rounds):
        written.append(plot_rounds(rounds, Path(args.directory) / "rounds.png", trials))
    print(f"wrote {', '.join(map(str, written))}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from orchestrator.config_doc import config_toml

    try:
        sys.stdout.write(config_toml(sweep=args.sweep))
        sys.stdout.flush()
    except BrokenPipeError:  # `fedfrontier config | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from orchestrator.compare import compare_sweeps, summary
    from orchestrator.frontier import NoValidation

    try:
        table, parquet, png = compare_sweeps(args.directories, args.out)
    except (FileNotFoundError, NoValidation) as exc:
        raise ConfigError("DIRECTORY", " ".join(args.directories), str(exc)) from exc
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 40,
                           "display.float_format", "{:.4g}".format):
        print(f"{len(table)} trials of {table['sweep'].nunique()} sweeps (frontier: on that sweep's Pareto "
              "front for the record- or client-level guarantee):")
        print(summary(table).to_string(index=False))
    print(f"wrote {parquet}, {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedfrontier", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one federated training; writes rounds.parquet/.csv and config.json")
    run.add_argument("--config", help="TOML config file (default: built-in defaults; `fedfrontier config` "
                                      "prints them all)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one config value (repeatable), e.g. --set client.noise_multiplier=1.2")
    run.add_argument("--out", help="run directory (default: runs/<run.name>-<time>)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    run.add_argument("--resume", metavar="DIR", help="continue an interrupted run from DIR's checkpoint")
    run.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", help="Ray Tune sweep of the privacy-utility frontier (the main job)")
    sw.add_argument("--config", help="TOML config with a [sweep] table (default: experiments/configs/frontier.toml)")
    sw.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one value (repeatable); sweep.KEY=VALUE addresses the [sweep] table")
    sw.add_argument("--out", help="sweep directory (default: sweeps/<sweep.name>-<time>)")
    sw.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    sw.add_argument("--resume", metavar="DIR", help="continue an interrupted sweep in DIR")
    sw.set_defaults(func=cmd_sweep)

    pl = sub.add_parser("plan", help="every calibrated noise multiplier and the epsilon each guarantee will reach, "
                                     "without training (seconds)")
    pl.add_argument("--config", help="TOML config file, as for run (a sweep file's base config)")
    pl.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value (repeatable)")
    pl.add_argument("--json", action="store_true", help="one JSON object instead of text lines")
    pl.set_defaults(func=cmd_plan)

    fr = sub.add_parser("frontier", help="print the frontier table; redraw frontier.png and rounds.png of a sweep")
    fr.add_argument("directory", help="a sweep directory (holds trials.parquet)")
    fr.set_defaults(func=cmd_frontier)

    cmp = sub.add_parser("compare", help="several sweeps' frontiers on one plot and their trials in one table")
    cmp.add_argument("directories", nargs="+", metavar="DIR", help="sweep directories (each holds trials.parquet)")
    cmp.add_argument("--out", default=".", help="where compare.png and compare.parquet go (default: here)")
    cmp.set_defaults(func=cmd_compare)

    co = sub.add_parser("config", help="print every config key, its default and its meaning, as TOML "
                                       "(fedfrontier config > my.toml)")
    co.add_argument("--sweep", action="store_true", help="add the [sweep] table read by `fedfrontier sweep`")
    co.set_defaults(func=cmd_config)
    return p


def error_line(exc: ConfigError) -> str:
    """The one-line message of a bad input; errors about unknown or malformed keys point to
    `fedfrontier config` (with ``--sweep`` for the [sweep] table)."""
    hint = ""
    if exc.rule.startswith(("unknown key", "unknown section", "an override")):
        hint = " --sweep" if str(exc.key).startswith("sweep.") else ""
        hint = f" (see `fedfrontier config{hint}` for every key)"
    return f"fedfrontier: error: {exc}{hint}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except OutputError as exc:  # a full disk, a read-only folder: no file was left half-written
        print(f"fedfrontier: error: {exc}; the files written before are intact (--resume continues a run)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fedfrontier: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("fedfrontier: terminated (SIGTERM); the last checkpoint is intact (--resume DIR continues)",
              file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
