"""Private hyper-parameter selection: K random trials, only the best one published.

With ``sweep.selection = "poisson"`` or ``"negbin"`` the number of trials K is itself random
(Papernot & Steinke 2022, "Hyperparameter Tuning with Renyi Differential Privacy", ICLR), drawn
from the operating system's entropy before any trial runs; each trial draws its point of
``[sweep.grid]`` uniformly at random, and only the trial with the best validation accuracy is
published (with its test accuracy), at an epsilon that includes the tuning
(:func:`privacy.accountants.sweep_privacy.eps_selected`). The bound is computed from every candidate's *planned*
history (each candidate resolved as a trial would be: sigma and z calibrated, every client sampled
every round for the record level), since the trials that K could have added never ran. The
validation split scores the trials: the analyst's records, held out of every client's data and the
same for every trial (actors/holdout.py), so the score is post-processing of each trial's output.

K must stay secret: it is kept in ``secrets.json`` and in no report. The sweep directory itself still
shows every trial that ran (so K), which is why under a private selection only the selected trial's
accuracies and ``eps_selected_*`` may be published, never the directory.
"""

from __future__ import annotations

import math
import secrets

import pandas as pd

from orchestrator.frontier import CHOOSE, REPORT
from orchestrator.sweep_config import SweepConfig, apply_point
from privacy.config.experiment import ExperimentConfig
from privacy.accountants.sweep_privacy import eps_selected, eps_selected_record


def draw_repetitions(sweep: SweepConfig) -> int:
    """K, from fresh entropy: never published, never derived from a seed in the results."""
    return sweep.repetitions().sample(seed=secrets.randbits(128))


def planned_histories(cfg: ExperimentConfig, points: list[dict]) -> tuple[list[dict], list[list]]:
    """Per candidate: record-level {client: worst-case history} and the client-level history."""
    from orchestrator.resolve import resolve_config

    records, clients = [], []
    for point in points:
        plan = resolve_config(apply_point(cfg, point).replace(run={"noise_seed": 0}), capacity=(1.0, 0.0))
        c, s = plan.config.client, plan.config.server
        if c.dp:  # client k sampled in every round: its worst case under this candidate
            records.append({k: [(c.noise_multiplier, q, t * s.rounds)]
                            for k, (q, t) in enumerate(zip(plan.clients.sample_rate, plan.clients.steps))})
        else:
            records.append(None)
        clients.append([(s.noise_multiplier, s.clients_per_round / plan.config.data.num_clients, s.rounds)]
                       if s.noise_multiplier > 0 else None)
    return records, clients


def selection_report(trials: pd.DataFrame, cfg: ExperimentConfig, sweep: SweepConfig, repetitions: int) -> dict:
    """The selected trial and what publishing it costs, per guarantee (inf where a candidate claims none)."""
    records, clients = planned_histories(cfg, sweep.points())
    reps = sweep.repetitions()
    out = {"selection": sweep.selection, "repetitions_mean": reps.mean(),  # K itself is secret: secrets.json
           "eps_selected_record": math.inf, "eps_selected_client": math.inf}
    delta_r = float(trials["delta_record"].max()) if len(trials) else math.nan
    delta_c = float(trials["delta_client"].max()) if len(trials) else math.nan
    if len(trials) and all(r is not None for r in records):
        out["eps_selected_record"] = eps_selected_record(records, repetitions=reps, delta=delta_r)
    if len(trials) and all(c is not None for c in clients):
        out["eps_selected_client"] = eps_selected(clients, repetitions=reps, delta=delta_c)
    out.update(delta_record=delta_r, delta_client=delta_c)
    done = trials[trials["status"] == "TERMINATED"] if len(trials) else trials
    if len(done) and done[CHOOSE].notna().any():  # chosen on validation; its test accuracy is what is published
        best = done.loc[done[CHOOSE].idxmax()]
        out.update(selected_trial=str(best["trial_id"]), selected_val_accuracy=float(best[CHOOSE]),
                   selected_test_accuracy=float(best[REPORT]))
    return out
