"""The ``[sweep]`` table: which trials a sweep runs, validated before anything starts.

    [sweep]
    max_concurrent_trials = 2   # trials at once (each reserves its actors in a placement group)
    baseline = true             # add one non-private trial (the horizontal line of the plot)
    [sweep.baseline_set]        # overrides for the baseline trial alone (non-private SGD wants its own lr)
    "client.lr" = 0.05
    [sweep.grid]                # cartesian product of these values
    "client.noise_multiplier" = [0.6, 1.0, 1.6]
    [sweep.loguniform]          # sampled num_samples times per grid point
    "client.lr" = [0.05, 1.0]
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from privacy.config.experiment import ConfigError, ExperimentConfig, from_dict, override_items, read_toml, to_dict
from privacy.config.schema import GRID_POINTS_MAX, checked_section
from privacy.mechanisms.choice import mechanism_class



SELECTIONS = ("all", "poisson", "negbin")  # sweep.selection
# which records are held out (validation, test): one split for every trial of a sweep (actors/holdout.py)
HELD_OUT_KEYS = ("data.dataset", "data.root", "data.validation", "data.split_seed", "data.test_fraction")


@dataclass(frozen=True)
class SweepConfig:
    name: str = "frontier"  # Tune experiment name (a folder under storage_path)
    storage_path: str = ""  # results root: a shared directory or a URI; "" = the --out directory
    max_concurrent_trials: int = 2  # trials at once
    num_samples: int = 1  # samples of the distributions per grid point
    baseline: bool = True  # add one non-private trial
    baseline_set: Mapping[str, Any] = field(default_factory=dict)  # "section.key" -> value, baseline trial only
    max_failures: int = 2  # retries of a trial from its last checkpoint (every run.checkpoint_every rounds)
    selection: str = "all"  # all: every grid point, all published | poisson | negbin: K random trials, best published
    selection_mean: float = 4.0  # poisson: E[K] = mu
    selection_eta: float = 1.0  # negbin: eta of the truncated negative binomial (1 = geometric)
    selection_gamma: float = 0.2  # negbin: gamma in (0, 1); smaller = more trials
    grid: Mapping[str, list] = field(default_factory=dict)  # "section.key" -> values
    uniform: Mapping[str, list] = field(default_factory=dict)  # "section.key" -> [low, high]
    loguniform: Mapping[str, list] = field(default_factory=dict)  # "section.key" -> [low, high]

    def __post_init__(self) -> None:
        def check(cond: bool, key: str, value: Any, rule: str) -> None:
            if not cond:
                raise ConfigError(f"sweep.{key}", value, rule)

        check(bool(self.name) and "/" not in self.name and self.name not in (".", ".."), "name", self.name,
              "must be a folder name: non-empty, without '/'")
        for key in ("max_concurrent_trials", "num_samples"):
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
                    check(len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) for v in values) and values[0] < values[1],
                          f"{table}.{key}", values, "must be [low, high], two finite numbers with low < high")
                if table == "loguniform":
                    check(values[0] > 0, f"{table}.{key}", values, "bounds must be > 0")
        trials = math.prod(len(v) for v in self.grid.values()) * self.num_samples
        check(trials <= GRID_POINTS_MAX, "grid", f"{trials} trials", f"a sweep runs at most {GRID_POINTS_MAX:,} trials "
                                                                     "(grid points x num_samples)")
        self._check_selection(check)

    def repetitions(self):
        """The distribution of the number of trials K in a private selection (None for ``all``)."""
        from privacy.accountants.sweep_privacy import PoissonRepetitions, TruncatedNegativeBinomial

        if self.selection == "poisson":
            return PoissonRepetitions(self.selection_mean)
        if self.selection == "negbin":
            return TruncatedNegativeBinomial(self.selection_eta, self.selection_gamma)
        return None

    def _check_selection(self, check) -> None:
        from privacy.accountants.sweep_privacy import PoissonRepetitions, TruncatedNegativeBinomial

        check(self.selection in SELECTIONS, "selection", self.selection, f"must be one of {', '.join(SELECTIONS)}")
        try:  # both distributions' parameters, whichever selection is on: a bad value is never carried silently
            PoissonRepetitions(self.selection_mean)
        except ValueError as exc:
            check(False, "selection_mean", self.selection_mean, str(exc))
        try:
            TruncatedNegativeBinomial(self.selection_eta, self.selection_gamma)
        except ValueError as exc:
            key = "selection_eta" if str(exc).startswith("eta") else "selection_gamma"
            check(False, key, getattr(self, key), str(exc))
        if self.selection == "all":
            return
        check(not self.baseline, "baseline", self.baseline,
              "must be false with a private selection: a non-private trial is covered by no epsilon")
        check(bool(self.grid) and not self.uniform and not self.loguniform, "grid", dict(self.grid),
              "a private selection draws each trial from the [sweep.grid] points (no uniform/loguniform)")

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
    sweep_raw = raw.pop("sweep", None) or {}
    if not isinstance(sweep_raw, Mapping):
        raise ConfigError("sweep", sweep_raw, "must be a table of keys")
    return raw, SweepConfig(**checked_section("sweep", SweepConfig, sweep_raw))


def load_sweep_config(path: str | Path | None,
                      overrides: Sequence[str] | Mapping[str, Any] = ()) -> tuple[ExperimentConfig, SweepConfig]:
    """Experiment config + sweep config from one TOML file and overrides (``--set`` strings or a mapping
    ``{"section.key": value}``; ``sweep.key`` addresses the sweep table)."""
    base_raw, sweep = split_config(read_toml(path))
    items = override_items(overrides)
    sweep_over = [(name, value) for section, name, value in items if section == "sweep"]
    if sweep_over:
        sraw = {k: v for k, v in sweep.__dict__.items()}
        sraw.update(sweep_over)
        _, sweep = split_config({"sweep": sraw})
    cfg = apply_point(from_dict(base_raw), {f"{s}.{n}": v for s, n, v in items if s != "sweep"})
    for point in sweep.points():  # every trial's config must validate before anything starts
        apply_point(cfg, point)
    for table in ("uniform", "loguniform"):  # sampled keys take floats: each bound must be a valid value there
        for key, bounds in getattr(sweep, table).items():
            for value in bounds:
                try:
                    apply_point(cfg, {key: float(value)})
                except ConfigError as exc:
                    raise ConfigError(f"sweep.{table}.{key}", bounds, f"a sampled value is refused: {exc}") from exc
    swept = {*sweep.grid, *sweep.uniform, *sweep.loguniform, *sweep.baseline_set}
    if cfg.run.noise_seed is not None and (sweep.num_samples > 1 or sweep.selection != "all"):
        raise ConfigError("run.noise_seed", cfg.run.noise_seed, "gives each grid point one noise seed, so trials "
                          "drawing the same point would share their noise: drop it (fresh noise per trial) or "
                          "keep sweep.num_samples = 1 and sweep.selection = \"all\"")
    for key in ("secagg.enabled", "secagg.level", "server.mechanism", "server.participation"):
        if key in swept:
            raise ConfigError(f"sweep.grid.{key}", "swept", "one sweep, one trust model and one ledger: run one "
                              f"sweep per value of {key} and draw them together with `fedfrontier compare`")
    if cfg.data.validation == 0:
        raise ConfigError("data.validation", cfg.data.validation,
                          "a sweep chooses among its trials (its frontier, a private selection) on a validation "
                          "split: with none that choice would be made on the test set, which over-states utility")
    for key in HELD_OUT_KEYS + ("run.noise_seed",):
        if key in swept:
            raise ConfigError(f"sweep.grid.{key}", "swept", "is the same for every trial: " + (
                "trials are chosen on one validation split and reported on one test set, both of records no "
                "trial's clients hold; another split would score a trial on other trials' client records"
                if key != "run.noise_seed" else "each trial's noise seed is derived from it"))
    if (mechanism_class(cfg).secure or cfg.server.mechanism == "dp_ftrl") and sweep.selection != "all":
        raise ConfigError("sweep.selection", sweep.selection, "private selection is accounted for the central "
                          "Gaussian only; use sweep.selection = \"all\" with secagg.enabled or server.mechanism "
                          "= dp_ftrl")
    return cfg, sweep


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
