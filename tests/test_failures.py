"""Fault injection on a real local Ray: dead, failing, malformed and straggling client actors.

Faults come from a test subclass of the client actor (production actors carry no fault switches);
each fires once: a marker file in a temporary folder outlives the actor process it kills."""

import math
import os
import tempfile
import time

import numpy as np
import pytest

from orchestrator.federation import Federation
from orchestrator.resolve import resolve_config
from orchestrator.round_loop import rounds_frame
from privacy.accountants.guarantee import accountant_from
from privacy.config.experiment import load_config

pytestmark = pytest.mark.slow

TEN_CLIENTS = ["data.dataset=digits", "data.num_clients=10", "server.clients_per_round=10", "server.rounds=8",
               "client.num_actors=5", "client.num_cpus=0.2", "client.lr=0.5", "client.noise_multiplier=0.7",
               "server.clip=2.0", "server.noise_multiplier=0.02"]


def faulty_client_class(faults, marker_dir: str):
    """A ClientActor that misbehaves once in round r on actor a, for each (a, r, kind, seconds) in ``faults``:
    ``exit`` kills the process, ``raise`` fails the call, ``nan``/``shape`` return a malformed sum,
    ``sleep`` straggles. Actor a hosts clients a, a + A, ... (round robin), so its first client is a."""
    from actors.client import ClientActor

    class FaultyClientActor(ClientActor):
        def train(self, weights, client_ids, round_idx, step, time_budget=0.0):
            actor = min(self.shards)
            for a, r, kind, seconds in faults:
                marker = os.path.join(marker_dir, f"{a}-{r}-{kind}")
                if a != actor or r != round_idx or os.path.exists(marker):
                    continue
                open(marker, "w").close()
                if kind.startswith("exit"):  # exit, exit2: a second death in the same round
                    os._exit(1)
                if kind == "raise":
                    raise RuntimeError("injected failure")
                if kind == "sleep":
                    time.sleep(seconds)
                update = super().train(weights, client_ids, round_idx, step, time_budget)
                if kind == "nan":
                    update.delta_sum[0] = np.nan
                if kind == "shape":
                    update.delta_sum = update.delta_sum[:-1]
                return update
            return super().train(weights, client_ids, round_idx, step, time_budget)

    return FaultyClientActor


def run(overrides, faults=(), rounds=None):
    """Run with ``faults`` = [(actor, round, kind, seconds)]; return (round table, per-client record eps)."""
    cfg = load_config(overrides=[*overrides, "run.noise_seed=1"])
    if rounds:
        cfg = cfg.replace(server={"rounds": rounds})
    plan = resolve_config(cfg)
    fed = Federation(plan, client_cls=faulty_client_class(list(faults), tempfile.mkdtemp())).start()
    try:
        rows = [fed.step(r) for r in range(plan.config.server.rounds)]
        record = fed.state_dict()["guarantees"]["record"]
    finally:
        fed.close()
    accountant = accountant_from(record["accountant"])
    eps = np.array([accountant.epsilon(accountant.merge(record["histories"].get(str(k), [])), plan.config.client.delta)
                    for k in range(plan.config.data.num_clients)])
    return rounds_frame(rows), eps


@pytest.fixture(scope="module")
def clean_and_killed(ray_local):
    kills = [(r, r, "exit", 0.0) for r in range(5)]  # actor r dies in round r, for rounds 0..4
    return run(TEN_CLIENTS), run(TEN_CLIENTS, kills)


def test_a_killed_actors_clients_are_retried_once_within_the_round(clean_and_killed):
    (clean, _), (killed, _) = clean_and_killed

    assert list(killed["clients_retried"]) == [2, 2, 2, 2, 2, 0, 0, 0]  # two clients per actor
    assert (killed["clients_failed"] == 0).all() and (clean["clients_retried"] == 0).all()
    assert len(killed) == 8 and np.isfinite(killed["test_accuracy"]).all()


def test_a_retried_round_releases_what_the_clean_run_released(clean_and_killed):
    (clean, _), (killed, _) = clean_and_killed

    # a client's update is a function of (weights, client, round, noise seed): the retry recomputes it exactly
    np.testing.assert_allclose(killed["update_norm"], clean["update_norm"], rtol=1e-5)


def test_an_actor_that_dies_twice_in_a_round_fails_its_clients_for_that_round(ray_local):
    table, _ = run(TEN_CLIENTS, [(1, 1, "exit", 0.0), (1, 1, "exit2", 0.0)], rounds=3)

    assert list(table["clients_failed"]) == [0, 2, 0]
    assert list(table["clients_retried"]) == [0, 2, 0]
    assert "died" in table["failures"].iloc[1]


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


@pytest.mark.parametrize("in_driver", [False, True])
def test_data_missing_on_an_actors_node_is_one_config_error_naming_the_node(ray_local, tmp_path, in_driver):
    import socket

    from actors.data import load_dataset
    from privacy.config.experiment import ConfigError

    digits = load_dataset("digits")
    path = tmp_path / "digits.npz"
    np.savez(path, train_images=(digits.x_train[:, 0] * 255).astype(np.uint8), train_labels=digits.y_train,
             test_images=(digits.x_test[:, 0] * 255).astype(np.uint8), test_labels=digits.y_test)
    plan = resolve_config(load_config(overrides=["data.dataset=npz", f"data.root={path}", "data.num_clients=4",
                                                 "server.clients_per_round=4", "client.num_actors=2",
                                                 "client.num_cpus=0.5", "model.name=digits_cnn",
                                                 f"server.in_driver={str(in_driver).lower()}"]))
    path.unlink()  # the driver read it; the actors' node no longer has it

    with pytest.raises(ConfigError, match=f"on node {socket.gethostname()}.*not found"):
        Federation(plan).start()
