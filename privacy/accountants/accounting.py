"""Privacy accounting: epsilon of a history of Poisson-subsampled Gaussian events.

A history is plain data, a list of ``(noise_multiplier, sample_rate, steps)`` -- the
same triples Opacus accountants keep -- so it checkpoints, moves between processes
and can be re-accounted with another method. Three accountants, all upper bounds:

- ``pld`` (default): privacy loss distributions (Koskela et al. 2020; Doroshenko et al.
  2022, "Connect the Dots"), Google's ``dp_accounting`` with pessimistic rounding on a
  grid of ``PLD_VALUE_INTERVAL`` nats: the tightest of the three that stays a bound.
- ``rdp``: Renyi DP of the subsampled Gaussian (Mironov, Talwar, Zhang 2019), Opacus's
  series evaluated over all orders at once, converted to (eps, delta) with Balle et al.
  2020's bound (the formula of Opacus's ``get_privacy_spent``). Loose by 8-22 % in eps
  on the shipped configs (benchmarks/results/accounting.md), but cheap and closed-form.
- ``prv``: privacy random variables (Gopi, Lee, Wutschitz 2021), Opacus's implementation,
  the upper end of its error bound.

``epsilon`` is memoised on the merged history, so the server's per-round, per-client calls
cost one evaluation per distinct history. Calibration lives in ``privacy/accountants/calibration.py``
and calls the very same function, so a calibrated run never reports more than its target.
"""

from __future__ import annotations

import importlib
import math
import threading
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np

from privacy.config.experiment import ACCOUNTANTS
from privacy.accountants.subsampled_gaussian import rdp_one_step

Event = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)

RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256])
DEFAULT_ACCOUNTANT = "pld"  # the tightest of the three that stays an upper bound (pessimistic PLD)
PLD_VALUE_INTERVAL = 1e-3  # PLD grid step in privacy loss (nats); dp_accounting's default is 1e-4 (10x slower,
#                            equal to 3 decimals on the shipped configs: benchmarks/results/accounting.md)
TIGHT_ACCOUNTANT_CAP = 100.0  # above this RDP epsilon, pld/prv report RDP's value (see epsilon())


def merge_events(events: Iterable[Event]) -> list[Event]:
    """Merge events with equal (noise, rate) into one with summed steps; drop zero-step events.
    Composition is commutative, so the order of events does not change any epsilon."""
    merged: dict[tuple[float, float], int] = {}
    for noise, rate, steps in events:
        if steps < 0 or rate < 0 or rate > 1 or noise < 0:
            raise ValueError(f"invalid privacy event {(noise, rate, steps)}")
        if steps and rate > 0:
            key = (float(noise), float(rate))
            merged[key] = merged.get(key, 0) + int(steps)
    return [(n, q, s) for (n, q), s in merged.items()]


@lru_cache(maxsize=8192)
def _rdp_one_step(noise: float, rate: float, orders: tuple[float, ...]) -> np.ndarray:
    """Opacus's per-step RDP, vectorised (privacy/accountants/subsampled_gaussian.py): every client of a
    distinct size brings a distinct rate, so this runs once per client, not once per run."""
    return rdp_one_step(noise_multiplier=noise, sample_rate=rate, orders=orders)


