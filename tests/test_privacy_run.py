"""Privacy features end to end on a real local Ray: adaptive clipping, the accountants named in the config."""

import math

import numpy as np
import pytest

from orchestrator.accounting import epsilon
from orchestrator.config import load_config
from orchestrator.federation import run_federated

pytestmark = pytest.mark.slow

ADAPTIVE = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "server.rounds=4",
            "client.num_actors=2", "client.num_cpus=0.5", "client.lr=0.5", "client.noise_multiplier=0.8",
            "client.accountant=prv", "server.accountant=pld", "server.adaptive_clip=true",
            "server.noise_multiplier=0.5", "server.clip_count_std=1.0", "server.initial_clip=0.1"]


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

    # every digits client holds 359 or 360 records; batch 32 -> rate 32/n, round(n/32) steps a round
    worst_prv = max(epsilon([(0.8, 32 / n, 4 * round(n / 32))], delta=last["delta_record"], accountant="prv")
                    for n in (359, 360))
    worst_rdp = max(epsilon([(0.8, 32 / n, 4 * round(n / 32))], delta=last["delta_record"], accountant="rdp")
                    for n in (359, 360))
    assert last["eps_record_max"] == pytest.approx(worst_prv, rel=1e-6)
    assert last["eps_record_max"] < worst_rdp  # a different number: the accountant really changed
    assert last["eps_client"] < epsilon([(0.5, 1.0, 4)], delta=last["delta_client"], accountant="rdp")
    assert math.isfinite(last["test_accuracy"])
