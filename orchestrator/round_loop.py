"""The one round loop of fedfrontier, used by ``fedfrontier run`` and by every Tune trial.

Per round: step the federation, stop early (before a round that would exceed a target epsilon)
with the final model audited, add the config columns, and hand the row -- with a checkpoint every
``run.checkpoint_every`` rounds and at the end -- to the caller (a run directory, or Tune).
One checkpoint format (:data:`CHECKPOINT`): the server's state, the rows so far and the resolved
public config, as tensors and plain containers. No row or checkpoint holds the noise seed
(:mod:`orchestrator.run_secrets`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import pandas as pd

from orchestrator.run_secrets import SECRET_CONFIG_KEYS, public
from privacy.config.experiment import ExperimentConfig, to_dict

CHECKPOINT = "checkpoint.pt"
TIMING_COLUMNS = ("seconds", "audit_seconds")  # wall-clock columns: the only ones that differ between equal runs

OnRow = Callable[[dict, "dict | None"], None]  # (row, checkpoint state or None)


def config_columns(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every resolved config value as a column, the secret ones (the noise seed) left out; unset values
    (None) are NaN, so a column keeps one type."""
    return {k: math.nan if v is None else v for k, v in cfg.flat().items() if k not in SECRET_CONFIG_KEYS}


def run_rounds(fed, cfg: ExperimentConfig, *, on_row: OnRow, rows: list[dict] | None = None, start: int = 0,
               progress: Callable[[str], None] | None = None) -> list[dict]:
    """Run rounds ``start`` .. ``server.rounds - 1`` of ``fed`` (a started ``Federation``); return every row."""
    rows = list(rows or [])
    total = cfg.server.rounds
    columns = config_columns(cfg)
    reason = fed.budget_exceeded_next_round()  # a resumed run may already be at its budget
    t0 = time.perf_counter()
    for r in range(start, total):
        if reason:
            break
        row = fed.step(r)
        reason = fed.budget_exceeded_next_round() if r + 1 < total else ""
        last = r + 1 == total or bool(reason)
        if last:  # the audit (and accuracy) of the model the run ends with
            t_audit = time.perf_counter()
            row.update(fed.final_columns(evaluate=math.isnan(row["test_accuracy"])))
            row["audit_seconds"] += time.perf_counter() - t_audit
        row = {**row, "stopped": reason, **columns}
        rows.append(row)
        checkpoint = ({**fed.state_dict(), "rows": rows, "config": to_dict(public(cfg))}
                      if last or (r + 1) % cfg.run.checkpoint_every == 0 else None)
        on_row(row, checkpoint)
        if progress:
            progress(format_row(row, total, eta=(time.perf_counter() - t0) / (r + 1 - start) * (total - r - 1)))
    if reason and progress:
        progress(f"stopped after round {len(rows)}: {reason}")
    return rows


def rounds_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def format_row(row: dict, total_rounds: int, eta: float | None = None) -> str:
    val = f"val acc {row['val_accuracy']:.4f}  " if math.isfinite(row.get("val_accuracy", math.nan)) else ""
    line = (f"round {row['round']:>3}/{total_rounds}  {val}test acc {row['test_accuracy']:.4f}  "
            f"loss {row['test_loss']:.4f}  "
            f"eps_record max {row['eps_record_max']:.3g} (median {row['eps_record_median']:.3g}, "
            f"delta {row['delta_record']:.2g})  eps_client {row['eps_client']:.3g} "
            f"(delta {row['delta_client']:.2g})  failed {row['clients_failed']}  {row['seconds']:.1f}s")
    return line + (f"  eta {eta:.0f}s" if eta is not None and row["round"] < total_rounds else "")


def format_audit(row: dict) -> str:
    """One line on the final model's audit: what the claims allow beside what was measured."""
    parts = []
    if math.isfinite(row.get("eps_audit_lower", math.nan)):
        parts.append(f"eps_audit_lower {row['eps_audit_lower']:.3g} vs claimed {row['eps_client_at_audit_delta']:.3g} "
                     f"at delta {row['audit_delta']:.2g} ({row['audit_correct']:.0f}/{row['audit_guesses']:.0f} "
                     f"canary guesses right)")
    if math.isfinite(row.get("mia_auc", math.nan)):
        parts.append(f"membership AUC {row['mia_auc']:.3f} (bound {row['mia_auc_bound']:.3f})")
    return "audit: " + "; ".join(parts) if parts else ""
