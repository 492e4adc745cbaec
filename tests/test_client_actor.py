"""The client actor as a plain object (no Ray): a client's failure is its own, never its neighbour's."""

import time

import numpy as np
import pytest

from actors.client import ClientActor, initial_weights
from orchestrator.resolve import resolve_config
from privacy.mechanisms.client_level import ClipStep
from privacy.config.experiment import load_config


@pytest.fixture(scope="module")
def actor_and_weights():
    plan = resolve_config(load_config(overrides=["data.dataset=digits", "data.num_clients=4", "client.num_actors=2",
                                                 "server.clients_per_round=4", "run.noise_seed=2"]),
                          capacity=(2.0, 0.0))
    shards = plan.actor_shards()[0]  # clients 0 and 2
    c, h, _ = plan.image_shape
    return ClientActor(plan.config, shards), initial_weights(plan.config, c, plan.num_classes, h)


def test_a_slow_client_fails_alone_within_its_share_of_the_round(actor_and_weights, monkeypatch):
    actor, w = actor_and_weights
    alone = actor.train(w, [2], 0, ClipStep(1.0))
    real_step = actor.trainer._bookkeeping_step

    def slow_for_client_0(xb, yb, gen):  # client 0's steps take 0.2 s each (a large shard, a slow disk, ...)
        if actor._current == 0:
            time.sleep(0.2)
        return real_step(xb, yb, gen)

    real_train_one = actor._train_one

    def tagged(start, cid, *args):
        actor._current = cid
        return real_train_one(start, cid, *args)

    monkeypatch.setattr(actor.trainer, "_bookkeeping_step", slow_for_client_0)
    monkeypatch.setattr(actor, "_train_one", tagged)

    update = actor.train(w, [0, 2], 0, ClipStep(1.0), time_budget=2.0)  # 1 s each; client 0 needs ~2.2 s

    by_id = {r.client_id: r for r in update.reports}
    assert "round_timeout" in by_id[0].error
    assert by_id[2].error == ""
    np.testing.assert_array_equal(update.delta_sum, alone.delta_sum)  # client 2's update, exactly, and nothing else
