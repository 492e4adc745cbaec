"""Ray Tune sweeps over privacy hyper-parameters: every trial one federated run.

The search space is the ``[sweep]`` table of the TOML config (:mod:`orchestrator.sweep_config`).
Each trial reports every round with ``tune.report(row, checkpoint=...)``; its server and
client actors are reserved through ``PlacementGroupFactory`` bundles (an empty head
bundle for the trial's own loop, one per actor), so trials never deadlock on resources.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.files import atomic_write, write_text
from orchestrator.resources import placement_for_config
from orchestrator.run_secrets import (BASE_NOISE_SEED, NOISE_SEED, REPETITIONS, SECRETS_FILE, public, read_secrets,
                                      write_secrets)
from orchestrator.sweep_config import SweepConfig, apply_point
from privacy.config.experiment import ConfigError, ExperimentConfig, from_dict, to_dict

SWEEP_FILE = "sweep.json"
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's compact status table (CLIReporter)
# Tune warns (three lines, repeated) whenever trials checkpoint within 5 s of each other: by design here,
# every trial checkpoints every run.checkpoint_every rounds. run_sweep says so once instead.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


# --- the trial -------------------------------------------------------------------------------

LABELS = {"client.noise_multiplier": "σ", "client.max_grad_norm": "clip C", "client.target_epsilon": "ε target rec",
          "server.noise_multiplier": "z", "server.clip": "clip S", "server.target_epsilon": "ε target cli",
          "client.lr": "lr", "server.lr": "server lr"}  # Tune's progress table: short names of swept keys


def trial_config(params: dict, seeds: dict[str, int] | None = None, trial_id: str = "") -> ExperimentConfig:
    """One trial's config from its Tune parameters: the base, its grid point, its sampled values, and its
    noise seed, derived from the sweep's secrets (``seeds``, :mod:`orchestrator.run_secrets`; never part of
    the parameters, which Tune writes beside the results). With the user's ``run.noise_seed``, from it and
    the trial's point and sampled values (reproducible; one trial per point, see sweep_config); otherwise
    from the sweep's fresh secret base seed and the trial's id (distinct for every trial, and the same when
    a failed trial is retried from its checkpoint). Without ``seeds``, the noise seed is left unset."""
    base = from_dict(params["base"])
    point = dict(params["point"]["set"])
    sampled = {k: v for k, v in params.items() if k not in ("base", "point")}
    cfg = explicit_actors(apply_point(base, {**point, **sampled}))
    return cfg.replace(run={"noise_seed": trial_noise_seed(seeds or {}, params["point"]["index"], sampled, trial_id)})


def explicit_actors(cfg: ExperimentConfig) -> ExperimentConfig:
    """``client.num_actors = 0`` (as many as the machine has CPUs) means one actor in a sweep: a trial reserves
    its actors up front, and one actor hosting all of a trial's clients lets trials run side by side."""
    return cfg.replace(client={"num_actors": 1}) if cfg.client.num_actors == 0 else cfg


def trial_noise_seed(seeds: dict[str, int], point_index: int, sampled: dict, trial_id: str) -> int | None:
    """A trial's noise seed from the sweep's secrets (see :func:`trial_config`); None without them."""
    from privacy.seeding import TRIAL, derive_seed

    if NOISE_SEED in seeds:
        tag = zlib.crc32(json.dumps(sampled, sort_keys=True, default=str).encode())
        return derive_seed(seeds[NOISE_SEED], TRIAL, point_index, tag)
    if BASE_NOISE_SEED in seeds:
        if not trial_id:
            raise ValueError("a trial's noise seed under a fresh base seed needs the trial's id")
        tag = int.from_bytes(hashlib.sha256(trial_id.encode()).digest()[:8], "big")
        return derive_seed(seeds[BASE_NOISE_SEED], TRIAL, tag)
    return None


def sweep_seeds(cfg: ExperimentConfig) -> dict[str, int]:
    """The secret a new sweep keeps: the user's ``run.noise_seed``, or a fresh base seed."""
    from privacy.seeding import fresh_noise_seed

    if cfg.run.noise_seed is not None:
        return {NOISE_SEED: cfg.run.noise_seed}
    return {BASE_NOISE_SEED: fresh_noise_seed()}


def trial_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """Placement-group bundles of one trial: an empty head (the trial's loop only waits on
    actors), the server actor if it asks for CPUs, then one bundle per client actor."""
    c = cfg.client
    if c.num_cpus == 0 and c.num_gpus == 0:
        raise ConfigError("client.num_cpus", c.num_cpus, "sweeps need client actors to reserve CPUs or GPUs")
    return [dict(b) for b in placement_for_config(cfg, driver_cpus=0.0).bundles]


