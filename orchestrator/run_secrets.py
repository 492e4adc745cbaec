"""What a results directory must not contain, kept apart from it: one owner-only file.

Whoever knows ``run.noise_seed`` can regenerate every noise draw of a run (the clients' DP-SGD noise,
the server's Gaussian, the secure-aggregation shares) and subtract it from the released models: a
results directory that carried its seed would carry no privacy at all. Private selection's number of
trials is secret too (it prices the selection, Papernot & Steinke 2022). So:

- ``config.json``, ``sweep.json``, every table, plot, log and checkpoint hold the *public* config
  (:func:`public`: the noise seed unset, ``None``);
- the secrets sit in ``secrets.json`` (:data:`SECRETS_FILE`) beside them, mode 0600, written atomically,
  read by ``--resume`` only (:func:`write_secrets`, :func:`read_secrets`).

Sharing a results directory means sharing it without that file.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.files import write_text
from privacy.config.experiment import ConfigError, ExperimentConfig

SECRETS_FILE = "secrets.json"
SECRET_CONFIG_KEYS = ("run.noise_seed",)  # config keys never written with results
NOISE_SEED = "run.noise_seed"
BASE_NOISE_SEED = "sweep.base_noise_seed"  # a sweep's: each trial's noise seed is derived from it
REPETITIONS = "selection.repetitions"  # private selection's secret number of trials
_KNOWN = (NOISE_SEED, BASE_NOISE_SEED, REPETITIONS)


def public(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as it may be written beside results: without its noise seed."""
    return cfg.replace(run={"noise_seed": None})


def write_secrets(directory: Path, values: dict[str, int]) -> Path:
    """Write ``values`` (merged over what ``directory`` already holds) to ``directory/secrets.json``,
    readable and writable by its owner only; the file is whole or absent, never half-written."""
    unknown = set(values) - set(_KNOWN)
    if unknown:
        raise ValueError(f"not a secret this tool keeps: {sorted(unknown)}")
    path = Path(directory) / SECRETS_FILE
    merged = {**(read_secrets(directory) if path.exists() else {}), **{k: int(v) for k, v in values.items()}}
    write_text(path, json.dumps(merged, indent=2, sort_keys=True) + "\n", mode=0o600)
    return path


def read_secrets(directory: Path, required: tuple[str, ...] = ()) -> dict[str, int]:
    """The secrets a run or sweep directory keeps; a missing, foreign or damaged file, or one without
    ``required``, is one ConfigError naming it."""
    path = Path(directory) / SECRETS_FILE
    if not path.is_file():
        if not required:
            return {}
        raise ConfigError("--resume", str(directory), f"no {SECRETS_FILE} there: the run's noise seed is kept "
                                                      "only in that file, and resuming needs it")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("--resume", str(path), f"not a readable {SECRETS_FILE} ({type(exc).__name__})") from exc
    if not isinstance(values, dict) or set(values) - set(_KNOWN) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values.values()):
        raise ConfigError("--resume", str(path), f"not a {SECRETS_FILE} of this tool: an object of "
                                                 f"{list(_KNOWN)} to non-negative integers")
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError("--resume", str(path), f"lacks {missing}")
    return values


def with_noise_seed(cfg: ExperimentConfig, directory: Path) -> ExperimentConfig:
    """A public config read back from ``directory`` with the noise seed its secrets file keeps."""
    return cfg.replace(run={"noise_seed": read_secrets(directory, (NOISE_SEED,))[NOISE_SEED]})
