"""The two jobs, one code path for every front door: the ``fedfrontier`` CLI, the Python API
(``import fedfrontier``) and ``python -m experiments.frontier`` under ``ray job submit`` all call these.

A job checks its input and its output directory before anything starts, brings Ray up (attaching to
``RAY_ADDRESS`` or a running ``ray.init``, else a private local Ray that it stops at the end), runs, and
returns its tables. Input problems are :class:`privacy.config.experiment.ConfigError` (nothing started or written).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from orchestrator.files import write_text
from orchestrator.run_secrets import NOISE_SEED, public, with_noise_seed, write_secrets
from privacy.config.experiment import ConfigError, ExperimentConfig, from_dict, to_dict

Progress = Callable[[str], None] | None


def out_dir(out: str | Path | None, name: str, kind: str, overwrite: bool) -> Path:
    """The output directory; a ConfigError if it is a file, cannot be created there (a name too long for the
    file system, a folder it may not write to), or holds something and ``overwrite`` is off. Nothing is
    created or removed here: with ``overwrite`` the job empties it once every check has passed."""
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


def saved_json(path: Path, keys: tuple[str, ...] = ()) -> dict:
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


def machine_capacity() -> tuple[float, float]:
    """(CPUs, GPUs) of this machine: what ``resolve_config`` sizes ``client.num_actors = 0`` by in a run (it
    resolves before its Ray is up; orchestrator.resources.cluster_capacity without Ray)."""
    from orchestrator.resources import _local_gpus

    return float(os.cpu_count() or 1), float(_local_gpus())


def default_sweep_config() -> Path:
    """The packaged default sweep: experiments/configs/frontier.toml."""
    return Path(__file__).resolve().parents[1] / "experiments" / "configs" / "frontier.toml"


def run_job(cfg: ExperimentConfig | None, *, out: str | Path | None = None, overwrite: bool = False,
            resume: str | Path | None = None, progress: Progress = print) -> tuple[pd.DataFrame, Path]:
    """One federated training: ``(round table, run directory)``. The directory gets rounds.parquet/.csv,
    config.json (public: no noise seed), checkpoints, and secrets.json (owner only: the noise seed).
    ``resume``: a run directory to continue from its checkpoint (``cfg`` must then be None)."""
    if resume is not None:
        from orchestrator.federation import CHECKPOINT, check_same_config, load_checkpoint

        out = Path(resume)
        if not (out / "config.json").is_file() or not (out / CHECKPOINT).is_file():
            raise ConfigError("--resume", str(out), f"needs config.json and {CHECKPOINT} there (a run directory)")
        if cfg is not None:
            raise ConfigError("--resume", str(out), "takes its config from the run directory; drop --config/--set")
        saved = saved_json(out / "config.json")
        cfg = with_noise_seed(from_dict(saved), out)  # the seed: secrets.json only
        state = load_checkpoint(out / CHECKPOINT)  # a damaged checkpoint is one line here, before Ray starts
        check_same_config(state, saved, out / CHECKPOINT)
    else:
        cfg = cfg if cfg is not None else ExperimentConfig()
        out = out_dir(out, cfg.run.name, "runs", overwrite)  # emptied once resolved
    from orchestrator.cluster import start_ray_while, stop_ray

    def prepare():  # in a thread while the main thread starts Ray: imports, data, checks, then the run directory
        from orchestrator.federation import run_federated  # noqa: F401  (its imports overlap ray.init too)
        from orchestrator.resolve import resolve_config

        plan = resolve_config(cfg, capacity=machine_capacity())  # every check that needs the data
        if resume is not None:
            from orchestrator.federation import check_resumable

            check_resumable(state, plan, out / CHECKPOINT)
        else:  # nothing is written before the checks
            if overwrite:
                _clear(out)
            out.mkdir(parents=True, exist_ok=True)
            write_secrets(out, {NOISE_SEED: plan.config.run.noise_seed})  # owner only, never beside the results
            write_text(out / "config.json", json.dumps(to_dict(public(plan.config)), indent=2, default=str) + "\n")
        c = plan.config
        if progress:
            progress(f"fedfrontier run: {c.data.num_clients} clients on {c.data.dataset} ({plan.n_train} train / "
                     f"{plan.n_test} test), model {c.model.name}, {c.client.num_actors} client actors, "
                     f"{c.server.rounds} rounds -> {out}")
        return plan

    plan, started = start_ray_while(prepare)
    try:
        from orchestrator.federation import run_federated

        rounds = run_federated(plan.config, plan=plan, progress=progress, run_dir=out, resume=resume is not None)
        return rounds, out
    finally:
        if started:  # the private Ray of this run, stopped without Ray's waits at exit
            stop_ray()


@dataclass(frozen=True)
class SweepResult:
    """What a sweep returns: its tables (the files of ``out``) and what publishing it costs."""
    trials: pd.DataFrame  # one row per trial: its config, final round, status
    rounds: pd.DataFrame  # every round of every trial
    frontier: pd.DataFrame  # the Pareto front, ranked on validation, with the whole sweep's epsilons
    best: pd.DataFrame  # per privacy level the trial chosen on validation (publish its test accuracy)
    release: dict  # eps_sweep_* per guarantee (orchestrator.sweep_release), and a private selection's report
    out: Path

    @property
    def finished(self) -> bool:
        """Every trial ran to its end."""
        return bool(len(self.trials)) and bool((self.trials["status"] == "TERMINATED").all())


def saved_sweep(path: Path):
    """(config, sweep table) of a sweep directory's sweep.json."""
    from orchestrator.sweep_config import SweepConfig

    saved = saved_json(path, ("config", "sweep"))
    try:
        sweep = SweepConfig(**saved["sweep"])
    except TypeError as exc:  # an unknown or missing field of the sweep table
        raise ConfigError("--resume", str(path), f"its sweep table does not fit this version ({exc})") from exc
    return from_dict(saved["config"]), sweep


