"""Private selection: K random trials drawn from the grid, the best one published with the tuning's epsilon."""

import math

import pandas as pd
import pytest

from orchestrator.selection import planned_histories, selection_report
from orchestrator.sweep_config import SweepConfig, load_sweep_config
from privacy.config.experiment import ConfigError, load_config
from privacy.accountants.sweep_privacy import PoissonRepetitions, eps_selected

DIGITS = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "server.rounds=3",
          "server.clip=1.0", "server.noise_multiplier=1.0"]
GRID = {"client.noise_multiplier": [0.8, 1.6]}


def test_selection_refuses_what_its_bound_does_not_cover(tmp_path):
    with pytest.raises(ConfigError, match="sweep.baseline"):
        SweepConfig(selection="poisson", grid=GRID)  # a non-private trial: covered by nothing
    with pytest.raises(ConfigError, match="sweep.grid"):
        SweepConfig(selection="negbin", baseline=False, grid=GRID, loguniform={"client.lr": [0.1, 1.0]})
    with pytest.raises(ConfigError, match="sweep.selection"):
        SweepConfig(selection="best", baseline=False, grid=GRID)
    with pytest.raises(ConfigError, match="run.noise_seed"):  # two trials drawing one point would share noise
        load_sweep_config(None, ["run.noise_seed=3", "sweep.selection=poisson", "sweep.baseline=false",
                                 'sweep.grid={"client.noise_multiplier"=[1.0, 2.0]}'])


def test_the_report_is_the_bound_of_every_candidates_planned_history():
    cfg = load_config(overrides=DIGITS)
    sweep = SweepConfig(selection="poisson", selection_mean=3.0, baseline=False, grid=GRID)
    # validation and test disagree: b is better on validation, a on test; the selection takes b
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": ["TERMINATED"] * 2, "val_accuracy": [0.6, 0.7],
                           "test_accuracy": [0.8, 0.7], "delta_record": [3e-4] * 2, "delta_client": [0.2] * 2})

    report = selection_report(trials, cfg, sweep, repetitions=2)

    _, clients = planned_histories(cfg, sweep.points())
    expected_client = eps_selected(clients, repetitions=PoissonRepetitions(3.0), delta=0.2)
    one_trial = eps_selected([clients[0]], repetitions=PoissonRepetitions(3.0), delta=0.2)
    assert report["selected_trial"] == "b" and report["selected_val_accuracy"] == 0.7
    assert report["selected_test_accuracy"] == 0.7  # published: the chosen trial's test accuracy
    assert report["eps_selected_client"] == pytest.approx(expected_client)
    assert math.isfinite(report["eps_selected_record"]) and report["eps_selected_record"] > 0
    assert report["repetitions_mean"] == 3.0 and "repetitions_drawn" not in report  # K is secret
    assert one_trial == pytest.approx(expected_client)  # same z in both candidates: the worst is either
