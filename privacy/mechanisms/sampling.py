"""Who takes part in a round: the client-level subsampling the accountant assumes."""

from __future__ import annotations

import numpy as np

from privacy.config.experiment import SAMPLINGS
from privacy.seeding import COHORT, numpy_rng


def sample_cohort(num_clients: int, expected: int, *, scheme: str, seed: int, round_idx: int) -> np.ndarray:
    """Client ids of a round's cohort, from the run's noise seed. ``poisson``: each client independently
    with q = m / N (what the accountant assumes). ``fixed``: exactly m without replacement (accounted
    with the Poisson bound, documented as an approximation)."""
    if scheme not in SAMPLINGS:
        raise ValueError(f"sampling scheme {scheme!r}: must be one of {', '.join(SAMPLINGS)}")
    rng = numpy_rng(seed, COHORT, round_idx)
    if scheme == "fixed":
        return np.sort(rng.choice(num_clients, size=expected, replace=False))
    return np.flatnonzero(rng.random(num_clients) < expected / num_clients)
