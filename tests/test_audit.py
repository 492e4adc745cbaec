"""The one-run audit's bound (Steinke, Nasr, Jagielski 2023) as pure maths."""

import math

import numpy as np
import pytest

from privacy.audit.one_run import GUESS_FRACTIONS, audit_delta, epsilon_lower_bound, one_run_audit, p_value


def test_paper_worked_example_1000_canaries_100_correct_guesses():
    eps = epsilon_lower_bound(canaries=1000, guesses=100, correct=100, delta=1e-5, confidence=0.95)

    assert eps == pytest.approx(3.47, abs=0.01)


def test_pure_dp_all_correct_has_the_closed_form():
    """delta = 0, v = r: the p-value is q^r, so the bound solves q^r = 0.05 with q = e^eps / (1 + e^eps)."""
    q = 0.05 ** (1 / 100)

    eps = epsilon_lower_bound(canaries=1000, guesses=100, correct=100, delta=0.0, confidence=0.95)

    assert eps == pytest.approx(math.log(q / (1 - q)), abs=1e-6)


def test_the_bound_sits_where_the_p_value_crosses_the_level():
    eps = epsilon_lower_bound(canaries=500, guesses=200, correct=170, delta=1e-6, confidence=0.95)

    below = p_value(canaries=500, guesses=200, correct=170, epsilon=eps - 1e-6, delta=1e-6)
    above = p_value(canaries=500, guesses=200, correct=170, epsilon=eps + 1e-3, delta=1e-6)
    assert below < 0.05 <= above


def test_fewer_correct_guesses_or_more_delta_give_a_lower_bound():
    kwargs = dict(canaries=1000, guesses=100, confidence=0.95)

    all_right = epsilon_lower_bound(correct=100, delta=1e-5, **kwargs)
    some_wrong = epsilon_lower_bound(correct=90, delta=1e-5, **kwargs)
    big_delta = epsilon_lower_bound(correct=100, delta=1e-4, **kwargs)
    coin_flips = epsilon_lower_bound(correct=50, delta=1e-5, **kwargs)

    assert all_right > some_wrong > 0
    assert big_delta < all_right
    assert coin_flips == 0.0


def test_the_bound_holds_at_its_confidence_on_randomised_response():
    """An exactly eps-DP mechanism (randomised response on each inclusion bit) may exceed eps in its
    audited lower bound at most 5 % of the time: the bound is a valid 95 % lower bound."""
    eps_true, m, trials = 1.0, 1000, 400
    rng = np.random.default_rng(2023)
    q = math.exp(eps_true) / (1 + math.exp(eps_true))

    exceed = 0
    for _ in range(trials):
        correct = int(rng.binomial(m, q))  # every canary guessed by its randomised-response bit
        exceed += epsilon_lower_bound(canaries=m, guesses=m, correct=correct, delta=0.0) > eps_true

    assert exceed / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
    assert exceed > 0  # and it is not vacuous: the bound comes close to eps often enough to cross it


def test_one_run_audit_separated_scores_give_a_large_bound():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    scores = included + 0.01 * rng.standard_normal(1000)  # the output reveals every bit

    result = one_run_audit(scores, included, delta=1e-6)

    # the best rule guesses only as many as it can get all right (473 are in, so not all 1000);
    # with every guess right the p-value is about q^r, Bonferroni over the grid: q^r = 0.05 / len(grid)
    assert result.correct == result.guesses == 500
    q = (0.05 / len(GUESS_FRACTIONS)) ** (1 / 500)
    assert result.eps_lower == pytest.approx(math.log(q / (1 - q)), abs=0.05)
    assert result.included == int(included.sum())


def test_one_run_audit_of_scores_that_ignore_the_bits_is_near_zero():
    rng = np.random.default_rng(1)
    included = rng.random(1000) < 0.5

    result = one_run_audit(rng.standard_normal(1000), included, delta=1e-6)

    assert result.eps_lower < 0.2
    assert result.guesses > 0  # the guesses behind the figure are reported even when it is 0


def test_audit_input_errors():
    with pytest.raises(ValueError, match="guesses"):
        p_value(canaries=10, guesses=20, correct=5, epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="scores"):
        one_run_audit([0.1, 0.2], [True], delta=1e-5)
    assert one_run_audit([], [], delta=1e-5).eps_lower == 0.0


def test_audit_delta_keeps_the_delta_term_within_a_tenth_of_the_level():
    assert audit_delta(canaries=1000, delta=1e-7, confidence=0.95) == 1e-7  # already small: the claim's own
    small = audit_delta(canaries=1000, delta=1 / 100 ** 1.1, confidence=0.95)  # N = 100 clients: 6.3e-3

    assert small == pytest.approx(0.05 / 20_000)
    assert 2 * 1000 * small == pytest.approx(0.1 * 0.05)  # the delta term takes a tenth of the 5 %
    # at the claim's own delta nothing could be rejected; at the audit delta, 100 right guesses are evidence
    assert epsilon_lower_bound(canaries=1000, guesses=100, correct=100, delta=1 / 100 ** 1.1) == 0.0
    assert epsilon_lower_bound(canaries=1000, guesses=100, correct=100, delta=small) > 3.0
