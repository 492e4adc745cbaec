"""Batched encoding of a client actor's clients (SkellamClientStep.constrain_sensitivity_batch,
Quantizer.encode_batch, conditional_round_batch): bit for bit what each client gets encoded alone, from its own
stream, including re-drawn roundings, failures, dims that are not a power of two and the noise-free canaries."""

import math

import numpy as np
import pytest

from privacy.mechanisms.distributed_dp import (ENCODE_ROWS, DistributedDPConfig, DistributedSkellamMechanism,
                                               SkellamClientStep, client_rng, without_noise)
from privacy.secagg.quantization import Quantizer, conditional_round, conditional_round_batch, fwht


def rngs(ids, *, round_idx=0, noise_seed=7):
    return [client_rng(noise_seed=noise_seed, client_id=k, round_idx=round_idx) for k in ids]


def deltas(n, dim, seed, *, low=0.3, high=3.0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, dim))
    return raw / np.linalg.norm(raw, axis=1, keepdims=True) * rng.uniform(low, high, size=(n, 1))


def assert_same(alone, batched):
    assert len(alone) == len(batched)
    for a, b in zip(alone, batched):
        np.testing.assert_array_equal(a.vector, b.vector)
        assert a.vector.dtype == b.vector.dtype
        assert (a.wrapped, a.norm, a.unclipped, a.rounded_norm, a.rounding_tries) == \
               (b.wrapped, b.norm, b.unclipped, b.rounded_norm, b.rounding_tries)


def assert_same_state(first, second):
    assert [g.bit_generator.state for g in first] == [g.bit_generator.state for g in second]


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


@pytest.mark.parametrize("n", [1, 2, 8, 64, 128, 4096, 65536])
def test_the_blocked_hadamard_transform_is_the_butterfly_loop_bit_for_bit(n):
    x = np.random.default_rng(n).normal(size=(3, n)) * 1e4

    y = fwht(x)

    np.testing.assert_array_equal(y, reference_fwht(x))
    np.testing.assert_array_equal(fwht(x[1]), reference_fwht(x[1]))


@pytest.mark.parametrize("dim,rotate,clients", [(300, True, 5), (1000, True, ENCODE_ROWS + 3), (777, False, 4)])
def test_a_batch_is_each_client_encoded_alone_bit_for_bit(dim, rotate, clients):
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.5, noise_multiplier=1.0, expected_cohort=clients,
                                                           rotate=rotate), dim=dim, noise_seed=7)
    step = mech.client_step(round_idx=3, cohort=clients)
    ids = list(range(10, 10 + clients))
    xs = deltas(clients, dim, seed=dim, low=0.1, high=1.5)  # some under the clip, some clipped
    alone_rngs, batch_rngs = rngs(ids, round_idx=3), rngs(ids, round_idx=3)

    alone = [step.constrain_sensitivity(x, rng=g) for x, g in zip(xs, alone_rngs)]
    batched = step.constrain_sensitivity_batch(list(xs), rngs=batch_rngs)

    assert_same(alone, batched)
    assert_same_state(alone_rngs, batch_rngs)  # each stream consumed exactly as alone
    assert any(not r.unclipped for r in batched) and any(r.unclipped for r in batched)


def tight_step(dim, *, max_tries=1000, share=50.0):
    """No rotation, scale 1, clip sqrt(dim) / 2 and beta near 1: an input of all halves rounds to a 0/1 vector of
    squared norm Binomial(dim, 1/2), which exceeds the threshold (dim / 2 + 0.14 sqrt(dim)) about 4 times in 10."""
    q = Quantizer(scale=1.0, clip=math.sqrt(dim) / 2, bits=16, rotate=False, beta=0.99, max_tries=max_tries)
    return SkellamClientStep(q, dim, share, rotation_seed=0)


def test_rows_whose_rounding_fails_the_norm_check_are_redrawn_from_their_own_stream():
    dim, clients = 401, 12
    step = tight_step(dim)
    xs = np.full((clients, dim), 0.5)
    xs[::3] = deltas(4, dim, seed=1, low=1.0, high=5.0)  # a few ordinary rows that pass at once
    alone_rngs, batch_rngs = rngs(range(clients)), rngs(range(clients))

    alone = [step.constrain_sensitivity(x, rng=g) for x, g in zip(xs, alone_rngs)]
    batched = step.constrain_sensitivity_batch(list(xs), rngs=batch_rngs)

    assert_same(alone, batched)
    assert_same_state(alone_rngs, batch_rngs)
    tries = [r.rounding_tries for r in batched]
    assert max(tries) > 1 and min(tries) == 1  # some rows redrawn, others not
    assert all(r.rounded_norm <= step.quantizer.l2_sensitivity(dim) for r in batched)


