"""RDP of a Poisson-subsampled mechanism from the RDP curve of the mechanism alone, for any mechanism.

Used to account the distributed Skellam mechanism (privacy.mechanisms.skellam) under Poisson sampling of clients
(cross-device) or of records (cross-silo), where the exact subsampled-Gaussian series of
privacy.accountants.subsampled_gaussian does not apply. Integer orders only; the (eps, delta) conversion is the
project's (privacy.accountants.accounting.rdp_to_epsilon), so every accountant converts alike.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import special

from privacy.accountants.accounting import rdp_to_epsilon
from privacy.accountants.skellam_rdp import skellam_rdp

INTEGER_ORDERS: tuple[int, ...] = tuple(range(2, 129)) + (256,)  # the bound below needs integer orders


def poisson_subsampled_rdp(*, base_rdp: Callable[[np.ndarray], np.ndarray], sample_rate: float,
                           orders: Sequence[int]) -> np.ndarray:
    """Upper bound on the RDP at integer orders alpha >= 2 of M applied to a Poisson sample (each
    record or client independently with probability q), for ANY mechanism M of RDP curve eps(.):

        eps'(alpha) <= 1/(alpha-1) log( (1-q)^(alpha-1) (alpha q - q + 1)
                                        + C(alpha,2) q^2 (1-q)^(alpha-2) e^(eps(2))
                                        + 3 sum_{l=3..alpha} C(alpha,l) q^l (1-q)^(alpha-l) e^((l-1) eps(l)) ),

    then the minimum with eps(alpha) itself (sampling never costs privacy: joint convexity of
    exp((alpha-1) D_alpha)). Evaluated in log space (logsumexp), so eps(l) may be large or infinite.
    ``base_rdp`` maps an int array of orders to the mechanism's RDP at them.
    Source: Zhu & Wang 2019, "Poisson Subsampled Renyi Differential Privacy", ICML (PMLR 97), the general
    upper bound, Theorem 5 there (as the Skellam/DDG reference code cites it; within log(3)/(alpha-1) of the
    exact value for the Gaussian). Its tight factor-1 form needs extra conditions on M (Theorem 8) and is
    not used. Assumption: add/remove-one neighbours.
    """
    q = float(sample_rate)
    alphas = np.asarray(orders)
    if not 0 <= q <= 1:
        raise ValueError(f"sample_rate = {q}: must be in [0, 1]")
    if alphas.ndim != 1 or alphas.size == 0 or np.any(alphas != np.round(alphas)) or np.any(alphas < 2):
        raise ValueError("orders must be integers >= 2 (the bound holds at integer orders only)")
    alphas = alphas.astype(int)
    top = int(alphas.max())
    ls = np.arange(2, top + 1)
    eps = np.asarray(base_rdp(ls), dtype=float)  # eps(l) for l = 2..top
    if eps.shape != ls.shape:
        raise ValueError(f"base_rdp returned shape {eps.shape} for {ls.size} orders")
    unsampled = eps[alphas - 2]
    if q == 0:
        return np.zeros(alphas.size)
    if q == 1:
        return unsampled
    a = alphas[:, None].astype(float)
    lf = ls[None, :].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_terms = (_log_comb(a, lf) + lf * math.log(q) + (a - lf) * math.log1p(-q)
                     + (lf - 1) * np.where(np.isinf(eps), np.inf, eps)[None, :])
    log_terms = np.where(lf <= a, log_terms + np.where(lf >= 3, math.log(3), 0.0), -np.inf)
    log_head = (alphas - 1) * math.log1p(-q) + np.log1p((alphas - 1) * q)  # l = 0 and l = 1 terms
    log_sum = special.logsumexp(np.concatenate([log_head[:, None], log_terms], axis=1), axis=1)
    return np.minimum(log_sum / (alphas - 1), unsampled)


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def skellam_rdp_of_run(*, mu: float, l1: float, l2: float, sample_rate: float, steps: int,
                       orders: Sequence[int] = INTEGER_ORDERS) -> np.ndarray:
    """RDP of ``steps`` compositions of the Poisson-subsampled Skellam mechanism (RDP adds up)."""
    if steps < 0 or int(steps) != steps:
        raise ValueError(f"steps = {steps}: must be an integer >= 0")
    one = poisson_subsampled_rdp(base_rdp=lambda ls: skellam_rdp(mu=mu, l1=l1, l2=l2, orders=ls),
                                 sample_rate=sample_rate, orders=orders)
    return one * int(steps)


def skellam_epsilon(*, mu: float, l1: float, l2: float, sample_rate: float, steps: int, delta: float,
                    orders: Sequence[int] = INTEGER_ORDERS) -> float:
    """epsilon at ``delta`` of T = ``steps`` rounds of the distributed Skellam mechanism: Skellam RDP
    (privacy.accountants.skellam_rdp.skellam_rdp) -> Zhu-Wang Poisson subsampling -> T-fold composition -> (eps, delta)
    by privacy.accountants.accounting.rdp_to_epsilon (Balle et al. 2020, Thm. 21).

    mu: noise variance per coordinate actually present in the sum (privacy.mechanisms.skellam.variance_present),
    l1, l2: sensitivities on the integer grid (privacy.secagg.quantization.Quantizer.l1_/l2_sensitivity),
    sample_rate: Poisson sampling rate of the protected unit (client or record)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta}: must be in (0, 1)")
    if steps == 0 or sample_rate == 0:
        return 0.0
    rdp = skellam_rdp_of_run(mu=mu, l1=l1, l2=l2, sample_rate=sample_rate, steps=steps, orders=orders)
    return rdp_to_epsilon(orders=orders, rdp=rdp, delta=delta)