def sweep_job(cfg: ExperimentConfig | None, sweep=None, *, out: str | Path | None = None, overwrite: bool = False,
              resume: str | Path | None = None, storage_path: str | None = None,
              progress: Progress = print) -> SweepResult:
    """A Ray Tune sweep of the frontier (``cfg`` and ``sweep`` from
    :func:`orchestrator.sweep_config.load_sweep_config`); ``resume``: a sweep directory to continue
    (``cfg`` and ``sweep`` must then be None). ``storage_path`` overrides ``sweep.storage_path``."""
    from orchestrator.cluster import ensure_ray, stop_ray
    from orchestrator.sweep import SWEEP_FILE, run_sweep

    if resume is not None:
        out = Path(resume)
        if cfg is not None or sweep is not None:
            raise ConfigError("--resume", str(out), "takes its config from the sweep directory; drop --config/--set")
        if not (out / SWEEP_FILE).is_file():
            raise ConfigError("--resume", str(out), f"no {SWEEP_FILE} there: not a sweep directory")
        cfg, sweep = saved_sweep(out / SWEEP_FILE)
    else:
        if cfg is None or sweep is None:
            raise ConfigError("sweep", None, "a sweep needs its config and [sweep] table (load_sweep_config)")
        out = out_dir(out, sweep.name, "sweeps", overwrite)  # emptied after the checks
    if storage_path:
        sweep = replace(sweep, storage_path=storage_path)
    started = ensure_ray()
    try:
        if progress:
            progress(f"fedfrontier sweep: {len(sweep.points()) * sweep.num_samples} trials, up to "
                     f"{sweep.max_concurrent_trials} at once; results in {out}")
        trials, rounds = run_sweep(cfg, sweep, out, resume=resume is not None,
                                   overwrite=overwrite and resume is None, progress=progress)
    finally:
        if started:
            stop_ray()
    release = json.loads((out / SWEEP_FILE).read_text()).get("release", {})
    return SweepResult(trials, rounds, pd.read_parquet(out / "frontier.parquet"),
                       pd.read_parquet(out / "best.parquet"), release, out)
