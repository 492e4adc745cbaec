"""Fault injection on a real local Ray: dead, failing, malformed and straggling client actors."""

import math

import numpy as np
import pytest

from privacy.accounting import Ledger
from privacy.config import load_config
from orchestrator.federation import Federation, rounds_frame
from orchestrator.resolve import resolve_config

pytestmark = pytest.mark.slow

TEN_CLIENTS = ["data.dataset=digits", "data.num_clients=10", "server.clients_per_round=10", "server.rounds=8",
               "client.num_actors=5", "client.num_cpus=0.2", "client.lr=0.5", "client.noise_multiplier=0.7",
               "server.clip=2.0", "server.noise_multiplier=0.02"]


def run(overrides, faults=(), rounds=None):
    """Run with ``faults`` = [(actor, round, kind, seconds)]; return (round table, per-client record eps)."""
    import ray

    cfg = load_config(overrides=overrides)
    if rounds:
        cfg = cfg.replace(server={"rounds": rounds})
    plan = resolve_config(cfg)
    fed = Federation(plan).start()
    try:
        ray.get([fed.clients[a].inject_fault.remote(r, kind, seconds) for a, r, kind, seconds in faults])
        rows = [fed.step(r) for r in range(plan.config.server.rounds)]
        ledger = Ledger.from_state_dict(fed.state_dict()["record"])
    finally:
        fed.close()
    eps = np.array([ledger.epsilon(k, delta=plan.config.client.delta) for k in range(plan.config.data.num_clients)])
    return rounds_frame(rows, plan.config), eps


@pytest.fixture(scope="module")
def clean_and_killed(ray_local):
    kills = [(r, r, "exit", 0.0) for r in range(5)]  # actor r dies in round r, for rounds 0..4
    return run(TEN_CLIENTS), run(TEN_CLIENTS, kills)


def test_killed_actors_fail_their_clients_for_that_round_only(clean_and_killed):
    _, (killed, _) = clean_and_killed

    assert list(killed["clients_failed"]) == [2, 2, 2, 2, 2, 0, 0, 0]  # two clients per actor
    assert all("failed" in f for f in killed["failures"].iloc[:5])
    assert len(killed) == 8 and np.isfinite(killed["test_accuracy"]).all()


def test_accuracy_stays_within_one_point_of_the_clean_run(clean_and_killed):
    (clean, _), (killed, _) = clean_and_killed

    diff = abs(killed["test_accuracy"].iloc[-1] - clean["test_accuracy"].iloc[-1])

    print(f"final accuracy clean {clean['test_accuracy'].iloc[-1]:.4f} killed {killed['test_accuracy'].iloc[-1]:.4f}")
    assert diff <= 0.01


def test_killed_clients_epsilons_are_not_under_reported(clean_and_killed):
    (clean, clean_eps), (killed, killed_eps) = clean_and_killed

    assert np.all(killed_eps >= clean_eps - 1e-12)  # a crashed client's DP-SGD steps stay booked
    assert killed["eps_record_max"].iloc[-1] >= clean["eps_record_max"].iloc[-1] - 1e-12
    assert killed["eps_client"].iloc[-1] == pytest.approx(clean["eps_client"].iloc[-1])


def test_malformed_updates_are_rejected_and_the_model_stays_finite(ray_local):
    faults = [(0, 1, "nan", 0.0), (1, 2, "shape", 0.0), (2, 3, "raise", 0.0)]

    table, _ = run(TEN_CLIENTS, faults, rounds=4)

    assert list(table["clients_failed"]) == [0, 2, 2, 2]
    assert "non-finite" in table["failures"].iloc[1]
    assert "malformed" in table["failures"].iloc[2]
    assert "injected failure" in table["failures"].iloc[3]
    assert np.isfinite(table["test_loss"]).all() and (table["test_accuracy"] > 0.1).all()


def test_straggler_past_the_round_timeout_counts_as_failed(ray_local):
    overrides = TEN_CLIENTS + ["server.round_timeout=20"]

    table, _ = run(overrides, [(4, 1, "sleep", 120.0)], rounds=3)

    assert list(table["clients_failed"]) == [0, 2, 0]
    assert "straggled" in table["failures"].iloc[1]
    assert table["seconds"].iloc[1] < 60
    assert not math.isnan(table["test_accuracy"].iloc[-1])
