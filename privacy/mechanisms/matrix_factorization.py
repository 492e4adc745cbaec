"""The maths of DP-FTRL with matrix factorization: workloads, strategies, sensitivities, expected errors.

The mechanism releases ``A G + B Z`` for a workload ``A = B C``: the server adds ``C^{-1} Z`` to the
per-round gradient sums ``G``, so the release is ``B (C G + Z)``, a post-processing of the Gaussian
mechanism ``C G + Z`` whose L2 sensitivity is that of ``C`` under the participation pattern.

A lower-triangular Toeplitz ``T x T`` matrix is given by its first column: ``coefs[k]`` is the entry
on the k-th subdiagonal (missing coefficients are zero, so ``len(coefs) = bands`` is a banded matrix).
Products and inverses of such matrices are again lower-triangular Toeplitz, which keeps every
Toeplitz computation here at O(T * bands) or O(T^2) instead of O(T^3).

Sources: Denisov, McMahan, Rush, Smith, Thakurta 2022, "Improved Differential Privacy for SGD via
Optimal Private Linear Operators on Adaptive Streams" (NeurIPS); Choquette-Choo, Ganesh, McKenna,
McMahan, Rush, Thakurta, Xu 2023, "(Amplified) Banded Matrix Factorization: A unified approach to
private training" (NeurIPS); McKenna 2024/2025, "Scaling up the Banded Matrix Factorization Mechanism
for Differentially Private ML" (ICLR 2025).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
from scipy import optimize, signal

MAX_ROUNDS = 100_000  # Toeplitz computations are O(T^2) at worst: 10^10 flops is the ceiling
MAX_DENSE_ROUNDS = 4096  # dense T x T matrices (tree aggregation, general decoders): 128 MiB each in float64
MAX_BRUTE_FORCE_ROUNDS = 20  # sensitivity_brute_force enumerates up to 2^T participation patterns
MAX_BANDS = 1024  # optimal_banded_toeplitz: L-BFGS in `bands` dimensions, O(T * bands) per gradient


def _check_rounds(rounds: int, *, limit: int = MAX_ROUNDS) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or not 1 <= rounds <= limit:
        raise ValueError(f"rounds must be an integer in [1, {limit}], got {rounds!r}")
    return int(rounds)


def _check_coefs(coefs, rounds: int | None = None, *, name: str = "coefs") -> np.ndarray:
    """First-column coefficients as float64, at most ``rounds`` of them, finite, c_0 != 0."""
    c = np.asarray(coefs, dtype=np.float64)
    if c.ndim != 1 or c.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of coefficients, got shape {c.shape}")
    if rounds is not None and c.size > rounds:
        raise ValueError(f"{name} has {c.size} coefficients (bands) but rounds is {rounds}: bands must be <= rounds")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be finite")
    if c[0] == 0:
        raise ValueError(f"{name}[0] (the diagonal) must be non-zero for the matrix to be invertible")
    return c


def _check_participation(min_separation: int, max_participations: int) -> tuple[int, int]:
    for name, v in (("min_separation", min_separation), ("max_participations", max_participations)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(min_separation), int(max_participations)


def prefix_workload(rounds: int, *, lr: float = 1.0, momentum: float = 0.0) -> np.ndarray:
    """Coefficients a_k, k = 0..T-1, of the lower-triangular Toeplitz workload A of SGD with momentum.

    Formula: with per-round gradient sums g_t, heavy-ball momentum m_t = beta m_{t-1} + g_t and server
    step theta_t = theta_{t-1} - lr m_t, the model offset theta_0 - theta_t = lr sum_{s<=t} m_s = (A g)_t
    with a_k = lr (1 - beta^(k+1)) / (1 - beta), i.e. A = lr * (prefix sums) @ (momentum filter beta^k).
    For beta = 0 this is lr times the all-ones lower triangle: plain prefix sums.
    Source: Denisov et al. 2022 (Section 2, the SGD-with-momentum workload); Choquette-Choo et al. 2023.
    """
    rounds = _check_rounds(rounds)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    k = np.arange(rounds, dtype=np.float64)
    if momentum == 0.0:
        return np.full(rounds, float(lr))
    return lr * (1.0 - momentum ** (k + 1)) / (1.0 - momentum)


def toeplitz(coefs, rounds: int) -> np.ndarray:
    """The dense ``rounds x rounds`` lower-triangular Toeplitz matrix with first column ``coefs``
    (zero-padded: ``len(coefs) = bands`` gives a banded matrix)."""
    rounds = _check_rounds(rounds, limit=MAX_DENSE_ROUNDS)
    c = np.asarray(coefs, dtype=np.float64)
    if c.ndim != 1 or c.size > rounds:
        raise ValueError(f"coefs must be 1-D with at most rounds={rounds} entries, got shape {c.shape}")
    col = np.zeros(rounds)
    col[:c.size] = c
    idx = np.arange(rounds)
    diff = idx[:, None] - idx[None, :]
    return np.where(diff >= 0, col[np.clip(diff, 0, None)], 0.0)


def inverse_coefficients(coefs, rounds: int) -> np.ndarray:
    """First column of C^{-1} for the lower-triangular Toeplitz C with first column ``coefs``.

    Formula (power-series inversion of C(x) = sum_j c_j x^j): d_0 = 1 / c_0,
    d_n = -(sum_{j=1}^{min(n, bands-1)} c_j d_{n-j}) / c_0, in O(T * bands) (an IIR filter's impulse
    response, computed by scipy.signal.lfilter).
    """
    rounds = _check_rounds(rounds)
    c = _check_coefs(coefs, rounds)
    impulse = np.zeros(rounds)
    impulse[0] = 1.0
    return signal.lfilter([1.0], c, impulse)


def _workload_times_inverse(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """First column of A C^{-1} (length T = len(a)): the power series A(x) / C(x), truncated."""
    impulse = np.zeros(a.size)
    impulse[0] = 1.0
    if np.all(a == a[0]):  # prefix sums (times a constant): A(x) = a_0 / (1 - x), a running sum of C^{-1}
        return a[0] * np.cumsum(signal.lfilter([1.0], c, impulse))
    return signal.lfilter(a, c, impulse)


def _toeplitz_frobenius_sq(coefs: np.ndarray) -> float:
    """||M||_F^2 of the T x T lower-triangular Toeplitz M with first column ``coefs`` (length T):
    coefficient k appears on T - k entries, so ||M||_F^2 = sum_k (T - k) m_k^2."""
    t = coefs.size
    return float(np.dot(t - np.arange(t), coefs * coefs))


def _log_loss_and_grad(c: np.ndarray, a: np.ndarray) -> tuple[float, np.ndarray]:
    """log(||A C^{-1}||_F^2 * ||c||^2) and its gradient in c, for banded Toeplitz C with coefficients c.

    With b = first column of A C^{-1} (the series A/C) and weights w_k = T - k, the loss is
    L = sum_k w_k b_k^2. Since d(A/C)/dc_j = -x^j (A/C)/C, db_k/dc_j = -g_{k-j} with g = the series
    B/C, so dL/dc_j = -2 sum_{k>=j} w_k b_k g_{k-j}: O(T * bands) after two O(T * bands) filters.
    The scale factor ||c||^2 (the max column norm of banded C, squared) makes the objective scale-free.
    """
    t = a.size
    b = _workload_times_inverse(a, c)
    wb = (t - np.arange(t)) * b
    loss = float(np.dot(wb, b))
    if not (np.isfinite(loss) and loss > 0):
        return math.inf, np.zeros_like(c)
    g = signal.lfilter([1.0], c, b)
    grad_loss = np.array([-2.0 * np.dot(wb[j:], g[:t - j]) for j in range(c.size)])
    norm_sq = float(np.dot(c, c))
    return math.log(loss) + math.log(norm_sq), grad_loss / loss + 2.0 * c / norm_sq


def optimal_banded_toeplitz(rounds: int, bands: int, *, workload: np.ndarray | None = None,
                            initial: np.ndarray | None = None, max_iterations: int = 2000) -> np.ndarray:
    """The ``bands`` coefficients c (c_0 > 0, ||c||_2 = 1) of the banded lower-triangular Toeplitz
    strategy C that minimises the expected total squared error of the workload A:

        loss(c) = ||A C^{-1}||_F^2 * (max column norm of C)^2 = ||A C^{-1}||_F^2 * ||c||_2^2.

    For a banded Toeplitz C the first column is the longest, so its max column norm is ||c||_2; with
    min_separation >= bands and T >= k * min_separation the exact (k, b)-participation sensitivity is
    sqrt(k) ||c||_2 (see :func:`banded_sensitivity`), so this c is also optimal under multiple
    participation. A C^{-1} is Toeplitz, so the loss and its analytic gradient cost O(T * bands)
    (see :func:`_log_loss_and_grad`); L-BFGS-B minimises log(loss), which is scale-invariant, from
    ``initial`` (default: the first ``bands`` coefficients of the square-root factorization, which is
    deterministic and has a stable inverse by the Enestrom-Kakeya theorem).
    ``workload``: the first column of A (length T); default prefix sums.
    Sources: Choquette-Choo et al. 2023, "(Amplified) Banded Matrix Factorization" (NeurIPS), Section 4;
    McKenna 2024/2025, "Scaling up the Banded Matrix Factorization Mechanism for Differentially Private
    ML" (ICLR 2025), Section 4 (banded Toeplitz strategies optimised in O(n * b) per step).
    """
    rounds = _check_rounds(rounds)
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or not 1 <= bands <= min(rounds, MAX_BANDS):
        raise ValueError(f"bands must be an integer in [1, min(rounds={rounds}, {MAX_BANDS})], got {bands!r}")
    a = np.ones(rounds) if workload is None else np.asarray(workload, dtype=np.float64)
    if a.shape != (rounds,) or not np.all(np.isfinite(a)) or a[0] == 0:
        raise ValueError(f"workload must be the {rounds} finite first-column coefficients of A with a_0 != 0, "
                         f"got shape {a.shape}")
    if not 1 <= max_iterations <= 100_000:
        raise ValueError(f"max_iterations must be in [1, 100000], got {max_iterations!r}")
    x0 = sqrt_factorization(bands) if initial is None else _check_coefs(initial, bands, name="initial")
    if x0.size != bands:
        raise ValueError(f"initial must have exactly bands={bands} coefficients, got {x0.size}")
    if bands == 1:
        return np.ones(1)
    a = a / np.abs(a).max()  # the loss is homogeneous in A; keep it well scaled
    result = optimize.minimize(_log_loss_and_grad, x0 / np.linalg.norm(x0), args=(a,), jac=True,
                               method="L-BFGS-B",
                               options={"maxiter": max_iterations, "maxcor": 30, "ftol": 1e-15, "gtol": 1e-10})
    c = result.x / np.linalg.norm(result.x)
    if c[0] < 0:  # the loss is even in c; report the representative with a positive diagonal
        c = -c
    if not np.isfinite(_log_loss_and_grad(c, a)[0]):
        raise RuntimeError(f"banded Toeplitz optimisation diverged ({result.message})")
    return c


def sqrt_factorization(rounds: int) -> np.ndarray:
    """Coefficients r_j = binom(2j, j) / 4^j of (1 - x)^{-1/2}: the lower-triangular Toeplitz square
    root R of the prefix-sum matrix (R R = A), used as both factors (B = C = R).

    Computed by the recurrence r_0 = 1, r_j = r_{j-1} (2j - 1) / (2j), which never forms the
    binomial coefficients (no overflow). Column norms: ||r||^2 ~ ln(T)/pi.
    Source: Fichtenberger, Henzinger, Upadhyay 2023, "Constant Matters: Fine-grained Error Bound on
    Differentially Private Continual Observation" (ICML), Theorem 1; Henzinger, Upadhyay, Upadhyay
    2023, "Almost Tight Error Bounds on Differentially Private Continual Counting" (SODA).
    """
    rounds = _check_rounds(rounds)
    j = np.arange(1, rounds, dtype=np.float64)
    return np.concatenate([[1.0], np.cumprod((2.0 * j - 1.0) / (2.0 * j))])


def tree_aggregation(rounds: int) -> np.ndarray:
    """The (nodes x T) 0/1 strategy matrix of binary-tree aggregation.

    Row for each dyadic interval [j 2^l, (j+1) 2^l) meeting [0, T), l = 0..ceil(log2 T), truncated to
    [0, T); leaves first, then each level up. Every round is in one node per level, so each column has
    ceil(log2 T) + 1 ones (single-participation sensitivity sqrt(ceil(log2 T) + 1)).
    Sources: Dwork, Naor, Pitassi, Rothblum 2010, "Differential Privacy under Continual Observation"
    (STOC); Chan, Shi, Song 2011, "Private and Continual Release of Statistics" (TISSEC); used for
    DP-FTRL by Kairouz, McMahan, Song, Thakkar, Thakurta, Xu 2021, "Practical and Private (Deep)
    Learning without Sampling or Shuffling" (ICML).
    """
    rounds = _check_rounds(rounds, limit=MAX_DENSE_ROUNDS)
    levels = max(0, math.ceil(math.log2(rounds)))
    rows = []
    for level in range(levels + 1):
        width = 2 ** level
        for start in range(0, rounds, width):
            row = np.zeros(rounds)
            row[start:min(start + width, rounds)] = 1.0
            rows.append(row)
    return np.stack(rows)


def _column_norms_sq(c: np.ndarray, rounds: int) -> np.ndarray:
    """Squared column norms of the banded Toeplitz C: column t holds c_0..c_{min(bands, T-t)-1}."""
    prefix = np.cumsum(c * c)
    return prefix[np.minimum(c.size, rounds - np.arange(rounds)) - 1]


def banded_sensitivity(coefs, rounds: int, *, min_separation: int, max_participations: int) -> float:
    """Exact L2 sensitivity (per unit clip) of a b-banded lower-triangular Toeplitz C under
    (k, b)-min-separation participation: a client takes part at most k = ``max_participations`` times,
    any two participations at least b = ``min_separation`` rounds apart.

    Formula: columns at least b >= bands apart have disjoint supports, hence are orthogonal, so
    sens^2 = max over admissible patterns S (|S| <= k, pairwise >= b apart) of sum_{t in S} ||C e_t||^2,
    where column t is truncated to rows t..min(t + bands - 1, T - 1). The maximum is computed exactly by
    dynamic programming: best_j(t) = max(best_j(t+1), n_t + best_{j-1}(t+b)), O(k T). (The column norms
    are non-increasing in t, so the optimum is the pattern 0, b, 2b, ...; the DP does not rely on it.)
    If T >= (k - 1) b + bands, every one of the k columns is whole and sens = sqrt(k) ||c||_2.
    Source: Choquette-Choo et al. 2023, "(Amplified) Banded Matrix Factorization", Theorem 2.
    """
    rounds = _check_rounds(rounds)
    c = _check_coefs(coefs, rounds)
    b, k = _check_participation(min_separation, max_participations)
    if c.size > b:
        raise ValueError(f"bands ({c.size}) must be <= min_separation ({b}) for banded_sensitivity; "
                         "use sensitivity_brute_force or cyclic_sensitivity otherwise")
    norms = _column_norms_sq(c, rounds)
    best = np.zeros(rounds + b)  # best_0 = 0; entries t >= T stand for "no round left"
    for _ in range(min(k, (rounds - 1) // b + 1)):
        take = np.zeros(rounds + b)
        take[:rounds] = norms + best[b:rounds + b]
        best = np.maximum.accumulate(take[::-1])[::-1]  # best_j(t) = max_{s >= t} (n_s + best_{j-1}(s + b))
    return math.sqrt(float(best[0]))


def _participation_patterns(rounds: int, min_separation: int, max_participations: int):
    """Every admissible pattern (tuple of rounds, increasing, gaps >= b, length 1..k)."""
    stack = [((), 0)]
    while stack:
        pattern, first_free = stack.pop()
        if pattern:
            yield pattern
        if len(pattern) < max_participations:
            for t in range(first_free, rounds):
                stack.append((pattern + (t,), t + min_separation))


def sensitivity_brute_force(C: np.ndarray, *, min_separation: int, max_participations: int) -> float:
    """max over all admissible participation patterns u (0/1, at most k ones, pairwise >= b apart) of
    ||C u||_2, by enumeration (exponential: T <= 20 only, for tests).

    This is the exact (k, b)-participation sensitivity when C^T C >= 0 elementwise: then, over
    per-round gradients of norm <= 1, ||C (x_1 u_1 + ...)||^2 is largest when every participating
    round contributes the same unit vector, i.e. at a 0/1 pattern. For other C it is a lower bound. Source: Choquette-Choo, McMahan, Rush, Thakurta 2023, "Multi-Epoch Matrix
    Factorization Mechanisms for Private Machine Learning" (ICML), Theorem 2.
    """
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2:
        raise ValueError(f"C must be a 2-D matrix, got shape {C.shape}")
    rounds = C.shape[1]
    if rounds > MAX_BRUTE_FORCE_ROUNDS:
        raise ValueError(f"sensitivity_brute_force enumerates patterns: rounds (columns of C) must be "
                         f"<= {MAX_BRUTE_FORCE_ROUNDS}, got {rounds}")
    b, k = _check_participation(min_separation, max_participations)
    best = 0.0
    for pattern in _participation_patterns(rounds, b, k):
        best = max(best, float(np.linalg.norm(C[:, list(pattern)].sum(axis=1))))
    return best


def cyclic_sensitivity(C: np.ndarray, *, min_separation: int, max_participations: int) -> float:
    """max over the b cyclic patterns {g, g+b, g+2b, ...} (their first k rounds below T), g = 0..b-1,
    of ||C u||_2.

    For a banded C with bands <= b (and columns whose norms do not grow with t) this equals the exact
    min-separation sensitivity (:func:`banded_sensitivity`). For a general C it is only a LOWER bound
    on it; it is used to report baselines (tree aggregation, the square-root factorization) favourably
    to them. Source: Choquette-Choo et al. 2023, "Multi-Epoch Matrix Factorization Mechanisms", Sec. 3.
    """
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2:
        raise ValueError(f"C must be a 2-D matrix, got shape {C.shape}")
    b, k = _check_participation(min_separation, max_participations)
    rounds = C.shape[1]
    return max(float(np.linalg.norm(C[:, g::b][:, :k].sum(axis=1))) for g in range(min(b, rounds)))


def expected_rmse(workload_coefs_or_matrix, C, *, sensitivity: float) -> float:
    """Root-mean-squared error of the T released workload outputs, per unit noise multiplier and clip:

        RMSE = sensitivity * ||A C^{-1}||_F / sqrt(T),

    the square root of E ||B Z||^2 / T for B = A C^{-1}, Z ~ N(0, sensitivity^2 I) (noise multiplier 1,
    clip 1: the Gaussian mechanism on C G has std sensitivity * z * clip). ``workload_coefs_or_matrix``:
    first-column coefficients of A (length T) or the T x T matrix. ``C``: first-column coefficients of a
    lower-triangular Toeplitz strategy (at most T, O(T^2) path), or a dense (m x T) matrix of full column
    rank; for m != T the decoder is the least-squares one, B = A C^+ (Moore-Penrose pseudo-inverse):
    the minimum-error linear decoder, which may use nodes released after round t, so for tree
    aggregation it is at least as good as the causal decoder (favourable to the tree).
    Source: Li, Miklau, Hay, McGregor, Rastogi 2015, "The matrix mechanism" (VLDB J.); Denisov et al. 2022.
    """
    if not (math.isfinite(sensitivity) and sensitivity >= 0):
        raise ValueError(f"sensitivity must be finite and >= 0, got {sensitivity!r}")
    a = np.asarray(workload_coefs_or_matrix, dtype=np.float64)
    c = np.asarray(C, dtype=np.float64)
    if a.ndim == 1:
        rounds = _check_rounds(a.size)
    elif a.ndim == 2 and a.shape[0] == a.shape[1]:
        rounds = _check_rounds(a.shape[0], limit=MAX_DENSE_ROUNDS)
    else:
        raise ValueError(f"workload must be 1-D coefficients or a square matrix, got shape {a.shape}")
    if a.ndim == 1 and c.ndim == 1:
        c = _check_coefs(c, rounds, name="C")
        frob_sq = _toeplitz_frobenius_sq(_workload_times_inverse(a, c))
        return sensitivity * math.sqrt(frob_sq / rounds)
    A = toeplitz(a, rounds) if a.ndim == 1 else a
    Cm = toeplitz(_check_coefs(c, rounds, name="C"), rounds) if c.ndim == 1 else c
    if Cm.ndim != 2 or Cm.shape[1] != rounds:
        raise ValueError(f"C must have {rounds} columns (one per round), got shape {Cm.shape}")
    if Cm.shape[0] == rounds:
        B = np.linalg.solve(Cm.T, A.T).T
    else:  # B^T = (C^T)^+ A^T: the minimum-norm solution of C^T X = A^T
        B = np.linalg.lstsq(Cm.T, A.T, rcond=None)[0].T
    if not np.allclose(B @ Cm, A, atol=1e-8 * max(1.0, float(np.abs(A).max()))):
        raise ValueError("C does not have full column rank: A = B C has no solution")
    return sensitivity * float(np.linalg.norm(B)) / math.sqrt(rounds)


class BandedNoise:
    """Round-by-round correlated noise w = C^{-1} Z of a banded lower-triangular Toeplitz C, without
    storing the T x d noise: only the last bands - 1 outputs are kept.

    Formula: C w = Z row by row gives w_t = (z_t - sum_{j=1}^{bands-1} c_j w_{t-j}) / c_0. Adding w_t to
    round t's gradient sum g_t releases B (C G + Z) = A G + B Z in prefix space, the Gaussian mechanism
    on C G post-processed. The caller draws z_t ~ N(0, I) from its own seeded generator and scales by
    noise multiplier * clip (times the sensitivity of C, see :func:`banded_sensitivity`).
    Source: Choquette-Choo et al. 2023, "(Amplified) Banded Matrix Factorization", Algorithm 1.
    """

    def __init__(self, coefs) -> None:
        c = _check_coefs(coefs)
        if c[0] <= 0:
            raise ValueError(f"coefs[0] must be > 0, got {c[0]!r}")
        self.coefs = tuple(float(v) for v in c)  # c_0..c_{bands-1}
        self._previous: deque[torch.Tensor] = deque(maxlen=len(self.coefs) - 1)  # w_{t-1}, w_{t-2}, ...
        self.rounds = 0  # rounds stepped since construction or reset

    @property
    def bands(self) -> int:
        return len(self.coefs)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """w_t from this round's fresh N(0, 1) vector z_t (same shape every round)."""
        w = z.clone()
        for c_j, w_prev in zip(self.coefs[1:], self._previous):
            if w_prev.shape != z.shape:
                raise ValueError(f"z has shape {tuple(z.shape)}, earlier rounds had {tuple(w_prev.shape)}")
            w -= c_j * w_prev
        w /= self.coefs[0]
        if self._previous.maxlen:
            self._previous.appendleft(w.clone())
        self.rounds += 1
        return w

    def reset(self) -> None:
        """Forget the past outputs: the next step is round 0 again."""
        self._previous.clear()
        self.rounds = 0
