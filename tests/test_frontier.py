import math

import numpy as np
import pandas as pd
import pytest

from orchestrator.frontier import frontier_table, pareto_front, plot_frontier, varied_guarantees


def frame(rows):
    return pd.DataFrame(rows, columns=["name", "eps_record_max", "val_accuracy"])


def test_the_frontier_is_chosen_on_validation_and_publishes_test_accuracy():
    """Validation and test disagree on the better of two trials at one epsilon: the validation one is chosen."""
    trials = pd.DataFrame({"trial_id": ["val-best", "test-best"], "eps_record_max": [2.0, 2.0],
                           "eps_client": math.inf, "val_accuracy": [0.80, 0.70], "test_accuracy": [0.75, 0.90]})

    table = frontier_table(trials)

    assert list(table["trial_id"]) == ["val-best"]
    assert list(table["test_accuracy"]) == [0.75]  # what is published: the chosen trial's test accuracy


def test_trials_without_validation_are_refused_not_ranked_on_test():
    from orchestrator.frontier import NoValidation, check_validation

    with pytest.raises(NoValidation, match="chosen on the test set over-states utility"):
        check_validation(pd.DataFrame({"test_accuracy": [0.9], "val_accuracy": [np.nan]}), "old-sweep")


def test_dominated_points_are_dropped_and_the_front_is_sorted_by_epsilon():
    df = frame([("a", 8.0, 0.90), ("b", 1.0, 0.60), ("c", 2.0, 0.55), ("d", 3.0, 0.80), ("e", 4.0, 0.79)])

    front = pareto_front(df)

    assert list(front["name"]) == ["b", "d", "a"]  # c: more eps, less acc than b; e: dominated by d


def test_ties_keep_one_row_and_equal_epsilon_keeps_the_better_accuracy():
    df = frame([("a", 1.0, 0.5), ("b", 1.0, 0.5), ("c", 1.0, 0.7), ("d", 2.0, 0.7)])

    front = pareto_front(df)

    assert list(front["name"]) == ["c"]  # d: same accuracy for more epsilon is dominated


def test_infinite_epsilon_is_on_the_front_only_when_strictly_best():
    better = frame([("dp", 2.0, 0.8), ("nonprivate", math.inf, 0.95)])
    worse = frame([("dp", 2.0, 0.8), ("nonprivate", math.inf, 0.79)])

    assert list(pareto_front(better)["name"]) == ["dp", "nonprivate"]
    assert list(pareto_front(worse)["name"]) == ["dp"]


def test_failed_trials_with_nan_are_ignored():
    df = frame([("failed", 0.5, np.nan), ("ok", 1.0, 0.6), ("no-eps", np.nan, 0.99)])

    assert list(pareto_front(df)["name"]) == ["ok"]


def test_unknown_column_is_a_clear_error():
    with pytest.raises(KeyError, match="eps_client"):
        pareto_front(frame([("a", 1.0, 0.5)]), privacy="eps_client")


def test_plot_has_one_panel_per_varied_guarantee(tmp_path):
    trials = pd.DataFrame({
        "eps_record_max": [1.0, 3.0, math.inf, math.inf], "eps_client": [math.inf, math.inf, 2.0, math.inf],
        "test_accuracy": [0.6, 0.8, 0.7, 0.95], "val_accuracy": [0.61, 0.79, 0.72, 0.9], "delta_record": 1e-5,
        "delta_client": 1e-3,
        "client.noise_multiplier": [2.0, 1.0, 0.0, 0.0], "server.noise_multiplier": [0.0, 0.0, 1.0, 0.0]})

    png = plot_frontier(trials, tmp_path / "f.png")
    table = frontier_table(trials)

    assert varied_guarantees(trials) == ["eps_record_max", "eps_client"]
    assert png.stat().st_size > 20_000
    import matplotlib.image as mpimg

    h, w = mpimg.imread(png).shape[:2]
    assert w > 1.5 * h  # two panels side by side
    assert set(table["guarantee"]) == {"eps_record_max", "eps_client"}


def test_a_sweep_of_non_private_trials_only_still_draws_its_figure(tmp_path):
    """A non-private lr screen: no finite epsilon to put on the log axis, the baselines drawn all the same."""
    trials = pd.DataFrame({"eps_record_max": [math.inf] * 3, "eps_client": [math.inf] * 3,
                           "val_accuracy": [0.988, 0.985, 0.98], "test_accuracy": [0.989, 0.988, 0.986],
                           "client.dp": False, "client.noise_multiplier": 0.0, "server.noise_multiplier": 0.0})

    png = plot_frontier(trials, tmp_path / "f.png")

    assert png.is_file() and png.stat().st_size > 10_000


def test_rounds_figure_draws_one_line_per_trial_in_each_panel():
    from orchestrator.frontier import rounds_figure

    rounds = pd.DataFrame({
        "trial_id": ["a", "a", "b", "b", "base", "base"], "round": [1, 2] * 3,
        "test_accuracy": [0.5, 0.6, 0.4, 0.5, 0.7, 0.9], "eps_record_max": [1.0, 1.5, 0.5, 0.7, math.inf, math.inf],
        "eps_client": math.inf, "client.noise_multiplier": [1.0, 1.0, 2.0, 2.0, 0.0, 0.0],
        "run.name": ["run"] * 4 + ["baseline"] * 2})

    fig = rounds_figure(rounds)  # no trials table: labels come from the rounds themselves

    assert [ln.get_label() for ln in fig.axes[0].lines] == ["σ=1", "σ=2", "baseline (non-private)"]
    assert [ln.get_label() for ln in fig.axes[1].lines] == ["σ=1", "σ=2"]
    assert fig.axes[1].get_yscale() == "log" and fig.axes[-1].get_xlabel() == "round"


def test_a_recipe_search_reports_per_privacy_level_the_best_on_validation_with_its_test_accuracy():
    from orchestrator.frontier import best_per_level

    trials = pd.DataFrame({
        "trial_id": list("abcdefg"), "status": ["TERMINATED"] * 6 + ["ERROR"], "run.name": ["run"] * 6 + ["run"],
        "client.target_epsilon": [1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0],
        "client.noise_multiplier": [2.1, 2.1, 2.1, 0.9, 0.9, 0.9, 0.9],  # follows the target: not a recipe knob
        "client.lr": [0.1, 0.5, 1.0, 0.1, 0.5, 1.0, 2.0], "eps_record_max": [0.98] * 3 + [2.9] * 4,
        "eps_client": math.inf, "val_accuracy": [0.5, 0.7, 0.6, 0.8, 0.75, 0.85, 0.99],
        "test_accuracy": [0.9, 0.6, 0.5, 0.7, 0.95, 0.8, 0.99]})

    best = best_per_level(trials)

    assert list(best["client.target_epsilon"]) == [1.0, 3.0]
    assert list(best["trial_id"]) == ["b", "f"]  # not a (best test at eps 1) nor g (did not finish)
    assert list(best["client.lr"]) == [0.5, 1.0] and list(best["test_accuracy"]) == [0.6, 0.8]
    assert list(best["trials"]) == [3, 3] and "client.noise_multiplier" not in best
