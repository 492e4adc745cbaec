"""The server's record-level bookkeeping (privacy/accountants/ledgers.py, guarantee.py): per-round work on the cohort
only, same numbers as recomputing all."""

import copy

import numpy as np
import pytest

from orchestrator.resolve import resolve_config
from privacy.accountants.accounting import epsilon
from privacy.config.experiment import load_config
from privacy.mechanisms.choice import mechanism_for
from privacy.mechanisms.sampling import sample_cohort


@pytest.fixture(scope="module")
def server_and_plan():
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=12", "data.partition=dirichlet",
                                 "data.alpha=0.8", "server.clients_per_round=5", "server.rounds=6",
                                 "client.target_epsilon=8.0", "client.batch_size=16", "run.seed=3"])
    plan = resolve_config(cfg, capacity=(2.0, 0.0))
    server = mechanism_for(plan.config, dim=1).ledgers(plan.config, sample_rates=plan.clients.sample_rate,
                                                       steps=plan.clients.steps)
    for r in range(4):  # four rounds of Poisson cohorts booked, as the server actor books them
        server.book_cohort(sample_cohort(12, 5, scheme="poisson", seed=3, round_idx=r))
    return server, plan


def brute_force(server, plan, extra_round: bool) -> np.ndarray:
    c = plan.config.client
    out = []
    for k in range(plan.config.data.num_clients):
        hist = list(server.guarantees["record"].histories.get(k, []))
        if extra_round:
            hist.append((c.noise_multiplier, plan.clients.sample_rate[k], plan.clients.steps[k]))
        out.append(epsilon(hist, delta=c.delta, accountant=c.accountant))
    return np.array(out)


def test_cohort_updates_match_recomputing_every_client(server_and_plan):
    server, plan = server_and_plan
    record = server.guarantees["record"]
    steps_taken = np.array([sum(s for _, _, s in record.histories.get(k, ())) for k in range(12)])

    assert len(set(plan.partition.sizes)) > 3  # distinct shard sizes: distinct rates, distinct histories
    assert len(set(steps_taken)) > 2  # clients took part in different numbers of rounds
    assert np.allclose([record.epsilon(k) for k in range(12)], brute_force(server, plan, extra_round=False),
                       rtol=1e-12)
    assert np.allclose(record.planned_epsilons(), brute_force(server, plan, extra_round=True), rtol=1e-12)


def test_record_level_target_stops_at_the_worst_next_round(server_and_plan):
    server, plan = server_and_plan
    worst_next = float(brute_force(server, plan, extra_round=True).max())

    tight, loose = copy.deepcopy(server), copy.deepcopy(server)
    tight.guarantees["record"].target = worst_next * 0.99
    loose.guarantees["record"].target = worst_next * 1.01

    assert f"record-level epsilon would reach {worst_next:.4g}" in tight.budget_exceeded_next_round()
    assert loose.budget_exceeded_next_round() == ""
