import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from privacy.accounting import (RDP_ORDERS, Ledger, calibrate_for_schedule, epsilon, merge_events)

SETTINGS = [  # (z, q, T, delta)
    (1.0, 0.1, 100, 1e-5),
    (0.8, 0.01, 1000, 1e-6),
    (2.0, 0.5, 50, 1e-3),
    (1.1, 1.0, 10, 1e-5),
    (4.0, 0.01, 10_000, 1e-5),
    (1.1, 0.004, 15_000, 1e-5),
]


def dp_accounting_rdp(z, q, T, delta, orders=RDP_ORDERS):
    acc = rdp.RdpAccountant(list(orders))
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), T)
    return acc.get_epsilon(delta)


def dp_accounting_pld(z, q, T, delta):
    acc = pld.PLDAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), T)
    return acc.get_epsilon(delta)


INTEGER_ORDERS = tuple(range(2, 257))


@pytest.mark.parametrize("z,q,T,delta", SETTINGS)
def test_client_level_epsilon_equals_dp_accounting_rdp_on_the_same_orders(z, q, T, delta):
    ledger = Ledger("rdp")
    for _ in range(T):  # one event per round, as the server records them
        ledger.record(-1, noise_multiplier=z, sample_rate=q, steps=1)
    events = ledger.histories[-1]

    ours = epsilon(events, delta=delta, orders=INTEGER_ORDERS)  # integer orders: both sides exact closed forms

    assert ours == pytest.approx(dp_accounting_rdp(z, q, T, delta, INTEGER_ORDERS), abs=1e-3)


@pytest.mark.parametrize("z,q,T,delta", SETTINGS)
def test_reported_rdp_epsilon_is_never_above_dp_accounting_and_at_most_integer_orders(z, q, T, delta):
    reported = epsilon([(z, q, T)], delta=delta)

    assert reported <= dp_accounting_rdp(z, q, T, delta) + 1e-9  # fractional orders: Opacus is exact, see below
    assert reported <= epsilon([(z, q, T)], delta=delta, orders=INTEGER_ORDERS) + 1e-9


@pytest.mark.parametrize("alpha", [1.5, 3.2, 7.5])
def test_fractional_order_rdp_equals_the_exact_integral(alpha):
    """Where we are below dp_accounting (fractional orders), we equal the definition itself:
    D_alpha(mu_1 || mu_0) of the sampled Gaussian, by numerical integration (Mironov et al. 2019)."""
    import numpy as np
    from scipy import integrate

    from privacy.accounting import _rdp_one_step

    q, sigma = 0.1, 1.0

    def integrand(z):
        return (np.exp(-z * z / (2 * sigma ** 2)) / np.sqrt(2 * np.pi * sigma ** 2)
                * ((1 - q) + q * np.exp((2 * z - 1) / (2 * sigma ** 2))) ** alpha)

    a_alpha, _ = integrate.quad(integrand, -60, 60, epsabs=1e-14, epsrel=1e-12, limit=500)
    exact = np.log(a_alpha) / (alpha - 1)

    assert _rdp_one_step(sigma, q, (alpha,))[0] == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("z,q,T,delta,pinned", [
    (1.0, 0.1, 100, 1e-5, 7.8993),
    (0.8, 0.01, 1000, 1e-6, 4.2933),
    (2.0, 0.5, 50, 1e-3, 7.8674),
    (4.0, 0.01, 10_000, 1e-5, 1.035),
    (1.1, 0.004, 15_000, 1e-5, 2.503),
])
def test_pinned_rdp_epsilons(z, q, T, delta, pinned):
    assert epsilon([(z, q, T)], delta=delta, accountant="rdp") == pytest.approx(pinned, abs=1e-3)


@pytest.mark.parametrize("z,q,T,delta,pinned", [
    (4.0, 0.01, 10_000, 1e-5, 0.947),
    (1.1, 0.004, 15_000, 1e-5, 2.296),
])
def test_pinned_dp_accounting_pld_reference(z, q, T, delta, pinned):
    """The reference itself is pinned, so a change in dp-accounting shows up here, not as a drift elsewhere."""
    assert dp_accounting_pld(z, q, T, delta) == pytest.approx(pinned, abs=1e-3)


