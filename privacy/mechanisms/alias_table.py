"""Walker's alias method on 64-bit integer weights: a fast sampler whose distribution is known exactly.

A distribution over the integers ``lowest + i`` (i = 0 .. n-1) is given as integer weights w_i that sum to
exactly 2^64 (:func:`quantize`), so the sampler's distribution is P(i) = w_i / 2^64 with no rounding left
anywhere. The table has N = 2^m buckets of capacity 2^(64-m) units each (Vose 1991, "A linear algorithm for
generating random numbers with a given distribution", IEEE TSE, with integer arithmetic throughout): bucket j
holds ``thresholds[j]`` units of atom j and the rest of atom ``aliases[j]``. One uniform 64-bit word r per
draw picks the bucket from its top m bits and compares its low 64 - m bits with the threshold, so

    P(draw = i) = (thresholds[i] + sum over j with aliases[j] = i of (2^(64-m) - thresholds[j])) / 2^64 = w_i / 2^64,

which :meth:`AliasTable.probabilities` recomputes from the table (a test checks it against the weights).
Vectorised over a whole vector of draws: one 64-bit word, two gathers, a comparison and a select per draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORD = 64  # bits of one uniform draw (Generator.integers over [0, 2^64))
TOTAL = 1 << WORD


def quantize(p: np.ndarray) -> list[int]:
    """Non-negative finite probabilities (summing to about 1) -> integer weights summing to exactly 2^64.

    Each weight is floor(p_i 2^64 / sum p), to within one unit and the float error of p_i itself (relative,
    so small atoms stay relatively exact); what the floors leave over (or overshoot) goes to the largest
    atom, whose relative change is at most n / (max p 2^64) plus the float error of the sum."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or not p.sum() > 0:
        raise ValueError("probabilities must be a non-empty vector of finite non-negative numbers with a positive sum")
    weights = [int(x) for x in np.floor(p * (TOTAL / float(p.sum())))]
    top = int(np.argmax(p))
    weights[top] += TOTAL - sum(weights)
    if weights[top] < 0:
        raise ValueError("probabilities too uneven to quantize to 64 bits")
    return weights


@dataclass(frozen=True, eq=False)
class AliasTable:
    """Draws ``lowest + i`` with probability weights[i] / 2^64 (see the module docstring)."""

    lowest: int  # the value of atom 0
    bits: int  # m: 2^m buckets
    thresholds: np.ndarray  # uint64, per bucket: units (of 2^(64 - m)) kept by the bucket's own atom
    aliases: np.ndarray  # int64, per bucket: the value drawn for the rest of the bucket

    @classmethod
    def from_weights(cls, weights: list[int], *, lowest: int = 0) -> "AliasTable":
        """Vose's construction in exact integers; ``weights`` (>= 0) must sum to 2^64."""
        if any(w < 0 for w in weights) or sum(weights) != TOTAL:
            raise ValueError("weights must be non-negative integers summing to 2^64 (use quantize)")
        bits = max(1, (len(weights) - 1).bit_length())
        if bits >= WORD:
            raise ValueError(f"{len(weights)} atoms: too many for one {WORD}-bit word")
        n, capacity = 1 << bits, 1 << (WORD - bits)
        left = list(weights) + [0] * (n - len(weights))  # units still to place, per atom
        keep, alias = [capacity] * n, list(range(n))
        small = [j for j in range(n) if left[j] < capacity]
        large = [j for j in range(n) if left[j] > capacity]
        while small and large:  # fill small bucket s with its own atom, top it up from large atom g
            s, g = small.pop(), large[-1]
            keep[s], alias[s] = left[s], g
            left[g] -= capacity - left[s]
            if left[g] < capacity:
                large.pop()
                small.append(g)
            elif left[g] == capacity:
                large.pop()
        # exact integers: the buckets left over hold exactly their capacity of their own atom
        return cls(int(lowest), bits, np.array(keep, dtype=np.uint64), np.array(alias, dtype=np.int64) + int(lowest))

    def sample(self, size, *, rng: np.random.Generator) -> np.ndarray:
        """int64 draws of shape ``size``, one uniform 64-bit word of ``rng`` each (PCG64: its raw output)."""
        shape = (size,) if np.ndim(size) == 0 else tuple(size)
        words = rng.integers(0, TOTAL, size=shape, dtype=np.uint64)  # full 64-bit words from any bit generator
        bucket = (words >> np.uint64(WORD - self.bits)).astype(np.intp)
        low = words & np.uint64((1 << (WORD - self.bits)) - 1)
        return np.where(low < self.thresholds[bucket], bucket + self.lowest, self.aliases[bucket])

    def probabilities(self) -> dict[int, int]:
        """Value -> its probability in units of 2^-64, recomputed from the buckets (zero-weight values omitted)."""
        capacity, out = 1 << (WORD - self.bits), {}
        for j, (keep, alias) in enumerate(zip(self.thresholds.tolist(), self.aliases.tolist())):
            for value, units in ((j + self.lowest, keep), (alias, capacity - keep)):
                if units:
                    out[value] = out.get(value, 0) + units
        return out
