"""The metrics row of one round: every column of the round table but the config's, built in one place."""

from __future__ import annotations

import math

import numpy as np

from actors.aggregation import StepResult
from actors.dispatch import Collected
from actors.evaluation import AUDIT_COLUMNS, EVALUATION_COLUMNS
from privacy.config.experiment import ExperimentConfig
from privacy.accountants.ledgers import PrivacyLedgers


SECAGG_COLUMNS = ("secagg_survivors", "secagg_dropped", "secagg_near_edge", "secagg_scale")


def round_row(*, round_number: int, cfg: ExperimentConfig, cohort_size: int, collected: Collected,
              step: StepResult, mechanism, ledgers: PrivacyLedgers, evaluation: dict[str, float],
              seconds: float, secure=None, skipped: int = 0) -> dict:
    """One row; the audit columns stay NaN until the run's last round (see ``orchestrator.round_loop``).
    ``secure``: the round's :class:`actors.secure_round.SecureSum` under secure aggregation. There the
    clients' losses, norms and clip bits never reach the server: those columns are NaN. ``evaluation``: the
    global model's ``val_accuracy``, ``val_loss``, ``test_accuracy``, ``test_loss`` (NaN in rounds not
    evaluated, :meth:`actors.evaluation.Evaluator.evaluate`); ``mechanism``: the run's
    (:mod:`privacy.mechanisms.choice`), which says what its noise and clip were; ``skipped``: clients the
    participation schema refused this round (:mod:`privacy.mechanisms.participation`)."""
    c, s = cfg.client, cfg.server
    reports, released = step.reports, step.released
    n = np.array([r.examples for r in reports], dtype=float)
    losses = np.array([r.train_loss for r in reports], dtype=float)
    ok = np.isfinite(losses)
    row = {
        "round": round_number,
        **{k: evaluation[k] for k in EVALUATION_COLUMNS},
        "train_loss": float(np.average(losses[ok], weights=n[ok])) if ok.any() else math.nan,
        "eps_record_max": ledgers.eps_record_max(),
        "eps_record_median": ledgers.eps_record_median(),
        "delta_record": ledgers.delta_record,
        "eps_client": ledgers.eps_client(),  # trusted server, or under secure aggregation: whoever sees the models
        "eps_client_server_max": ledgers.eps_client_server_max(),  # secure aggregation: against the server
        "delta_client": ledgers.delta_client,
        "clients_sampled": int(cohort_size),
        "clients_skipped": int(skipped),  # min_sep: asked to join too early or too often, refused
        "clients_failed": len(collected.failures),
        "failures": "; ".join(collected.failures),
        "noise_multiplier_local": c.noise_multiplier if c.dp else 0.0,
        "max_grad_norm_local": c.max_grad_norm if c.dp else math.inf,
        "noise_multiplier_server": s.noise_multiplier,
        "noise_multiplier_delta": mechanism.noise_multiplier_of(released),
        "clip_server": mechanism.reported_clip(released),
        "clip_count_std": s.count_noise_std if s.adaptive_clip else 0.0,
        "unclipped_fraction": float(np.mean([r.unclipped for r in reports])) if reports else math.nan,
        "unclipped_fraction_noised": math.nan if mechanism.secure else released.unclipped_fraction_noised,
        "delta_norm_median": float(np.median([r.delta_norm for r in reports])) if reports else math.nan,
        "update_norm": float(released.average.norm()) if released is not None else 0.0,
        "lr_server": step.lr,
        "server_noise_std": released.noise.std if released is not None else math.nan,
        "server_snr": math.nan if mechanism.secure else released.noise.snr,  # the server never sees the signal
        "canaries_in_round": step.canaries_in_round,
        **dict.fromkeys(AUDIT_COLUMNS, math.nan),
        "audit_seconds": step.audit_seconds,
        "seconds": seconds,
        "clients_retried": collected.retried,
        **dict.fromkeys(SECAGG_COLUMNS, math.nan),
    }
    if secure is not None:
        row.update(_secure_columns(step, secure))
    return row


def _secure_columns(step: StepResult, secure) -> dict:
    """What secure aggregation adds to the row; the clients' own diagnostics are withheld."""
    noise = step.released.noise if step.released is not None else None
    diag = secure.diagnostics
    return {"train_loss": math.nan, "unclipped_fraction": math.nan, "delta_norm_median": math.nan,
            "secagg_survivors": secure.survivors,
            "secagg_dropped": (diag.dropped_after_sharing + diag.dropped_before_sharing) if diag else math.nan,
            "secagg_near_edge": noise.near_edge if noise else math.nan,
            "secagg_scale": noise.scale if noise else math.nan}
