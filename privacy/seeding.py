"""Seed derivation: every random stream is a pure function of (seed, purpose, ids).

Streams derived this way do not depend on which process draws them, so results
are the same however clients are packed into actors. Two seeds feed them:

- ``run.seed``: what may be shared across the trials of a sweep -- the partition, the split,
  the initial model, the audit's canaries and membership samples;
- ``run.noise_seed``: everything that makes a release private -- the cohort, each client's
  batches and DP-SGD noise, the server's noise. Fresh OS entropy for every run and trial unless
  given (:func:`fresh_noise_seed`), and recorded, so that no two releases share their noise while
  a resumed run or a deliberate re-run reproduces its table.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch

# Purposes, fixed integers so that adding a stream never shifts another one.
PARTITION, SPLIT, INIT, COHORT, SERVER_NOISE, CLIENT, BROADCAST, AUDIT, CLIP_NOISE, TRIAL = range(10)
# AUDIT's first id picks a sub-stream: 0-2 canaries (privacy.audit.canaries), 3-4 membership samples
# (privacy.audit.membership), 5 the rounding of canaries under secure aggregation (actors.aggregation).


def fresh_noise_seed() -> int:
    """A 62-bit noise seed from the operating system's entropy source."""
    return secrets.randbits(62)


def derive_seed(seed: int, purpose: int, *ids: int) -> int:
    """A 63-bit seed for stream ``purpose`` and ``ids`` (client id, round, ...) under run seed ``seed``."""
    state = np.random.SeedSequence([int(seed), int(purpose), *map(int, ids)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def numpy_rng(seed: int, purpose: int, *ids: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, purpose, *ids))


def torch_generator(seed: int, purpose: int, *ids: int, device: str | torch.device = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, purpose, *ids))
    return gen
