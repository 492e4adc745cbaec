"""DP-FTRL (banded matrix factorization under min_sep participation): its epsilon, calibration, noise and ledger."""

import math

import numpy as np
import pytest
import torch

from privacy.accountants.guarantee import GaussianDPAccountant, GuaranteeLedger
from privacy.config.experiment import from_dict
from privacy.mechanisms.dp_ftrl import (BandedMatrixFactorizationMechanism, calibrate_dp_ftrl, column_norms,
                                        strategy)
from privacy.mechanisms.matrix_factorization import toeplitz
from privacy.mechanisms.participation import MinSepParticipation

DELTA = 1e-5


def _cfg(**server):
    base = {"mechanism": "dp_ftrl", "participation": "min_sep", "rounds": 12, "min_separation": 3,
            "clients_per_round": 4, "noise_multiplier": 2.0, "clip": 1.0, "delta": DELTA}
    return from_dict({"server": {**base, **server}, "data": {"num_clients": 12}, "client": {"dp": False},
                      "run": {"noise_seed": 5}})


def _mechanism(cfg, dim=16):
    return BandedMatrixFactorizationMechanism(cfg.server, noise_seed=cfg.run.noise_seed, schedule_seed=cfg.run.seed,
                                              num_clients=cfg.data.num_clients, dim=dim)


def _run_ledger(cfg, mech):
    """Book every round of the schedule as the server does: plan, check, admit, book."""
    book = mech.ledgers(cfg, sample_rates=[0.1] * cfg.data.num_clients, steps=[1] * cfg.data.num_clients)
    schema = MinSepParticipation(cfg.server, cfg.data.num_clients, seed=cfg.run.seed)
    stops = []
    for t in range(cfg.server.rounds):
        stops.append(book.budget_exceeded_next_round())
        cohort = schema.cohort(t)
        book.book(mech.round_events(None, ledgers=book, admitted=cohort.ids, round_idx=t))
        mech.plan_round(book, t + 1)
    return book, stops


def _gaussian_epsilon_dp_accounting(*noise_multipliers: float, delta: float = DELTA) -> float:
    """An independent computation: dp_accounting's PLD of Gaussian mechanisms composed."""
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(z) for z in noise_multipliers]))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("rounds, b, k", [(12, 3, None), (13, 3, None), (12, 3, 2)])
def test_the_run_is_one_gaussian_mechanism_of_multiplier_z_over_the_sensitivity(rounds, b, k):
    cfg = _cfg(rounds=rounds, min_separation=b, max_participations=k,
               clients_per_round=12 // max(b, -(-rounds // (k or 99))))
    mech = _mechanism(cfg)
    book, _ = _run_ledger(cfg, mech)
    coefs = np.asarray(strategy(rounds, b, 0.0))
    # sensitivity from the dense matrix: the worst group's columns summed (orthogonal: G >= b apart)
    C = toeplitz(np.r_[coefs, np.zeros(rounds - len(coefs))], rounds)
    G = cfg.server.groups
    sens = max(np.linalg.norm(C[:, g::G].sum(axis=1)) for g in range(G))
    assert mech.sensitivity() == pytest.approx(sens, rel=1e-12)
    eps = book.eps_client()
    assert eps == pytest.approx(_gaussian_epsilon_dp_accounting(2.0 / sens), rel=2e-3)
    assert eps == pytest.approx(GaussianDPAccountant().epsilon_of_total(mech.worst_total(), DELTA), rel=1e-12)


def test_a_full_column_costs_what_one_unamplified_gaussian_round_does():
    cfg = _cfg()
    norms = column_norms(strategy(12, 3, 0.0), 12)
    assert norms.max() == pytest.approx(1.0, abs=1e-12) and (norms[:10] == norms.max()).all()
    assert _mechanism(cfg).event(0) == pytest.approx((2.0,))


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("target", [1.0, 4.0])
def test_calibration_meets_the_target_exactly_and_the_run_never_stops_early(target, adaptive):
    clip = {"adaptive_clip": True, "clip": 0.0, "clip_count_std": 20.0} if adaptive else {}
    cfg = _cfg(rounds=13, target_epsilon=target, **clip)
    z = calibrate_dp_ftrl(cfg.server, target_epsilon=target, delta=DELTA)
    cfg = cfg.replace(server={"noise_multiplier": z})
    book, stops = _run_ledger(cfg, _mechanism(cfg))
    assert stops == [""] * 13
    assert target * (1 - 1e-6) <= book.eps_client() <= target
    smaller = cfg.replace(server={"noise_multiplier": z * 0.9})
    _, stops = _run_ledger(smaller, _mechanism(smaller))
    assert any(stops)  # the budget check refuses the round that would pass the target


def test_the_noise_does_not_depend_on_the_data():
    cfg = _cfg()
    a, b = _mechanism(cfg, dim=64), _mechanism(cfg, dim=64)
    for t in range(5):
        x, y = torch.randn(64), torch.randn(64)  # two different federations' clipped sums
        ra = a.add_noise(x, unclipped=0, reported=4, round_idx=t)
        rb = b.add_noise(y, unclipped=0, reported=4, round_idx=t)
        assert torch.allclose(ra.average - rb.average, (x - y) / 4, atol=1e-6)


def test_released_noise_has_the_covariance_the_factorization_implies():
    cfg = _cfg(rounds=8, min_separation=3, max_participations=3)
    dim, z, m = 40_000, cfg.server.noise_multiplier, cfg.server.clients_per_round
    mech = _mechanism(cfg, dim=dim)
    noise = np.stack([mech.add_noise(torch.zeros(dim), unclipped=0, reported=m, round_idx=t).average.double().numpy()
                      for t in range(8)])  # rounds x coordinates: the coordinates are independent samples
    coefs = np.asarray(strategy(8, 3, 0.0))
    C = toeplitz(np.r_[coefs, np.zeros(5)], 8)
    want = (z / m) ** 2 * np.linalg.inv(C.T @ C)
    got = noise @ noise.T / dim
    se = np.sqrt((np.diag(want)[:, None] * np.diag(want)[None, :] + want ** 2) / dim)  # Gaussian: Var(x_i x_j)
    assert (np.abs(got - want) <= 3 * se).all(), np.abs(got - want) / se


def test_a_resumed_mechanism_draws_the_same_noise():
    cfg = _cfg()
    ran = _mechanism(cfg)
    for t in range(4):
        ran.add_noise(torch.zeros(16), unclipped=0, reported=4, round_idx=t)
    resumed = _mechanism(cfg)
    resumed.load_state_dict(ran.state_dict())
    a = ran.add_noise(torch.zeros(16), unclipped=0, reported=4, round_idx=4).average
    b = resumed.add_noise(torch.zeros(16), unclipped=0, reported=4, round_idx=4).average
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="round 7"):
        resumed.add_noise(torch.zeros(16), unclipped=0, reported=4, round_idx=7)


