"""Client-side encoding for secure aggregation: rotation, conditional rounding, modular clipping, decoding."""

import math

import numpy as np
import pytest
from scipy.linalg import hadamard

from privacy.secagg.quantization import (Quantizer, conditional_round, fwht, from_ring, padded_dim, random_signs,
                                  ring_sum, rotate, rounded_l1_bound, rounded_l2_bound, to_ring, unrotate)


def test_fwht_is_the_orthonormal_hadamard_matrix():
    x = np.random.default_rng(0).normal(size=(3, 64))

    y = fwht(x)

    np.testing.assert_allclose(y, x @ hadamard(64).T / 8, atol=1e-12)
    np.testing.assert_allclose(fwht(y), x, atol=1e-12)  # its own inverse


def reference_fwht(x):
    """The transform by its definition, level by level on index pairs (i, i + h), i without bit h:
    (a, b) <- (a + b, (a + b) - 2 b), then / sqrt(n)."""
    y = np.array(x, dtype=np.float64)
    n = y.shape[-1]
    index = np.arange(n)
    for level in range(n.bit_length() - 1):
        low = index[(index >> level) & 1 == 0]
        high = low + (1 << level)
        total = y[..., low] + y[..., high]
        y[..., high] = total - 2 * y[..., high]
        y[..., low] = total
    return y / math.sqrt(n)


def butterfly_loop_fwht(x):
    """The transform as the plain in-place butterfly loop, every level on blocks of h (the former fwht)."""
    y = np.array(x, dtype=np.float64)
    n, h = y.shape[-1], 1
    while h < n:
        pairs = y.reshape(*y.shape[:-1], -1, 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        a += b
        b *= -2
        b += a  # a + b - 2 b = a - b
        h *= 2
    return y / math.sqrt(n)


@pytest.mark.parametrize("n", [1 << k for k in range(17)])  # 1, 2, 4, ..., 65,536
def test_fwht_is_the_transform_by_its_definition_and_the_butterfly_loop_bit_for_bit(n):
    x = np.random.default_rng(n).normal(size=(3, n)) * 1e4

    y = fwht(x)

    np.testing.assert_array_equal(y, reference_fwht(x))
    np.testing.assert_array_equal(y, butterfly_loop_fwht(x))
    np.testing.assert_array_equal(fwht(x[1]), y[1])  # one vector alone as in a stack of rows
    assert y.dtype == np.float64 and y.shape == x.shape


@pytest.mark.parametrize("dim", [1, 2, 3, 63, 64, 65, 100, 1000, 1025, 4097, 39_700, 65_536])
def test_rotation_skips_the_padding_and_gives_the_full_transform_bit_for_bit(dim):
    """rotate() leaves out the blocks that hold only padding; every coordinate is the full transform's (zeros
    may differ in sign, which array_equal does not see and rounding to integers cannot either)."""
    x = np.random.default_rng(dim).normal(size=(2, dim)) * 1e3
    n = padded_dim(dim)
    padded = np.zeros((2, n))
    padded[:, :dim] = x

    full = reference_fwht(padded * random_signs(n, seed=7))

    np.testing.assert_array_equal(rotate(x, seed=7), full)
    np.testing.assert_array_equal(rotate(x[1], seed=7), full[1])
    spike = np.zeros(dim)
    spike[-1] = 2.0  # the last input coordinate: a level that skipped a block holding it would lose it
    padded_spike = np.pad(spike, (0, n - dim)) * random_signs(n, seed=3)
    np.testing.assert_array_equal(rotate(spike, seed=3), reference_fwht(padded_spike))


def test_fwht_leaves_its_input_alone_and_refuses_lengths_that_are_not_powers_of_two():
    x = np.arange(8.0)
    fwht(x)
    np.testing.assert_array_equal(x, np.arange(8.0))
    assert fwht(np.zeros((0, 16))).shape == (0, 16)
    for n in (0, 3, 12):
        with pytest.raises(ValueError, match="power of two"):
            fwht(np.zeros(n))


def test_rotation_is_an_isometry_and_its_inverse_is_exact():
    x = np.random.default_rng(1).normal(size=37)

    y = rotate(x, seed=5)
    back = unrotate(y, dim=37, seed=5)

    assert y.shape == (64,) and padded_dim(37) == 64
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    np.testing.assert_allclose(back, x, atol=1e-12)
    assert not np.allclose(unrotate(y, dim=37, seed=6), x)  # the signs matter: another seed does not invert it


def test_rotation_flattens_a_spike():
    spike = np.zeros(1000)
    spike[17] = 3.0

    y = rotate(spike, seed=0)

    np.testing.assert_allclose(np.abs(y), 3.0 / math.sqrt(1024), rtol=1e-12)  # every coordinate |3| / sqrt(n)


def test_randomised_rounding_is_unbiased():
    x = np.linspace(-2.0, 2.0, 50) + 0.3
    draws = 20_000
    rng = np.random.default_rng(2)

    mean = np.mean([conditional_round(x, norm_bound=math.inf, rng=rng, max_tries=1)[0] for _ in range(draws)], axis=0)

    p = x - np.floor(x)
    standard_error = np.sqrt(p * (1 - p) / draws) + 1e-12
    assert np.all(np.abs(mean - x) <= 4.5 * standard_error)


def test_conditional_rounding_keeps_the_norm_bound_and_reports_its_tries():
    q = Quantizer(scale=30.0, clip=1.0, bits=16, rotate=True, beta=math.exp(-0.5))
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(100, 200))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # every input at the clip

    diags = [q.encode(v, rng=rng, rotation_seed=9)[1] for v in vectors]

    bound = q.l2_sensitivity(200)
    assert bound == pytest.approx(rounded_l2_bound(l2=30.0, dim=256, beta=math.exp(-0.5)))  # padded dimension
    assert bound < 30.0 + math.sqrt(256)  # conditioning buys a tighter bound than the worst case
    assert all(d.rounded_norm <= d.norm_bound == bound for d in diags)
    assert all(d.rounding_tries >= 1 for d in diags) and max(d.rounding_tries for d in diags) < 10


