"""One ledger per guarantee (privacy/accountants/guarantee.py) against independent computations: what a party's
history composes to under each accountant, the budget's "one more round", checkpoints, and sweeps."""

import math

import numpy as np
import pytest

from privacy.accountants import accounting, skellam
from privacy.accountants.guarantee import (GaussianAccountant, GuaranteeLedger, SkellamAccountant, accountant_from,
                                           compose_across)

DELTA = 1e-5
G1, G2 = (1.1, 0.02, 10), (0.9, 0.05, 5)  # (z, q, steps)
S_FULL = skellam.skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=1.0)
S_SHORT = skellam.skellam_event(mu=2.5e6, l1=3e5, l2=2e3, sample_rate=1.0)


def gaussian_ledger(**kw):
    return GuaranteeLedger(GaussianAccountant("pld"), parties=4, delta=DELTA, name="record-level epsilon", **kw)


def test_a_partys_epsilon_is_its_history_composed_and_no_other_partys():
    book = gaussian_ledger()

    book.book(0, G1)
    book.book(0, G2)
    book.book(0, G1)
    alone = book.epsilon(0)
    book.book(3, G2)  # another client's round: client 0's epsilon must not move

    assert book.epsilon(0) == alone == accounting.epsilon([G1, G2, G1], delta=DELTA, accountant="pld")
    assert book.epsilon(3) == accounting.epsilon([G2], delta=DELTA, accountant="pld")
    assert book.epsilon(1) == 0.0  # never booked: nothing spent
    assert book.worst() == max(alone, book.epsilon(3))
    assert book.median() == pytest.approx(np.median([alone, 0.0, 0.0, book.epsilon(3)]))
    assert book.epsilon(0, delta=1e-3) == accounting.epsilon([G1, G1, G2], delta=1e-3, accountant="pld")


def test_one_more_round_and_the_target():
    book = gaussian_ledger(target=2.0)
    book.plan([G1] * 4)
    rounds = 0
    while not book.exceeded_next():
        book.book(2, G1)
        rounds += 1

    assert accounting.epsilon([G1] * rounds, delta=DELTA) <= 2.0 < accounting.epsilon([G1] * (rounds + 1), delta=DELTA)
    assert book.planned_epsilons().tolist() == pytest.approx(
        [accounting.epsilon([G1] * (rounds + 1 if k == 2 else 1), delta=DELTA) for k in range(4)], rel=1e-12)
    assert "record-level epsilon would reach" in book.exceeded_next()


def test_against_the_server_gaussian_dp_adds_and_matches_the_composition():
    book = GuaranteeLedger(SkellamAccountant("exact", sampled=False), parties=5, delta=DELTA,
                           name="client-level epsilon against the server", target=30.0)
    book.plan([S_FULL] * 5)
    for k, events in {0: [S_FULL, S_SHORT, S_FULL], 3: [S_SHORT]}.items():
        for e in events:
            book.book(k, e)

    assert book.epsilon(0) == pytest.approx(skellam.epsilon_unsampled([S_FULL, S_SHORT, S_FULL], delta=DELTA), rel=1e-9)
    assert book.worst() == book.epsilon(0)
    assert book.worst_next() == pytest.approx(skellam.epsilon_unsampled([S_FULL] * 3 + [S_SHORT], delta=DELTA),
                                              rel=1e-9)
    assert book.worst_with({3: S_FULL, 4: S_FULL}) == pytest.approx(
        skellam.epsilon_unsampled([S_SHORT, S_FULL], delta=DELTA), rel=1e-9)
    assert book.planned_epsilons()[0] == pytest.approx(book.worst_next())


def test_a_checkpoint_restores_every_epsilon_bit_for_bit():
    for accountant, events in ((GaussianAccountant("rdp"), [G1, G2, G1]),
                               (SkellamAccountant("exact", "pld", sampled=False), [S_FULL, S_SHORT]),
                               (SkellamAccountant("zhu_wang", "pld"), [S_FULL[:3] + (0.1, 1), S_SHORT[:3] + (0.1, 1)])):
        book = GuaranteeLedger(accountant, parties=3, delta=DELTA, name="g", target=100.0)
        book.plan([events[0]] * 3)
        for i, e in enumerate(events):
            book.book(i % 2, e)
        restored = GuaranteeLedger(accountant_from(accountant.describe()), parties=3, delta=DELTA, name="g",
                                   target=100.0)
        restored.plan([events[0]] * 3)

        restored.load_state_dict(book.state_dict())

        assert [restored.epsilon(k) for k in range(3)] == [book.epsilon(k) for k in range(3)]
        assert restored.worst_next() == book.worst_next()
    with pytest.raises(ValueError, match="accountant"):
        gaussian_ledger().load_state_dict(book.state_dict())  # a Skellam history into a Gaussian ledger


def test_a_sweep_composes_each_partys_events_of_every_run():
    runs = []
    for events in ({0: [G1], 1: [G2, G2]}, {0: [G1, G2], 2: [G1]}):
        book = gaussian_ledger()
        for k, es in events.items():
            for e in es:
                book.book(k, e)
        runs.append(book.state_dict())

    worst = max(accounting.epsilon(h, delta=DELTA) for h in ([G1, G1, G2], [G2, G2], [G1]))
    assert compose_across(runs, delta=DELTA) == pytest.approx(worst, rel=1e-12)
    assert compose_across([], delta=DELTA) == 0.0
    other = GuaranteeLedger(GaussianAccountant("rdp"), parties=1, delta=DELTA, name="g").state_dict()
    with pytest.raises(ValueError, match="different accountants"):
        compose_across(runs + [other], delta=DELTA)


def test_no_noise_is_no_privacy():
    book = gaussian_ledger()
    book.book(1, (0.0, 0.1, 1))
    assert book.epsilon(1) == math.inf == book.worst()
