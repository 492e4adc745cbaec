"""Calibration meets its target under the accountant that reports, tightly, and never crashes."""

import math
import time

import pytest

from privacy.accountants import accounting
from privacy.accountants.accounting import epsilon
from privacy.accountants.calibration import (TIGHT_SEARCH_FLOOR, calibrate_for_schedule, calibrate_noise_multiplier,
                                 calibrate_record_level, worst_case_record_epsilon, worst_case_record_histories)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize("target", [0.5, 2.0, 8.0])
def test_calibration_meets_the_target_tightly(accountant, target):
    z = calibrate_for_schedule(target_epsilon=target, delta=1e-5, sample_rate=0.05, steps=500, accountant=accountant)

    spent = epsilon([(z, 0.05, 500)], delta=1e-5, accountant=accountant)

    assert target - 0.01 < spent <= target


@pytest.mark.parametrize("accountant", ["pld", "prv"])
@pytest.mark.parametrize("q,T", [(0.064, 320), (0.01, 1000)])
def test_tight_calibration_of_the_issue_cases_completes_fast_and_meets_the_target(accountant, q, T):
    """Before: prv evaluated sigma = 0.05 first, where Opacus asks for 5.25 GiB (q = 0.064, T = 320)
    or 25.8 GiB (q = 0.01, T = 1000): a MemoryError."""
    for target in range(1, 9):
        start = time.perf_counter()

        z = calibrate_for_schedule(target_epsilon=target, delta=1e-5, sample_rate=q, steps=T, accountant=accountant)

        assert time.perf_counter() - start < 30, f"target {target}"
        spent = epsilon([(z, q, T)], delta=1e-5, accountant=accountant)
        assert target - 0.01 < spent <= target, f"target {target}"


@pytest.mark.parametrize("accountant", ["pld", "prv"])
def test_tight_accountants_are_searched_only_just_below_the_rdp_answer(accountant, monkeypatch):
    accounting._epsilon_cached.cache_clear()
    seen = []
    method = accounting._METHODS[accountant]
    monkeypatch.setitem(accounting._METHODS, accountant, lambda events, delta: seen.append(events[0][0])
                        or method(events, delta))
    z_rdp = calibrate_for_schedule(target_epsilon=4.0, delta=1e-5, sample_rate=0.064, steps=320, accountant="rdp")

    z = calibrate_for_schedule(target_epsilon=4.0, delta=1e-5, sample_rate=0.064, steps=320, accountant=accountant)

    assert z < z_rdp  # the tight accountant needs less noise for the same target
    assert seen and min(seen) >= TIGHT_SEARCH_FLOOR * z_rdp and max(seen) <= z_rdp
    assert len(seen) <= 6
    accounting._epsilon_cached.cache_clear()


def test_the_bracket_moves_down_when_its_floor_already_meets_the_target():
    """One step at a tiny rate: RDP is loose by more than the first bracket's factor 2."""
    z_rdp = calibrate_for_schedule(target_epsilon=0.5, delta=1e-5, sample_rate=0.001, steps=1, accountant="rdp")

    z = calibrate_for_schedule(target_epsilon=0.5, delta=1e-5, sample_rate=0.001, steps=1, accountant="pld")

    assert z < TIGHT_SEARCH_FLOOR * z_rdp
    assert 0.49 < epsilon([(z, 0.001, 1)], delta=1e-5, accountant="pld") <= 0.5


def test_an_accountant_failure_counts_as_too_little_noise(monkeypatch):
    accounting._epsilon_cached.cache_clear()
    z_ok = calibrate_for_schedule(target_epsilon=4.0, delta=1e-5, sample_rate=0.064, steps=320, accountant="pld")
    accounting._epsilon_cached.cache_clear()
    method = accounting._METHODS["pld"]

    def fails_below(events, delta):
        if events[0][0] < 1.02 * z_ok:
            raise MemoryError("a grid too large for this machine")
        return method(events, delta)

    monkeypatch.setitem(accounting._METHODS, "pld", fails_below)

    z = calibrate_for_schedule(target_epsilon=4.0, delta=1e-5, sample_rate=0.064, steps=320, accountant="pld")

    assert z >= 1.02 * z_ok
    assert epsilon([(z, 0.064, 320)], delta=1e-5, accountant="pld") <= 4.0
    accounting._epsilon_cached.cache_clear()


def test_calibration_refuses_an_unreachable_target():
    with pytest.raises(ValueError, match="unreachable"):
        calibrate_for_schedule(target_epsilon=1e-4, delta=1e-9, sample_rate=1.0, steps=100_000)


@pytest.mark.parametrize("target", [0.0, -1.0, math.inf, math.nan])
def test_calibration_refuses_a_target_that_is_not_a_positive_number(target):
    with pytest.raises(ValueError, match="target_epsilon"):
        calibrate_noise_multiplier(target_epsilon=target, eps_of=lambda s: 1 / s)


def test_worst_case_histories_keep_only_the_pareto_front():
    histories = worst_case_record_histories(noise_multiplier=1.5, sample_rates=[0.1, 0.1, 0.05, 0.2, 0.05],
                                            steps_per_round=[10, 10, 20, 5, 12], rounds=3)

    assert histories == [[(1.5, 0.2, 15)], [(1.5, 0.1, 30)], [(1.5, 0.05, 60)]]


def test_worst_case_record_epsilon_is_the_largest_client_epsilon():
    rates, steps = [32 / 400, 32 / 350, 32 / 900], [12, 11, 28]

    worst = worst_case_record_epsilon(noise_multiplier=1.0, sample_rates=rates, steps_per_round=steps, rounds=20,
                                      delta=1e-5, accountant="pld")

    each = [epsilon([(1.0, q, 20 * t)], delta=1e-5, accountant="pld") for q, t in zip(rates, steps)]
    assert worst == max(each)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_record_level_calibration_bounds_every_client(accountant):
    rates, steps = [32 / 400, 32 / 350, 32 / 900], [12, 11, 28]

    sigma = calibrate_record_level(target_epsilon=3.0, delta=1e-5, sample_rates=rates, steps_per_round=steps,
                                   rounds=20, accountant=accountant)

    worst = worst_case_record_epsilon(noise_multiplier=sigma, sample_rates=rates, steps_per_round=steps, rounds=20,
                                      delta=1e-5, accountant=accountant)
    assert 2.99 < worst <= 3.0


def test_record_level_calibration_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one sample rate and one step count per client"):
        calibrate_record_level(target_epsilon=3.0, delta=1e-5, sample_rates=[0.1, 0.2], steps_per_round=[3],
                               rounds=5)
    with pytest.raises(ValueError, match="rounds"):
        calibrate_record_level(target_epsilon=3.0, delta=1e-5, sample_rates=[0.1], steps_per_round=[3], rounds=0)