def test_each_client_books_its_own_participations():
    cfg = _cfg()
    book, _ = _run_ledger(cfg, _mechanism(cfg))
    ledger: GuaranteeLedger = book.guarantees["client"]
    assert ledger.parties == 12
    assert sorted(len(h) for h in ledger.histories.values()) == [4] * 12  # 12 rounds, 3 groups
    assert book.eps_client() == ledger.worst() and math.isfinite(book.eps_client())


def test_with_adaptive_clipping_each_participation_is_the_deltas_and_the_bit_count_composed():
    """Independently: per participation, the deltas' Gaussian (sigma_Delta / ||C_t||) and the clip-bit count's
    (multiplier 2 sigma_b: sensitivity 1/2), every participation of the worst group, composed by dp_accounting."""
    from privacy.mechanisms.gaussian import adaptive_clipping_delta_multiplier

    cfg = _cfg(rounds=13, adaptive_clip=True, clip=0.0, noise_multiplier=3.0, clip_count_std=4.0)
    mech = _mechanism(cfg)
    book, _ = _run_ledger(cfg, mech)
    sigma_delta = adaptive_clipping_delta_multiplier(noise_multiplier=3.0, count_noise_std=4.0)
    norms = column_norms(strategy(13, 3, 0.0), 13)
    worst = max(_gaussian_epsilon_dp_accounting(*[m for t in range(g, 13, 3) for m in (sigma_delta / norms[t], 8.0)])
                for g in range(3))
    assert book.eps_client() == pytest.approx(worst, rel=2e-3)


def test_the_sensitivity_bounds_any_per_round_contributions_and_is_reached():
    """A client's clipped deltas differ round to round: ||C (u x g)||_F over its rounds never exceeds the
    sensitivity, and equals it when every delta has the clip's norm."""
    rounds, G = 11, 3
    coefs = np.asarray(strategy(rounds, 3, 0.0))
    C = toeplitz(np.r_[coefs, np.zeros(rounds - 3)], rounds)
    mech = _mechanism(_cfg(rounds=rounds, min_separation=3))
    rng = np.random.default_rng(0)
    for g in range(G):
        mine = list(range(g, rounds, G))
        for _ in range(50):
            deltas = np.zeros((rounds, 7))
            deltas[mine] = rng.normal(size=(len(mine), 7))
            deltas[mine] /= np.maximum(1.0, np.linalg.norm(deltas[mine], axis=1, keepdims=True))  # ||g_t|| <= 1
            assert np.linalg.norm(C @ deltas) <= mech.sensitivity() + 1e-12
        full = np.zeros((rounds, 7))
        full[mine] = rng.normal(size=(len(mine), 7))
        full[mine] /= np.linalg.norm(full[mine], axis=1, keepdims=True)
        if g == 0:  # the worst group (its last column is the least cut)
            assert np.linalg.norm(C @ full) == pytest.approx(mech.sensitivity(), rel=1e-12)


def test_a_client_outside_the_rounds_group_is_refused_at_booking():
    cfg = _cfg()
    mech = _mechanism(cfg)
    book = mech.ledgers(cfg, sample_rates=[0.1] * 12, steps=[1] * 12)
    other = int(np.flatnonzero(mech.group != 0)[0])
    with pytest.raises(ValueError, match="not in its group"):
        mech.round_events(None, ledgers=book, admitted=[other], round_idx=0)


def test_a_resumed_mechanism_keeps_the_strategy_it_started_with():
    cfg = _cfg()
    ran = _mechanism(cfg)
    ran.add_noise(torch.zeros(16), unclipped=0, reported=4, round_idx=0)
    state = ran.state_dict()
    state["strategy"] = [c * (1 + 1e-9) for c in state["strategy"]]  # as another machine might have rounded it
    resumed = _mechanism(cfg)
    resumed.load_state_dict(state)
    assert resumed.coefs == tuple(state["strategy"])
    with pytest.raises(ValueError, match="bands"):
        resumed.load_state_dict({**state, "strategy": state["strategy"][:2]})
