"""What a sweep costs as one release: every trial trained on the same records, all published together.

From each finished trial's last checkpoint (its ledgers: what actually ran) this composes, per
guarantee, the histories of every trial that claims that guarantee (:func:`privacy.accountants.guarantee.compose_across`;
exact composition under the guarantee's own accountant, Gaussian or Skellam, not K times a trial's epsilon).
A trial that claims nothing at a level (the non-private baseline: epsilon = inf) is not covered by any finite epsilon and
is named in ``not_covered``; a trial that did not finish leaves its history incomplete, so the
sweep's epsilon is then unknown (NaN) until the sweep is resumed to the end.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from privacy.accountants.guarantee import compose_across

LEVELS = {"record": ("eps_record_max", "delta_record"), "client": ("eps_client", "delta_client")}


def trial_ledgers(results) -> dict[str, dict]:
    """``trial_id -> {guarantee: saved ledger}`` from each result's last checkpoint."""
    from orchestrator.federation import CHECKPOINT, load_checkpoint

    out = {}
    for res in results:
        if res.checkpoint is None:
            continue
        trial_id = Path(res.path).name.removeprefix("trial_")
        with res.checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT)
        out[trial_id] = dict(state["guarantees"])
    return out


def sweep_epsilons(trials: pd.DataFrame, ledgers: dict[str, dict]) -> dict:
    """``{"eps_sweep_record", "delta_record", "eps_sweep_client", "delta_client", "not_covered", "unclaimed",
    "note"}``: ``not_covered`` names the trials that claim nothing at a level some other trial claims (the
    non-private baseline); ``unclaimed`` the levels no trial claims (their eps_sweep is inf)."""
    out: dict = {"not_covered": [], "unclaimed": [], "note": ""}
    finished = trials["status"] == "TERMINATED"
    if not finished.all() or set(trials["trial_id"].astype(str)) - set(ledgers):
        out["note"] = "a trial did not finish: its history is incomplete, so the sweep's epsilon is unknown"
    for level, (eps_col, delta_col) in LEVELS.items():
        claims = trials[eps_col].apply(lambda e: math.isfinite(e) if isinstance(e, float) else False)
        if not claims.any():  # no trial claims this level: nothing to compose, nobody to warn about
            out["unclaimed"].append(level)
        else:
            out["not_covered"] += [f"{t} ({level}-level)" for t in trials.loc[~claims, "trial_id"].astype(str)]
        delta = float(trials.loc[claims, delta_col].max()) if claims.any() else math.nan
        out[f"delta_{level}"] = delta
        ids = [str(t) for t in trials.loc[claims, "trial_id"]]
        if out["note"]:
            out[f"eps_sweep_{level}"] = math.nan
        elif not ids:
            out[f"eps_sweep_{level}"] = math.inf
        else:  # each guarantee's histories of every claiming trial, composed under its own accountant
            out[f"eps_sweep_{level}"] = _composed(ids, ledgers, level, delta)
            if level == "client" and all("client_server" in ledgers[t] for t in ids):
                out["eps_sweep_client_server"] = _composed(ids, ledgers, "client_server", delta)
    return out


def _composed(ids: list[str], ledgers: dict[str, dict], guarantee: str, delta: float) -> float:
    """The worst party of ``guarantee`` over trials ``ids`` composed (trials share the split, ``run.seed`` and the
    data keys are never swept apart: checked by the caller)."""
    return compose_across([ledgers[t][guarantee] for t in ids], delta=delta)
