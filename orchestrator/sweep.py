"""Ray Tune sweeps over privacy hyper-parameters: every trial one federated run.

The search space comes from the ``[sweep]`` table of the TOML config:

    [sweep]
    max_concurrent_trials = 2   # trials at once (each reserves its actors in a placement group)
    baseline = true             # add one non-private trial (the horizontal line of the plot)
    [sweep.baseline_set]        # overrides for the baseline trial alone (non-private SGD wants its own lr)
    "client.lr" = 0.05
    [sweep.grid]                # cartesian product of these values
    "client.noise_multiplier" = [0.6, 1.0, 1.6]
    [sweep.loguniform]          # sampled num_samples times per grid point
    "client.lr" = [0.05, 1.0]

Each trial reports every round with ``tune.report(row, checkpoint=...)``; its server and
client actors are reserved through ``PlacementGroupFactory`` bundles (an empty head
bundle for the trial's own loop, one per actor), so trials never deadlock on resources.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from privacy.config import ConfigError, ExperimentConfig, from_dict, parse_override, read_toml, to_dict
from orchestrator.resources import placement_for_config

SWEEP_FILE = "sweep.json"
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's compact status table (CLIReporter)


@dataclass(frozen=True)
class SweepConfig:
    name: str = "frontier"  # Tune experiment name (a folder under storage_path)
    storage_path: str = ""  # results root: a shared directory or a URI; "" = the --out directory
    max_concurrent_trials: int = 2  # trials at once
    num_samples: int = 1  # samples of the distributions per grid point
    baseline: bool = True  # add one non-private trial
    baseline_set: Mapping[str, Any] = field(default_factory=dict)  # "section.key" -> value, baseline trial only
    max_failures: int = 2  # retries of a trial from its last checkpoint
    checkpoint_every: int = 5  # rounds between trial checkpoints (and always the last)
    grid: Mapping[str, list] = field(default_factory=dict)  # "section.key" -> values
    uniform: Mapping[str, list] = field(default_factory=dict)  # "section.key" -> [low, high]
    loguniform: Mapping[str, list] = field(default_factory=dict)  # "section.key" -> [low, high]

    def __post_init__(self) -> None:
        def check(cond: bool, key: str, value: Any, rule: str) -> None:
            if not cond:
                raise ConfigError(f"sweep.{key}", value, rule)

        for key in ("max_concurrent_trials", "num_samples", "checkpoint_every"):
            v = getattr(self, key)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, key, v, "must be an integer >= 1")
        check(isinstance(self.max_failures, int) and self.max_failures >= 0, "max_failures", self.max_failures,
              "must be an integer >= 0")
        for key in self.baseline_set:
            check(key.count(".") == 1, f"baseline_set.{key}", self.baseline_set[key], "keys look like section.key")
        for table in ("grid", "uniform", "loguniform"):
            for key, values in getattr(self, table).items():
                check(key.count(".") == 1, f"{table}.{key}", values, "keys look like section.key")
                check(isinstance(values, list) and len(values) >= 1, f"{table}.{key}", values, "must be a list")
                if table != "grid":
                    check(len(values) == 2 and values[0] < values[1], f"{table}.{key}", values,
                          "must be [low, high] with low < high")
                if table == "loguniform":
                    check(values[0] > 0, f"{table}.{key}", values, "bounds must be > 0")

    def points(self) -> list[dict[str, Any]]:
        """Grid points as override dicts (one empty point when there is no grid), plus the baseline."""
        keys = list(self.grid)
        pts = [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))] or [{}]
        if self.baseline:
            pts.append({"client.dp": False, "server.noise_multiplier": 0.0, "client.target_epsilon": None,
                        "server.target_epsilon": None, "run.name": "baseline", **self.baseline_set})
        return pts


def split_config(raw: Mapping[str, Any]) -> tuple[dict, SweepConfig]:
    """Separate the ``[sweep]`` table from the experiment sections."""
    raw = dict(raw)
    sweep_raw = dict(raw.pop("sweep", {}) or {})
    known = {f.name for f in fields(SweepConfig)}
    for key in sweep_raw:
        if key not in known:
            raise ConfigError(f"sweep.{key}", sweep_raw[key], f"unknown key; allowed: {', '.join(sorted(known))}")
    return raw, SweepConfig(**sweep_raw)


def load_sweep_config(path: str | Path | None, overrides: list[str]) -> tuple[ExperimentConfig, SweepConfig]:
    """Experiment config + sweep config from one TOML file and ``--set`` overrides
    (``sweep.key=value`` overrides address the sweep table)."""
    base_raw, sweep = split_config(read_toml(path))
    sweep_over = [o for o in overrides if o.strip().startswith("sweep.")]
    rest = [o for o in overrides if not o.strip().startswith("sweep.")]
    if sweep_over:
        sraw = {k: v for k, v in sweep.__dict__.items()}
        for item in sweep_over:
            _, name, value = parse_override(item)
            sraw[name] = value
        _, sweep = split_config({"sweep": sraw})
    cfg = _apply(from_dict(base_raw), rest)
    for point in sweep.points():  # every trial's config must validate before anything starts
        apply_point(cfg, point)
    return cfg, sweep


def _apply(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    point = {}
    for item in overrides:
        section, name, value = parse_override(item)
        point[f"{section}.{name}"] = value
    return apply_point(cfg, point)


def apply_point(cfg: ExperimentConfig, point: Mapping[str, Any]) -> ExperimentConfig:
    """``cfg`` with ``{"section.key": value}`` changes applied and validated."""
    nested = to_dict(cfg)
    for key, value in point.items():
        section, name = key.split(".", 1)
        if section not in nested:
            raise ConfigError(key, value, f"unknown section; allowed: {', '.join(nested)}")
        if name not in nested[section]:
            raise ConfigError(key, value, f"unknown key; allowed: {', '.join(sorted(nested[section]))}")
        nested[section][name] = value
    return from_dict(nested)


# --- the trial -------------------------------------------------------------------------------

CHECKPOINT_FILE = "federation.pt"


def trial_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """Placement-group bundles of one trial: an empty head (the trial's loop only waits on
    actors), the server actor if it asks for CPUs, then one bundle per client actor."""
    c = cfg.client
    if c.num_cpus == 0 and c.num_gpus == 0:
        raise ConfigError("client.num_cpus", c.num_cpus, "sweeps need client actors to reserve CPUs or GPUs")
    return [dict(b) for b in placement_for_config(cfg, driver_cpus=0.0).bundles]


def _run_trial(params: dict) -> None:
    """Tune function trainable: one federated run, one report per round."""
    import torch
    from ray import tune

    from orchestrator.federation import Federation
    from orchestrator.resolve import resolve_config

    base = from_dict(params["base"])
    point = dict(params["point"])
    point.update({k: v for k, v in params.items() if k not in ("base", "point", "checkpoint_every")})
    plan = resolve_config(apply_point(base, point))
    cfg = plan.config
    fed = Federation(plan).start()
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # a retried or resumed trial continues from its last checkpoint
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, weights_only=True)
        fed.load_state_dict(state)
        start = int(state["round"])
    flat = cfg.flat()
    every = int(params.get("checkpoint_every", 5))
    try:
        for r in range(start, cfg.server.rounds):
            row = fed.step(r)
            if row is None:
                break
            row = {**row, **{k: _plain(v) for k, v in flat.items()}, "stopped": fed.stopped_reason}
            last = r + 1 == cfg.server.rounds
            if (r + 1) % every == 0 or last:
                with tempfile.TemporaryDirectory() as d:
                    torch.save(fed.state_dict(), Path(d) / CHECKPOINT_FILE)
                    tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report(row)
    finally:
        fed.close()


def _plain(v: Any) -> Any:
    """Unset optional values (None) become NaN, so each config column keeps one type in Parquet."""
    return math.nan if v is None else v


def param_space(cfg: ExperimentConfig, sweep: SweepConfig) -> dict:
    from ray import tune

    space: dict[str, Any] = {"base": to_dict(cfg), "point": tune.grid_search(sweep.points()),
                             "checkpoint_every": sweep.checkpoint_every}
    for key, (lo, hi) in sweep.uniform.items():
        space[key] = tune.uniform(lo, hi)
    for key, (lo, hi) in sweep.loguniform.items():
        space[key] = tune.loguniform(lo, hi)
    return space


def _reporter(cfg: ExperimentConfig, sweep: SweepConfig):
    from ray import tune

    params = {"point": "point", **{k: k for k in {**sweep.uniform, **sweep.loguniform}}}
    return tune.CLIReporter(
        metric_columns={"round": "round", "test_accuracy": "acc", "eps_record_max": "eps_rec",
                        "eps_client": "eps_cli"},
        parameter_columns=params, max_report_frequency=15, sort_by_metric=True,
        metric="test_accuracy", mode="max", max_progress_rows=12)


def _tuner(cfg: ExperimentConfig, sweep: SweepConfig, storage: str, restore: bool):
    from ray import tune

    trainable = tune.with_resources(_run_trial, tune.PlacementGroupFactory(trial_bundles(cfg)))
    if restore:
        return tune.Tuner.restore(f"{storage.rstrip('/')}/{sweep.name}", trainable, resume_unfinished=True,
                                  resume_errored=True, param_space=param_space(cfg, sweep))
    return tune.Tuner(
        trainable,
        param_space=param_space(cfg, sweep),
        tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent_trials,
                                    num_samples=sweep.num_samples, reuse_actors=False,
                                    trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_name),
        run_config=tune.RunConfig(
            name=sweep.name, storage_path=storage, progress_reporter=_reporter(cfg, sweep), verbose=1,
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
              progress=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run (or resume) the sweep on the connected Ray cluster; write and return ``(trials, rounds)``.

    ``cfg`` must already have an explicit ``client.num_actors`` (trials reserve exactly that many)."""
    from orchestrator.resolve import resolve_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolve_config(cfg, capacity=(1.0, 0.0))  # fail fast on data problems before any trial starts
    storage = storage_for(sweep, out)
    (out / SWEEP_FILE).write_text(json.dumps({"config": to_dict(cfg), "sweep": sweep.__dict__,
                                              "storage": storage}, indent=2, default=str) + "\n")
    t0 = time.perf_counter()
    results = _tuner(cfg, sweep, storage, resume).fit()
    trials, rounds = collect_results(results)
    write_sweep(trials, rounds, out)
    if progress:
        done = int((trials["status"] == "TERMINATED").sum()) if len(trials) else 0
        progress(f"{done}/{len(trials)} trials finished in {time.perf_counter() - t0:.0f}s")
    return trials, rounds


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
        for col in ("test_accuracy", "eps_record_max", "eps_client"):
            if col not in df and len(df):
                df[col] = math.nan
    return trials, rounds


def write_sweep(trials: pd.DataFrame, rounds: pd.DataFrame, out: Path) -> None:
    from orchestrator.frontier import frontier_table, plot_frontier

    trials.to_parquet(out / "trials.parquet", index=False)
    rounds.to_parquet(out / "rounds.parquet", index=False)
    frontier_table(trials).to_parquet(out / "frontier.parquet", index=False)
    plot_frontier(trials, out / "frontier.png")