def test_conditional_round_batch_is_conditional_round_per_row_and_marks_rows_that_never_pass():
    y = np.full((6, 257), 0.5)
    y[0] = 3.25
    bound = math.sqrt(257 / 2)  # at the mean of Binomial(257, 1/2): about half the draws fail
    alone_rngs, batch_rngs = rngs(range(6)), rngs(range(6))
    y[5, :] = 0.75  # its norm^2 is Binomial(257, 3/4), mean 193: never under the bound in 3 draws

    z, tries = conditional_round_batch(y, norm_bound=bound, rngs=batch_rngs, max_tries=3)

    for i in range(6):
        try:
            zi, ti = conditional_round(y[i], norm_bound=bound, rng=alone_rngs[i], max_tries=3)
        except ValueError:
            assert tries[i] == 0
            continue
        np.testing.assert_array_equal(z[i], zi)
        assert tries[i] == ti
    assert tries[5] == 0 and tries[0] == 0  # 3.25 everywhere: norm 3 sqrt(257) at best, far above the bound
    assert_same_state(alone_rngs, batch_rngs)


def test_a_client_that_cannot_be_encoded_gets_the_error_it_gets_alone_and_leaves_the_others_alone():
    dim = 401
    step = tight_step(dim, max_tries=1)
    xs = [np.full(dim, 0.5) for _ in range(8)] + [np.zeros(dim + 1)]
    alone_rngs, batch_rngs = rngs(range(9)), rngs(range(9))
    alone = []
    for x, g in zip(xs, alone_rngs):
        try:
            alone.append(step.constrain_sensitivity(x, rng=g))
        except ValueError as exc:
            alone.append(exc)

    batched = step.constrain_sensitivity_batch(xs, rngs=batch_rngs)

    failed = [i for i, a in enumerate(alone) if isinstance(a, ValueError)]
    assert 8 in failed and 0 < len(failed) < 9  # the wrong dim, and some roundings over the bound at once
    for i, (a, b) in enumerate(zip(alone, batched)):
        if i in failed:
            assert isinstance(b, ValueError) and str(b) == str(a)
        else:
            assert_same([a], [b])
    assert_same_state(alone_rngs, batch_rngs)


def test_the_noise_free_canary_step_batched_is_the_canaries_encoded_alone():
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.5, noise_multiplier=1.0, expected_cohort=10),
                                       dim=1000, noise_seed=3)
    step = without_noise(mech.client_step(round_idx=2, cohort=1))
    canaries = deltas(5, 1000, seed=4, low=1.0, high=1.0) * mech.config.clip  # at the clip, as canaries are
    alone_rngs, batch_rngs = rngs(range(5), round_idx=2), rngs(range(5), round_idx=2)

    alone = [step.constrain_sensitivity(c, rng=g) for c, g in zip(canaries, alone_rngs)]
    batched = step.constrain_sensitivity_batch(list(canaries), rngs=batch_rngs)

    assert step.share_variance == 0.0
    assert_same(alone, batched)


def test_torch_deltas_and_an_empty_batch():
    import torch

    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.5, noise_multiplier=1.0, expected_cohort=3),
                                       dim=300, noise_seed=7)
    step = mech.client_step(round_idx=0, cohort=3)
    xs = [torch.tensor(x, dtype=torch.float32) for x in deltas(3, 300, seed=9)]

    alone = [step.constrain_sensitivity(x, rng=g) for x, g in zip(xs, rngs(range(3)))]
    batched = step.constrain_sensitivity_batch(xs, rngs=rngs(range(3)))

    assert_same(alone, batched)
    assert step.constrain_sensitivity_batch([], rngs=[]) == []
    with pytest.raises(ValueError, match="one generator per client"):
        step.constrain_sensitivity_batch(xs, rngs=rngs(range(2)))
