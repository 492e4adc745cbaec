"""A sweep's epsilon is the exact composition of its trials; private selection follows Papernot & Steinke."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event, pld, rdp

from privacy.accountants.accounting import PLD_VALUE_INTERVAL, epsilon
from privacy.accountants.sweep_privacy import (PoissonRepetitions, TruncatedNegativeBinomial, eps_selected, eps_selected_record,
                                   eps_sweep, eps_sweep_record)

INTEGER_ORDERS = tuple(range(2, 257))


def subsampled_gaussian(z, q):
    return dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))


# --- eps_sweep: composition of every trial ------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 4, 12])
def test_k_identical_trials_compose_as_dp_accounting_composes_k_of_them(K):
    trial = [(1.0, 0.08, 240)]
    composed = dp_event.ComposedDpEvent([dp_event.SelfComposedDpEvent(subsampled_gaussian(1.0, 0.08), 240)] * K)
    ref_pld = pld.PLDAccountant(value_discretization_interval=PLD_VALUE_INTERVAL).compose(composed)
    ref_rdp = rdp.RdpAccountant(list(INTEGER_ORDERS)).compose(composed)

    got_pld = eps_sweep([trial] * K, delta=1e-5, accountant="pld")
    got_rdp = epsilon([e for _ in range(K) for e in trial], delta=1e-5, accountant="rdp", orders=INTEGER_ORDERS)

    assert got_pld == pytest.approx(ref_pld.get_epsilon(1e-5), abs=1e-6)
    assert got_rdp == pytest.approx(ref_rdp.get_epsilon(1e-5), abs=1e-6)


def test_a_sweep_of_different_trials_is_their_exact_composition_far_below_the_sum():
    trials = [[(0.8, 0.08, 240)], [(1.2, 0.08, 240)], [(2.0, 0.08, 240)]]
    ref = pld.PLDAccountant(value_discretization_interval=PLD_VALUE_INTERVAL)
    for z in (0.8, 1.2, 2.0):
        ref.compose(subsampled_gaussian(z, 0.08), 240)

    got = eps_sweep(trials, delta=1e-5)

    each = [epsilon(t, delta=1e-5) for t in trials]
    assert got == pytest.approx(ref.get_epsilon(1e-5), abs=1e-6)
    assert max(each) < got < sum(each)


def test_record_level_sweep_is_the_worst_client_over_all_its_trials():
    trial_a = {0: [(1.0, 0.1, 100)], 1: [(1.0, 0.05, 100)]}
    trial_b = {0: [(2.0, 0.1, 50)], 2: [(1.0, 0.2, 100)]}  # client 1 not sampled, client 2 only here

    got = eps_sweep_record([trial_a, trial_b], delta=1e-5)

    each = [epsilon([(1.0, 0.1, 100), (2.0, 0.1, 50)], delta=1e-5), epsilon([(1.0, 0.05, 100)], delta=1e-5),
            epsilon([(1.0, 0.2, 100)], delta=1e-5)]
    assert got == max(each)
    assert eps_sweep_record([], delta=1e-5) == 0.0


# --- the number of repetitions ------------------------------------------------------------------------

def tnb_pmfs_from_definition(eta, gamma, k_max):
    """P[K = k] for k = 1..k_max, Papernot & Steinke 2022, Definition 1, the product built term by term."""
    out, prod = [], 1.0
    for k in range(1, k_max + 1):
        prod *= (k - 1 + eta) / k
        out.append((1 - gamma) ** k / (k * math.log(1 / gamma)) if eta == 0
                   else (1 - gamma) ** k / (gamma ** -eta - 1) * prod)
    return np.array(out)


@pytest.mark.parametrize("eta,gamma", [(1.0, 0.1), (0.0, 0.05), (0.5, 0.2), (-0.5, 0.01), (2.0, 0.3)])
def test_truncated_negative_binomial_matches_its_definition(eta, gamma):
    dist = TruncatedNegativeBinomial(eta=eta, gamma=gamma)
    ks = np.arange(1, 3000)

    pmf = np.array([dist.pmf(int(k)) for k in ks])

    assert pmf == pytest.approx(tnb_pmfs_from_definition(eta, gamma, len(ks)), rel=1e-9, abs=1e-300)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-6)
    assert (ks * pmf).sum() == pytest.approx(dist.mean(), rel=1e-4)
    if eta == 1.0:  # geometric
        assert dist.mean() == pytest.approx(1 / gamma)


@pytest.mark.parametrize("dist", [TruncatedNegativeBinomial(eta=1.0, gamma=0.1),
                                  TruncatedNegativeBinomial(eta=0.0, gamma=0.05), PoissonRepetitions(mu=6.0)])
def test_the_number_of_trials_comes_from_the_seed_with_the_right_mean(dist):
    draws = np.array([dist.sample(seed=s) for s in range(4000)])

    assert [dist.sample(seed=s) for s in range(20)] == list(draws[:20])  # reproducible from the seed
    assert abs(draws.mean() - dist.mean()) < 5 * draws.std() / math.sqrt(len(draws))
    assert draws.min() >= (0 if isinstance(dist, PoissonRepetitions) else 1)


@pytest.mark.parametrize("kwargs,match", [({"eta": -1.0, "gamma": 0.1}, "eta"), ({"eta": 1.0, "gamma": 1.0}, "gamma"),
                                          ({"eta": 1.0, "gamma": 0.0}, "gamma")])
def test_bad_repetition_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TruncatedNegativeBinomial(**kwargs)
    with pytest.raises(ValueError, match="mu"):
        PoissonRepetitions(mu=0.0)


# --- the selection bounds -----------------------------------------------------------------------------

@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("lam", [2, 8, 32])
def test_theorem_2_on_the_gaussian_mechanism_in_closed_form(eta, lam):
    """Q = Gaussian mechanism, RDP eps(l) = rho l. Theorem 2's minimum over lambda_hat of
    (1 + eta)((lambda_hat - 1) rho + log(1/gamma) / lambda_hat) sits at lambda_hat = sqrt(log(1/gamma) / rho),
    with value (1 + eta)(2 sqrt(rho log(1/gamma)) - rho); rho = 0.02, gamma = e^-2 put it at the order 10."""
    rho, gamma = 0.02, math.exp(-2)
    dist = TruncatedNegativeBinomial(eta=eta, gamma=gamma)
    mean_k = float(np.arange(1, 5001) @ tnb_pmfs_from_definition(eta, gamma, 5000))

    bound = dist.selection_rdp(orders=INTEGER_ORDERS, rdp=rho * np.array(INTEGER_ORDERS, dtype=float))

    expected = rho * lam + (1 + eta) * (2 * math.sqrt(rho * math.log(1 / gamma)) - rho) + math.log(mean_k) / (lam - 1)
    assert bound[INTEGER_ORDERS.index(lam)] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("mu", [2.0, 10.0])
@pytest.mark.parametrize("lam", [2, 8, 32])
def test_theorem_6_on_the_gaussian_mechanism(mu, lam):
    """eps'(l) = eps(l) + mu delta_hat + log(mu) / (l - 1), delta_hat the Gaussian's delta at
    eps_hat = log(1 + 1/(l - 1)), from its RDP curve (Canonne, Kamath, Steinke 2020)."""
    rho = 0.02
    orders = np.array(INTEGER_ORDERS, dtype=float)
    eps_hat = math.log(1 + 1 / (lam - 1))
    delta_hat = math.exp(min((a - 1) * (rho * a - eps_hat) + a * math.log(1 - 1 / a) - math.log(a - 1)
                             for a in orders))

    bound = PoissonRepetitions(mu=mu).selection_rdp(orders=INTEGER_ORDERS, rdp=rho * orders)

    expected = rho * lam + mu * delta_hat + math.log(mu) / (lam - 1)
    assert bound[INTEGER_ORDERS.index(lam)] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dist,shape", [(TruncatedNegativeBinomial(eta=1.0, gamma=0.1), 1.0),
                                        (TruncatedNegativeBinomial(eta=0.0, gamma=0.05), 0.0),
                                        (TruncatedNegativeBinomial(eta=0.5, gamma=0.2), 0.5),
                                        (PoissonRepetitions(mu=5.0), math.inf),
                                        (PoissonRepetitions(mu=20.0), math.inf)])
def test_selection_epsilon_agrees_with_dp_accountings_repeat_and_select(dist, shape):
    """An independent implementation of the same theorems (dp_accounting's RepeatAndSelectDpEvent)."""
    history = [(1.1, 0.05, 400)]
    ref = rdp.RdpAccountant(list(INTEGER_ORDERS))
    ref.compose(dp_event.RepeatAndSelectDpEvent(dp_event.SelfComposedDpEvent(subsampled_gaussian(1.1, 0.05), 400),
                                                dist.mean(), shape))

    got = eps_selected([history], repetitions=dist, delta=1e-5, orders=INTEGER_ORDERS)

    assert got == pytest.approx(ref.get_epsilon(1e-5), rel=1e-6)


def test_selecting_the_best_costs_far_less_than_publishing_every_trial():
    history = [(1.1, 0.05, 400)]
    dist = TruncatedNegativeBinomial(eta=1.0, gamma=0.1)  # 10 trials on average

    selected = eps_selected([history], repetitions=dist, delta=1e-5)

    one = epsilon(history, delta=1e-5, accountant="rdp")
    all_ten = eps_sweep([history] * 10, delta=1e-5, accountant="rdp")
    assert one < selected < all_ten


def test_a_random_candidate_costs_what_its_worst_candidate_costs():
    dist = PoissonRepetitions(mu=8.0)
    noisy, less_noisy = [(2.0, 0.05, 400)], [(1.0, 0.05, 400)]

    both = eps_selected([noisy, less_noisy], repetitions=dist, delta=1e-5)

    assert both == eps_selected([less_noisy], repetitions=dist, delta=1e-5)
    assert both > eps_selected([noisy], repetitions=dist, delta=1e-5)


def test_record_level_selection_is_the_worst_client():
    dist = TruncatedNegativeBinomial(eta=0.0, gamma=0.05)
    candidates = [{0: [(1.0, 0.05, 400)], 1: [(1.0, 0.1, 400)]}, {0: [(2.0, 0.05, 400)], 1: [(2.0, 0.1, 400)]}]

    got = eps_selected_record(candidates, repetitions=dist, delta=1e-5)

    assert got == eps_selected([[(1.0, 0.1, 400)], [(2.0, 0.1, 400)]], repetitions=dist, delta=1e-5)
    with pytest.raises(ValueError, match="candidate"):
        eps_selected([], repetitions=dist, delta=1e-5)
