"""The golden comparison itself (tests/golden_tables.py): it lets another CPU's float kernels through and
catches a real change -- an epsilon beyond its last bits, a count or a config value that moves at all, a
training column that moves beyond its stated tolerance. Ray-free, on the golden files themselves."""

from pathlib import Path

import pandas as pd
import pytest

from tests.golden_tables import TRAINING_COLUMNS, assert_matches_golden, perturbed

GOLDEN = Path(__file__).parent / "golden"
N_TEST = 359  # the digits test split of the golden configs


@pytest.fixture(params=["adaptive", "fixed"])
def golden(request):
    return pd.read_parquet(GOLDEN / f"{request.param}.parquet")


def test_a_table_matches_itself_and_one_perturbed_within_the_tolerances(golden):
    assert_matches_golden(golden, golden, n_test=N_TEST)
    for seed in range(3):
        assert_matches_golden(perturbed(golden, n_test=N_TEST, fraction=0.9, seed=seed), golden, n_test=N_TEST)


MEASURED = [(name, column) for name in ("adaptive", "fixed") for column in sorted(TRAINING_COLUMNS)
            if pd.read_parquet(GOLDEN / f"{name}.parquet").get(column, pd.Series(dtype=float)).notna().any()]


@pytest.mark.parametrize("name,column", MEASURED)
def test_a_training_column_beyond_its_tolerance_fails(name, column):
    golden = pd.read_parquet(GOLDEN / f"{name}.parquet")
    moved = perturbed(golden, n_test=N_TEST, fraction=0.0)
    moved[column] = perturbed(golden, n_test=N_TEST, fraction=1.5)[column]

    with pytest.raises(AssertionError, match=column):
        assert_matches_golden(moved, golden, n_test=N_TEST)


LEDGER_COLUMNS = ["eps_record_max", "eps_record_median", "eps_client", "delta_client", "noise_multiplier_delta"]


@pytest.mark.parametrize("column", LEDGER_COLUMNS)
def test_an_epsilon_or_a_noise_value_that_moves_beyond_its_last_bits_fails(golden, column):
    """The ledgers' floats may differ in their last bits between CPUs (library kernels), and no more."""
    assert golden[column].notna().any()
    for change, fails in ((1 + 1e-13, False), (1 - 1e-13, False), (1 + 1e-8, True), (1 - 1e-8, True)):
        moved = golden.copy()
        moved.loc[moved.index[-1], column] *= change
        if fails:
            with pytest.raises(AssertionError, match=column):
                assert_matches_golden(moved, golden, n_test=N_TEST)
        else:
            assert_matches_golden(moved, golden, n_test=N_TEST)


@pytest.mark.parametrize("column", ["clients_sampled", "clients_failed", "canaries_in_round", "server.rounds",
                                    "server.clip"])
def test_a_count_or_a_config_value_that_changes_fails(golden, column):
    moved = golden.copy()
    moved.loc[moved.index[0], column] += 1 if column != "server.clip" else 1e-12  # a float config value: exact

    with pytest.raises(AssertionError, match=column):
        assert_matches_golden(moved, golden, n_test=N_TEST)


@pytest.mark.parametrize("column", ["val_accuracy", "val_loss"])
def test_the_validation_columns_have_the_tolerances_of_the_test_ones(column):
    """Validation accuracy and loss come out of the same float kernels as the test ones: another CPU may move
    them as far (a few validation images, 1e-3 relative), and no further."""
    from orchestrator.resolve import resolve_config
    from privacy.config.experiment import load_config
    from tests.test_golden import SECURE_CONFIGS

    golden = pd.read_parquet(GOLDEN / "secagg_client.parquet")
    plan = resolve_config(load_config(overrides=SECURE_CONFIGS["secagg_client"]), capacity=(2.0, 0.0))
    sizes = dict(n_test=plan.n_test, n_validation=plan.n_validation)
    assert plan.n_validation > 0 and golden[column].notna().all()
    for fraction, fails in ((0.9, False), (1.5, True)):
        moved = golden.copy()
        moved[column] = perturbed(golden, fraction=fraction, **sizes)[column]
        if fails:
            with pytest.raises(AssertionError, match=column):
                assert_matches_golden(moved, golden, **sizes)
        else:
            assert_matches_golden(moved, golden, **sizes)
