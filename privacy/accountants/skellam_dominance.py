"""The Gaussian mechanism that dominates the Skellam mechanism: exact accounting of integer noise.

The released sum is (integer vector) + Sk(mu) on every coordinate, Sk(mu) = Poisson(mu/2) - Poisson(mu/2)
of variance mu; neighbouring inputs differ by an integer shift vector k, ||k||_2 <= Delta_2 after rounding.

1. *One coordinate, shift j.* Sk(mu) is discrete log-concave (a convolution of Poisson and reflected
   Poisson pmfs, both log-concave), so the pair (Sk + j, Sk) has a monotone likelihood ratio: the optimal
   tests are thresholds (randomised at the boundary), with trade-off points (alpha_t, beta_t) =
   (1 - F(t - 1), F(t - 1 - j)), F the Skellam CDF, joined by chords. The Gaussian trade-off curve G_m
   (Dong, Roth, Su 2019, "Gaussian Differential Privacy") is convex, so a chord between points on or above
   it stays above it: the pair is m-GDP iff every threshold point is, i.e. iff
       m >= m_j := max_x [h(x) - h(x - j)],   h = Phi^{-1} o F.
   Telescoping, m_j <= j m_1. Both directions: Sk is symmetric, so (Sk, Sk + j) is the mirror image.
2. *Every shift vector.* Coordinates carry independent noise, so the pair of a shift k is the product of
   its 1-D pairs and, GDP tensorising exactly (G_a (x) G_b = G_sqrt(a^2 + b^2); Dong, Roth, Su, Cor. 3.3),
   it is m_1 ||k||_2 <= m_1 Delta_2 -GDP. Only the L2 bound enters: the argument holds for every integer
   shift the rounding allows, spread or concentrated. A mixture over the rounding's randomness (the same in
   both worlds) keeps the dominance (joint convexity of the hockey-stick divergence).
3. *Hence* one round is dominated by the Gaussian mechanism of noise multiplier
       sigma_eff = 1 / (m_1 Delta_2) = sqrt(mu) / (c(mu) Delta_2),   c(mu) = sqrt(mu) m_1 ~ 1 + 1 / (6 mu),
   and Poisson subsampling preserves dominating pairs in both adjacency directions (Zhu, Dong, Wang 2022,
   "Optimal Accounting of Differential Privacy via Characteristic Function", Thm. 11): a history of
   subsampled Skellam rounds is accounted as the same history of subsampled Gaussian rounds at sigma_eff,
   with the project's Gaussian accountants (privacy.accountants.accounting: PLD by default). Without sampling (an
   adversary who knows the cohort) the history is sqrt(sum_t 1 / sigma_eff,t^2) -GDP, exactly.

Numerics: h is evaluated from the exact pmf (e^-mu I_|x|(mu), scipy's ``ive``) over every threshold whose
tail mass is at least ``TAIL`` = 1e-30 on each side (|x| up to about 11.5 sqrt(mu)); the maximum of
h(x) - h(x - 1) is attained at x = 0 for every mu tested (the Skellam's tails are heavier than the
Gaussian's, which makes its probit steps smaller there). Thresholds beyond the checked range hold at most
``TAIL`` of either distribution; c is enlarged by ``MARGIN`` against floating-point error.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable

import numpy as np
from scipy import optimize, special, stats

TAIL = 1e-30  # thresholds whose tail mass is below this (either side) are not evaluated (see the docstring)
MARGIN = 1e-7  # relative head-room on c(mu) for floating-point error in the probit differences
MU_MAX = 1e12  # the pmf holds 17 sqrt(mu) points: 1.7e7 at this mu (seconds); the scale rules stay below it
IVE_MAX = 1e9  # scipy.special.ive returns NaN for arguments above ~1.07e9; a recurrence takes over there
_SPAN = 17.0  # the pmf is summed from x = _SPAN sqrt(mu) + 200 (further while p there exceeds _NEGLIGIBLE)
_NEGLIGIBLE = 1e-60  # pmf at the start of the tail sum: the mass beyond cannot move G at TAIL


@lru_cache(maxsize=512)
def gdp_constant(mu: float) -> float:
    """c(mu) such that the 1-D pair (Sk(mu) + 1, Sk(mu)) is (c / sqrt(mu))-GDP, the tightest such (about
    1 + 1 / (6 mu) for mu >= 1; below 1 for tiny mu, where one unit of shift is huge against the noise):
    c = sqrt(mu) max_x [Phi^-1(F(x)) - Phi^-1(F(x - 1))] (1 + MARGIN), F the CDF of Sk(mu), mu its variance.

    By symmetry h(-x - 1) = -h(x), so only x >= 0 is needed: h(x) = -Phi^-1(G(x)) with G(x) = P(X > x)
    summed from the far tail (no cancellation), and h(0) - h(-1) = 2 h(0).
    Cached per mu: a run books few distinct noise levels."""
    mu = float(mu)
    if not (mu > 0 and math.isfinite(mu)):
        raise ValueError(f"mu = {mu}: the Skellam variance must be positive and finite")
    if mu > MU_MAX:
        raise ValueError(f"mu = {mu:.4g} exceeds {MU_MAX:g}: the exact pmf would need more than "
                         f"{_SPAN * math.sqrt(MU_MAX):.3g} points; use fewer secagg.bits (a smaller scale)")
    p = skellam_pmf_nonnegative(mu)
    tail = np.cumsum(p[:0:-1])[::-1]  # G(x) = P(X > x) = sum_{z > x} p(z) for x = 0 .. n-1, from the tail
    with np.errstate(invalid="ignore"):  # h = inf where the tail underflows: outside the checked range
        h, ok = -special.ndtri(tail), tail >= TAIL
        steps, valid = h[1:] - h[:-1], ok[1:] & ok[:-1]  # h(x + 1) - h(x), both thresholds checked
    # across the centre h(0) - h(-1) = 2 h(0) = 2 Phi^-1((1 + p(0)) / 2) = 2 sqrt(2) erfinv(p(0)): exact in p(0),
    # where the tail sum's rounding would shift h(0) itself (it cancels in the other, differenced steps)
    centre = 2 * math.sqrt(2) * float(special.erfinv(p[0]))
    best = max(float(steps[valid].max()) if valid.any() else -math.inf, centre)
    return best * math.sqrt(mu) * (1 + MARGIN)


def skellam_pmf_nonnegative(mu: float) -> np.ndarray:
    """P(Sk(mu) = x) for x = 0 .. n, n = _SPAN sqrt(mu) + 200 (further while p(n) > _NEGLIGIBLE): scipy's ``ive``
    (e^-mu I_x(mu)) up to mu = IVE_MAX, its domain; beyond, Miller's backward recurrence
    I_{x-1}(mu) = I_{x+1}(mu) + (2x / mu) I_x(mu), stable downwards, normalised by p(0) + 2 sum_{x>0} p(x) = 1."""
    n = int(math.ceil(_SPAN * math.sqrt(mu) + 200))
    if mu <= IVE_MAX:
        while special.ive(n, mu) > _NEGLIGIBLE:
            n *= 2
        return special.ive(np.arange(n + 1), mu)
    out = np.empty(n + 1)
    above, here, two_over_mu = 0.0, 1e-280, 2.0 / mu  # p(n + 1), p(n) up to a common factor
    out[n] = here
    for x in range(n, 0, -1):
        above, here = here, above + x * two_over_mu * here
        out[x - 1] = here
        if here > 1e250:  # rescale: the values grow by ~e^(x^2 / 2 mu) towards the centre
            out[x - 1:] *= 1e-250
            above, here = above * 1e-250, here * 1e-250
    return out / (out[0] + 2 * out[1:].sum())


def effective_noise_multiplier(*, mu: float, l2: float) -> float:
    """sigma_eff = sqrt(mu) / (c(mu) Delta_2): the Gaussian mechanism (sensitivity 1) that dominates adding
    Sk(mu) to an integer query of L2 sensitivity ``l2`` (both on the integer grid). Inf without a shift."""
    if not l2 >= 0:
        raise ValueError(f"l2 = {l2}: must be >= 0")
    if l2 == 0:
        return math.inf
    return math.sqrt(mu) / (gdp_constant(mu) * l2)


def gaussian_history(events: Iterable[tuple]) -> list[tuple[float, float, int]]:
    """Skellam events (mu, l1, l2, q, steps) -> the dominating Gaussian events (sigma_eff, q, steps) of
    privacy.accountants.accounting. A round without noise (mu = 0) becomes sigma 0 (epsilon inf)."""
    out = []
    for mu, _l1, l2, q, steps in events:
        sigma = 0.0 if mu == 0 else effective_noise_multiplier(mu=mu, l2=l2)
        if math.isinf(sigma):
            continue  # no shift: the round spends nothing
        out.append((sigma, float(q), int(steps)))
    return out


def epsilon_sampled(events: Iterable[tuple], *, delta: float, accountant: str = "pld") -> float:
    """epsilon at ``delta`` of Poisson-subsampled Skellam rounds (add/remove neighbours): the dominating
    subsampled Gaussian history accounted by privacy.accountants.accounting (``accountant``: pld, rdp or prv)."""
    from privacy.accountants.accounting import epsilon

    return epsilon(gaussian_history(events), delta=delta, accountant=accountant)


def gdp_mu(events: Iterable[tuple]) -> float:
    """GDP parameter of unsampled Skellam rounds: sqrt(sum steps / sigma_eff^2) (q is ignored: an adversary who
    knows who took part gets no amplification)."""
    total = 0.0
    for mu, _l1, l2, _q, steps in events:
        if steps <= 0:
            continue
        if mu == 0 and l2 > 0:
            return math.inf
        if l2 > 0:
            total += steps / effective_noise_multiplier(mu=mu, l2=l2) ** 2
    return math.sqrt(total)


def gdp_delta(*, mu_gdp: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Dong, Roth, Su 2019, Cor. 2.13)."""
    if mu_gdp == 0:
        return 0.0
    a, b = -epsilon / mu_gdp + mu_gdp / 2, -epsilon / mu_gdp - mu_gdp / 2
    # e^eps Phi(b) in log space: exp(eps + logPhi(b))
    return float(stats.norm.cdf(a) - math.exp(epsilon + special.log_ndtr(b)))


