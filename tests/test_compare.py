"""`fedfrontier compare` and the per-round plot, on sweep directories written by hand (no Ray)."""

import math
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.cli import main
from orchestrator.compare import compare_sweeps, joined_table, load_sweeps
from orchestrator.frontier import plot_rounds, rounds_figure, trial_labels


def write_sweep(path: Path, noise: list[float], *, level: str = "record", rounds: int = 3,
                baseline: bool = True) -> Path:
    """A sweep directory as ``orchestrator.sweep.write_sweep`` leaves it: trials.parquet (one row per
    trial: its last round, config columns, trial_id, status) and rounds.parquet (every round)."""
    round_rows, trial_rows = [], []
    points = [(f"t{i}", s, True) for i, s in enumerate(noise)] + ([("tbase", 0.0, False)] if baseline else [])
    for tid, sigma, private in points:
        for r in range(1, rounds + 1):
            eps = (r / sigma if private else math.inf)
            accuracy = 0.5 + 0.4 * r / rounds * (1 - 0.1 * sigma if private else 1.1)
            row = {"round": r, "test_accuracy": accuracy, "val_accuracy": accuracy - 0.01,
                   "eps_record_max": eps if level == "record" else math.inf,
                   "eps_client": eps if level == "client" else math.inf, "delta_record": 1e-4,
                   "delta_client": 1e-2, "client.dp": private and level == "record",
                   "client.noise_multiplier": sigma if level == "record" else 1.0,
                   "server.noise_multiplier": sigma if level == "client" else 0.0,
                   "server.clip": 1.0 if level == "client" else 0.0, "client.lr": 0.5 if private else 0.05,
                   "run.name": "run" if private else "baseline", "client.target_epsilon": math.nan,
                   "trial_id": tid}
            round_rows.append(row)
        trial_rows.append({**row, "status": "TERMINATED", "error": "", "rounds_done": rounds})
    path.mkdir(parents=True)
    pd.DataFrame(trial_rows).to_parquet(path / "trials.parquet", index=False)
    pd.DataFrame(round_rows).to_parquet(path / "rounds.parquet", index=False)
    return path


def test_joined_table_holds_every_trial_of_every_sweep_and_the_png_exists(tmp_path):
    rec = write_sweep(tmp_path / "record", [0.8, 1.2, 2.0])
    cli = write_sweep(tmp_path / "client", [1.0, 3.0], level="client")

    table, parquet, png = compare_sweeps([rec, cli], tmp_path / "out")

    assert len(table) == 4 + 3
    assert table.groupby("sweep")["trial_id"].apply(set).to_dict() == {
        "record": {"t0", "t1", "t2", "tbase"}, "client": {"t0", "t1", "tbase"}}
    assert len(pd.read_parquet(parquet)) == 7
    assert png.stat().st_size > 20_000
    import matplotlib.image as mpimg

    h, w = mpimg.imread(png).shape[:2]
    assert w > 1.5 * h  # a record-level and a client-level panel side by side


def test_frontier_column_marks_each_sweeps_own_pareto_front(tmp_path):
    sweeps = load_sweeps([write_sweep(tmp_path / "a", [1.0, 2.0]), write_sweep(tmp_path / "b", [1.0, 2.0],
                                                                                 level="client")])

    table = joined_table(sweeps).set_index(["sweep", "trial_id"])

    assert table.loc[("a", "t0"), "frontier"] == "record" and table.loc[("b", "t1"), "frontier"] == "client"
    assert table.loc[("a", "t0"), "trial"] == "σ=1" and table.loc[("b", "t0"), "trial"] == "z=1"
    assert table.loc[("a", "tbase"), "trial"] == "baseline (non-private)"


def test_compare_command_prints_the_table_and_writes_into_out(tmp_path, capsys):
    a, b = write_sweep(tmp_path / "a", [1.0, 2.0]), write_sweep(tmp_path / "b", [0.5])

    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0

    out = capsys.readouterr().out
    assert "5 trials of 2 sweeps" in out and "σ=0.5" in out and "baseline" in out
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "compare.parquet").is_file()


def test_compare_of_a_directory_that_is_no_sweep_exits_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_rounds_figure_has_one_line_per_trial_labelled_by_what_differs(tmp_path):
    d = write_sweep(tmp_path / "s", [0.8, 1.2, 2.0], rounds=4)
    trials, rounds = pd.read_parquet(d / "trials.parquet"), pd.read_parquet(d / "rounds.parquet")

    fig = rounds_figure(rounds, trials)

    acc, eps = fig.axes[0], fig.axes[1]
    assert [ln.get_label() for ln in acc.lines] == ["σ=0.8", "σ=1.2", "σ=2", "baseline (non-private)"]
    assert all(len(ln.get_xdata()) == 4 for ln in acc.lines)
    assert len(eps.lines) == 3  # the baseline's epsilon is inf: not drawn
    assert acc.get_shared_x_axes().joined(acc, eps)


def test_frontier_command_also_draws_rounds_png(tmp_path, capsys):
    d = write_sweep(tmp_path / "s", [1.0, 2.0])

    assert main(["frontier", str(d)]) == 0

    assert (d / "rounds.png").stat().st_size > 20_000 and (d / "frontier.png").is_file()
    assert "rounds.png" in capsys.readouterr().out


def test_labels_fall_back_to_trial_ids_when_nothing_differs():
    trials = pd.DataFrame({"trial_id": ["a", "b"], "eps_record_max": [1.0, 1.0], "client.lr": [0.1, 0.1],
                           "status": ["TERMINATED", "ERROR"]})

    assert trial_labels(trials) == {"a": "a", "b": "b (ERROR)"}


def test_empty_rounds_table_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="rounds table is empty"):
        plot_rounds(pd.DataFrame(), tmp_path / "r.png")


def test_a_failed_trial_is_not_taken_for_the_baseline():
    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "eps_record_max": [1.0, math.nan, math.inf],
                           "eps_client": [math.inf, math.nan, math.inf], "client.noise_multiplier": [1.0, 2.0, 0.0],
                           "status": ["TERMINATED", "ERROR", "TERMINATED"]})

    assert trial_labels(trials) == {"a": "σ=1", "b": "σ=2 (ERROR)", "c": "baseline (non-private)"}


def test_each_sweeps_front_is_chosen_on_validation(tmp_path):
    """Flip one trial's validation accuracy below its neighbour's: it leaves the front, whatever its test says."""
    path = write_sweep(tmp_path / "a", [1.0, 1.0])  # two trials at the same epsilon
    trials = pd.read_parquet(path / "trials.parquet")
    trials.loc[trials["trial_id"] == "t0", ["val_accuracy", "test_accuracy"]] = [0.50, 0.99]
    trials.loc[trials["trial_id"] == "t1", ["val_accuracy", "test_accuracy"]] = [0.60, 0.10]
    trials.to_parquet(path / "trials.parquet", index=False)

    table = joined_table(load_sweeps([path])).set_index("trial_id")

    assert table.loc["t1", "frontier"] == "record" and table.loc["t0", "frontier"] == ""


@pytest.mark.parametrize("command", ["compare", "frontier"])
def test_a_sweep_without_validation_accuracy_is_refused_with_one_line(command, tmp_path, capsys):
    path = write_sweep(tmp_path / "old", [1.0, 2.0])
    trials = pd.read_parquet(path / "trials.parquet").drop(columns=["val_accuracy"])
    trials.to_parquet(path / "trials.parquet", index=False)

    assert main([command, str(path)] + (["--out", str(tmp_path / "c")] if command == "compare" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chosen on the test set over-states utility" in err[0], err
