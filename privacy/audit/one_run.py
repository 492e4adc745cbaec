"""One-run privacy auditing: a statistical lower bound on epsilon from guesses about canaries.

Steinke, Nasr, Jagielski 2023, "Privacy Auditing with One (1) Training Run", NeurIPS.
m canaries are each included in the training input independently with probability 1/2.
After one run an auditor guesses, from the output alone, "in" or "out" for r of them
(abstaining on the rest) and gets v right. If the run is (eps, delta)-DP with respect to
each canary, the number of correct guesses is dominated by Binomial(r, e^eps / (1 + e^eps))
-- the accuracy of eps-randomised response -- up to a delta term (their main theorem and
its (eps, delta) form). So v correct guesses reject every eps whose p-value is below
1 - confidence; the largest rejected eps is a lower bound on the true epsilon, valid with
that confidence. A lower bound above the claimed epsilon proves the claim false.

Pure numpy/scipy: no model, no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Share of the m canaries the auditor guesses on: half on the top scores ("in"), half on the bottom
# ("out"). Fixed in advance; the best of these is taken with a Bonferroni correction over the grid.
GUESS_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Probability of at least ``correct`` right guesses out of ``guesses`` if the run is (eps, delta)-DP.

    p = P[Binomial(r, q) >= v] + 2 m delta * max_{i=1..v} P[v - i <= Binomial(r, q) < v] / i,
    with q = e^eps / (1 + e^eps) (Steinke, Nasr, Jagielski 2023, the (eps, delta) form of their main
    theorem and the p-value computation they give for it). Capped at 1.
    """
    m, r, v = int(canaries), int(guesses), int(correct)
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1] (got {epsilon}, {delta})")
    if v == 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of eps-randomised response
    from scipy import stats  # here, not at import: the server and the driver start without it

    tail = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[B = v-1], P[B = v-2], ..., P[B = 0]
    alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(1.0, tail + alpha * delta * 2 * m)


def epsilon_lower_bound(*, canaries: int, guesses: int, correct: int, delta: float,
                        confidence: float = 0.95) -> float:
    """Largest eps that ``correct`` right guesses out of ``guesses`` reject at level 1 - ``confidence``:
    with that confidence the audited run is not (eps', delta)-DP for any eps' below it. 0 if nothing is
    rejected. Bisection on the p-value, which grows with eps."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence}: must be in (0, 1)")
    level = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return p_value(canaries=canaries, guesses=guesses, correct=correct, epsilon=eps, delta=delta) < level

    if not rejected(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejected(hi):
        lo, hi = hi, 2 * hi
        if hi > 1e4:  # only reachable with delta = 0 and astronomically many correct guesses
            return lo
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
    return lo


def audit_delta(*, canaries: int, delta: float, confidence: float = 0.95) -> float:
    """The delta at which to audit: the claim's own ``delta``, or less so that the bound's delta term
    (at most 2 m delta) uses at most a tenth of the level 1 - confidence.

    With delta = 1/N^1.1 and N = 100 clients, 2 m delta is 12.6 for m = 1000 canaries: no guess could
    reject anything. A mechanism with privacy curve eps(delta) is (eps(delta'), delta')-DP at every
    delta', so auditing the claim eps(delta') at the smaller delta' tests the same mechanism.
    """
    if canaries <= 0:
        return delta
    return min(delta, (1 - confidence) / (10 * 2 * canaries))


@dataclass(frozen=True)
class AuditResult:
    eps_lower: float  # lower bound on epsilon at the confidence asked for
    guesses: int  # r of the guess rule that gave the bound
    correct: int  # v of that rule
    canaries: int  # m
    included: int  # canaries actually in the run (about m / 2)


def one_run_audit(scores: Sequence[float], included: Sequence[bool], *, delta: float, confidence: float = 0.95,
                  guess_fractions: Sequence[float] = GUESS_FRACTIONS) -> AuditResult:
    """Audit from canary scores: higher score = more likely included.

    For each fraction f of the grid (fixed before looking at the scores), guess "in" for the
    f m / 2 highest scores and "out" for the f m / 2 lowest, count the right guesses, and turn
    them into a lower bound at confidence 1 - (1 - ``confidence``) / len(grid) (Bonferroni), so that
    the maximum over the grid holds at ``confidence``. The inclusion bits must have been drawn
    independently with probability 1/2, before the run, and be unknown to the scoring.
    """
    s = np.asarray(scores, dtype=float)
    inc = np.asarray(included, dtype=bool)
    m = len(s)
    if len(inc) != m:
        raise ValueError(f"{m} scores but {len(inc)} inclusion bits")
    if m == 0:
        return AuditResult(0.0, 0, 0, 0, 0)
    if not np.all(np.isfinite(s)):
        raise ValueError("canary scores must be finite")
    order = np.argsort(-s, kind="stable")  # highest first
    per_test = 1 - (1 - confidence) / len(guess_fractions)
    results = []
    for f in guess_fractions:
        k = max(1, int(f * m) // 2)
        top, bottom = order[:k], order[m - k:] if 2 * k <= m else order[k:]
        correct = int(inc[top].sum() + (~inc[bottom]).sum())
        r = len(top) + len(bottom)
        eps = epsilon_lower_bound(canaries=m, guesses=r, correct=correct, delta=delta, confidence=per_test)
        results.append(AuditResult(eps, r, correct, m, int(inc.sum())))
    # the largest bound; when none rejects anything, the rule with the best accuracy shows how close it came
    return max(results, key=lambda a: (a.eps_lower, a.correct / a.guesses))