def gdp_epsilon(*, mu_gdp: float, delta: float) -> float:
    """Smallest eps >= 0 with delta(eps) <= ``delta`` for mu-GDP (0 without privacy loss, inf for mu = inf)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta}: must be in (0, 1)")
    if mu_gdp == 0:
        return 0.0
    if math.isinf(mu_gdp):
        return math.inf
    if gdp_delta(mu_gdp=mu_gdp, epsilon=0.0) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(mu_gdp=mu_gdp, epsilon=hi) > delta:
        hi *= 2
    eps = optimize.brentq(lambda e: gdp_delta(mu_gdp=mu_gdp, epsilon=e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12)
    # brentq returns within tolerance of the root: step up until delta(eps) <= delta holds (an upper bound)
    while gdp_delta(mu_gdp=mu_gdp, epsilon=eps) > delta:
        eps = eps * (1 + 1e-12) + 1e-12
    return float(eps)


def epsilon_unsampled(events: Iterable[tuple], *, delta: float) -> float:
    """epsilon at ``delta`` of Skellam rounds without amplification by sampling: exact GDP composition."""
    return gdp_epsilon(mu_gdp=gdp_mu(events), delta=delta)


def gdp_mu_for(*, epsilon: float, delta: float) -> float:
    """Largest mu such that mu-GDP is (epsilon, delta)-DP (delta(eps) increases with mu): the inverse of
    :func:`gdp_epsilon`, slightly below the root so that the answer meets the target."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValueError(f"epsilon = {epsilon}, delta = {delta}: need epsilon > 0 and 0 < delta < 1")
    hi = 1.0
    while gdp_delta(mu_gdp=hi, epsilon=epsilon) < delta:
        hi *= 2
    mu = optimize.brentq(lambda m: gdp_delta(mu_gdp=m, epsilon=epsilon) - delta, 1e-12, hi, xtol=1e-14, rtol=1e-13)
    while gdp_delta(mu_gdp=mu, epsilon=epsilon) > delta:
        mu *= 1 - 1e-12
    return float(mu)
