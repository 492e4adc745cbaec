"""Membership inference as an empirical check: the loss-threshold attack's AUC and the AUC that a
differential-privacy guarantee allows.

Loss-threshold attack (Yeom, Giacomelli, Fredrikson, Jha 2018, "Privacy Risk in Machine
Learning: Analyzing the Connection to Overfitting", CSF): call a record a member when the
model's loss on it is below a threshold; sweeping the threshold traces a ROC curve whose
area is the AUC of the score -loss.

Pure numpy: the server computes the losses, these functions judge them.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from privacy.seeding import AUDIT, numpy_rng

_MEMBERS, _NONMEMBERS = 3, 4  # sub-streams of the AUDIT purpose (0-2: privacy.audit.canaries)


def membership_sample(n_train: int, n_test: int, records: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, equal-sized samples without replacement: training-record indices (members) and
    test-record indices (non-members), ``min(records, n_train, n_test)`` of each."""
    n = min(int(records), int(n_train), int(n_test))
    members = np.sort(numpy_rng(seed, AUDIT, _MEMBERS).choice(n_train, size=n, replace=False))
    nonmembers = np.sort(numpy_rng(seed, AUDIT, _NONMEMBERS).choice(n_test, size=n, replace=False))
    return members, nonmembers


def auc(positive_scores: Sequence[float], negative_scores: Sequence[float]) -> float:
    """Area under the ROC curve: P[score(positive) > score(negative)] + 1/2 P[tie] (Mann-Whitney U / (n1 n0))."""
    pos = np.asarray(positive_scores, dtype=float)
    neg = np.asarray(negative_scores, dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    scores = np.concatenate([pos, neg])
    if np.isnan(scores).any():  # no order: no AUC
        return math.nan
    ranks = average_ranks(scores)  # ties share their average rank: a tie counts one half
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (no NaN), tied values sharing the mean of their ranks: scipy.stats.rankdata's
    default, in numpy alone (importing scipy.stats cost the final audit 1.3 s, most of its time)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    first = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])  # where each run of equal values starts
    size = np.diff(np.r_[first, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (size + 1) / 2, size)  # positions first+1 .. first+size average to this
    return ranks


def loss_threshold_auc(member_losses: Sequence[float], nonmember_losses: Sequence[float]) -> float:
    """AUC of the loss-threshold attack: members are expected to have the lower loss."""
    return auc(-np.asarray(member_losses, dtype=float), -np.asarray(nonmember_losses, dtype=float))


def auc_upper_bound(epsilon: float, delta: float) -> float:
    """Largest AUC any membership test can reach against an (eps, delta)-DP mechanism.

    (eps, delta)-DP bounds every test's true-positive rate at false-positive rate a by
    TPR(a) <= min(1, e^eps a + delta, 1 - e^-eps (1 - delta - a)) (Kairouz, Oh, Viswanath 2015,
    "The Composition Theorem for Differential Privacy", ICML; the region of their Theorem 2.1).
    The AUC bound is the area under that piecewise-linear curve; for delta = 0 it equals
    e^eps / (1 + e^eps). Infinite epsilon: 1.
    """
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1] (got {epsilon}, {delta})")
    if epsilon > 700:  # e^eps overflows; the bound is 1 to double precision anyway
        return 1.0
    e = math.exp(epsilon)
    # breakpoints: where the two sloped pieces meet, and where the second reaches 1
    a1 = min(1.0, max(0.0, (1 - delta) / (1 + e)))
    a2 = max(a1, 1 - delta)
    xs = np.array([0.0, a1, a2, 1.0])
    tpr = np.minimum(1.0, np.minimum(e * xs + delta, 1 - (1 - delta - xs) / e))
    return float(np.clip(np.trapezoid(tpr, xs), 0.5, 1.0))


def record_guarantee_of_client_level(epsilon: float, delta: float) -> tuple[float, float]:
    """The record-level (eps, delta) implied by client-level (eps, delta) under add/remove of a client.

    Adding or removing one record changes one client's data set: remove that client, add it back
    with the changed data -- two client-level steps. Chaining the definition twice (group privacy,
    Dwork and Roth 2014, "The Algorithmic Foundations of Differential Privacy", Section 2.3):
    P[M(D) in E] <= e^eps (e^eps P[M(D') in E] + delta) + delta, i.e. (2 eps, (1 + e^eps) delta).
    """
    if epsilon > 700:  # e^eps overflows: nothing is left of the guarantee
        return 2 * epsilon, 1.0
    return 2 * epsilon, min(1.0, (1 + math.exp(epsilon)) * delta)


def membership_auc_bound(*, eps_record: float, delta_record: float, eps_client: float,
                         delta_client: float) -> float:
    """The tighter AUC bound of the two guarantees a run reports, both read as statements about one
    record; NaN when neither protects records (both epsilons infinite)."""
    bounds = []
    if math.isfinite(eps_record):
        bounds.append(auc_upper_bound(eps_record, delta_record))
    if math.isfinite(eps_client):
        bounds.append(auc_upper_bound(*record_guarantee_of_client_level(eps_client, delta_client)))
    return min(bounds) if bounds else math.nan