def trial_resources(params: dict):
    """What Tune reserves for a trial: a function of that trial's own config (a grid over
    ``client.num_actors``, ``num_cpus`` or ``num_gpus`` reserves what each trial needs)."""
    from ray import tune

    return tune.PlacementGroupFactory(trial_bundles(trial_config(params)))


def _run_trial(params: dict, seeds: dict[str, int] | None = None) -> None:
    """Tune function trainable: one federated run through the round loop, one report per round. ``seeds``
    (the sweep's secrets) come through ``tune.with_parameters``: the object store, not the trial's files."""
    import torch
    from ray import tune

    from orchestrator.federation import CHECKPOINT, Federation, load_checkpoint
    from orchestrator.resolve import resolve_config
    from orchestrator.round_loop import run_rounds

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not one "Checkpoint successfully created" per save
    cfg, state = trial_config(params, seeds, tune.get_context().get_trial_id()), None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried or resumed trial continues from its last checkpoint, with its noise seed
        with ckpt.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT)
        cfg = from_dict(state["config"]).replace(run={"noise_seed": cfg.run.noise_seed})
    plan = resolve_config(cfg)
    fed = Federation(plan).start()

    def on_row(row: dict, checkpoint: dict | None) -> None:
        if checkpoint is None:
            tune.report(row)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(checkpoint, Path(d) / CHECKPOINT)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))

    try:
        if state is not None:
            fed.load_state_dict(state)
        run_rounds(fed, plan.config, on_row=on_row, rows=state["rows"] if state else None,
                   start=int(state["round"]) if state else 0)
    finally:
        fed.close()


def swept_keys(sweep: SweepConfig) -> list[str]:
    """Config keys that differ between grid points (the baseline's own overrides included)."""
    return list(sweep.grid) + [k for k in sweep.baseline_set if k not in sweep.grid]


def param_space(cfg: ExperimentConfig, sweep: SweepConfig) -> dict:
    from ray import tune

    swept = swept_keys(sweep)
    points = [{"index": i, "set": p, "show": {LABELS.get(k, k): "-" if p.get(k) is None else p[k] for k in swept}}
              for i, p in enumerate(sweep.points())]  # "show": every swept key in every point, for the table
    choose = tune.grid_search if sweep.selection == "all" else tune.choice  # a private selection draws points
    # public: Tune writes the parameter space beside the results (params.json, result.json, tuner.pkl)
    space: dict[str, Any] = {"base": to_dict(public(cfg)), "point": choose(points)}
    for key, (lo, hi) in sweep.uniform.items():
        space[key] = tune.uniform(lo, hi)
    for key, (lo, hi) in sweep.loguniform.items():
        space[key] = tune.loguniform(lo, hi)
    return space


def _reporter(sweep: SweepConfig):
    """Tune's status table: one column per swept key (σ, clip, ...), then round, accuracy and both epsilons."""
    from ray import tune

    params = {f"point/show/{LABELS.get(k, k)}": LABELS.get(k, k) for k in swept_keys(sweep)}
    params.update({k: LABELS.get(k, k) for k in {**sweep.uniform, **sweep.loguniform}})
    return tune.CLIReporter(
        metric_columns={"round": "round", "val_accuracy": "val acc", "test_accuracy": "test acc",
                        "eps_record_max": "ε record", "eps_client": "ε client"},
        parameter_columns=params, max_report_frequency=15, sort_by_metric=True,
        metric="val_accuracy", mode="max", max_progress_rows=12)  # sorted on validation, never on test


def _tuner(cfg: ExperimentConfig, sweep: SweepConfig, storage: str, restore: bool, num_samples: int,
           seeds: dict[str, int]):
    from ray import tune

    trial_bundles(cfg)  # the base config's resources are valid (a clear error before Tune starts)
    trainable = tune.with_resources(tune.with_parameters(_run_trial, seeds=seeds), trial_resources)
    if restore:
        return tune.Tuner.restore(f"{storage.rstrip('/')}/{sweep.name}", trainable, resume_unfinished=True,
                                  resume_errored=True, param_space=param_space(cfg, sweep))
    return tune.Tuner(
        trainable,
        param_space=param_space(cfg, sweep),
        tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent_trials,
                                    num_samples=num_samples, reuse_actors=False,
                                    trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_name),
        run_config=tune.RunConfig(
            name=sweep.name, storage_path=storage, progress_reporter=_reporter(sweep), verbose=1,
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_finite_tensorboard_logger()]))