def rdp_to_epsilon(*, orders: Sequence[float], rdp: np.ndarray, delta: float) -> float:
    """Smallest epsilon over the orders a of eps(a) = rdp(a) - (log delta + log a) / (a - 1) + log((a - 1) / a):
    Balle et al. 2020 ("Hypothesis Testing Interpretations and Renyi Differential Privacy", Thm. 21), the
    same formula as Opacus's ``get_privacy_spent``, without importing Opacus (~120 MB per process)."""
    a = np.asarray(orders, dtype=float)
    with np.errstate(invalid="ignore"):
        eps = np.asarray(rdp, dtype=float) - (np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    if np.isnan(eps).all():  # no privacy
        return math.inf
    # an optimum at the edge of the orders is still a valid (looser) bound; below 0 (tiny RDP) 0 holds as well
    return max(0.0, float(np.nanmin(eps)))


def rdp_to_delta(*, orders: Sequence[float], rdp: np.ndarray, epsilon: float) -> float:
    """Smallest delta over the orders a > 1 of delta(a) = exp((a - 1)(rdp(a) - epsilon)) (1 - 1/a)^a / (a - 1):
    the inverse of :func:`rdp_to_epsilon` (Canonne, Kamath, Steinke 2020, Prop. 12; Balle et al. 2020), at most 1."""
    a = np.asarray(orders, dtype=float)
    r = np.asarray(rdp, dtype=float)
    ok = (a > 1) & np.isfinite(r)
    if not ok.any():
        return 1.0
    a, r = a[ok], r[ok]
    log_delta = (a - 1) * (r - epsilon) + a * np.log1p(-1 / a) - np.log(a - 1)
    return float(min(1.0, np.exp(np.min(log_delta))))


def rdp_curve(events: Iterable[Event], *, orders: Sequence[float] = RDP_ORDERS) -> np.ndarray:
    """RDP of a history at each order: the per-step RDP of each event times its steps, summed (RDP
    composes additively; Mironov 2017, Prop. 1). Inf at every order if an event had no noise."""
    orders = tuple(float(a) for a in orders)
    out = np.zeros(len(orders))
    for n, q, s in merge_events(events):
        out = out + _rdp_one_step(float(n), float(q), orders) * s
    return out


def _epsilon_rdp(events: list[Event], delta: float, orders: tuple[float, ...] = RDP_ORDERS) -> float:
    return rdp_to_epsilon(orders=orders, rdp=rdp_curve(events, orders=orders), delta=delta)


def _epsilon_prv(events: list[Event], delta: float) -> float:
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = list(events)
    return float(acc.get_epsilon(delta=delta))  # Opacus returns the upper end of its error bound


def import_pld_in_background() -> threading.Thread:
    """Import dp_accounting's PLD module in a daemon thread (started, returned). Its import takes 2.2 s, most of
    it scipy.signal and scipy.stats parsing their docstrings; a server that will book PLD epsilons starts this
    when it is built, so that the import runs while the other actors start rather than on the server's path
    in round 1. A failed import is left to the accountant's own import to report."""
    def run() -> None:
        try:
            importlib.import_module("dp_accounting.pld.privacy_loss_distribution")
        except ImportError:
            pass

    thread = threading.Thread(target=run, name="import-dp-accounting", daemon=True)
    thread.start()
    return thread


@lru_cache(maxsize=512)
def _pld_one_step(noise: float, rate: float):
    """One Poisson-subsampled Gaussian step as a privacy loss distribution: exactly what dp_accounting's
    ``PLDAccountant`` builds for a ``PoissonSampledDpEvent(GaussianDpEvent)`` (connect-the-dots, add/remove
    neighbours), pessimistic rounding. Building it is about half the cost of a call, so it is kept: one
    per distinct (noise, rate), i.e. per client of a distinct shard size, 10-300 kB each."""
    from dp_accounting.pld import privacy_loss_distribution

    return privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=noise, sampling_prob=rate, pessimistic_estimate=True,
        value_discretization_interval=PLD_VALUE_INTERVAL)


def _epsilon_pld(events: list[Event], delta: float) -> float:
    total = None
    for n, q, s in sorted(events):
        pld = _pld_one_step(float(n), float(q)).self_compose(int(s))
        total = pld if total is None else total.compose(pld)
    return float(total.get_epsilon_for_delta(delta))


_METHODS: dict[str, Callable[[list[Event], float], float]] = {
    "rdp": _epsilon_rdp, "prv": _epsilon_prv, "pld": _epsilon_pld}


def epsilon(events: Iterable[Event], *, delta: float, accountant: str = DEFAULT_ACCOUNTANT,
            orders: Sequence[float] | None = None) -> float:
    """Epsilon spent by a history at ``delta``: 0 for no event, inf if any event had no noise.

    ``pld`` and ``prv`` report min(their bound, RDP's bound) -- both are upper bounds, so their minimum
    is one too -- and report RDP's alone once it exceeds ``TIGHT_ACCOUNTANT_CAP`` (their grids grow with
    epsilon, and at tiny noise would need gigabytes; at such an epsilon there is no privacy to tighten).
    So a tight accountant is never above RDP, which is what calibration brackets its search with.
    Results are memoised on (merged history, delta, accountant): identically sampled clients share them.
    ``orders`` (RDP only) overrides the Renyi orders searched.
    """
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant = {accountant!r}: must be one of {', '.join(ACCOUNTANTS)}")
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta}: must be in (0, 1)")
    merged = merge_events(events)
    if not merged:
        return 0.0
    if any(n == 0 for n, _, _ in merged):
        return math.inf
    if orders is not None:
        if accountant != "rdp":
            raise ValueError("orders apply to the rdp accountant only")
        return _epsilon_rdp(merged, delta, tuple(float(a) for a in orders))
    return _epsilon_cached(tuple(sorted(merged)), float(delta), accountant)


@lru_cache(maxsize=16384)
def _epsilon_cached(events: tuple[Event, ...], delta: float, accountant: str) -> float:
    eps_rdp = _epsilon_rdp(list(events), delta)
    if accountant == "rdp" or eps_rdp > TIGHT_ACCOUNTANT_CAP:
        return eps_rdp
    return min(eps_rdp, _METHODS[accountant](list(events), delta))
