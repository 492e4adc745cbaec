"""The metrics row of one round: every column of the round table but the config's, built in one place."""

from __future__ import annotations

import math

import numpy as np

from actors.aggregation import StepResult
from actors.dispatch import Collected
from actors.evaluation import AUDIT_COLUMNS
from privacy.config import ExperimentConfig
from privacy.ledgers import PrivacyLedgers


def round_row(*, round_number: int, cfg: ExperimentConfig, cohort_size: int, collected: Collected,
              step: StepResult, delta_multiplier: float, ledgers: PrivacyLedgers, accuracy: float, loss: float,
              seconds: float) -> dict:
    """One row; the audit columns stay NaN until the run's last round (see ``orchestrator.round_loop``)."""
    c, s = cfg.client, cfg.server
    reports, released = step.reports, step.released
    n = np.array([r.examples for r in reports], dtype=float)
    losses = np.array([r.train_loss for r in reports], dtype=float)
    ok = np.isfinite(losses)
    return {
        "round": round_number,
        "test_accuracy": accuracy,
        "test_loss": loss,
        "train_loss": float(np.average(losses[ok], weights=n[ok])) if ok.any() else math.nan,
        "eps_record_max": ledgers.eps_record_max(),
        "eps_record_median": ledgers.eps_record_median(),
        "delta_record": ledgers.delta_record,
        "eps_client": ledgers.eps_client(),
        "delta_client": ledgers.delta_client,
        "clients_sampled": int(cohort_size),
        "clients_failed": len(collected.failures),
        "failures": "; ".join(collected.failures),
        "noise_multiplier_local": c.noise_multiplier if c.dp else 0.0,
        "max_grad_norm_local": c.max_grad_norm if c.dp else math.inf,
        "noise_multiplier_server": s.noise_multiplier,
        "noise_multiplier_delta": delta_multiplier,
        "clip_server": released.clip if released.clip > 0 else math.inf,
        "clip_count_std": s.count_noise_std if s.adaptive_clip else 0.0,
        "unclipped_fraction": float(np.mean([r.unclipped for r in reports])) if reports else math.nan,
        "unclipped_fraction_noised": released.unclipped_fraction_noised,
        "delta_norm_median": float(np.median([r.delta_norm for r in reports])) if reports else math.nan,
        "update_norm": float(released.average.norm()),
        "lr_server": step.lr,
        "server_noise_std": released.noise.std,
        "server_snr": released.noise.snr,
        "canaries_in_round": step.canaries_in_round,
        **dict.fromkeys(AUDIT_COLUMNS, math.nan),
        "audit_seconds": step.audit_seconds,
        "seconds": seconds,
        "clients_retried": collected.retried,
    }
