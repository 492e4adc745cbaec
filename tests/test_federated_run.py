"""End to end on a real local Ray: client actors running Opacus, a server actor running DP-FedAvg."""

import math

import numpy as np
import pandas as pd
import pytest

from privacy.config.experiment import load_config
from orchestrator.federation import TIMING_COLUMNS, run_federated

pytestmark = pytest.mark.slow

SCHEMA = ["round", "test_accuracy", "test_loss", "train_loss", "eps_record_max", "eps_record_median",
          "delta_record", "eps_client", "delta_client", "clients_sampled", "clients_failed",
          "noise_multiplier_local", "max_grad_norm_local", "noise_multiplier_server", "clip_server", "seconds"]
TIMING = list(TIMING_COLUMNS)

DIGITS_4_ACTORS = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "server.rounds=3",
                   "client.num_actors=4", "client.num_cpus=0.5", "client.lr=0.5", "client.batch_size=32",
                   "client.noise_multiplier=0.8", "server.clip=2.0", "server.noise_multiplier=0.05",
                   "run.noise_seed=11", "client.accountant=rdp", "server.accountant=rdp"]


@pytest.fixture(scope="module")
def digits_tables(ray_local):
    cfg = load_config(overrides=DIGITS_4_ACTORS)
    return run_federated(cfg, progress=None), run_federated(cfg, progress=None)


@pytest.fixture(scope="module")
def fresh_noise_table(ray_local):
    """The same config without a noise seed: the run draws its own."""
    return run_federated(load_config(overrides=[o for o in DIGITS_4_ACTORS if not o.startswith("run.noise_seed")]), progress=None)


def test_run_completes_with_the_schema_and_config_columns(digits_tables):
    df, _ = digits_tables

    assert list(df["round"]) == [1, 2, 3]
    assert set(SCHEMA) <= set(df.columns)
    assert {"data.dataset", "client.noise_multiplier", "server.clip", "run.seed"} <= set(df.columns)
    assert (df["clients_failed"] == 0).all()
    assert df["client.num_actors"].iloc[0] == 4


def test_accuracy_beats_chance(digits_tables):
    df, _ = digits_tables

    assert df["test_accuracy"].iloc[-1] > 0.3  # 10 classes: chance is 0.1


def test_both_epsilons_are_finite_positive_and_non_decreasing(digits_tables):
    df, _ = digits_tables

    for col in ("eps_record_max", "eps_record_median", "eps_client"):
        values = df[col].to_numpy()
        assert np.all(np.isfinite(values)) and np.all(values > 0)
        assert np.all(np.diff(values) >= 0), col
    assert (df["eps_record_median"] <= df["eps_record_max"]).all()


def test_same_seeds_give_the_same_table(digits_tables):
    a, b = digits_tables

    pd.testing.assert_frame_equal(a.drop(columns=TIMING), b.drop(columns=TIMING))


def test_a_server_in_the_driver_process_gives_the_server_actors_table(digits_tables, ray_local):
    """server.in_driver only moves the server into the driver's process: the same seeds, the same table."""
    table = run_federated(load_config(overrides=DIGITS_4_ACTORS + ["server.in_driver=true"]), progress=None)

    a = digits_tables[0].drop(columns=TIMING + ["server.in_driver"])
    assert table["server.in_driver"].all() and not digits_tables[0]["server.in_driver"].any()
    pd.testing.assert_frame_equal(table.drop(columns=TIMING + ["server.in_driver"]), a)


def test_a_run_without_a_noise_seed_draws_fresh_noise_and_no_table_holds_a_seed(digits_tables, fresh_noise_table):
    seeded, fresh = digits_tables[0], fresh_noise_table

    assert "run.noise_seed" not in seeded.columns and "run.noise_seed" not in fresh.columns  # secrets.json only
    assert not np.allclose(seeded["update_norm"], fresh["update_norm"])  # other cohort batches and noise
    assert (seeded["eps_record_max"] == fresh["eps_record_max"]).all()  # same mechanism, same guarantee


def test_reported_epsilons_are_the_accountants_of_what_ran(digits_tables):
    from privacy.accountants.accounting import epsilon

    df, _ = digits_tables
    last = df.iloc[-1]

    q = 4 / 4  # every client every round
    assert last["eps_client"] == pytest.approx(epsilon([(0.05, q, 3)], delta=last["delta_client"], accountant="rdp"))
    # the pool is 1,438 digits training records less 144 (10 %) held out for validation: every client holds 323
    # or 324 of its 1,294; batch 32 -> Poisson rate 32/n, round(n/32) steps a round
    worst = max(epsilon([(0.8, 32 / n, 3 * round(n / 32))], delta=last["delta_record"], accountant="rdp") for n in (323, 324))
    assert last["eps_record_max"] == pytest.approx(worst, rel=1e-6)


def test_server_noise_on_zero_deltas_has_std_z_clip_over_m(ray_local):
    """Clients that cannot move (lr ~ 0) send zero deltas: the update is the server noise alone,
    whose per-coordinate std must be z * S / m with m the expected cohort."""
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=6", "server.clients_per_round=3",
                                 "server.rounds=1", "client.num_actors=1", "client.dp=false", "client.lr=1e-30",
                                 "server.clip=0.5", "server.noise_multiplier=1.5", "run.eval_every=1",
                                 "run.noise_seed=0"])

    row = run_federated(cfg, progress=None).iloc[0]

    n_params = 6186  # digits_cnn
    expected = 1.5 * 0.5 / 3
    empirical = row["update_norm"] / math.sqrt(n_params)  # ||N(0, s^2 I_P)|| / sqrt(P) -> s
    assert abs(empirical - expected) < 3 * expected / math.sqrt(2 * n_params)


def test_non_private_baseline_reports_infinite_epsilons(ray_local):
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4",
                                 "server.rounds=2", "client.num_actors=2", "client.dp=false", "run.noise_seed=0"])

    df = run_federated(cfg, progress=None)

    assert (df["eps_record_max"] == math.inf).all() and (df["eps_client"] == math.inf).all()
    assert df["test_accuracy"].iloc[-1] > 0.5
