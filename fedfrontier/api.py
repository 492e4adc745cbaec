"""``load_config``, ``run``, ``sweep`` and ``plan``: the jobs of orchestrator/jobs.py behind Python calls.

A config is a TOML path, an :class:`~privacy.config.experiment.ExperimentConfig`, or None (the defaults; for
``sweep``, experiments/configs/frontier.toml). Overrides are keyword arguments, one table per section,
checked by the same schema as a TOML file (a wrong key, type or range is a ``ConfigError``, a
``ValueError``, before anything starts)::

    ff.run("my.toml", server={"rounds": 50, "target_epsilon": 2.0}, data={"num_clients": 100})
    ff.sweep("my.toml", sweep={"grid": {"server.target_epsilon": [1.0, 4.0]}})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.jobs import SweepResult, default_sweep_config, run_job, sweep_job
from orchestrator.sweep_config import apply_point, load_sweep_config
from privacy.config.experiment import ConfigError, ExperimentConfig
from privacy.config.experiment import load_config as _load_toml

Config = str | Path | ExperimentConfig | None


def _flat(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``server={"rounds": 3}`` keyword arguments -> ``{"server.rounds": 3}``."""
    flat = {}
    for section, values in overrides.items():
        if not isinstance(values, Mapping):
            raise ConfigError(section, values, f"pass a table of that section's keys, e.g. {section}={{...}}")
        flat.update({f"{section}.{key}": value for key, value in values.items()})
    return flat


def load_config(config: Config = None, **overrides: Mapping[str, Any]) -> ExperimentConfig:
    """A validated config: a TOML file (its ``[sweep]`` table left aside) or a config, with overrides."""
    if isinstance(config, ExperimentConfig):
        return apply_point(config, _flat(overrides))
    return _load_toml(config, _flat(overrides))


def run(config: Config = None, *, out: str | Path | None = None, overwrite: bool = False,
        progress: Callable[[str], None] | None = print, **overrides: Mapping[str, Any]) -> pd.DataFrame:
    """One federated training; its round table (one row per round: accuracy on validation and test, every
    epsilon so far, noise, clip, timings). Files go to ``out`` (default runs/<run.name>-<time>)."""
    rounds, _ = run_job(load_config(config, **overrides), out=out, overwrite=overwrite, progress=progress)
    return rounds


def sweep(config: str | Path | None = None, *, out: str | Path | None = None, overwrite: bool = False,
          storage_path: str | None = None, progress: Callable[[str], None] | None = print,
          **overrides: Mapping[str, Any]) -> SweepResult:
    """A Ray Tune sweep of the privacy-utility frontier from a TOML file with a ``[sweep]`` table (default
    experiments/configs/frontier.toml); ``sweep={...}`` overrides keys of that table. Returns the trials,
    rounds, frontier and best-per-level tables and the whole sweep's epsilons (``release``); files go to
    ``out`` (default sweeps/<sweep.name>-<time>)."""
    if isinstance(config, ExperimentConfig):
        raise ConfigError("config", "ExperimentConfig", "a sweep needs its [sweep] table: pass a TOML path")
    cfg, table = load_sweep_config(config or default_sweep_config(), _flat(overrides))
    return sweep_job(cfg, table, out=out, overwrite=overwrite, storage_path=storage_path, progress=progress)


def plan(config: Config = None, **overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every calibrated noise multiplier and the epsilon each guarantee will reach, without training
    (what ``fedfrontier plan --json`` prints)."""
    from orchestrator.plan import privacy_plan

    return privacy_plan(load_config(config, **overrides))
