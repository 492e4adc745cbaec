"""Canary clients of the one-run audit: directions, inclusion, sampling, scores, default count."""

import numpy as np
import pytest
import torch

from privacy.audit.canaries import Canaries, default_canary_count


def test_directions_are_seeded_unit_vectors_and_nearly_orthogonal():
    a, b = Canaries(50, 20_000, seed=1, sample_rate=0.5), Canaries(50, 20_000, seed=1, sample_rate=0.5)

    u0, u1 = a.dense_direction(0), a.dense_direction(1)

    assert float(u0.norm()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(u0, b.dense_direction(0))  # same seed, same canary: same direction
    assert abs(float(u0 @ u1)) < 5 / np.sqrt(4096)  # independent sparse Gaussians: inner product ~ 1/sqrt(k)
    assert not torch.equal(u0, Canaries(50, 20_000, seed=2, sample_rate=0.5).dense_direction(0))


def test_about_half_are_included_fixed_by_the_seed():
    c = Canaries(4000, 100, seed=3, sample_rate=0.5)

    assert abs(c.included.mean() - 0.5) < 4 * 0.5 / np.sqrt(4000)
    assert np.array_equal(c.included, Canaries(4000, 100, seed=3, sample_rate=0.1).included)


def test_only_included_canaries_take_part_at_the_clients_rate():
    c = Canaries(4000, 100, seed=4, sample_rate=0.25)

    ids = c.participants(round_idx=7)

    assert c.included[ids].all()
    expected = 0.25 * c.included.sum()
    assert abs(len(ids) - expected) < 4 * np.sqrt(expected)
    assert np.array_equal(Canaries(4000, 100, seed=4, sample_rate=1.0).participants(0),
                          np.flatnonzero(c.included))


def test_round_sum_is_clip_times_the_participants_directions():
    c = Canaries(20, 500, seed=5, sample_rate=0.5)

    total, n = c.round_sum(round_idx=2, clip=0.7)

    expected = sum(c.dense_direction(int(j)) for j in c.participants(2)) * 0.7
    assert n == len(c.participants(2))
    assert torch.allclose(total, expected, atol=1e-6)


def test_scores_are_inner_products_with_the_model_change():
    c = Canaries(300, 50_000, seed=6, sample_rate=1.0)
    change = sum(c.round_sum(r, clip=2.0)[0] for r in range(3))  # every included canary, 3 rounds

    scores = c.scores(change)

    assert scores[1] == pytest.approx(float(c.dense_direction(1) @ change), rel=1e-5)
    assert np.median(scores[c.included]) == pytest.approx(6.0, rel=0.05)  # 3 rounds x clip 2 along its own u_j
    assert abs(np.median(scores[~c.included])) < 0.5


@pytest.mark.parametrize("z,q,params,clipping,expected", [
    (1.0, 0.5, 6186, True, 1000),  # plenty of noise: the full 1000
    (0.05, 1.0, 6186, True, 0),  # tiny noise: canaries would dominate it, so none
    (0.3, 1.0, 6186, True, 111),  # room for 0.1 * 0.09 * 6186 * 2 = 111
    (1.0, 0.5, 6186, False, 0),  # no clipping, no client-level DP to audit
    (0.0, 0.5, 6186, True, 0),
])
def test_default_canary_count_keeps_canaries_within_a_tenth_of_the_noise(z, q, params, clipping, expected):
    assert default_canary_count(noise_multiplier=z, sample_rate=q, num_params=params,
                                clipping=clipping) == expected


def test_canaries_need_a_client_level_clip():
    from privacy.config.experiment import ConfigError, load_config

    with pytest.raises(ConfigError, match="audit.canaries"):
        load_config(overrides=["audit.canaries=10"])  # default server.clip = 0: no sensitivity to scale them to
    assert load_config(overrides=["audit.canaries=10", "server.clip=1.0"]).audit.canaries == 10
