import math

import pytest
import torch

from privacy.mechanisms.clipping import adaptive_clip_update, clip_by_l2_norm
from privacy.mechanisms.gaussian import (adaptive_clipping_delta_multiplier, broadcast_noise, dp_fedavg_aggregate,
                                     dp_fedavg_noise_std)


@pytest.mark.parametrize("z,clip,m", [(1.0, 0.5, 10), (0.3, 2.0, 4), (2.5, 0.1, 100)])
def test_server_noise_std_is_z_times_clip_over_expected_cohort(z, clip, m):
    n = 400_000
    zeros = torch.zeros(n)

    update, diag = dp_fedavg_aggregate(zeros, noise_multiplier=z, clip=clip, expected_cohort=m,
                                       generator=torch.Generator().manual_seed(0))

    expected = z * clip / m
    empirical = float(update.double().std())
    standard_error = expected / math.sqrt(2 * (n - 1))  # SE of a Gaussian sample std
    assert abs(empirical - expected) < 3 * standard_error
    assert abs(float(update.double().mean())) < 3 * expected / math.sqrt(n)
    assert diag.std == pytest.approx(expected)


def test_denominator_is_the_expected_cohort_not_the_realised_one():
    three_clients = torch.full((5,), 3.0)  # sum of 3 clipped deltas of value 1

    avg, _ = dp_fedavg_aggregate(three_clients, noise_multiplier=0.0, clip=1.0, expected_cohort=10,
                                 generator=torch.Generator())

    assert torch.allclose(avg, torch.full((5,), 0.3))


def test_noise_is_reproducible_from_the_generator():
    a, _ = dp_fedavg_aggregate(torch.zeros(10), noise_multiplier=1, clip=1, expected_cohort=2,
                               generator=torch.Generator().manual_seed(5))
    b, _ = dp_fedavg_aggregate(torch.zeros(10), noise_multiplier=1, clip=1, expected_cohort=2,
                               generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_clip_bounds_the_norm_and_keeps_short_deltas():
    long, short = torch.full((4,), 3.0), torch.full((4,), 0.1)

    clipped, norm = clip_by_l2_norm(long, 1.5)
    kept, _ = clip_by_l2_norm(short, 1.5)
    unclipped, _ = clip_by_l2_norm(long, 0.0)

    assert norm == pytest.approx(6.0)
    assert float(clipped.norm()) == pytest.approx(1.5)
    assert torch.equal(kept, short) and torch.equal(unclipped, long)


def test_noise_std_formula_rejects_nonsense():
    assert dp_fedavg_noise_std(noise_multiplier=1.0, clip=2.0, expected_cohort=4) == 0.5
    with pytest.raises(ValueError):
        dp_fedavg_noise_std(noise_multiplier=1.0, clip=1.0, expected_cohort=0)


def test_adaptive_clipping_composes_to_the_requested_multiplier():
    z, sigma_b = 1.0, 5.0

    sigma_delta = adaptive_clipping_delta_multiplier(noise_multiplier=z, count_noise_std=sigma_b)

    # Gaussian RDP composes as 1/sigma^2: the delta release and the bit count (sensitivity 1/2) give back z
    assert sigma_delta ** -2 + (2 * sigma_b) ** -2 == pytest.approx(z ** -2)
    with pytest.raises(ValueError, match="z < 2"):
        adaptive_clipping_delta_multiplier(noise_multiplier=10.0, count_noise_std=5.0)


def test_adaptive_clip_moves_toward_the_target_quantile():
    assert adaptive_clip_update(1.0, 0.9, target_quantile=0.5, learning_rate=0.2) < 1.0  # too few clipped: shrink
    assert adaptive_clip_update(1.0, 0.1, target_quantile=0.5, learning_rate=0.2) > 1.0
    assert adaptive_clip_update(1.0, 0.5, target_quantile=0.5, learning_rate=0.2) == 1.0


def test_broadcast_noise_is_post_processing_only():
    w = torch.zeros(1000)
    assert torch.equal(broadcast_noise(w, std=0.0, generator=torch.Generator()), w)
    noisy = broadcast_noise(w, std=0.1, generator=torch.Generator().manual_seed(0))
    assert 0.08 < float(noisy.std()) < 0.12
