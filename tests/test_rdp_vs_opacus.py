"""Our RDP maths equal Opacus's: the vectorised per-step RDP and the conversion to (eps, delta)."""

import numpy as np
import pytest
from opacus.accountants.analysis import rdp as opacus_rdp

from privacy.accountants.accounting import RDP_ORDERS, rdp_to_epsilon
from privacy.accountants.subsampled_gaussian import rdp_one_step


@pytest.mark.parametrize("sigma", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("q", [1e-4, 0.02, 0.5, 0.99])
def test_rdp_and_epsilon_equal_opacus_on_every_order(sigma, q):
    expected = np.asarray(opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=list(RDP_ORDERS)))

    got = rdp_one_step(noise_multiplier=sigma, sample_rate=q, orders=RDP_ORDERS)

    assert np.allclose(got, expected, rtol=1e-9, atol=1e-11)  # series sums differ only in float rounding
    for steps in (1, 1000):
        eps_got, _ = opacus_rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=got * steps, delta=1e-5)
        eps_expected, _ = opacus_rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=expected * steps, delta=1e-5)
        assert eps_got == pytest.approx(eps_expected, rel=1e-9)


def test_edge_rates_and_noise_follow_opacus():
    orders = [1.5, 2.0, 32.0]

    assert np.array_equal(rdp_one_step(noise_multiplier=1.0, sample_rate=0.0, orders=orders), [0.0, 0.0, 0.0])
    assert np.all(np.isinf(rdp_one_step(noise_multiplier=0.0, sample_rate=0.1, orders=orders)))
    assert np.allclose(rdp_one_step(noise_multiplier=2.0, sample_rate=1.0, orders=orders),
                       np.array(orders) / (2 * 2.0 ** 2))  # no subsampling: the Gaussian's alpha / (2 sigma^2)
    with pytest.raises(ValueError, match="sample_rate"):
        rdp_one_step(noise_multiplier=1.0, sample_rate=1.5, orders=orders)


@pytest.mark.parametrize("sigma,q,steps,delta", [(1.0, 0.02, 500, 1e-5), (0.6, 0.3, 40, 1e-6), (5.0, 0.5, 3, 1e-3),
                                                 (0.3, 1e-3, 10, 1e-5)])
def test_epsilon_from_rdp_equals_opacus_get_privacy_spent(sigma, q, steps, delta):
    rdp = np.asarray(opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(RDP_ORDERS)))
    expected, _ = opacus_rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)

    assert rdp_to_epsilon(orders=RDP_ORDERS, rdp=rdp, delta=delta) == pytest.approx(expected, rel=1e-12)


def test_epsilon_from_rdp_is_infinite_without_privacy():
    assert rdp_to_epsilon(orders=RDP_ORDERS, rdp=np.full(len(RDP_ORDERS), np.inf), delta=1e-5) == np.inf
