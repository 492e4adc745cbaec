"""The distributed Skellam mechanism: noise shares that add up, and its RDP bound."""

import math

import numpy as np
import pytest
from scipy import special, stats

from privacy.mechanisms.skellam import sample_skellam
from privacy.accountants.skellam_rdp import gaussian_rdp, skellam_rdp


def test_the_sum_of_client_shares_has_the_configured_variance():
    mu, clients, coords = 50.0, 10, 200_000
    rng = np.random.default_rng(0)

    total = sum(sample_skellam(mu / clients, coords, rng=rng) for _ in range(clients))

    assert total.dtype == np.int64
    fourth_central_moment = mu + 3 * mu ** 2  # Skellam of variance mu: excess kurtosis 1 / mu
    standard_error = math.sqrt((fourth_central_moment - mu ** 2) / coords)
    assert abs(total.var() - mu) < 3 * standard_error
    assert abs(total.mean()) < 3 * math.sqrt(mu / coords)


def test_the_sum_of_client_shares_is_skellam_distributed():
    mu, clients, coords = 8.0, 4, 100_000
    rng = np.random.default_rng(1)
    total = sum(sample_skellam(mu / clients, coords, rng=rng) for _ in range(clients))

    ks = np.arange(-12, 13)
    observed = np.array([np.count_nonzero(total == k) for k in ks] + [np.count_nonzero(np.abs(total) > 12)])
    pmf = stats.skellam.pmf(ks, mu / 2, mu / 2)
    expected = coords * np.append(pmf, 1 - pmf.sum())

    assert stats.chisquare(observed, expected).pvalue > 1e-3
    wrong = coords * np.append(stats.skellam.pmf(ks, mu, mu), 0)  # the variance-2mu parameterisation
    wrong[-1] = coords - wrong[:-1].sum()
    assert stats.chisquare(observed, wrong).pvalue < 1e-12  # the test tells the two apart


def _exact_renyi_shift(mu: float, shift: int, alpha: float) -> float:
    """D_alpha(Sk(mu) + shift || Sk(mu)) by summing the pmfs over (practically) the whole support."""
    k = np.arange(-int(40 * math.sqrt(mu)) - 40 - abs(shift), int(40 * math.sqrt(mu)) + 41 + abs(shift))
    log_p = stats.skellam.logpmf(k - shift, mu / 2, mu / 2)
    log_q = stats.skellam.logpmf(k, mu / 2, mu / 2)
    ok = np.isfinite(log_p) & np.isfinite(log_q)
    return float(special.logsumexp(alpha * log_p[ok] + (1 - alpha) * log_q[ok]) / (alpha - 1))


@pytest.mark.parametrize("mu", [1.0, 4.0, 30.0, 400.0])
def test_the_bound_is_above_the_exact_renyi_divergence(mu):
    shift = np.array([1, -2, 0, 3])  # an integer sensitivity vector: l1 = 6, l2 = sqrt(14)
    orders = np.array([1.5, 2.0, 3.0, 8.0, 32.0])

    exact = np.array([sum(_exact_renyi_shift(mu, int(s), a) for s in shift) for a in orders])  # coordinates add
    bound = skellam_rdp(mu=mu, l1=6.0, l2=math.sqrt(14.0), orders=orders)

    assert np.all(bound >= exact)


def test_rdp_values_by_hand():
    # alpha l2^2 / (2 mu) + min(((2 alpha - 1) l2^2 + 6 l1) / (4 mu^2), 3 l1 / (2 mu)), mu = 1e4, l1 = 3520, l2 = 110
    expected = [1.21 + 57_420 / 4e8, 6.05 + 251_020 / 4e8, 19.36 + 783_420 / 4e8]

    got = skellam_rdp(mu=1e4, l1=3520.0, l2=110.0, orders=[2, 10, 32])

    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, [1.21014355, 6.05062755, 19.36195855], rtol=1e-12)  # mpmath, 50 digits


def test_the_bound_approaches_the_gaussian_of_the_same_variance_from_above():
    clip, sigma, dim = 1.0, 0.7, 1024  # real units: a clipped delta and the std of the summed noise
    orders = np.array([1.5, 2, 4, 16, 64])
    gauss = gaussian_rdp(variance=sigma ** 2, l2=clip, orders=orders)  # scale-free: alpha c^2 / (2 sigma^2)

    curves = [skellam_rdp(mu=(s * sigma) ** 2, l1=math.sqrt(dim) * s * clip, l2=s * clip, orders=orders)
              for s in (1.0, 10.0, 100.0, 1e3, 1e4)]

    assert all(np.all(c > gauss) for c in curves)
    assert all(np.all(later < earlier) for earlier, later in zip(curves, curves[1:]))
    np.testing.assert_allclose(curves[-1], gauss, rtol=1e-3)


@pytest.mark.parametrize("call,match", [
    (lambda: skellam_rdp(mu=0.0, l1=1.0, l2=1.0, orders=[2]), "mu"),
    (lambda: skellam_rdp(mu=1.0, l1=-1.0, l2=1.0, orders=[2]), "sensitivities"),
    (lambda: skellam_rdp(mu=1.0, l1=1.0, l2=1.0, orders=[1.0]), "orders"),
    (lambda: sample_skellam(-1.0, 3, rng=np.random.default_rng(0)), "variance"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
