"""Client-side encoding of a real vector to integers mod 2^b, and its decoding, for secure aggregation.

Pipeline of one client (Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", ICML; the same steps as Agarwal, Kairouz, Liu 2021, "The
Skellam Mechanism for Differentially Private Federated Learning", NeurIPS):

    x (||x||_2 <= clip)  ->  scale * x  ->  H D (scale * x) on the zero-padded power-of-two length
    ->  conditional randomised rounding to Z^d (norm at most :func:`rounded_l2_bound`)
    ->  + integer noise share (privacy.mechanisms.skellam)  ->  mod 2^b  (:func:`to_ring`)

The server sums the ring vectors mod 2^b and calls :meth:`Quantizer.decode` on the sum. The rotation
(random signs D then the orthonormal Walsh-Hadamard H) spreads a vector's energy over all coordinates so
that few bits suffice; its seed is public (shared by the cohort of a round), its inverse is exact.
The rounding's randomness and the noise are private: each draw takes an explicit ``numpy`` Generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

MAX_BITS = 32  # ring Z_{2^b}, b <= 32: sums of up to 2^32 clients still fit a uint64 before the mod


def padded_dim(dim: int) -> int:
    """Smallest power of two >= dim: the length the Walsh-Hadamard transform works on."""
    if dim < 1:
        raise ValueError(f"dim = {dim}: a vector needs at least one coordinate")
    return 1 << (int(dim) - 1).bit_length()


def l2_norm(x: np.ndarray) -> float:
    """||x||_2 in float64 without BLAS (whose threads spin against the actors' torch threads)."""
    x = np.asarray(x, dtype=np.float64)
    return math.sqrt(float(np.einsum("...i,...i->", x, x)))


def fwht(x: np.ndarray) -> np.ndarray:
    """Orthonormal fast Walsh-Hadamard transform along the last axis: H x / sqrt(n), n a power of two.

    H (Sylvester order) is symmetric and H H = n I, so this transform is its own inverse and keeps
    L2 norms. O(n log n) butterflies, vectorised over the leading axes.

    Every butterfly computes (a, b) <- (a + b, (a + b) - 2 b) in float64, level by level, so the result
    does not depend on how the levels are laid out in memory: the levels of half-width h < _BLOCK run on
    a transposed copy, where the paired coordinates lie in long contiguous runs instead of runs of h
    (which cost 1 h-long loop per pair of blocks), the others in place."""
    return _fwht_inplace(np.array(x, dtype=np.float64))


def _fwht_inplace(x: np.ndarray, nonzero: int | None = None) -> np.ndarray:
    """:func:`fwht` of a float64 array the caller owns: the result is written over it (and returned).

    ``nonzero``: the caller guarantees that the coordinates from this index on are zero (a vector zero-padded
    to the power-of-two length). A level then skips its blocks that hold only those zeros: their butterflies
    would leave them zero (up to the sign of zero), so every other coordinate gets the same float operations
    as with every block computed, and the result is the same up to the signs of coordinates that come out
    exactly zero."""
    y = torch.from_numpy(x)
    n = y.shape[-1]
    if n & (n - 1) or n == 0:
        raise ValueError(f"length {n}: pad to a power of two first (padded_dim)")
    if y.numel() == 0:  # no rows
        return x
    extent = n if nonzero is None else max(1, min(n, int(nonzero)))  # coordinates that may be non-zero
    lead, block = y.shape[:-1], min(n, _BLOCK)
    if block > 1:  # t[..., j, i] = y[..., i * block + j]: level h pairs rows j and j + h of t
        cols = -(-extent // block)  # columns of t that may be non-zero
        rows = y.view(*lead, n // block, block)[..., :cols, :]
        t = rows.transpose(-1, -2).contiguous()
        _butterflies(t.view(*lead, block, cols), 1, block, block)
        rows.copy_(t.transpose(-1, -2))
    _butterflies(y.unsqueeze(-1), block, n, extent)
    y /= math.sqrt(n)
    return x


_BLOCK = 64  # Walsh-Hadamard levels of half-width below this run on a transposed copy (see fwht)


def _butterflies(y: torch.Tensor, h: int, stop: int, extent: int) -> None:
    """Levels h, 2h, ... < stop of the transform along axis -2 of ``y`` (in place): (a, b) <- (a + b, a + b - 2 b).
    Rows from ``extent`` on are zero on entry: a level computes only the blocks of 2h rows that reach below it,
    which cover every row an earlier level made non-zero (a multiple of 2h at or past ``extent`` is one of h).

    The second half is one fused a + (-2) b: -2 b is exact in float64, so it rounds as (a + b) - 2 b does."""
    lead, cols = y.shape[:-2], y.shape[-1]
    while h < stop:
        blocks = -(-extent // (2 * h))  # blocks of 2h rows that hold a non-zero row
        pairs = y.view(*lead, -1, 2, h, cols)[..., :blocks, :, :, :]
        a, b = pairs[..., 0, :, :], pairs[..., 1, :, :]
        a += b
        torch.add(a, b, alpha=-2, out=b)
        h *= 2


@lru_cache(maxsize=4)
def random_signs(n: int, *, seed: int) -> np.ndarray:
    """The diagonal D of the randomised Hadamard rotation: n signs +-1 drawn from ``seed`` (read-only: one
    copy per round's seed serves every client an actor hosts)."""
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=n)
    signs.flags.writeable = False
    return signs


def rotate(x: np.ndarray, *, seed: int) -> np.ndarray:
    """Randomised Hadamard rotation H D x of x zero-padded to :func:`padded_dim`; an isometry."""
    x = np.asarray(x, dtype=np.float64)
    n = padded_dim(x.shape[-1])
    dim = x.shape[-1]
    padded = np.zeros(x.shape[:-1] + (n,))
    np.multiply(x, random_signs(n, seed=seed)[:dim], out=padded[..., :dim])
    return _fwht_inplace(padded, nonzero=dim)


def unrotate(y: np.ndarray, *, dim: int, seed: int) -> np.ndarray:
    """Exact inverse of :func:`rotate`: D H y (D and H are their own inverses), cut back to ``dim``."""
    y = np.asarray(y, dtype=np.float64)
    return (fwht(y) * random_signs(y.shape[-1], seed=seed))[..., :dim]


def rounded_l2_bound(*, l2: float, dim: int, beta: float) -> float:
    """L2 norm bound of a vector of norm <= l2 after (conditional) randomised rounding to Z^dim.

    Delta_2 = min( sqrt(l2^2 + dim/4 + sqrt(2 log(1/beta)) (l2 + sqrt(dim)/2)),  l2 + sqrt(dim) ).
    The second term holds always (each coordinate moves by less than 1); the first is the threshold
    of conditional rounding, which a draw passes with probability >= 1 - beta, and which the
    rounding then enforces by re-drawing, so it is a hard bound (beta = 0: unconditional rounding,
    only the second term). ``l2`` is on the integer grid (scale * clip); ``dim`` counts every
    coordinate that is rounded (the padded length when rotating).
    Source: Kairouz, Liu, Steinke 2021 (arXiv 2102.06387), Theorem 1 / Proposition 22 (the numbers their
    reference code cites), same form as google-research/federated ``rounded_l2_norm_bound``.
    """
    if l2 < 0 or dim < 1 or not 0 <= beta < 1:
        raise ValueError(f"l2 = {l2}, dim = {dim}, beta = {beta}: need l2 >= 0, dim >= 1, 0 <= beta < 1")
    always = l2 + math.sqrt(dim)
    if beta == 0:
        return always
    conditional = l2 ** 2 + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (l2 + math.sqrt(dim) / 2)
    return min(always, math.sqrt(conditional))


def rounded_l1_bound(*, l2: float, dim: int) -> float:
    """L1 norm bound of an integer vector of L2 norm <= l2 in Z^dim: Delta_1 = min(sqrt(dim) l2, l2^2).

    sqrt(dim) l2 is Cauchy-Schwarz; l2^2 holds because |z| <= z^2 for every integer z.
    Source: Agarwal, Kairouz, Liu 2021 (Skellam); the form of their reference accounting code
    (google-research/federated, distributed_dp/accounting_utils.py, ``rounded_l1_norm_bound``)."""
    if l2 < 0 or dim < 1:
        raise ValueError(f"l2 = {l2}, dim = {dim}: need l2 >= 0 and dim >= 1")
    return min(math.sqrt(dim) * l2, l2 * l2)


def conditional_round(x: np.ndarray, *, norm_bound: float, rng: np.random.Generator,
                      max_tries: int) -> tuple[np.ndarray, int]:
    """Unbiased randomised rounding x -> floor(x) + Bernoulli(x - floor(x)), coordinates independent,
    re-drawn until ||rounded||_2 <= norm_bound. Returns (int64 vector, draws used).
    Raises ValueError after ``max_tries`` draws that all exceed the bound."""
    z, _, tries = _conditional_round(x, norm_bound=norm_bound, rng=rng, max_tries=max_tries)
    return z, tries


def _conditional_round(x: np.ndarray, *, norm_bound: float, rng: np.random.Generator,
                       max_tries: int) -> tuple[np.ndarray, float, int]:
    """:func:`conditional_round`, also returning the rounded vector's norm (computed on its float64 values,
    which are integers below 2^53: the norm of the int64 vector)."""
    base = np.floor(x)
    frac = x - base
    for tries in range(1, max_tries + 1):
        z = base + (rng.random(x.shape) < frac)
        if (norm := l2_norm(z)) <= norm_bound:
            return z.astype(np.int64), norm, tries
    raise _rounding_failed(norm_bound, max_tries)


def _rounding_failed(norm_bound: float, max_tries: int) -> ValueError:
    return ValueError(f"conditional rounding exceeded the norm bound {norm_bound:.4g} in {max_tries} draws: "
                      "raise beta or max_tries, or check that the input is clipped to `clip`")


def _unclipped(norm: float, clip: float) -> ValueError:
    return ValueError(f"||x||_2 = {norm:.6g} exceeds clip = {clip}: clip the vector before encoding")


def to_ring(z: np.ndarray, *, bits: int) -> tuple[np.ndarray, int]:
    """Integers -> Z_{2^b} as uint64 in [0, 2^b); also the number of coordinates that wrapped, i.e.
    fell outside the signed range [-2^(b-1), 2^(b-1)) that :func:`from_ring` decodes to."""
    _check_bits(bits)
    z = np.asarray(z, dtype=np.int64)
    half = 1 << (bits - 1)
    wrapped = int(np.count_nonzero(np.add(z, half).view(np.uint64) >= np.uint64(2 * half)))  # z + half outside [0, 2^b)
    return z.view(np.uint64) & np.uint64((1 << bits) - 1), wrapped


def from_ring(u: np.ndarray, *, bits: int) -> np.ndarray:
    """Z_{2^b} -> the centred signed representative in [-2^(b-1), 2^(b-1)), as int64."""
    _check_bits(bits)
    v = (np.asarray(u, dtype=np.uint64) & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.where(v >= 1 << (bits - 1), v - (1 << bits), v)


def ring_sum(vectors, *, bits: int) -> np.ndarray:
    """Sum of ring vectors mod 2^b (uint64 addition wraps mod 2^64, a multiple of 2^b)."""
    _check_bits(bits)
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.uint64))
    for v in vectors:
        total += np.asarray(v, dtype=np.uint64)
    return total & np.uint64((1 << bits) - 1)


def _check_bits(bits: int) -> None:
    if not 2 <= int(bits) <= MAX_BITS:
        raise ValueError(f"bits = {bits}: use 2 <= bits <= {MAX_BITS}")


@dataclass(frozen=True)
class EncodeDiagnostics:
    input_norm: float  # ||x||_2 before scaling, real units
    rounded_norm: float  # ||rounded||_2 on the integer grid
    norm_bound: float  # the conditional-rounding threshold (= L2 sensitivity on the grid)
    rounding_tries: int  # draws conditional rounding needed


@dataclass(frozen=True)
class Quantizer:
    """Scale, rotate and round a clipped real vector to integers; decode a sum of such vectors.

    Assumes every input has ||x||_2 <= clip (clip first: privacy.mechanisms.clipping). ``scale`` is gamma^-1 of
    the papers: integer units per real unit, so the grid step is 1 / scale."""

    scale: float  # integer units per real unit (grid step 1 / scale)
    clip: float  # L2 norm bound of each input, real units
    bits: int = 16  # ring Z_{2^bits} of secure aggregation
    rotate: bool = True  # randomised Hadamard rotation before rounding
    beta: float = math.exp(-0.5)  # conditional rounding: a draw passes w.p. >= 1 - beta; 0 = unconditional
    max_tries: int = 1000  # conditional rounding draws before giving up with an error

    def __post_init__(self):
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale = {self.scale}: must be a positive finite number")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip = {self.clip}: must be a positive finite number")
        _check_bits(self.bits)
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta = {self.beta}: must be in [0, 1); 0 turns conditional rounding off")
        if self.max_tries < 1:
            raise ValueError(f"max_tries = {self.max_tries}: must be >= 1")

    def grid_dim(self, dim: int) -> int:
        """Length of the integer vector for an input of length ``dim`` (padded when rotating)."""
        return padded_dim(dim) if self.rotate else int(dim)

    def l2_sensitivity(self, dim: int) -> float:
        """L2 sensitivity on the integer grid of one client's encoded vector: :func:`rounded_l2_bound`."""
        return rounded_l2_bound(l2=self.scale * self.clip, dim=self.grid_dim(dim), beta=self.beta)

    def l1_sensitivity(self, dim: int) -> float:
        """L1 sensitivity on the integer grid: :func:`rounded_l1_bound` of the L2 sensitivity."""
        return rounded_l1_bound(l2=self.l2_sensitivity(dim), dim=self.grid_dim(dim))

    def encode(self, x: np.ndarray, *, rng: np.random.Generator,
               rotation_seed: int) -> tuple[np.ndarray, EncodeDiagnostics]:
        """x -> int64 vector on the grid (not yet noised nor reduced mod 2^b), with diagnostics."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"x has shape {x.shape}: encode one flat vector at a time")
        norm = l2_norm(x)
        if norm > self.clip * (1 + 1e-9):
            raise _unclipped(norm, self.clip)
        if self.rotate:
            y = rotate(x, seed=rotation_seed)
            y *= self.scale
        else:
            y = self.scale * x
        bound = self.l2_sensitivity(x.size)
        z, rounded_norm, tries = _conditional_round(y, norm_bound=bound, rng=rng, max_tries=self.max_tries)
        return z, EncodeDiagnostics(norm, rounded_norm, bound, tries)

    def decode(self, ring_total: np.ndarray, *, dim: int, rotation_seed: int) -> np.ndarray:
        """A sum mod 2^b of encoded vectors -> the real sum (divide by the cohort afterwards).
        Exact up to rounding and noise as long as no coordinate of the true integer sum left
        [-2^(b-1), 2^(b-1)); past that it wraps (see :func:`to_ring`)."""
        z = from_ring(ring_total, bits=self.bits).astype(np.float64) / self.scale
        if z.shape != (self.grid_dim(dim),):
            raise ValueError(f"sum has shape {z.shape}, expected ({self.grid_dim(dim)},) for dim = {dim}")
        return unrotate(z, dim=dim, seed=rotation_seed) if self.rotate else z