def _finite_tensorboard_logger():
    """Tune's TensorBoard logger, given only the finite numbers of each row: epsilon is inf for a
    non-private trial (and eps_client without server noise), and tensorboardX warns on every
    such value, every round. The parquet tables keep the infinities."""
    from ray.tune.logger import TBXLoggerCallback

    class FiniteTBXLogger(TBXLoggerCallback):
        def log_trial_result(self, iteration, trial, result):
            finite = {k: v for k, v in result.items() if not (isinstance(v, float) and not math.isfinite(v))}
            super().log_trial_result(iteration, trial, finite)

    return FiniteTBXLogger()


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def storage_for(sweep: SweepConfig, out: Path) -> str:
    """Tune's storage root: ``sweep.storage_path`` (directory or URI) or the output directory."""
    s = sweep.storage_path or str(out / "tune")
    return s if "://" in s else str(Path(s).expanduser().resolve())


def run_sweep(cfg: ExperimentConfig, sweep: SweepConfig, out: str | Path, *, resume: bool = False,
              overwrite: bool = False, progress=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run (or resume) the sweep on the connected Ray cluster; write and return ``(trials, rounds)``.
    ``overwrite``: empty ``out`` first -- once every check has passed, never before.

    ``client.num_actors = 0`` becomes 1 (:func:`explicit_actors`)."""
    from orchestrator.resolve import resolve_config

    cfg = explicit_actors(cfg)
    out = Path(out)
    resolve_config(cfg, capacity=(1.0, 0.0))  # fail fast on data problems before any trial starts
    if overwrite and not resume and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage_for(sweep, out)
    if resume:
        seeds = read_secrets(out)
        if NOISE_SEED not in seeds and BASE_NOISE_SEED not in seeds:
            raise ConfigError("--resume", str(out), f"no noise seed in its {SECRETS_FILE}: resuming needs it")
    else:
        seeds = sweep_seeds(cfg)
        write_secrets(out, seeds)
    write_text(out / SWEEP_FILE, json.dumps({"config": to_dict(public(cfg)), "sweep": sweep.__dict__,
                                             "storage": storage}, indent=2, default=str) + "\n")
    if progress:
        progress(f"each trial checkpoints every {cfg.run.checkpoint_every} rounds into {storage} "
                 f"(a failed trial resumes from its last checkpoint, up to {sweep.max_failures} times)")
    t0 = time.perf_counter()
    num_samples = sweep.num_samples
    if sweep.selection != "all":  # K trials, K random and secret (orchestrator/selection.py)
        from orchestrator.selection import draw_repetitions

        if resume:
            num_samples = read_secrets(out, (REPETITIONS,))[REPETITIONS]
        else:  # secret (it prices the selection): --resume only, owner only
            num_samples = draw_repetitions(sweep)
            write_secrets(out, {REPETITIONS: num_samples})
    results = _tuner(cfg, sweep, storage, resume, num_samples, seeds).fit() if num_samples else []
    trials, rounds = collect_results(results)
    release = sweep_release(trials, results, cfg, sweep)
    if sweep.selection != "all":
        from orchestrator.selection import selection_report

        release["selection"] = selection_report(trials, cfg, sweep, num_samples)
        if len(trials):
            trials["selected"] = trials["trial_id"].astype(str) == release["selection"].get("selected_trial")
    saved = json.loads((out / SWEEP_FILE).read_text())
    write_text(out / SWEEP_FILE, json.dumps({**saved, "release": release}, indent=2, default=str) + "\n")
    write_sweep(trials, rounds, out, release)
    if progress:
        done = int((trials["status"] == "TERMINATED").sum()) if len(trials) else 0
        progress(f"{done}/{len(trials)} trials finished in {time.perf_counter() - t0:.0f}s")
        progress(release_line(release))
    return trials, rounds


def sweep_release(trials: pd.DataFrame, results, cfg: ExperimentConfig, sweep: SweepConfig) -> dict:
    """The sweep's epsilon per guarantee (:mod:`orchestrator.sweep_release`)."""
    from orchestrator.sweep_release import sweep_epsilons, trial_ledgers

    if not len(trials):
        return {}
    release = sweep_epsilons(trials, trial_ledgers(results))
    split_keys = [k for k in swept_keys(sweep) + list(sweep.uniform) + list(sweep.loguniform)
                  if k.startswith("data.") or k == "run.seed"]
    if split_keys:  # trials with other splits: a record's histories sit on different clients
        release["eps_sweep_record"] = math.nan
        release["note"] = (release["note"] + "; " if release["note"] else "") + \
            f"record-level: {', '.join(split_keys)} change the split between trials"
    return release


def release_line(release: dict) -> str:
    """One line on what the whole sweep costs."""
    if not release:
        return "whole sweep: no trial"
    parts = [f"eps_sweep {level}-level {release[f'eps_sweep_{level}']:.3g} (delta {release[f'delta_{level}']:.2g})"
             for level in ("record", "client") if level not in release.get("unclaimed", ())]
    if "eps_sweep_client_server" in release:
        parts.append(f"client-level against the server {release['eps_sweep_client_server']:.3g}")
    parts += [f"no trial claims {level}-level DP" for level in release.get("unclaimed", ())]
    line = "whole sweep (every private trial published): " + ", ".join(parts)
    sel = release.get("selection")
    if sel:
        line = (f"private selection ({sel['selection']}, E[K] = {sel['repetitions_mean']:.3g}): publish only trial "
                f"{sel.get('selected_trial', '-')}: eps record-level {sel['eps_selected_record']:.3g}, client-level "
                f"{sel['eps_selected_client']:.3g}, tuning included. If you publish every trial: " + line)
    if release.get("not_covered"):
        line += f"; not covered by any epsilon: {', '.join(release['not_covered'])}"
    return line + (f"; {release['note']}" if release.get("note") else "")


def collect_results(results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tune's ResultGrid -> (one row per trial, one row per round of every trial)."""
    trial_rows, round_frames = [], []
    for res in results:
        trial_id = res.metrics.get("trial_id") if res.metrics else None
        trial_id = trial_id or Path(res.path).name
        hist = res.metrics_dataframe if res.metrics_dataframe is not None else pd.DataFrame()
        if len(hist):
            hist = hist.drop(columns=[c for c in hist.columns if c.startswith("config/")], errors="ignore")
            hist = hist.assign(trial_id=trial_id).sort_values("round").drop_duplicates("round", keep="last")
            round_frames.append(hist)
        final = hist.iloc[-1].to_dict() if len(hist) else {}
        status = "ERROR" if res.error else ("TERMINATED" if len(hist) else "EMPTY")
        trial_rows.append({**final, "trial_id": trial_id, "status": status,
                           "error": str(res.error).splitlines()[0] if res.error else "",
                           "rounds_done": int(final.get("round", 0) or 0)})
    trials = pd.DataFrame(trial_rows)
    rounds = pd.concat(round_frames, ignore_index=True) if round_frames else pd.DataFrame()
    for df in (trials, rounds):
        for col in ("val_accuracy", "test_accuracy", "eps_record_max", "eps_client"):
            if col not in df and len(df):
                df[col] = math.nan
    return trials, rounds


def write_sweep(trials: pd.DataFrame, rounds: pd.DataFrame, out: Path, release: dict | None = None) -> None:
    from orchestrator.frontier import best_per_level, frontier_table, plot_frontier, plot_rounds

    atomic_write(out / "trials.parquet", lambda p: trials.to_parquet(p, index=False))
    atomic_write(out / "rounds.parquet", lambda p: rounds.to_parquet(p, index=False))
    release = release or {}
    eps = {k: v for k, v in release.items() if k.startswith(("eps_sweep_", "delta_"))}
    frontier = frontier_table(trials).assign(**{f"sweep_{k}" if k.startswith("delta") else k: v
                                                for k, v in eps.items()})
    atomic_write(out / "frontier.parquet", lambda p: frontier.to_parquet(p, index=False))
    best = best_per_level(trials)
    atomic_write(out / "best.parquet", lambda p: best.to_parquet(p, index=False))
    plot_frontier(trials, out / "frontier.png", title=sweep_title(release))
    if len(rounds):
        plot_rounds(rounds, out / "rounds.png", trials)


def sweep_title(release: dict) -> str:
    """The frontier plot's title: what the whole sweep costs beside it."""
    parts = [f"ε {level} {release[f'eps_sweep_{level}']:.3g}" for level in ("record", "client")
             if math.isfinite(release.get(f"eps_sweep_{level}", math.inf))]
    return "Privacy-utility frontier" + (f"\nwhole sweep, every private trial published: {', '.join(parts)}"
                                         if parts else "")
