"""Zhu & Wang's Poisson-subsampled RDP bound for any mechanism, and the epsilon of a distributed Skellam run."""

import math

import numpy as np
import pytest

from privacy.accountants.accounting import rdp_to_epsilon
from privacy.secagg.quantization import Quantizer
from privacy.accountants.skellam_rdp import gaussian_rdp, skellam_rdp
from privacy.accountants.subsampled_gaussian import rdp_one_step
from privacy.accountants.subsampled_rdp import INTEGER_ORDERS, poisson_subsampled_rdp, skellam_epsilon, skellam_rdp_of_run

ORDERS = np.arange(2, 65)


@pytest.mark.parametrize("sigma,q", [(1.0, 0.01), (0.7, 0.1), (2.0, 0.3), (5.0, 0.001), (0.5, 0.5)])
def test_on_the_gaussian_curve_the_bound_is_above_the_exact_subsampled_gaussian_and_close(sigma, q):
    exact = rdp_one_step(noise_multiplier=sigma, sample_rate=q, orders=ORDERS)

    bound = poisson_subsampled_rdp(base_rdp=lambda ls: gaussian_rdp(variance=sigma ** 2, l2=1.0, orders=ls),
                                   sample_rate=q, orders=ORDERS)

    assert np.all(bound >= exact * (1 - 1e-12) - 1e-15)
    assert np.all(bound <= exact + math.log(3) / (ORDERS - 1) + 1e-12)  # the paper's log(3)/(alpha-1) gap


def test_the_bound_never_exceeds_the_unsampled_mechanism_and_grows_with_the_rate():
    def base(ls):
        return skellam_rdp(mu=400.0, l1=60.0, l2=25.0, orders=ls)

    curves = [poisson_subsampled_rdp(base_rdp=base, sample_rate=q, orders=ORDERS) for q in (0.001, 0.01, 0.1, 0.9)]

    assert all(np.all(c <= base(ORDERS) + 1e-15) for c in curves)
    assert all(np.all(lo <= hi + 1e-15) for lo, hi in zip(curves, curves[1:]))
    np.testing.assert_array_equal(poisson_subsampled_rdp(base_rdp=base, sample_rate=1.0, orders=ORDERS), base(ORDERS))
    np.testing.assert_array_equal(poisson_subsampled_rdp(base_rdp=base, sample_rate=0.0, orders=ORDERS), 0.0)


# Pinned epsilons at delta = 1e-5, orders 2..128 and 256. Each was computed twice, independently of this module:
# by a scalar mpmath (50 digits) evaluation of the same formulas, and (the "ref" rows) by the Skellam authors'
# reference accounting (google-research/federated, distributed_dp/accounting_utils.py, skellam_epsilon) run
# with its tensorflow_privacy conversion replaced by privacy.accountants.accounting.rdp_to_epsilon; both agreed to 1e-13.
@pytest.mark.parametrize("mu,l1,l2,q,steps,expected", [
    (1e4, 3520.0, 110.0, 0.01, 1000, 3.106729393971113),
    (9e4, 3200.0, 200.0, 0.1, 100, 5.305368062637382),
])
def test_epsilon_pinned_on_grid_values(mu, l1, l2, q, steps, expected):
    assert skellam_epsilon(mu=mu, l1=l1, l2=l2, sample_rate=q, steps=steps, delta=1e-5) == pytest.approx(
        expected, rel=1e-9)


@pytest.mark.parametrize("dim,clip,scale,sigma,q,steps,beta,expected", [
    (2 ** 16, 1.0, 300.0, 0.8, 0.01, 2000, math.exp(-0.5), 7.180156806579217),  # ref
    (2 ** 10, 0.5, 1000.0, 0.3, 0.05, 500, 0.0, 37.15009037253113),  # ref, unconditional rounding
])
def test_epsilon_pinned_against_the_reference_accounting(dim, clip, scale, sigma, q, steps, beta, expected):
    quantizer = Quantizer(scale=scale, clip=clip, beta=beta, rotate=False)

    eps = skellam_epsilon(mu=(scale * sigma) ** 2, l1=quantizer.l1_sensitivity(dim), l2=quantizer.l2_sensitivity(dim),
                          sample_rate=q, steps=steps, delta=1e-5)

    assert eps == pytest.approx(expected, rel=1e-9)


def test_epsilon_approaches_the_gaussian_of_the_same_variance_from_above():
    clip, sigma, dim, q, steps, delta = 1.0, 1.0, 2 ** 12, 0.01, 1000, 1e-5
    gauss_rdp = steps * poisson_subsampled_rdp(
        base_rdp=lambda ls: gaussian_rdp(variance=sigma ** 2, l2=clip, orders=ls), sample_rate=q, orders=INTEGER_ORDERS)
    gauss_eps = rdp_to_epsilon(orders=INTEGER_ORDERS, rdp=gauss_rdp, delta=delta)
    exact_gauss_eps = rdp_to_epsilon(orders=INTEGER_ORDERS, delta=delta, rdp=steps * rdp_one_step(
        noise_multiplier=sigma / clip, sample_rate=q, orders=INTEGER_ORDERS))

    eps = []
    for scale in (10.0, 100.0, 1000.0, 1e4):
        quantizer = Quantizer(scale=scale, clip=clip, rotate=False)
        eps.append(skellam_epsilon(mu=(scale * sigma) ** 2, l1=quantizer.l1_sensitivity(dim),
                                   l2=quantizer.l2_sensitivity(dim), sample_rate=q, steps=steps, delta=delta))

    assert all(e > gauss_eps >= exact_gauss_eps for e in eps)
    assert all(later < earlier for earlier, later in zip(eps, eps[1:]))
    assert eps[-1] == pytest.approx(gauss_eps, rel=0.01)


def test_less_noise_raises_epsilon():
    share, clients = 1e4 / 10, 10
    kwargs = dict(l1=3520.0, l2=110.0, sample_rate=0.01, steps=1000, delta=1e-5)

    full = skellam_epsilon(mu=share * clients, **kwargs)
    fewer = skellam_epsilon(mu=share * 7, **kwargs)  # the shares of 7 of the 10 clients

    assert fewer > full


def test_rdp_composes_linearly_in_the_steps():
    one = skellam_rdp_of_run(mu=1e4, l1=3520.0, l2=110.0, sample_rate=0.01, steps=1)

    many = skellam_rdp_of_run(mu=1e4, l1=3520.0, l2=110.0, sample_rate=0.01, steps=250)

    np.testing.assert_allclose(many, 250 * one, rtol=1e-12)
    assert skellam_epsilon(mu=1e4, l1=3520.0, l2=110.0, sample_rate=0.01, steps=0, delta=1e-5) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(orders=[2.5, 3]), "integers"), (dict(orders=[1, 2]), "integers"), (dict(sample_rate=1.5), "sample_rate"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    args = dict(base_rdp=lambda ls: np.asarray(ls, float), sample_rate=0.1, orders=[2, 3]) | kwargs

    with pytest.raises(ValueError, match=match):
        poisson_subsampled_rdp(**args)


def test_bad_delta_is_a_clear_error():
    with pytest.raises(ValueError, match="delta"):
        skellam_epsilon(mu=1e4, l1=1.0, l2=1.0, sample_rate=0.1, steps=10, delta=0.0)
