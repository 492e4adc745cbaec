"""Seed derivation: every random stream is a pure function of (run seed, purpose, ids).

Streams derived this way do not depend on which process draws them, so results
are the same however clients are packed into actors.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes, fixed integers so that adding a stream never shifts another one.
PARTITION, SPLIT, INIT, COHORT, SERVER_NOISE, CLIENT, BROADCAST, AUDIT, CLIP_NOISE = range(9)
# AUDIT's first id picks a sub-stream: 0-2 canaries (privacy.canaries), 3-4 membership samples
# (privacy.membership).


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
