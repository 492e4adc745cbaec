"""Gaussian mechanisms of the server: one named function per noise formula.

Each function states its formula, the sensitivity it assumes and its source.
Adding noise returns diagnostics (the std used and the signal-to-noise ratio),
so that every round can report what the mechanism actually did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseDiagnostics:
    std: float  # std of the Gaussian noise per coordinate, on the scale of the returned tensor
    signal_norm: float  # L2 norm of the noiseless value
    noise_norm: float  # L2 norm of the noise actually drawn
    snr: float  # signal_norm / noise_norm (inf when no noise)


def dp_fedavg_noise_std(*, noise_multiplier: float, clip: float, expected_cohort: float) -> float:
    """Per-coordinate std of the noise on the DP-FedAvg average: z * S / m.

    Formula: Delta_bar = (sum_k clip_S(Delta_k) + N(0, (z S)^2 I)) / m.
    Sensitivity: adding or removing one client changes the clipped sum by at most S (L2),
    so N(0, (z S)^2) on the sum is the Gaussian mechanism with multiplier z. The
    denominator m is the *expected* cohort q N, fixed in advance, never the realised
    cohort size (which would depend on who took part and break the sensitivity bound).
    Source: McMahan, Ramage, Talwar, Zhang 2018, "Learning Differentially Private
    Recurrent Language Models", ICLR (DP-FedAvg, fixed-denominator estimator).
    """
    if noise_multiplier < 0 or clip < 0 or expected_cohort <= 0:
        raise ValueError("noise_multiplier and clip must be >= 0 and expected_cohort > 0")
    return noise_multiplier * clip / expected_cohort


def dp_fedavg_aggregate(clipped_sum: torch.Tensor, *, noise_multiplier: float, clip: float,
                        expected_cohort: float, generator: torch.Generator) -> tuple[torch.Tensor, NoiseDiagnostics]:
    """The noisy fixed-denominator average of :func:`dp_fedavg_noise_std`:
    ``(clipped_sum + N(0, (z S)^2 I)) / m``, with noise drawn from ``generator``."""
    std_sum = noise_multiplier * clip
    signal = clipped_sum / expected_cohort
    if std_sum == 0:
        return signal, NoiseDiagnostics(0.0, float(signal.norm()), 0.0, math.inf)
    noise = torch.normal(0.0, std_sum, size=clipped_sum.shape, generator=generator,
                         dtype=clipped_sum.dtype, device=clipped_sum.device) / expected_cohort
    s, n = float(signal.norm()), float(noise.norm())
    return signal + noise, NoiseDiagnostics(
        dp_fedavg_noise_std(noise_multiplier=noise_multiplier, clip=clip, expected_cohort=expected_cohort),
        s, n, s / n if n > 0 else math.inf)


def noised_count(count: float, *, std: float, generator: torch.Generator) -> float:
    """Gaussian mechanism on a count of clients: count + N(0, std^2).

    Sensitivity 1 (one client adds at most one to the count), so the release has
    noise multiplier ``std``. Used for the adaptive-clipping bit sum of Andrew et al. 2021.
    """
    if std == 0:
        return float(count)
    return float(count + torch.normal(0.0, std, size=(1,), generator=generator).item())


def noised_unclipped_fraction(unclipped: int, cohort: int, *, expected_cohort: float, std: float,
                              generator: torch.Generator) -> float:
    """Private estimate of the share of clients whose delta the clip left whole:
    b = (sum_k (b_k - 1/2) + N(0, sigma_b^2)) / m + 1/2, with b_k = 1[||Delta_k|| <= S].

    Sensitivity: the bits are centred at 1/2, so adding or removing one client moves the
    sum by 1/2 at most, and this release is a Gaussian mechanism with multiplier 2 sigma_b.
    The denominator is the expected cohort m, fixed in advance like the deltas' (the realised
    cohort size is not released). ``unclipped``: sum of b_k; ``cohort``: clients that reported.
    Source: Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning with
    Adaptive Clipping", NeurIPS, Section 3 and Algorithm 1.
    """
    if expected_cohort <= 0:
        raise ValueError("expected_cohort must be > 0")
    centred = noised_count(unclipped - cohort / 2, std=std, generator=generator)
    return centred / expected_cohort + 0.5


def adaptive_clipping_delta_multiplier(*, noise_multiplier: float, count_noise_std: float) -> float:
    """Noise multiplier left for the deltas when the clip-bit count is also released.

    sigma_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2): the count query has sensitivity 1/2
    after centring the bits at 1/2, so releasing it with std sigma_b and the deltas with
    multiplier sigma_Delta composes (Gaussian RDP adds in 1/sigma^2) to one Gaussian
    mechanism with multiplier z. Requires z < 2 sigma_b.
    Source: Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning
    with Adaptive Clipping", NeurIPS, Section 3.
    """
    if noise_multiplier <= 0:
        return 0.0
    if count_noise_std <= 0 or noise_multiplier >= 2 * count_noise_std:
        raise ValueError(
            f"adaptive clipping needs noise_multiplier z < 2 * count_noise_std (got z = {noise_multiplier}, "
            f"sigma_b = {count_noise_std}); raise the count noise or lower z")
    return (noise_multiplier ** -2 - (2 * count_noise_std) ** -2) ** -0.5


def broadcast_noise(weights: torch.Tensor, *, std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise on the model the server sends back: post-processing of an already
    private model. It changes no epsilon and is never credited by any accountant."""
    if std == 0:
        return weights
    return weights + torch.normal(0.0, std, size=weights.shape, generator=generator,
                                  dtype=weights.dtype, device=weights.device)
