"""The distributed Skellam mechanism: integer noise that clients add in shares before secure aggregation.

Sk(mu) here is the symmetric Skellam of *variance* mu: Poisson(mu/2) - Poisson(mu/2). Independent
Skellams add up (Sk(a) + Sk(b) = Sk(a + b)), so if each of n clients adds a share Sk(mu/n), the
securely aggregated sum carries Sk(mu) -- but only the shares of clients whose input is in the sum:
a client that drops out takes its share with it, which the server's top-up replaces
(privacy.mechanisms.distributed_dp).

Source: Agarwal, Kairouz, Liu 2021, "The Skellam Mechanism for Differentially Private Federated
Learning", NeurIPS (arXiv 2110.04995). Privacy of a whole run: privacy.accountants.skellam (exact, through
privacy.accountants.skellam_dominance, or the general RDP bound of privacy.accountants.skellam_rdp).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from privacy.mechanisms.alias_table import AliasTable, quantize

TABLE_MAX_ATOMS = 1 << 18  # alias tables up to this many atoms (variance up to about 5.9e7); two Poisson draws beyond


def sample_skellam(variance: float, size, *, rng: np.random.Generator) -> np.ndarray:
    """int64 draws of Sk(variance) = Poisson(variance / 2) - Poisson(variance / 2), from ``rng``.

    Within :func:`skellam_table`'s range (one 64-bit word of ``rng`` per draw) each value x has probability
    exactly weights[x] / 2^64: scipy's pmf e^-v I_|x|(v) floored to units of 2^-64, the remainder added to
    x = 0. Values whose pmf is below 2^-64 (about 8.5 standard deviations out) are never drawn; the table is
    within total variation about 1e-14 of Sk(v) (6e-15 at v = 1e5, 8e-14 at the largest table), dominated by
    scipy's float error. Beyond ``TABLE_MAX_ATOMS`` atoms, two numpy Poisson draws, whose float acceptance
    test is less exact still (about 1e-10 in log-probability at rate 1e5, 1e-6 at 1e9) and unanalysed.
    Neither deviation is in the accounted epsilon (docs/privacy.md, "Skellam shares are sampled"). Seeded
    generators are not a secure noise source either: a deployment needs a cryptographically secure,
    exactly analysed sampler."""
    if not (variance >= 0 and math.isfinite(variance)):
        raise ValueError(f"variance = {variance}: must be a finite number >= 0")
    if variance == 0:
        return np.zeros(size, dtype=np.int64)
    table = skellam_table(float(variance))
    if table is not None:
        return table.sample(size, rng=rng)
    lam = variance / 2
    return rng.poisson(lam, size).astype(np.int64) - rng.poisson(lam, size).astype(np.int64)


@lru_cache(maxsize=8)
def skellam_table(variance: float) -> AliasTable | None:
    """The alias table of Sk(variance) over |x| <= n, where the pmf
    (privacy.accountants.skellam_dominance.skellam_pmf_nonnegative) has fallen below 1e-60; None when that
    needs more than ``TABLE_MAX_ATOMS`` atoms. Cached: a round's clients share one variance."""
    from privacy.accountants.skellam_dominance import skellam_pmf_nonnegative

    half = skellam_pmf_nonnegative(variance)  # x = 0 .. n
    n = half.size - 1
    if 2 * n + 1 > TABLE_MAX_ATOMS:
        return None
    return AliasTable.from_weights(quantize(np.concatenate([half[:0:-1], half])), lowest=-n)