def test_conditional_rounding_gives_up_with_a_clear_error():
    x = np.full(16, 0.5)  # a norm <= 0.5 needs all 16 coordinates rounded down: probability 2^-16 a draw

    with pytest.raises(ValueError, match="raise beta or max_tries"):
        conditional_round(x, norm_bound=0.5, rng=np.random.default_rng(0), max_tries=5)


@pytest.mark.parametrize("l2,dim,beta,expected", [
    (10.0, 16, math.exp(-0.5), math.sqrt(100 + 4 + 1.0 * (10 + 2))),  # sqrt(2 log(1/beta)) = 1
    (10.0, 16, 0.0, 14.0),  # unconditional: l2 + sqrt(dim)
    (1.0, 10_000, math.exp(-0.5), math.sqrt(1 + 2500 + 1.0 * (1 + 50))),
    (1.0, 1, 1e-300, 2.0),  # beta tiny: the worst case l2 + sqrt(dim) is the smaller one
])
def test_rounded_l2_bound_by_hand(l2, dim, beta, expected):
    assert rounded_l2_bound(l2=l2, dim=dim, beta=beta) == pytest.approx(expected, rel=1e-12)


def test_rounded_l1_bound_is_the_smaller_of_cauchy_schwarz_and_the_integer_square():
    assert rounded_l1_bound(l2=10.0, dim=16) == pytest.approx(40.0)  # sqrt(16) * 10 < 100
    assert rounded_l1_bound(l2=3.0, dim=10_000) == pytest.approx(9.0)  # 3^2 < 100 * 3


def test_modular_clipping_maps_to_the_centred_range_and_counts_wraps():
    z = np.array([-9, -8, -1, 0, 7, 8, 23])

    ring, wrapped = to_ring(z, bits=4)
    back = from_ring(ring, bits=4)

    assert ring.dtype == np.uint64 and ring.max() < 16
    np.testing.assert_array_equal(back, [7, -8, -1, 0, 7, -8, 7])
    assert wrapped == 3  # -9, 8 and 23 left [-8, 8)


def test_sum_of_encoded_clients_decodes_to_the_real_sum():
    q = Quantizer(scale=2.0 ** 10, clip=1.0, bits=20)
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(5, 37)) * 0.1
    encoded = [q.encode(x, rng=rng, rotation_seed=11)[0] for x in xs]

    rings = [to_ring(z, bits=q.bits) for z in encoded]
    total = q.decode(ring_sum([r for r, _ in rings], bits=q.bits), dim=37, rotation_seed=11)

    assert all(w == 0 for _, w in rings)
    rounding_error = 5 * math.sqrt(64) / q.scale  # each coordinate of each client moves by < 1 grid step
    assert np.linalg.norm(total - xs.sum(axis=0)) < rounding_error
    assert np.linalg.norm(total - xs.sum(axis=0)) < 0.05 * np.linalg.norm(xs.sum(axis=0))


def test_a_sum_too_large_for_the_bits_wraps_and_is_reported():
    q = Quantizer(scale=200.0, clip=1.0, bits=8, rotate=False)
    x = np.zeros(4)
    x[0] = 1.0  # 200 on the grid: beyond [-128, 128)
    z, _ = q.encode(x, rng=np.random.default_rng(0), rotation_seed=0)

    ring, wrapped = to_ring(z, bits=8)

    assert wrapped == 1
    assert q.decode(ring, dim=4, rotation_seed=0)[0] == pytest.approx((200 - 256) / 200.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(scale=0.0, clip=1.0), "scale"), (dict(scale=1.0, clip=-1.0), "clip"),
    (dict(scale=1.0, clip=1.0, bits=1), "bits"), (dict(scale=1.0, clip=1.0, bits=33), "bits"),
    (dict(scale=1.0, clip=1.0, beta=1.0), "beta"), (dict(scale=1.0, clip=1.0, max_tries=0), "max_tries"),
])
def test_bad_configuration_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Quantizer(**kwargs)


def test_an_unclipped_input_is_refused():
    q = Quantizer(scale=10.0, clip=1.0)

    with pytest.raises(ValueError, match="clip the vector"):
        q.encode(np.ones(4), rng=np.random.default_rng(0), rotation_seed=0)
