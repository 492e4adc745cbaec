"""Membership-inference AUC and the AUC bound of an (eps, delta) guarantee, as pure maths."""

import math

import numpy as np
import pytest
from scipy import stats

from privacy.audit.membership import (auc, auc_upper_bound, average_ranks, loss_threshold_auc, membership_auc_bound,
                                     record_guarantee_of_client_level)


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.5])
def test_auc_of_gaussian_scores_is_phi_of_shift_over_root_two(shift):
    rng = np.random.default_rng(5)
    n = 20_000
    pos, neg = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)

    value = auc(pos, neg)

    expected = stats.norm.cdf(shift / math.sqrt(2))
    standard_error = math.sqrt(expected * (1 - expected) / n)  # Birnbaum-Klose bound on the AUC's std
    assert abs(value - expected) < 4 * standard_error


def test_auc_counts_ties_as_one_half_and_orders_losses_the_attack_way():
    assert auc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert loss_threshold_auc(member_losses=[0.1, 0.2], nonmember_losses=[0.5, 0.9]) == 1.0
    with pytest.raises(ValueError):
        auc([], [1.0])


@pytest.mark.parametrize("seed", range(4))
def test_ranks_and_auc_equal_scipys_ranks_and_the_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos, neg = rng.integers(0, 12, 300).astype(float), rng.integers(2, 15, 250).astype(float)  # many ties
    scores = np.concatenate([pos, neg])

    assert np.array_equal(average_ranks(scores), stats.rankdata(scores))
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(pos, neg) == pytest.approx(pairs / (len(pos) * len(neg)), rel=1e-12)


def test_an_auc_of_nan_scores_is_nan():
    assert math.isnan(auc([0.1, float("nan")], [0.3]))


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0, 4.0])
def test_pure_dp_auc_bound_is_the_logistic_of_epsilon(eps):
    assert auc_upper_bound(eps, 0.0) == pytest.approx(math.exp(eps) / (1 + math.exp(eps)), abs=1e-12)


@pytest.mark.parametrize("eps,delta", [(0.5, 1e-2), (2.0, 1e-5), (1.0, 0.2)])
def test_auc_bound_equals_the_area_under_the_dp_tradeoff_region(eps, delta):
    a = np.linspace(0.0, 1.0, 200_001)
    tpr = np.minimum(1.0, np.minimum(math.exp(eps) * a + delta, 1 - math.exp(-eps) * (1 - delta - a)))

    assert auc_upper_bound(eps, delta) == pytest.approx(np.trapezoid(tpr, a), abs=1e-8)


def test_auc_bound_grows_with_epsilon_and_delta_and_is_one_without_protection():
    assert auc_upper_bound(1.0, 1e-5) < auc_upper_bound(2.0, 1e-5) < auc_upper_bound(2.0, 1e-2)
    assert auc_upper_bound(math.inf, 1e-5) == 1.0
    assert auc_upper_bound(5000.0, 1e-5) == 1.0  # no overflow on the huge epsilons of tiny noise
    assert record_guarantee_of_client_level(5000.0, 1e-6) == (10000.0, 1.0)


def test_client_level_guarantee_read_for_one_record_is_two_steps_of_group_privacy():
    eps, delta = record_guarantee_of_client_level(1.0, 1e-5)

    assert eps == 2.0
    assert delta == pytest.approx((1 + math.e) * 1e-5)


def test_run_bound_takes_the_tighter_guarantee_and_nan_without_any():
    record_only = membership_auc_bound(eps_record=1.0, delta_record=1e-5, eps_client=math.inf, delta_client=0.1)
    both = membership_auc_bound(eps_record=8.0, delta_record=1e-5, eps_client=0.2, delta_client=1e-6)

    assert record_only == pytest.approx(auc_upper_bound(1.0, 1e-5))
    assert both == pytest.approx(auc_upper_bound(0.4, (1 + math.exp(0.2)) * 1e-6))
    assert math.isnan(membership_auc_bound(eps_record=math.inf, delta_record=1e-5, eps_client=math.inf,
                                           delta_client=1e-5))