@pytest.mark.parametrize("accountant,z,q,T,pinned", [
    ("pld", 4.0, 0.01, 10_000, 0.960),  # pessimistic PLD on a coarser grid (1e-3): a little above the reference
    ("pld", 1.1, 0.004, 15_000, 2.305),
    ("prv", 4.0, 0.01, 10_000, 0.957),
    ("prv", 1.1, 0.004, 15_000, 2.306),
])
def test_pinned_pld_and_prv_epsilons(accountant, z, q, T, pinned):
    assert epsilon([(z, q, T)], delta=1e-5, accountant=accountant) == pytest.approx(pinned, abs=1e-3)


@pytest.mark.parametrize("accountant", ["rdp", "prv", "pld"])
@pytest.mark.parametrize("z,q,T,delta", [(4.0, 0.01, 10_000, 1e-5), (1.1, 0.004, 15_000, 1e-5)])
def test_every_accountant_is_an_upper_bound_at_or_above_pld(accountant, z, q, T, delta):
    reference_pld = dp_accounting_pld(z, q, T, delta)
    reference_rdp = dp_accounting_rdp(z, q, T, delta)

    ours = epsilon([(z, q, T)], delta=delta, accountant=accountant)

    assert ours >= reference_pld - 1e-3
    assert ours <= 1.1 * reference_rdp


def test_no_noise_is_infinite_and_no_event_is_zero():
    assert epsilon([(0.0, 0.1, 5)], delta=1e-5) == math.inf
    assert epsilon([], delta=1e-5) == 0.0
    assert epsilon([(1.0, 0.1, 0)], delta=1e-5) == 0.0


def test_epsilon_grows_with_steps_and_rate_and_falls_with_noise():
    base = epsilon([(1.0, 0.1, 100)], delta=1e-5)
    assert epsilon([(1.0, 0.1, 200)], delta=1e-5) > base
    assert epsilon([(1.0, 0.2, 100)], delta=1e-5) > base
    assert epsilon([(1.5, 0.1, 100)], delta=1e-5) < base


def test_merging_events_is_composition():
    assert merge_events([(1.0, 0.1, 3), (2.0, 0.1, 1), (1.0, 0.1, 2)]) == [(1.0, 0.1, 5), (2.0, 0.1, 1)]
    split = epsilon([(1.0, 0.1, 30), (1.0, 0.1, 70)], delta=1e-5)
    assert split == pytest.approx(epsilon([(1.0, 0.1, 100)], delta=1e-5))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="delta"):
        epsilon([(1.0, 0.1, 1)], delta=0)
    with pytest.raises(ValueError, match="accountant"):
        epsilon([(1.0, 0.1, 1)], delta=1e-5, accountant="moments")
    with pytest.raises(ValueError, match="invalid"):
        epsilon([(1.0, 1.5, 1)], delta=1e-5)


@pytest.mark.parametrize("target", [0.5, 2.0, 8.0])
def test_calibration_meets_the_target_tightly(target):
    z = calibrate_for_schedule(target_epsilon=target, delta=1e-5, sample_rate=0.05, steps=500)

    spent = epsilon([(z, 0.05, 500)], delta=1e-5)

    assert spent <= target
    assert spent > target - 0.02


def test_calibration_refuses_an_unreachable_target():
    with pytest.raises(ValueError, match="unreachable"):
        calibrate_for_schedule(target_epsilon=1e-4, delta=1e-9, sample_rate=1.0, steps=100_000)


def test_ledger_round_trips_as_plain_data():
    ledger = Ledger("rdp")
    ledger.record(3, noise_multiplier=1.0, sample_rate=0.1, steps=12)
    ledger.record(3, noise_multiplier=1.0, sample_rate=0.1, steps=12)

    again = Ledger.from_state_dict(ledger.state_dict())

    assert again.histories == {3: [(1.0, 0.1, 24)]}
    assert again.epsilon(3, delta=1e-5) == ledger.epsilon(3, delta=1e-5)
    assert ledger.epsilon(99, delta=1e-5) == 0.0
