"""Canary clients for the one-run audit of client-level DP (Steinke, Nasr, Jagielski 2023).

Canary j is a client whose update, whenever it takes part in a round, is a fixed random
unit direction u_j scaled to the round's clip S -- the largest update clipping lets
through, pointing where no real update points. Each canary is in the federation with
probability 1/2, decided once before training; an included canary is then Poisson-sampled
every round at the real clients' rate q (under min_sep participation it joins its group's rounds), and its update joins the clipped sum *before*
the server's noise, exactly as a real client's would. After training, canary j's score is
<u_j, w_T - w_0>: an included canary has pushed the model along u_j. The scores and the
inclusion bits go to :func:`privacy.audit.one_run.one_run_audit`.

A direction is Gaussian on a random support of at most ``SUPPORT`` coordinates, normalised:
any update of norm <= S is a legal client update, so sparsity changes nothing in the privacy
argument, while it keeps the audit's cost O(canaries x SUPPORT) instead of O(canaries x model
size) (a 1.2 M-parameter CNN with 1,000 dense canaries took ~12 s a round and ~23 s to score on
one CPU). Two such directions overlap about as little as two dense ones (inner product ~
1/sqrt(SUPPORT) either way at this size). Directions are drawn from their seeds on first use
and kept (about 48 kB per canary: 48 MB for 1,000). Every draw comes from
``privacy.seeding`` streams.
"""

from __future__ import annotations

import numpy as np
import torch

from privacy.seeding import AUDIT, numpy_rng

# sub-streams of the AUDIT purpose
_INCLUSION, _DIRECTION, _SAMPLING = 0, 1, 2
SUPPORT = 4096  # coordinates of each canary direction (all of them for smaller models)


def default_canary_count(*, noise_multiplier: float, sample_rate: float, num_params: int, clipping: bool,
                         most: int = 1000, fewest: int = 100, noise_share: float = 0.1) -> int:
    """How many canaries to plant when the config does not say: ``most``, fewer if needed so that
    their expected energy in a round stays within ``noise_share`` of the server noise's, and 0 if
    that leaves fewer than ``fewest`` (too few to audit) or no client-level DP is claimed.

    Each round about q m_c / 2 canaries each add a vector of norm S in nearly orthogonal
    directions (energy q m_c S^2 / 2), while the noise has energy z^2 S^2 P over P parameters. With
    the ratio <= 0.1 the canaries act on the model like noise at most sqrt(1.1) ~ 5 % stronger.
    """
    if noise_multiplier <= 0 or not clipping:
        return 0
    room = int(noise_share * noise_multiplier ** 2 * num_params * 2 / sample_rate)
    count = min(most, room)
    return count if count >= fewest else 0


class Canaries:
    """``count`` canary clients over a model of ``dim`` parameters, under run seed ``seed``."""

    def __init__(self, count: int, dim: int, *, seed: int, sample_rate: float, groups: int = 0):
        """``groups`` G > 0: min_sep participation instead of Poisson sampling -- canary j joins the rounds of
        group j mod G (rounds j mod G, + G, ...), as a client of that group would."""
        if count < 0 or dim < 1 or not 0 < sample_rate <= 1 or groups < 0:
            raise ValueError("need count >= 0, dim >= 1, sample_rate in (0, 1] and groups >= 0")
        self.count, self.dim, self.seed, self.sample_rate = int(count), int(dim), int(seed), float(sample_rate)
        self.groups = int(groups)
        self.included = numpy_rng(seed, AUDIT, _INCLUSION).random(self.count) < 0.5  # fixed before the run
        self._directions: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def direction(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """u_j as (coordinates, values) with distinct coordinates and unit L2 norm; a function of (seed, j):
        Gaussian values on ``min(SUPPORT, dim)`` coordinates drawn uniformly without replacement."""
        if j not in self._directions:
            self._directions[j] = self._draw_direction(j)
        return self._directions[j]

    def _draw_direction(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = numpy_rng(self.seed, AUDIT, _DIRECTION, j)
        coords = rng.choice(self.dim, size=min(SUPPORT, self.dim), replace=False, shuffle=False)
        vals = rng.standard_normal(len(coords))
        return torch.from_numpy(coords.astype(np.int64)), torch.from_numpy(vals / np.linalg.norm(vals)).float()

    def dense_direction(self, j: int) -> torch.Tensor:
        coords, vals = self.direction(j)
        return torch.zeros(self.dim).index_put_((coords,), vals)

    def participants(self, round_idx: int) -> np.ndarray:
        """Canaries taking part in round ``round_idx``: included, and Poisson-sampled at rate q (or, under
        min_sep, in the round's group)."""
        if self.groups:
            sampled = np.arange(self.count) % self.groups == round_idx % self.groups
        else:
            sampled = numpy_rng(self.seed, AUDIT, _SAMPLING, round_idx).random(self.count) < self.sample_rate
        return np.flatnonzero(self.included & sampled)

    def round_sum(self, round_idx: int, clip: float) -> tuple[torch.Tensor, int]:
        """Sum of the participating canaries' updates S u_j, to add to the clipped sum before noise;
        and how many took part."""
        ids = self.participants(round_idx)
        total = torch.zeros(self.dim)
        for j in ids:
            coords, vals = self.direction(int(j))
            total.index_add_(0, coords, vals)
        return total * clip, len(ids)

    def scores(self, total_change: torch.Tensor) -> np.ndarray:
        """<u_j, w_T - w_0> for every canary, included or not."""
        change = total_change.detach().to("cpu", torch.float32).reshape(-1)
        if change.numel() != self.dim:
            raise ValueError(f"model change has {change.numel()} values, canaries {self.dim}")
        out = np.empty(self.count)
        for start in range(0, self.count, 256):  # blocks of directions: one gather, one row sum
            block = [self.direction(j) for j in range(start, min(start + 256, self.count))]
            coords, vals = torch.stack([c for c, _ in block]), torch.stack([v for _, v in block])
            out[start:start + len(block)] = (vals.double() * change[coords].double()).sum(1).numpy()
        return out
