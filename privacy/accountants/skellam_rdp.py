"""Renyi DP of the Skellam mechanism alone (before sampling), and the Gaussian's it tends to.

Used by privacy.accountants.subsampled_rdp (Zhu-Wang subsampling of any RDP curve) for
``secagg.accountant = "zhu_wang"``; the exact accountant is privacy.accountants.skellam_dominance.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def skellam_rdp(*, mu: float, l1: float, l2: float, orders: Sequence[float]) -> np.ndarray:
    """RDP at each order alpha > 1 of adding Sk(mu) noise to each coordinate of an integer query with
    L1 sensitivity l1 and L2 sensitivity l2 (all on the integer grid, mu the variance per coordinate):

        eps(alpha) <= alpha l2^2 / (2 mu) + min( ((2 alpha - 1) l2^2 + 6 l1) / (4 mu^2),  3 l1 / (2 mu) ).

    The first term is the Gaussian RDP of the same variance; the second vanishes as the scale grows
    (l1, l2 ~ s, mu ~ s^2), so the bound tends to the Gaussian's from above.
    Source: Agarwal, Kairouz, Liu 2021, Theorem on the multi-dimensional Skellam mechanism, written in
    the variance mu; it is the form of their reference accounting code (google-research/federated,
    distributed_dp/accounting_utils.py, ``_skellam_rdp``, there in unscaled units). With the Poisson
    rate lambda = mu / 2 of each side it reads alpha l2^2/(4 lambda) + min(((2 alpha - 1) l2^2 + 6 l1)
    / (16 lambda^2), 3 l1 / (4 lambda)). Assumptions: add/remove-one neighbours whose integer
    contributions differ by at most l1 / l2 in norm; noise exactly Skellam, no modular wrap-around.
    """
    a = np.asarray(orders, dtype=float)
    if not (mu > 0 and math.isfinite(mu)):
        raise ValueError(f"mu = {mu}: the noise variance must be positive and finite")
    if l1 < 0 or l2 < 0:
        raise ValueError(f"l1 = {l1}, l2 = {l2}: sensitivities must be >= 0")
    if np.any(~(a > 1)):
        raise ValueError("RDP orders must be > 1")
    correction = np.minimum(((2 * a - 1) * l2 ** 2 + 6 * l1) / (4 * mu ** 2), 3 * l1 / (2 * mu))
    return a * l2 ** 2 / (2 * mu) + correction


def gaussian_rdp(*, variance: float, l2: float, orders: Sequence[float]) -> np.ndarray:
    """RDP of the continuous Gaussian mechanism: alpha l2^2 / (2 variance) (Mironov 2017, Prop. 7).
    The limit the Skellam bound approaches; never use it to account a discrete mechanism."""
    if not variance > 0:
        raise ValueError(f"variance = {variance}: must be > 0")
    return np.asarray(orders, dtype=float) * l2 ** 2 / (2 * variance)
