"""The exact accounting of Skellam noise (privacy/accountants/skellam_dominance.py) against computations that share none of
its code: hockey-stick divergences summed straight from scipy.stats.skellam's pmf, dp-accounting's PLDs built
from two probability mass functions (one coordinate and products of several, Poisson-subsampled by hand,
both adjacency directions), and dp-accounting's Gaussian PLD for the limit. Ray-free, seconds."""

import math

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution as pld
from scipy import stats

from privacy.accountants import skellam_dominance as sd
from privacy.accountants.accounting import epsilon as gaussian_epsilon


def skellam_pmf(mu: float, support: np.ndarray) -> np.ndarray:
    """scipy's Skellam (Poisson(mu/2) - Poisson(mu/2)): not the ive/recurrence of the module under test."""
    return stats.skellam.pmf(support, mu / 2, mu / 2)


def hockey_stick(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    return float(np.maximum(p - math.exp(eps) * q, 0.0).sum())


def gaussian_hockey_stick(m: float, eps: float) -> float:
    """delta(eps) of the Gaussian pair (N(m, 1), N(0, 1)): Phi(-eps/m + m/2) - e^eps Phi(-eps/m - m/2)."""
    return stats.norm.cdf(-eps / m + m / 2) - math.exp(eps) * stats.norm.cdf(-eps / m - m / 2)


EPS_GRID = np.concatenate([[0.0], np.geomspace(1e-4, 30, 120)])


@pytest.mark.parametrize("mu", [3.0, 40.0, 900.0])
@pytest.mark.parametrize("shift", [1, 2, 7, 25])
def test_every_shift_of_one_coordinate_is_dominated_by_the_gaussian_of_shift_c_j(mu, shift):
    c = sd.gdp_constant(mu)
    half = int(16 * math.sqrt(mu) + shift + 60)
    x = np.arange(-half, half + 1)
    base = skellam_pmf(mu, x)
    shifted = skellam_pmf(mu, x - shift)  # Sk + j

    for eps in EPS_GRID:  # both directions: (Sk + j, Sk) and (Sk, Sk + j)
        bound = gaussian_hockey_stick(c * shift / math.sqrt(mu), eps)
        assert hockey_stick(shifted, base, eps) <= bound + 1e-12
        assert hockey_stick(base, shifted, eps) <= bound + 1e-12


@pytest.mark.parametrize("mu", [3.0, 40.0])
def test_the_constant_is_tight_for_a_shift_of_one(mu):
    c = sd.gdp_constant(mu)
    half = int(16 * math.sqrt(mu) + 60)
    x = np.arange(-half, half + 1)
    base, shifted = skellam_pmf(mu, x), skellam_pmf(mu, x - 1)
    eps = np.linspace(0, 3, 3001)

    smaller = 0.995 * c / math.sqrt(mu)  # half a percent less, and some eps breaks the dominance
    assert any(hockey_stick(shifted, base, e) > gaussian_hockey_stick(smaller, e) + 1e-12 for e in eps)


def test_the_constant_tends_to_one_from_above_as_mu_grows():
    values = {mu: sd.gdp_constant(mu) for mu in (1.0, 10.0, 100.0, 1e4, 1e6, 1e8)}

    assert all(c >= 1 for c in values.values())
    assert list(values.values()) == sorted(values.values(), reverse=True)
    assert values[100.0] - 1 == pytest.approx(1 / 600, rel=0.05)  # 1 + 1 / (6 mu), the Skellam's kurtosis
    assert values[1e8] - 1 < 2 * sd.MARGIN


def test_beyond_scipys_bessel_range_the_recurrence_gives_the_same_pmf(monkeypatch):
    by_ive = sd.skellam_pmf_nonnegative(4e6)
    monkeypatch.setattr(sd, "IVE_MAX", 1.0)  # force the recurrence
    by_recurrence = sd.skellam_pmf_nonnegative(4e6)
    big = by_ive > 1e-30

    assert len(by_recurrence) == len(by_ive)
    np.testing.assert_allclose(by_recurrence[big], by_ive[big], rtol=1e-9)
    assert sd.gdp_constant.__wrapped__(4e6) == pytest.approx(1 + 1 / (6 * 4e6) + sd.MARGIN, abs=1e-9)


def exact_pld(mu: float, shifts: list[int], *, q: float, steps: int, pessimistic: bool):
    """dp-accounting's PLDs from the two pmfs of each coordinate, composed across the coordinates of the shift
    vector and over the steps; Poisson subsampling as the mixture (1 - q) Q + q P: (remove, add)."""
    def log_pmf(v):
        return {int(k): math.log(p) for k, p in zip(support, v) if p > 0}

    directions = []
    for remove in (True, False):
        total = None
        for j in shifts:
            half = int(15 * math.sqrt(mu) + j + 60)
            support = np.arange(-half, half + 1)
            q_pmf, p_pmf = skellam_pmf(mu, support), skellam_pmf(mu, support - j)
            # a product of shifted coordinates is not the product of per-coordinate subsampled pairs: subsample
            # only a one-coordinate shift (the multi-coordinate case is checked unsampled)
            mixed = (1 - q) * q_pmf + q * p_pmf if len(shifts) == 1 else p_pmf
            upper, lower = (mixed, q_pmf) if remove else (q_pmf, mixed)
            one = pld.from_two_probability_mass_functions(log_pmf(lower), log_pmf(upper), pessimistic_estimate=pessimistic,
                                                          value_discretization_interval=1e-3)
            total = one if total is None else total.compose(one)
        directions.append(total.self_compose(steps))
    return directions


def exact_epsilon(mu, shifts, *, q, steps, delta, pessimistic):
    return max(d.get_epsilon_for_delta(delta) for d in exact_pld(mu, shifts, q=q, steps=steps, pessimistic=pessimistic))


@pytest.mark.parametrize("mu,shift,q,steps", [(900.0, 15, 0.2, 30), (400.0, 5, 0.05, 200), (2500.0, 20, 1.0, 5)])
def test_subsampled_one_coordinate_shift_within_one_percent_and_never_below(mu, shift, q, steps):
    delta = 1e-5
    ours = sd.epsilon_sampled([(mu, shift, shift, q, steps)], delta=delta)

    lower = exact_epsilon(mu, [shift], q=q, steps=steps, delta=delta, pessimistic=False)
    upper = exact_epsilon(mu, [shift], q=q, steps=steps, delta=delta, pessimistic=True)

    assert lower <= upper
    assert ours >= lower  # an upper bound: never below the exact value
    assert ours <= 1.01 * upper


@pytest.mark.parametrize("shifts", [[3, 4], [1, 1, 1, 1], [2, 2, 1], [5]])
def test_spread_integer_shift_vectors_never_exceed_the_bound_for_their_l2_norm(shifts):
    mu, delta, steps = 64.0, 1e-5, 3
    l2 = math.sqrt(sum(j * j for j in shifts))
    ours = sd.epsilon_unsampled([(mu, sum(shifts), l2, 1.0, steps)], delta=delta)

    lower = exact_epsilon(mu, shifts, q=1.0, steps=steps, delta=delta, pessimistic=False)

    assert ours >= lower  # the bound uses ||k||_2 alone: spread or concentrated, never below the exact product


@pytest.mark.parametrize("sigma,q,steps", [(1.2, 0.01, 1000), (4.17, 0.2, 100), (0.9, 1.0, 4)])
def test_as_mu_grows_the_accounting_is_the_subsampled_gaussians(sigma, q, steps):
    gaussian = gaussian_epsilon([(sigma, q, steps)], delta=1e-5)
    eps = [sd.epsilon_sampled([((sigma * l2) ** 2, l2, l2, q, steps)], delta=1e-5) for l2 in (3.0, 30.0, 3000.0)]

    assert eps == sorted(eps, reverse=True) and eps[-1] >= gaussian
    assert eps[-1] == pytest.approx(gaussian, rel=1e-4)


@pytest.mark.parametrize("sigma,steps", [(1.0, 1), (3.0, 50), (0.5, 10)])
def test_gaussian_dp_composition_matches_the_gaussian_pld_without_sampling(sigma, steps):
    mu_gdp = math.sqrt(steps) / sigma
    ours = sd.gdp_epsilon(mu_gdp=mu_gdp, delta=1e-5)
    pess = pld.from_gaussian_mechanism(sigma, pessimistic_estimate=True).self_compose(steps).get_epsilon_for_delta(1e-5)
    opt = pld.from_gaussian_mechanism(sigma, pessimistic_estimate=False).self_compose(steps).get_epsilon_for_delta(1e-5)

    assert opt - 1e-6 <= ours <= pess + 1e-6
    assert sd.gdp_delta(mu_gdp=mu_gdp, epsilon=ours) <= 1e-5
    assert sd.gdp_mu_for(epsilon=ours, delta=1e-5) == pytest.approx(mu_gdp, rel=1e-6)


def test_an_event_without_noise_spends_everything_and_one_without_shift_nothing():
    assert sd.epsilon_unsampled([(0.0, 1.0, 1.0, 1.0, 1)], delta=1e-5) == math.inf
    assert sd.epsilon_unsampled([(100.0, 0.0, 0.0, 1.0, 5)], delta=1e-5) == 0.0
    assert sd.epsilon_sampled([], delta=1e-5) == 0.0
    with pytest.raises(ValueError, match="mu"):
        sd.gdp_constant(-1.0)
    with pytest.raises(ValueError, match="exceeds"):
        sd.gdp_constant(10 * sd.MU_MAX)
