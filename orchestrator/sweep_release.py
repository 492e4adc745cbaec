"""What a sweep costs as one release: every trial trained on the same records, all published together.

From each finished trial's last checkpoint (its ledgers: what actually ran) this composes, per
guarantee, the histories of every trial that claims that guarantee (:mod:`privacy.accountants.sweep_privacy`;
exact composition under the level's accountant, not K times a trial's epsilon; under secure
aggregation the trials' Skellam events, whose RDPs add: :func:`privacy.accountants.skellam.epsilon`). A trial that claims
nothing at a level (the non-private baseline: epsilon = inf) is not covered by any finite epsilon and
is named in ``not_covered``; a trial that did not finish leaves its history incomplete, so the
sweep's epsilon is then unknown (NaN) until the sweep is resumed to the end.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from privacy.accountants.accounting import merge_events
from privacy.config.experiment import ExperimentConfig
from privacy.accountants.skellam import epsilon as skellam_epsilon
from privacy.accountants.ledgers import FEDERATION
from privacy.accountants.sweep_privacy import eps_sweep

LEVELS = {"record": ("eps_record_max", "delta_record"), "client": ("eps_client", "delta_client")}


def trial_ledgers(results) -> dict[str, dict]:
    """``trial_id -> ledger state`` ({"record": ..., "client_level": ...}) from each result's last checkpoint."""
    from orchestrator.federation import CHECKPOINT, load_checkpoint

    out = {}
    for res in results:
        if res.checkpoint is None:
            continue
        trial_id = Path(res.path).name.removeprefix("trial_")
        with res.checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT)
        out[trial_id] = {"record": state["record"], "client_level": state["client_level"],
                         "client_level_skellam": state.get("client_level_skellam", []),
                         "client_level_skellam_server": state.get("client_level_skellam_server", {}),
                         "record_skellam": state.get("record_skellam", {})}
    return out


def _histories(ledger_state: dict) -> dict[int, list]:
    return {int(k): [tuple(e) for e in v] for k, v in ledger_state["histories"].items()}


def sweep_epsilons(trials: pd.DataFrame, ledgers: dict[str, dict], cfg: ExperimentConfig) -> dict:
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
        elif level == "client" and cfg.secagg.enabled:  # Skellam events compose across trials
            out["eps_sweep_client"] = skellam_epsilon(
                [tuple(e) for t in ids for e in ledgers[t]["client_level_skellam"]], delta=delta,
                accountant=cfg.secagg.accountant, gaussian=cfg.server.accountant)
            out["eps_sweep_client_server"] = _against_server(ids, ledgers, delta, cfg.secagg.accountant)
        elif level == "client":
            out["eps_sweep_client"] = eps_sweep(
                [_histories(ledgers[t]["client_level"]).get(FEDERATION, []) for t in ids], delta=delta,
                accountant=cfg.server.accountant)
        elif cfg.secagg.enabled and cfg.secagg.level == "record":  # secure FedSGD: each silo's Skellam events
            out["eps_sweep_record"] = _record_level_skellam(ids, ledgers, delta, cfg)
        else:
            out["eps_sweep_record"] = _record_level(ids, ledgers, delta, cfg.client.accountant)
    return out


def _record_level(ids: list[str], ledgers: dict[str, dict], delta: float, accountant: str) -> float:
    """Max over clients of the composition of the client's histories across trials (trials share the split:
    ``run.seed`` and the data keys are never swept apart, checked by the caller)."""
    return _worst_client([_histories(ledgers[t]["record"]) for t in ids], merge_events,
                         lambda h: eps_sweep([list(h)], delta=delta, accountant=accountant))


def _record_level_skellam(ids: list[str], ledgers: dict[str, dict], delta: float, cfg: ExperimentConfig) -> float:
    """Secure FedSGD (``secagg.level = "record"``): the same over each silo's Skellam events."""
    from privacy.accountants.skellam import merge_events as merge_skellam

    per_trial = [{int(k): [tuple(e) for e in h] for k, h in ledgers[t]["record_skellam"].items()} for t in ids]
    return _worst_client(per_trial, merge_skellam, lambda h: skellam_epsilon(
        list(h), delta=delta, accountant=cfg.secagg.accountant, gaussian=cfg.client.accountant))


def _against_server(ids: list[str], ledgers: dict[str, dict], delta: float, accountant: str) -> float:
    """Client-level under secure aggregation, against the server: each client's unsampled events of every trial,
    composed; the worst client."""
    from privacy.accountants.skellam import epsilon_unsampled, merge_events as merge_skellam

    per_trial = [{int(k): [tuple(e) for e in h] for k, h in ledgers[t]["client_level_skellam_server"].items()}
                 for t in ids]
    return _worst_client(per_trial, merge_skellam, lambda h: epsilon_unsampled(list(h), delta=delta,
                                                                              accountant=accountant))


def _worst_client(per_trial: list[dict[int, list]], merge, epsilon_of) -> float:
    """Max over clients of ``epsilon_of`` of the client's events in every trial together, merged by ``merge``;
    clients whose merged histories are equal are accounted once; 0 when nothing was booked (nothing spent)."""
    clients = set().union(*(h.keys() for h in per_trial))
    distinct = {tuple(sorted(merge(e for h in per_trial for e in h.get(k, [])))) for k in clients}
    return max((epsilon_of(h) for h in distinct), default=0.0)
