"""Privacy features end to end on a real local Ray: adaptive clipping, the accountants named in the config."""

import math

import numpy as np
import pytest

from privacy.accountants.accounting import epsilon
from privacy.config.experiment import load_config
from orchestrator.federation import run_federated

pytestmark = pytest.mark.slow

ADAPTIVE = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "server.rounds=4",
            "client.num_actors=2", "client.num_cpus=0.5", "client.lr=0.5", "client.noise_multiplier=0.8",
            "client.accountant=prv", "server.accountant=pld", "server.adaptive_clip=true",
            "server.noise_multiplier=0.5", "server.clip_count_std=1.0", "server.initial_clip=0.1",
            "run.noise_seed=0"]


@pytest.fixture(scope="module")
def adaptive_table(ray_local):
    return run_federated(load_config(overrides=ADAPTIVE), progress=None)


def test_adaptive_clip_follows_the_noised_bit_share(adaptive_table):
    df = adaptive_table
    clips, shares = df["clip_server"].to_numpy(), df["unclipped_fraction_noised"].to_numpy()

    assert clips[0] == 0.1  # S_0
    assert np.all(np.isfinite(shares))
    np.testing.assert_allclose(clips[1:], clips[:-1] * np.exp(-0.2 * (shares[:-1] - 0.5)), rtol=1e-9)
    assert clips[-1] > clips[0]  # real digit deltas are far longer than 0.1: the clip must grow


def test_adaptive_run_splits_the_noise_and_books_the_composed_multiplier(adaptive_table):
    df = adaptive_table
    last = df.iloc[-1]
    sigma_delta = (0.5 ** -2 - (2 * 1.0) ** -2) ** -0.5

    assert (df["noise_multiplier_server"] == 0.5).all()
    assert df["noise_multiplier_delta"].to_numpy() == pytest.approx(sigma_delta)
    np.testing.assert_allclose(df["server_noise_std"], sigma_delta * df["clip_server"] / 4, rtol=1e-9)
    assert last["eps_client"] == pytest.approx(epsilon([(0.5, 1.0, 4)], delta=last["delta_client"],
                                                       accountant="pld"))


def test_each_level_reports_with_its_configured_accountant(adaptive_table):
    last = adaptive_table.iloc[-1]

    # every digits client holds 323 or 324 of the 1,294 pooled records (144 held out for validation);
    # batch 32 -> rate 32/n, round(n/32) steps a round
    worst_prv = max(epsilon([(0.8, 32 / n, 4 * round(n / 32))], delta=last["delta_record"], accountant="prv")
                    for n in (323, 324))
    worst_rdp = max(epsilon([(0.8, 32 / n, 4 * round(n / 32))], delta=last["delta_record"], accountant="rdp")
                    for n in (323, 324))
    assert last["eps_record_max"] == pytest.approx(worst_prv, rel=1e-6)
    assert last["eps_record_max"] < worst_rdp  # a different number: the accountant really changed
    assert last["eps_client"] < epsilon([(0.5, 1.0, 4)], delta=last["delta_client"], accountant="rdp")
    assert math.isfinite(last["test_accuracy"])


# The audit pair: one claimed guarantee (z = 5, q = 1, T = 3, delta = 1e-6: eps_client 1.62 by RDP), run once
# as built and once with the server's noise removed while the ledger still books z.
AUDITED = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "server.rounds=3",
           "client.num_actors=2", "client.num_cpus=0.5", "client.lr=0.5", "client.dp=false",
           "server.clip=1.0", "server.noise_multiplier=5.0", "server.delta=1e-6", "audit.canaries=1000",
           "server.accountant=rdp", "run.noise_seed=0"]


@pytest.fixture(scope="module")
def audited_run(ray_local):
    """A correct run through the round loop, with the audit also asked for mid-run (after round 1)."""
    from orchestrator.federation import Federation
    from orchestrator.resolve import resolve_config
    from orchestrator.round_loop import rounds_frame, run_rounds

    plan = resolve_config(load_config(overrides=AUDITED))
    fed = Federation(plan).start()
    mid_run = {}
    try:
        rows = run_rounds(fed, plan.config, on_row=lambda row, _: row["round"] == 1 and mid_run.update(
            fed.final_columns()))
    finally:
        fed.close()
    return rounds_frame(rows), mid_run


@pytest.fixture(scope="module")
def broken_run(ray_local):
    """A deliberate privacy bug: the deltas get no noise while the ledger still books z."""
    from orchestrator.resolve import resolve_config
    from privacy.mechanisms.client_level import CentralGaussianMechanism

    class DropsItsNoise(CentralGaussianMechanism):
        def __init__(self, server, *, noise_seed):
            super().__init__(server, noise_seed=noise_seed)
            self.delta_multiplier = 0.0

    plan = resolve_config(load_config(overrides=AUDITED))
    mechanism = DropsItsNoise(plan.config.server, noise_seed=plan.config.run.noise_seed)
    return run_federated(plan.config, plan=plan, progress=None, mechanism=mechanism)


def test_audit_lower_bound_stays_below_the_claimed_epsilon_on_a_correct_run(audited_run):
    df, _ = audited_run
    last = df.iloc[-1]

    assert last["eps_client"] == pytest.approx(epsilon([(5.0, 1.0, 3)], delta=1e-6, accountant="rdp"))  # canaries change no booking
    assert last["audit_delta"] == 1e-6  # small enough already: audited at the claim's own delta
    assert last["eps_client_at_audit_delta"] == last["eps_client"]
    assert last["audit_guesses"] > 0
    assert 0 <= last["eps_audit_lower"] <= last["eps_client_at_audit_delta"]


def test_audit_catches_a_mechanism_that_drops_its_noise(audited_run, broken_run):
    claimed = audited_run[0].iloc[-1]["eps_client_at_audit_delta"]
    last = broken_run.iloc[-1]

    assert last["eps_client_at_audit_delta"] == claimed  # the broken run claims the same guarantee ...
    assert (broken_run["server_noise_std"] == 0).all()
    assert last["eps_audit_lower"] > claimed  # ... and the audit proves, at 95 %, that it does not hold
    assert last["audit_correct"] == last["audit_guesses"]


def test_canaries_join_every_round_at_the_clients_rate(audited_run):
    df, _ = audited_run

    # q = 1: every included canary takes part in every round, about half of the 1000
    assert df["canaries_in_round"].nunique() == 1
    assert 400 < df["canaries_in_round"].iloc[0] < 600


def test_audit_columns_are_filled_for_the_final_model_only(audited_run):
    df, mid_run = audited_run

    for col in ("eps_audit_lower", "audit_guesses", "mia_auc", "mia_auc_bound"):
        assert df[col].iloc[:-1].isna().all(), col
        assert np.isfinite(df[col].iloc[-1]), col
    assert all(np.isfinite(v) for v in mid_run.values())  # asked for mid-run (a run stopped early)


def test_membership_auc_stays_under_the_bound_of_the_claimed_guarantee(audited_run):
    last = audited_run[0].iloc[-1]

    assert 0 <= last["mia_auc"] <= 1
    assert 0.5 <= last["mia_auc_bound"] < 1  # client-level z = 5 read for one record: a real bound
    assert last["mia_auc"] <= last["mia_auc_bound"]
