"""Adaptive clipping (Andrew et al. 2021): the clip update, the bit-count release, the noise split, the refusals."""

import math

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting import rdp
from scipy import stats

from privacy.mechanisms.clipping import adaptive_clip_update
from privacy.config.experiment import ConfigError, ServerConfig, load_config
from privacy.mechanisms.gaussian import adaptive_clipping_delta_multiplier, noised_unclipped_fraction
from orchestrator.resolve import resolve_config


@pytest.mark.parametrize("gamma", [0.2, 0.5, 0.9])
def test_clip_converges_to_the_target_quantile_of_synthetic_norms(gamma):
    m, rounds = 100, 400
    norms = np.random.default_rng(7)  # delta norms ~ LogNormal(0, 0.5), fresh every round
    gen = torch.Generator().manual_seed(11)
    clip, history, shares = 0.1, [], []

    for _ in range(rounds):
        batch = norms.lognormal(0.0, 0.5, size=m)
        bits = int((batch <= clip).sum())
        shares.append(bits / m)
        b = noised_unclipped_fraction(bits, m, expected_cohort=m, std=m / 20, generator=gen)
        clip = adaptive_clip_update(clip, b, target_quantile=gamma, learning_rate=0.2)
        history.append(clip)

    true_quantile = math.exp(0.5 * stats.norm.ppf(gamma))
    settled = np.array(history[rounds // 2:])
    assert abs(np.median(settled) / true_quantile - 1) < 0.1
    assert abs(np.mean(shares[rounds // 2:]) - gamma) < 0.05


def test_noised_fraction_is_unbiased_with_std_sigma_b_over_m():
    m, sigma_b, n = 40, 2.0, 20_000
    gen = torch.Generator().manual_seed(3)

    draws = np.array([noised_unclipped_fraction(10, m, expected_cohort=m, std=sigma_b, generator=gen)
                      for _ in range(n)])

    expected_std = sigma_b / m
    assert abs(draws.mean() - 10 / m) < 4 * expected_std / math.sqrt(n)
    assert abs(draws.std(ddof=1) - expected_std) < 4 * expected_std / math.sqrt(2 * (n - 1))


def test_centred_bits_have_sensitivity_one_half():
    """Adding one client with either bit moves the noiseless release by 1/(2m): the centring at work."""
    m = 10
    gen = torch.Generator()

    base = noised_unclipped_fraction(4, 8, expected_cohort=m, std=0.0, generator=gen)
    with_one = noised_unclipped_fraction(5, 9, expected_cohort=m, std=0.0, generator=gen)
    with_zero = noised_unclipped_fraction(4, 9, expected_cohort=m, std=0.0, generator=gen)

    assert with_one - base == pytest.approx(1 / (2 * m))
    assert base - with_zero == pytest.approx(1 / (2 * m))


@pytest.mark.parametrize("z,sigma_b", [(1.0, 5.0), (0.5, 0.3), (2.0, 1.01)])
def test_delta_and_count_releases_compose_to_the_booked_multiplier(z, sigma_b):
    """Both releases are Gaussian mechanisms on the same cohort: deltas with sigma_Delta (sensitivity S),
    the centred count with 2 sigma_b (sensitivity 1/2). Composed, their RDP must equal one Gaussian with z."""
    sigma_delta = adaptive_clipping_delta_multiplier(noise_multiplier=z, count_noise_std=sigma_b)
    orders = [2.0, 8.0, 32.0]
    pair, single = rdp.RdpAccountant(orders), rdp.RdpAccountant(orders)

    pair.compose(dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(sigma_delta),
                                                dp_accounting.GaussianDpEvent(2 * sigma_b)]))
    single.compose(dp_accounting.GaussianDpEvent(z))

    assert sigma_delta > z
    assert pair.get_epsilon(1e-5) == pytest.approx(single.get_epsilon(1e-5), rel=1e-9)


def test_adaptive_clipping_refuses_z_at_or_above_twice_sigma_b():
    with pytest.raises(ValueError, match="z < 2"):
        adaptive_clipping_delta_multiplier(noise_multiplier=1.0, count_noise_std=0.5)
    with pytest.raises(ConfigError, match="server.clip_count_std"):
        ServerConfig(adaptive_clip=True, noise_multiplier=1.0, clients_per_round=10)  # sigma_b = 10/20
    assert ServerConfig(adaptive_clip=True, noise_multiplier=0.99, clients_per_round=10).count_noise_std == 0.5


def test_adaptive_clipping_config_rules():
    with pytest.raises(ConfigError, match="server.clip"):
        ServerConfig(adaptive_clip=True, clip=1.0)
    with pytest.raises(ConfigError, match="server.target_quantile"):
        ServerConfig(adaptive_clip=True, target_quantile=1.0)
    with pytest.raises(ConfigError, match="server.clip_lr"):
        ServerConfig(clip_lr=0)
    with pytest.raises(ConfigError, match="server.initial_clip"):
        ServerConfig(initial_clip=-1.0)
    assert ServerConfig(adaptive_clip=True, noise_multiplier=0.5).clipping


def test_calibrated_z_too_large_for_the_count_noise_is_refused_before_ray():
    """A target epsilon that needs z >= 2 sigma_b is refused at resolve time, naming the key to change."""
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=20", "server.clients_per_round=10",
                                 "server.rounds=50", "server.adaptive_clip=true", "server.target_epsilon=1.0"])

    with pytest.raises(ConfigError, match="clip_count_std") as err:
        resolve_config(cfg, capacity=(2.0, 0.0))

    assert "raise server.clip_count_std" in str(err.value)


def test_resolve_fills_the_default_count_noise_and_keeps_z():
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=20", "server.clients_per_round=10",
                                 "server.rounds=5", "server.adaptive_clip=true", "server.noise_multiplier=0.8"])

    plan = resolve_config(cfg, capacity=(2.0, 0.0))

    assert plan.config.server.clip_count_std == 0.5
    assert plan.config.server.noise_multiplier == 0.8
