"""The privacy of a sweep as a whole, and of choosing its best trial.

A sweep trains K trials on the same records and publishes all of them, so what is released
is the composition of every trial's mechanism (Dwork, Rothblum, Vadhan 2010: composition of
adaptive mechanisms). Two quantities:

- ``eps_sweep``: exact composition of all trials' histories under one accountant (PLD or RDP
  compose exactly; not K times a trial's epsilon). Record-level: every record lives on one
  client in every trial, so per client the trials' histories concatenate, and the system's
  epsilon is the max over clients (``eps_sweep_record``).
- Private selection (Papernot & Steinke 2022, "Hyperparameter Tuning with Renyi Differential
  Privacy", ICLR): run a randomized trial Q a random number K of times and publish only the
  best output. With K truncated negative binomial (Theorem 2) or Poisson (Theorem 6), the
  selected output costs little more than one trial, not K. Only the selected trial may be
  published; publishing all trials is ``eps_sweep``.

Assumptions of the selection bound: each repetition is Q with fresh randomness (its own
noise seed and a fresh random draw of the hyper-parameters from a fixed distribution); the
score that ranks trials is part of Q's output (computed on data Q's epsilon covers, or on
public data); K is drawn from the seed before any trial runs and is not published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from privacy.accountants.accounting import (DEFAULT_ACCOUNTANT, RDP_ORDERS, Event, epsilon, rdp_curve, rdp_to_delta,
                                rdp_to_epsilon)


def eps_sweep(histories: Sequence[Sequence[Event]], *, delta: float, accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """Epsilon at ``delta`` of releasing every trial: all events of all trials composed together.

    ``histories[t]`` is trial t's history of one party (the federation for client-level DP; one
    client for record-level DP). Composition is exact under the accountant (PLD convolves the
    privacy loss distributions, RDP adds the curves), so this is at most, and usually far below,
    the sum of the trials' epsilons.
    """
    return epsilon([e for h in histories for e in h], delta=delta, accountant=accountant)


def eps_sweep_record(per_trial_client_histories: Sequence[Mapping[int, Sequence[Event]]], *, delta: float,
                     accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """Record-level epsilon of releasing every trial: max over clients of the composition of that
    client's histories across trials. A client absent from a trial spent nothing there.

    Assumes client k holds the same records in every trial (trials share the split seed,
    ``run.seed``); with different splits a record's histories would come from different clients.
    """
    clients = set().union(*(h.keys() for h in per_trial_client_histories)) if per_trial_client_histories else set()
    if not clients:
        return 0.0
    return max(eps_sweep([h.get(k, []) for h in per_trial_client_histories], delta=delta, accountant=accountant)
               for k in clients)


@dataclass(frozen=True)
class TruncatedNegativeBinomial:
    """K ~ D_{eta, gamma} on {1, 2, ...} (Papernot & Steinke 2022, Definition 1):
    P[K = k] = (1 - gamma)^k / (gamma^-eta - 1) * prod_{l=0}^{k-1} (l + eta) / (l + 1)   (eta != 0),
    P[K = k] = (1 - gamma)^k / (k log(1 / gamma))                                            (eta = 0, logarithmic).
    eta = 1 is the geometric distribution, P[K = k] = gamma (1 - gamma)^(k - 1)."""

    eta: float  # shape, in (-1, inf): smaller = cheaper in privacy, heavier tail of K
    gamma: float  # in (0, 1): smaller = more repetitions on average

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eta) and self.eta > -1):
            raise ValueError(f"eta = {self.eta}: must be a finite number > -1 (0: logarithmic, 1: geometric)")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma = {self.gamma}: must be in (0, 1); the mean number of trials grows as "
                             "gamma falls")

    def mean(self) -> float:
        """E[K] = eta (1 - gamma) / (gamma (1 - gamma^eta)) for eta != 0; (1/gamma - 1) / log(1/gamma) for eta = 0."""
        g, eta = self.gamma, self.eta
        if eta == 0:
            return (1 / g - 1) / math.log(1 / g)
        return eta * (1 - g) / (g * -math.expm1(eta * math.log(g)))

    def pmf(self, k: int) -> float:
        if k < 1:
            return 0.0
        g, eta = self.gamma, self.eta
        if eta == 0:
            return math.exp(k * math.log1p(-g)) / (k * math.log(1 / g))
        log_prod = math.lgamma(k + eta) - math.lgamma(eta) - math.lgamma(k + 1) if eta > 0 else \
            _log_abs_rising(eta, k) - math.lgamma(k + 1)
        sign = 1.0 if eta > 0 else -1.0  # for -1 < eta < 0 the product and gamma^-eta - 1 are both negative
        return sign * math.exp(k * math.log1p(-g) + log_prod) / math.expm1(-eta * math.log(g))

    def sample(self, *, seed: int | np.random.SeedSequence) -> int:
        """One draw of K, by inversion of the CDF with a uniform from ``np.random.default_rng(seed)``."""
        u = np.random.default_rng(seed).random()
        k, cdf = 0, 0.0
        while cdf <= u:
            k += 1
            p = self.pmf(k)
            if p == 0.0 and k > self.mean():  # the rest of the tail underflows: u sits in rounding error
                break
            cdf += p
        return k

    def selection_rdp(self, *, orders: Sequence[float], rdp: Sequence[float]) -> np.ndarray:
        """RDP of the best of K runs of Q, K ~ D_{eta, gamma}, from Q's RDP curve (Theorem 2):

            eps'(lambda) = eps(lambda) + (1 + eta) (1 - 1/lambda_hat) eps(lambda_hat)
                           + (1 + eta) log(1/gamma) / lambda_hat + log(E[K]) / (lambda - 1),

        for every lambda > 1, minimised over lambda_hat among ``orders`` (any order >= 1 at which
        Q is RDP qualifies). Inf at orders <= 1, where the theorem says nothing."""
        a, r = _curve(orders, rdp)
        extra = (1 + self.eta) * np.min((1 - 1 / a) * r + math.log(1 / self.gamma) / a)
        with np.errstate(divide="ignore"):
            out = r + extra + math.log(self.mean()) / (a - 1)
        return np.where(a > 1, out, np.inf)


@dataclass(frozen=True)
class PoissonRepetitions:
    """K ~ Poisson(mu); K = 0 publishes nothing (Papernot & Steinke 2022, Section 3.3)."""

    mu: float  # mean number of trials

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and self.mu > 0):
            raise ValueError(f"mu = {self.mu}: must be a finite number > 0 (the mean number of trials)")

    def mean(self) -> float:
        return self.mu

    def sample(self, *, seed: int | np.random.SeedSequence) -> int:
        return int(np.random.default_rng(seed).poisson(self.mu))

    def selection_rdp(self, *, orders: Sequence[float], rdp: Sequence[float]) -> np.ndarray:
        """RDP of the best of K runs of Q, K ~ Poisson(mu) (Theorem 6): if Q is (lambda, eps)-RDP and
        (eps_hat, delta_hat)-DP with e^eps_hat <= 1 + 1/(lambda - 1), the selection is RDP with

            eps'(lambda) = eps(lambda) + mu delta_hat + log(mu) / (lambda - 1).

        Here eps_hat = log(1 + 1/(lambda - 1)) and delta_hat comes from Q's own RDP curve
        (:func:`privacy.accountants.accounting.rdp_to_delta`). Inf at orders <= 1."""
        a, r = _curve(orders, rdp)
        out = np.full(len(a), np.inf)
        for i in np.flatnonzero(a > 1):
            delta_hat = rdp_to_delta(orders=a, rdp=r, epsilon=math.log1p(1 / (a[i] - 1)))
            out[i] = r[i] + self.mu * delta_hat + math.log(self.mu) / (a[i] - 1)
        return out


Repetitions = TruncatedNegativeBinomial | PoissonRepetitions


def eps_selected(candidate_histories: Sequence[Sequence[Event]], *, repetitions: Repetitions, delta: float,
                 orders: Sequence[float] = RDP_ORDERS) -> float:
    """Epsilon at ``delta`` of publishing only the best of K trials, K drawn from ``repetitions``.

    Q, one trial, draws its hyper-parameters at random from a fixed set of candidates and trains;
    ``candidate_histories`` holds the history every candidate would spend. Q's RDP is at most the
    largest of theirs at each order (Renyi divergence is quasi-convex: a mixture of mechanisms is no
    worse than its worst component), and the selection bound applies to that curve. RDP only: the
    theorems are RDP statements; the conversion is :func:`privacy.accountants.accounting.rdp_to_epsilon`.
    """
    if not len(candidate_histories):
        raise ValueError("candidate_histories is empty: pass the history of every candidate of the search")
    orders = tuple(float(a) for a in orders)
    rdp = np.max([rdp_curve(h, orders=orders) for h in candidate_histories], axis=0)
    return rdp_to_epsilon(orders=orders, rdp=repetitions.selection_rdp(orders=orders, rdp=rdp), delta=delta)


def eps_selected_record(per_candidate_client_histories: Sequence[Mapping[int, Sequence[Event]]], *,
                        repetitions: Repetitions, delta: float, orders: Sequence[float] = RDP_ORDERS) -> float:
    """Record-level :func:`eps_selected`: a record lives on one client, whose histories under the
    candidates make that record's Q; the max over clients. Pass worst-case (planned) histories, e.g.
    ``privacy.accountants.calibration.worst_case_record_histories``, since the trials K may add have not run."""
    clients = set().union(*(h.keys() for h in per_candidate_client_histories)) if per_candidate_client_histories \
        else set()
    if not clients:
        raise ValueError("per_candidate_client_histories holds no client: pass every candidate's histories")
    return max(eps_selected([h.get(k, []) for h in per_candidate_client_histories], repetitions=repetitions,
                            delta=delta, orders=orders) for k in clients)


def _curve(orders: Sequence[float], rdp: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, r = np.asarray(orders, dtype=float), np.asarray(rdp, dtype=float)
    if a.shape != r.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"orders and rdp must be 1-D of one length, got {a.shape} and {r.shape}")
    if (a < 1).any():
        raise ValueError("Renyi orders must be >= 1")
    return a, r


def _log_abs_rising(eta: float, k: int) -> float:
    """log |eta (eta + 1) ... (eta + k - 1)| for -1 < eta < 0 (only the first factor is negative)."""
    return math.log(-eta) + (math.lgamma(k + eta) - math.lgamma(1 + eta) if k > 1 else 0.0)
