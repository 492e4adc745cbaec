"""The Skellam sampler: an alias table whose distribution is exactly its integer weights / 2^64, and those
weights against the Skellam pmf computed independently (mpmath's Bessel function at 30 digits)."""

import math

import mpmath
import numpy as np
import pytest

from scipy import stats

from privacy.mechanisms.alias_table import TOTAL, AliasTable, quantize
from privacy.mechanisms.skellam import TABLE_MAX_ATOMS, sample_skellam, skellam_table


class _Words:
    """A stand-in generator that hands out chosen 64-bit words."""

    def __init__(self, words):
        self._words = np.array(words, dtype=np.uint64)

    def integers(self, low, high, *, size, dtype):
        assert (low, high, dtype, size) == (0, 2 ** 64, np.uint64, self._words.shape)
        return self._words


def test_the_table_draws_each_value_with_exactly_its_weight():
    p = np.random.default_rng(0).random(37) ** 3
    weights = quantize(p)

    table = AliasTable.from_weights(weights, lowest=-5)

    assert sum(weights) == TOTAL
    assert table.probabilities() == {i - 5: w for i, w in enumerate(weights) if w}


def test_a_word_draws_its_buckets_own_atom_below_the_threshold_and_the_alias_from_it():
    table = AliasTable.from_weights(quantize(np.array([0.5, 0.2, 0.2, 0.1])), lowest=10)
    shift = 64 - table.bits
    words, expected = [], []
    for j, (keep, alias) in enumerate(zip(table.thresholds.tolist(), table.aliases.tolist())):
        if keep:  # the lowest and the last word that keep the bucket's own atom
            words += [j << shift, (j << shift) + keep - 1]
            expected += [10 + j, 10 + j]
        if keep < 1 << shift:  # the first and the last word that go to the alias
            words += [(j << shift) + keep, ((j + 1) << shift) - 1]
            expected += [alias, alias]

    drawn = table.sample(len(words), rng=_Words(words))

    assert drawn.tolist() == expected


def test_quantized_weights_keep_every_atom_to_one_unit_of_2_to_the_minus_64():
    p = np.random.default_rng(1).random(1000) ** 8
    p /= p.sum()

    weights = np.array(quantize(p), dtype=float)

    off = np.abs(weights - p * TOTAL)
    top = int(np.argmax(p))
    assert np.all(np.delete(off, top) <= 1 + 1e-15 * np.delete(p, top) * TOTAL)
    assert off[top] <= 1e-12 * p[top] * TOTAL  # what the floors left over


@pytest.mark.parametrize("variance", [0.05, 3.0, 40.0, 2.0e5])
def test_the_skellam_table_is_the_skellam_pmf(variance):
    table = skellam_table(variance)
    units = table.probabilities()
    sd = math.sqrt(variance)
    mpmath.mp.dps = 30

    for x in sorted({0, 1, 2, int(sd), int(3 * sd), int(6 * sd) + 1}):
        exact = float(mpmath.exp(-variance) * mpmath.besseli(x, variance))  # P(Poisson(v/2) - Poisson(v/2) = x)
        for value in (x, -x):
            assert units[value] / TOTAL == pytest.approx(exact, rel=1e-12, abs=2 ** -64)
    assert min(units) == -max(units)
    assert sum(units.values()) == TOTAL


def test_the_whole_table_is_within_1e_14_of_the_skellam_in_total_variation():
    variance = 3.0
    units = skellam_table(variance).probabilities()
    mpmath.mp.dps = 40
    exact = {x: mpmath.exp(-variance) * mpmath.besseli(abs(x), variance) for x in range(-60, 61)}

    assert set(units) <= set(exact) and all(units[x] == units[-x] for x in units)
    tv = sum(abs(mpmath.mpf(units.get(x, 0)) / TOTAL - p) for x, p in exact.items()) / 2
    tv += (1 - sum(exact.values())) / 2  # the mass beyond |x| = 60, never drawn
    assert tv < 1e-14


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox])
@pytest.mark.parametrize("variance", [0.37, 2.6])
def test_draws_fit_the_skellam_at_non_integer_variances_from_any_bit_generator(variance, bit_generator):
    draws = 200_000
    x = sample_skellam(variance, draws, rng=np.random.Generator(bit_generator(5)))

    ks = np.arange(-6, 7)
    observed = np.array([np.count_nonzero(x == k) for k in ks] + [np.count_nonzero(np.abs(x) > 6)])
    pmf = stats.skellam.pmf(ks, variance / 2, variance / 2)
    assert stats.chisquare(observed, draws * np.append(pmf, 1 - pmf.sum())).pvalue > 1e-3
    shifted = stats.skellam.pmf(ks - 1, variance / 2, variance / 2)  # the same law one step to the right
    assert stats.chisquare(observed, draws * np.append(shifted, 1 - shifted.sum())).pvalue < 1e-12


@pytest.mark.parametrize("variance", [2.0e5, 1.0e8])
def test_draws_have_the_variance_with_the_table_and_beyond_it(variance):
    coords = 400_000
    assert (skellam_table(variance) is None) == (variance == 1.0e8)  # 1e8 needs more than TABLE_MAX_ATOMS
    x = sample_skellam(variance, coords, rng=np.random.default_rng(2))

    standard_error = math.sqrt((variance + 2 * variance ** 2) / coords)  # Var of x^2: mu_4 - mu^2, mu_4 = v + 3 v^2
    assert abs(x.var() - variance) < 3 * standard_error
    assert abs(x.mean()) < 3 * math.sqrt(variance / coords)
    assert x.dtype == np.int64


def test_the_same_generator_state_gives_the_same_draws_and_a_zero_variance_draws_zeros():
    a = sample_skellam(7.5, (3, 4), rng=np.random.default_rng(9))
    b = sample_skellam(7.5, (3, 4), rng=np.random.default_rng(9))

    assert a.shape == (3, 4) and np.array_equal(a, b)
    assert not np.array_equal(a, sample_skellam(7.5, (3, 4), rng=np.random.default_rng(10)))
    assert np.array_equal(sample_skellam(0.0, 5, rng=np.random.default_rng(0)), np.zeros(5, dtype=np.int64))


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="2\\^64"):
        AliasTable.from_weights([1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        quantize(np.array([0.5, -0.1]))
    assert TABLE_MAX_ATOMS >= 1 << 14  # the devices federation's shares (variance ~3e5) fit a table
