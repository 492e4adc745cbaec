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
import shutil
import signal
import sys
import time
from pathlib import Path

from orchestrator.cluster import Terminated
from orchestrator.files import OutputError, write_text
from orchestrator.run_secrets import NOISE_SEED, SECRETS_FILE, public, with_noise_seed, write_secrets
from privacy.config import ConfigError, load_config, to_dict


def _out_dir(out: str | None, name: str, kind: str, overwrite: bool) -> Path:
    """The output directory; a ConfigError if it is a file, cannot be created there (a name too long for the
    file system, a folder it may not write to), or holds something and ``overwrite`` is off. Nothing is
    created or removed here: with ``overwrite`` the command empties it once every check has passed."""
    path = Path(out) if out else Path(kind) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    existing = next(p for p in path.absolute().parents if p.exists())
    limit = os.pathconf(existing, "PC_NAME_MAX")
    if any(len(part.encode()) > limit for part in path.parts):  # before asking the file system about it
        raise ConfigError("--out", str(path)[:60] + "...", f"has a name longer than the file system's {limit} bytes")
    if path.exists() and not path.is_dir():
        raise ConfigError("--out", str(path), "is a file, not a directory")
    nearest = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigError("--out", str(path), f"cannot be written: no write permission on {nearest}")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ConfigError("--out", str(path), "directory exists and is not empty; pass --overwrite "
                                              "(or --resume to continue it)")
    return path


def _clear(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        shutil.rmtree(path)


def cmd_run(args: argparse.Namespace) -> int:
    from privacy.config import from_dict

    if args.resume:
        from orchestrator.federation import CHECKPOINT, check_same_config, load_checkpoint

        out = Path(args.resume)
        if not (out / "config.json").is_file() or not (out / CHECKPOINT).is_file():
            raise ConfigError("--resume", str(out), f"needs config.json and {CHECKPOINT} there (a run directory)")
        if args.config or args.set:
            raise ConfigError("--resume", str(out), "takes its config from the run directory; drop --config/--set")
        saved = _saved_json(out / "config.json")
        cfg = with_noise_seed(from_dict(saved), out)  # the seed: secrets.json only
        state = load_checkpoint(out / CHECKPOINT)  # a damaged checkpoint is one line here, before Ray starts
        check_same_config(state, saved, out / CHECKPOINT)
    else:
        cfg = load_config(args.config, args.set)  # bad input fails here, before torch and Ray are imported (~6 s)
        out = _out_dir(args.out, cfg.run.name, "runs", args.overwrite)  # emptied once resolved
    from orchestrator.cluster import start_ray_while, stop_ray

    def prepare():  # in a thread while the main thread starts Ray: imports, data, checks, then the run directory
        from orchestrator.federation import run_federated  # noqa: F401  (its imports overlap ray.init too)
        from orchestrator.resolve import resolve_config

        plan = resolve_config(cfg, capacity=_machine_capacity())  # every check that needs the data
        if args.resume:
            from orchestrator.federation import check_resumable

            check_resumable(state, plan, out / CHECKPOINT)
        else:  # nothing is written before the checks
            if args.overwrite:
                _clear(out)
            out.mkdir(parents=True, exist_ok=True)
            write_secrets(out, {NOISE_SEED: plan.config.run.noise_seed})  # owner only, never beside the results
            write_text(out / "config.json", json.dumps(to_dict(public(plan.config)), indent=2, default=str) + "\n")
        c = plan.config
        print(f"fedfrontier run: {c.data.num_clients} clients on {c.data.dataset} ({plan.n_train} train / "
              f"{plan.n_test} test), model {c.model.name}, {c.client.num_actors} client actors, {c.server.rounds} "
              f"rounds -> {out}", flush=True)
        return plan

    plan, started = start_ray_while(prepare)
    try:
        from orchestrator.federation import run_federated

        run_federated(plan.config, plan=plan, progress=lambda s: print(s, flush=True), run_dir=out,
                      resume=bool(args.resume))
        print(f"wrote {out / 'rounds.parquet'}, {out / 'rounds.csv'}, {out / 'config.json'} "
              f"(and {out / SECRETS_FILE}: the noise seed, for --resume only; never share it)")
        return 0
    finally:
        if started:  # the private Ray of this run, stopped without Ray's waits at exit
            stop_ray()


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    from orchestrator.plan import plan_lines, privacy_plan

    plan = privacy_plan(cfg)
    if args.json:
        print(json.dumps(plan, indent=2, default=float))
    else:
        print("\n".join(plan_lines(plan)))
    return 0


def _machine_capacity() -> tuple[float, float]:
    """(CPUs, GPUs) of this machine: what ``resolve_config`` sizes ``client.num_actors = 0`` by in a run (it
    resolves before its Ray is up; orchestrator.resources.cluster_capacity without Ray)."""
    from orchestrator.resources import _local_gpus

    return float(os.cpu_count() or 1), float(_local_gpus())


def default_sweep_config() -> Path:
    """The packaged default sweep: experiments/configs/frontier.toml."""
    return Path(__file__).resolve().parents[1] / "experiments" / "configs" / "frontier.toml"


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
    from orchestrator.cluster import ensure_ray
    from orchestrator.sweep import SWEEP_FILE, run_sweep
    from orchestrator.sweep_config import load_sweep_config

    if args.resume:
        out = Path(args.resume)
        saved = out / SWEEP_FILE
        if not saved.is_file():
            raise ConfigError("--resume", str(out), f"no {SWEEP_FILE} there: not a sweep directory")
        cfg, sweep = _saved_sweep(saved)
    else:
        cfg, sweep = load_sweep_config(args.config or default_sweep_config(), args.set)
        if cfg.client.num_actors == 0:  # a trial reserves its actors up front: one actor hosting all clients
            cfg = cfg.replace(client={"num_actors": 1})
        out = _out_dir(args.out, sweep.name, "sweeps", args.overwrite)  # emptied after the checks
    ensure_ray()
    print(f"fedfrontier sweep: {len(sweep.points()) * sweep.num_samples} trials, up to "
          f"{sweep.max_concurrent_trials} at once; results in {out}", flush=True)
    trials, _ = run_sweep(cfg, sweep, out, resume=bool(args.resume), overwrite=args.overwrite and not args.resume)
    print_frontier(trials)
    print(f"wrote {out / 'trials.parquet'}, {out / 'rounds.parquet'}, {out / 'frontier.parquet'}, "
          f"{out / 'best.parquet'}, {out / 'frontier.png'}")
    return 0 if len(trials) and (trials["status"] == "TERMINATED").all() else 1


def _saved_json(path: Path, keys: tuple[str, ...] = ()) -> dict:
    """A JSON object the tool saved (config.json, sweep.json), with ``keys``: saved state is read like input,
    so a damaged or foreign file is one ConfigError naming it."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("--resume", str(path), f"not valid JSON ({exc})") from exc
    if not isinstance(saved, dict) or any(not isinstance(saved.get(k), dict) for k in keys):
        raise ConfigError("--resume", str(path), "not what fedfrontier saves there: expected a JSON object"
                          + (f" with the tables {', '.join(keys)}" if keys else ""))
    return saved


def _saved_sweep(path: Path):
    from privacy.config import from_dict
    from orchestrator.sweep_config import SweepConfig

    saved = _saved_json(path, ("config", "sweep"))
    try:
        sweep = SweepConfig(**saved["sweep"])
    except TypeError as exc:  # an unknown or missing field of the sweep table
        raise ConfigError("--resume", str(path), f"its sweep table does not fit this version ({exc})") from exc
    return from_dict(saved["config"]), sweep


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
