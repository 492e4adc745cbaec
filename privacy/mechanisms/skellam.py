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
import numpy as np


def sample_skellam(variance: float, size, *, rng: np.random.Generator) -> np.ndarray:
    """int64 draws of Sk(variance) = Poisson(variance / 2) - Poisson(variance / 2), from ``rng``.

    Seeded generators are not a secure noise source: production use needs a cryptographically
    secure one (floating-point Poisson samplers can also leak through their low-order behaviour)."""
    if not (variance >= 0 and math.isfinite(variance)):
        raise ValueError(f"variance = {variance}: must be a finite number >= 0")
    lam = variance / 2
    return rng.poisson(lam, size).astype(np.int64) - rng.poisson(lam, size).astype(np.int64)
