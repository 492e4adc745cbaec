"""The validation split: held out of the training pool before partitioning, no client's and not the test set;
its records move no client's data; val_accuracy is the final model's accuracy on exactly those records."""

import dataclasses

import numpy as np
import pytest
import torch

from actors.data import load_dataset, stratified_split
from actors.holdout import holdout, validation_size
from orchestrator.cli import main
from orchestrator.resolve import resolve_config
from privacy.config.experiment import load_config
from privacy.seeding import SPLIT, numpy_rng

DIGITS = ["data.dataset=digits", "data.num_clients=6", "server.clients_per_round=3", "data.partition=dirichlet"]


def resolved(*overrides):
    return resolve_config(load_config(overrides=DIGITS + list(overrides)), capacity=(1.0, 0.0))


@pytest.mark.parametrize("validation,expected", [(0.1, 144), (200, 200), (0, 0)])
def test_the_validation_records_are_no_clients_and_not_the_test_sets(validation, expected):
    plan = resolved(f"data.validation={validation}")
    data = load_dataset("digits")
    pool, rows = holdout(len(data.y_train), validation, 0)

    shards = np.concatenate(plan.partition.indices)
    assert len(rows) == expected == plan.n_validation and plan.n_train == len(data.y_train) - expected
    assert np.intersect1d(shards, rows).size == 0  # in no client's shard
    assert np.array_equal(np.sort(shards), pool)  # the clients hold the whole pool, once
    # digits has no test split of its own: the stratified split's train rows, then validation among them
    from sklearn.datasets import load_digits

    train, test = stratified_split(load_digits().target, 0.2, 0)
    assert np.intersect1d(train[rows], test).size == 0


def test_the_rows_are_drawn_from_the_seed_and_the_count_alone():
    rows = holdout(1000, 0.1, seed=7)[1]
    independent = np.sort(numpy_rng(7, SPLIT, 1).permutation(1000)[:100])

    assert np.array_equal(rows, independent)
    assert not np.array_equal(rows, holdout(1000, 0.1, seed=8)[1])
    assert validation_size(1000, 0.25) == 250 and validation_size(1000, 37) == 37


def test_what_a_validation_record_holds_moves_no_clients_data(monkeypatch):
    """Change every validation record's label and pixels: the same clients get the same records, bit for bit."""
    import orchestrator.resolve as resolve

    plan = resolved()
    data = load_dataset("digits")
    _, rows = holdout(len(data.y_train), 0.1, 0)
    y, x = data.y_train.copy(), data.x_train.copy()
    y[rows] = (y[rows] + 3) % 10
    x[rows] = 1.0 - x[rows]
    changed = dataclasses.replace(data, x_train=x, y_train=y)
    monkeypatch.setattr(resolve, "load_data", lambda cfg: changed)

    other = resolve_config(load_config(overrides=DIGITS), capacity=(1.0, 0.0))

    for a, b in zip(plan.partition.indices, other.partition.indices):
        assert np.array_equal(a, b)
        assert np.array_equal(data.x_train[a], changed.x_train[a]) and np.array_equal(data.y_train[a], y[b])


def test_a_validation_set_that_leaves_no_training_pool_is_one_line(tmp_path, capsys):
    code = main(["run", "--set", "data.dataset=digits", "--set", "data.validation=1438", "--out", str(tmp_path / "o")])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds out 1438 of 1438 training records" in err[0], err


def test_a_medmnist_file_keeps_its_own_validation_split(breastmnist_path):
    plan = resolve_config(load_config(overrides=["data.dataset=npz", f"data.root={breastmnist_path}",
                                                 "data.num_clients=4", "server.clients_per_round=2"]),
                          capacity=(1.0, 0.0))
    with np.load(breastmnist_path) as f:
        n_train, n_val = len(f["train_labels"]), len(f["val_labels"])

    assert (plan.n_train, plan.n_validation) == (n_train, n_val)
    assert np.concatenate(plan.partition.indices).max() < n_train  # the file's val rows follow its train rows
    without = resolve_config(plan.config.replace(data={"validation": 0}), capacity=(1.0, 0.0))
    assert (without.n_train, without.n_validation) == (n_train, 0)  # never pooled, even when unused


def test_val_accuracy_is_the_final_models_accuracy_on_the_validation_records(ray_local):
    import ray

    from actors.models import build_model
    from orchestrator.federation import Federation
    from orchestrator.round_loop import run_rounds

    plan = resolved("server.rounds=2", "client.num_actors=1", "run.noise_seed=1")
    fed = Federation(plan).start()
    try:
        rows = run_rounds(fed, plan.config, on_row=lambda row, ckpt: None)
        weights = torch.from_numpy(np.array(ray.get(fed.server.get_weights.remote())))
    finally:
        fed.close()

    data = load_dataset("digits")
    rows_val = np.sort(numpy_rng(0, SPLIT, 1).permutation(len(data.y_train))[:144])
    x, y = data.tensors("train", rows_val)
    c, h, _ = data.shape
    model = build_model(plan.config.model.name, in_channels=c, num_classes=10, image_size=h, seed=0)
    torch.nn.utils.vector_to_parameters(weights, model.parameters())
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    assert rows[-1]["val_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert np.isfinite(rows[-1]["val_loss"]) and rows[-1]["val_accuracy"] != rows[-1]["test_accuracy"]


@pytest.mark.parametrize("over,key", [
    (["data.validation=0"], "data.validation = 0"),
    (['sweep.grid={"data.split_seed"=[0, 1]}'], "sweep.grid.data.split_seed"),  # another split per trial
    (['sweep.grid={"data.test_fraction"=[0.2, 0.3]}'], "sweep.grid.data.test_fraction"),
    (['sweep.baseline_set={"data.validation"=0.2}'], "sweep.grid.data.validation"),
    (['sweep.grid={"run.noise_seed"=[1, 2]}'], "sweep.grid.run.noise_seed"),
])
def test_a_sweep_refuses_to_choose_on_the_test_set_or_on_another_trials_records(over, key):
    from orchestrator.sweep_config import load_sweep_config
    from privacy.config.experiment import ConfigError

    with pytest.raises(ConfigError) as err:
        load_sweep_config(None, DIGITS + over)
    assert str(err.value).startswith(key)


def test_a_validation_fraction_that_rounds_to_no_record_is_refused():
    with pytest.raises(ValueError, match="holds out no record"):
        holdout(1000, 0.0004, 0)
