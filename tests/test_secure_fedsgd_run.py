"""Secure FedSGD (secagg.level = "record") on real Ray: a digits run over 4 silos learns, books every surviving
silo's Skellam event after each release (the table's record-level epsilon is recomputed from the mechanism of
the resolved config), reports no client-level guarantee, and is reproducible from its seeds."""

import math

import numpy as np
import pandas as pd
import pytest

from orchestrator.federation import TIMING_COLUMNS, run_federated
from orchestrator.resolve import count_parameters, resolve_config
from privacy.config.experiment import load_config
from privacy.accountants.skellam import epsilon, skellam_event
from privacy.mechanisms.distributed_dpsgd import expected_batch, from_experiment

pytestmark = pytest.mark.slow

ROUNDS = 4
RECORD = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "secagg.enabled=true",
          "secagg.level=record", "secagg.bits=24", "client.local_steps=1", f"server.rounds={ROUNDS}",
          "client.noise_multiplier=0.5", "client.max_grad_norm=0.5", "server.lr=2", "client.batch_size=128",
          "client.num_actors=2", "client.num_cpus=0.5", "audit.membership=false", "run.noise_seed=3"]


@pytest.fixture(scope="module")
def two_runs(ray_local):
    cfg = load_config(overrides=RECORD)
    return cfg, run_federated(cfg, progress=None), run_federated(cfg, progress=None)


def test_a_secure_fedsgd_run_books_every_silos_skellam_event_and_learns(two_runs):
    from actors.model_inputs import load_from_config

    cfg, df, _ = two_runs
    plan = resolve_config(cfg)  # the run's own resolution (same seeds): rebuild its mechanism
    dim = count_parameters(plan.config.model.name, load_from_config(plan.config.data))
    mech = from_experiment(plan.config, dim=dim, batch=expected_batch(plan.clients.sample_rate, plan.clients.sizes))
    delta = plan.config.client.delta

    assert list(df["round"]) == list(range(1, ROUNDS + 1))
    assert (df["secagg_survivors"] == 4).all() and (df["clients_failed"] == 0).all()
    assert (df["eps_client"] == math.inf).all()  # no client-level claim in this mode
    assert (df["delta_record"] == delta).all()
    for r, eps in zip(df["round"], df["eps_record_max"]):
        per_silo = [epsilon([skellam_event(mu=mech.mu_booked(4), l1=mech.l1, l2=mech.l2, sample_rate=q)] * r,
                            delta=delta) for q in plan.clients.sample_rate]
        assert eps == pytest.approx(max(per_silo), rel=1e-9)
    assert np.all(np.diff(df["eps_record_max"]) > 0)
    assert (df["secagg_near_edge"] == 0).all() and (df["secagg_scale"] == mech.scale).all()
    assert (df["noise_multiplier_local"] == cfg.client.noise_multiplier).all()
    assert df["test_accuracy"].iloc[-1] > 0.3  # digits, 10 classes: chance is 0.1 (about 0.5 over seeds 3-5)


def test_the_same_seeds_give_the_same_table(two_runs):
    _, a, b = two_runs
    pd.testing.assert_frame_equal(a.drop(columns=list(TIMING_COLUMNS)), b.drop(columns=list(TIMING_COLUMNS)))
