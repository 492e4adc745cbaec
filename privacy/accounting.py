"""Privacy accounting: epsilon of a history of Poisson-subsampled Gaussian events.

A history is plain data, a list of ``(noise_multiplier, sample_rate, steps)`` -- the
same triples Opacus accountants keep -- so it checkpoints, moves between processes
and can be re-accounted with another method. Three accountants:

- ``rdp``: Renyi DP of the subsampled Gaussian (Mironov, Talwar, Zhang 2019), Opacus's
  series evaluated over all orders at once, converted to (eps, delta) with Balle et al.
  2020's bound (the formula of Opacus's ``get_privacy_spent``).
- ``prv``: privacy random variables (Gopi, Lee, Wutschitz 2021), Opacus's implementation.
- ``pld``: privacy loss distributions (Koskela et al. 2020; Doroshenko et al. 2022),
  Google's ``dp_accounting``.

Calibration (:func:`calibrate_noise_multiplier`) uses the very same functions that
report, so a calibrated run never reports more than its target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np

from privacy.config import ACCOUNTANTS
from privacy.subsampled_gaussian import rdp_one_step

Event = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)

RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256])


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
    """Opacus's per-step RDP, vectorised (privacy/subsampled_gaussian.py): every client of a
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
    return float(np.nanmin(eps))  # an optimum at the edge of the orders is still a valid (looser) bound


def _epsilon_rdp(events: list[Event], delta: float, orders: tuple[float, ...] = RDP_ORDERS) -> float:
    rdp = sum(_rdp_one_step(n, q, orders) * s for n, q, s in events)  # RDP adds up, linear in steps
    return rdp_to_epsilon(orders=orders, rdp=rdp, delta=delta)


def _epsilon_prv(events: list[Event], delta: float) -> float:
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = list(events)
    return float(acc.get_epsilon(delta=delta))


def _epsilon_pld(events: list[Event], delta: float) -> float:
    import dp_accounting
    from dp_accounting import pld

    acc = pld.PLDAccountant(value_discretization_interval=1e-3)
    for n, q, s in events:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(n)), int(s))
    return float(acc.get_epsilon(delta))


_METHODS: dict[str, Callable[[list[Event], float], float]] = {
    "rdp": _epsilon_rdp, "prv": _epsilon_prv, "pld": _epsilon_pld}


def epsilon(events: Iterable[Event], *, delta: float, accountant: str = "rdp",
            orders: Sequence[float] | None = None) -> float:
    """Epsilon spent by a history at ``delta``: 0 for no event, inf if any event had no noise.
    ``orders`` (RDP only) overrides the Renyi orders searched."""
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
    return _METHODS[accountant](merged, delta)


def calibrate_noise_multiplier(*, target_epsilon: float, eps_of: Callable[[float], float],
                               tolerance: float = 0.01, bounds: tuple[float, float] = (0.05, 500.0)) -> float:
    """Smallest noise multiplier (within ``tolerance`` in epsilon) with ``eps_of(sigma) <= target_epsilon``.

    ``eps_of`` must be non-increasing in sigma (any accountant of a fixed schedule is). Bisection
    on log sigma; the answer always satisfies the target. Raises ``ValueError`` if even the
    largest multiplier in ``bounds`` cannot reach it.
    """
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon = {target_epsilon}: must be > 0")
    lo, hi = bounds
    if eps_of(hi) > target_epsilon:
        raise ValueError(f"target epsilon {target_epsilon} is unreachable: even noise multiplier {hi} spends "
                         f"{eps_of(hi):.3g}; train for fewer rounds or steps, or sample less")
    if eps_of(lo) <= target_epsilon:
        return lo
    while hi / lo > 1 + 1e-6:
        mid = math.sqrt(lo * hi)
        e = eps_of(mid)
        if e > target_epsilon:
            lo = mid
        else:
            hi = mid
            if target_epsilon - e < tolerance:
                break
    return hi


def calibrate_for_schedule(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                           accountant: str = "rdp", tolerance: float = 0.01) -> float:
    """Noise multiplier for ``steps`` Poisson-subsampled Gaussian steps at ``sample_rate`` to spend
    at most ``target_epsilon`` at ``delta`` (what Opacus's ``get_noise_multiplier`` answers)."""
    return calibrate_noise_multiplier(
        target_epsilon=target_epsilon, tolerance=tolerance,
        eps_of=lambda z: epsilon([(z, sample_rate, steps)], delta=delta, accountant=accountant))


@dataclass
class Ledger:
    """Per-party histories of privacy events (a party: one client, or the whole federation).

    Plain data: ``state_dict()`` / ``from_state_dict()`` round-trip through JSON or
    ``torch.save``. A party that did not take part in a round records nothing for it.
    """

    accountant: str = "rdp"
    histories: dict[int, list[Event]] = field(default_factory=dict)

    def record(self, party: int, *, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        hist = self.histories.setdefault(int(party), [])
        hist[:] = merge_events(hist + [(float(noise_multiplier), float(sample_rate), int(steps))])

    def epsilon(self, party: int, *, delta: float) -> float:
        return epsilon(self.histories.get(int(party), []), delta=delta, accountant=self.accountant)

    def epsilons(self, parties: Sequence[int], *, delta: float) -> np.ndarray:
        return np.array([self.epsilon(p, delta=delta) for p in parties], dtype=float)

    def steps(self, party: int) -> int:
        return sum(s for _, _, s in self.histories.get(int(party), []))

    def state_dict(self) -> dict:
        return {"accountant": self.accountant,
                "histories": {str(k): [list(e) for e in v] for k, v in self.histories.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Ledger":
        return cls(accountant=state["accountant"],
                   histories={int(k): [(float(n), float(q), int(s)) for n, q, s in v]
                              for k, v in state["histories"].items()})
