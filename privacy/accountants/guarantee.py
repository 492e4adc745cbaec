"""One guarantee, one ledger: per party the history of the events booked against it, composed by one accountant.

A guarantee is what one epsilon column of the round table states (record-level, client-level, client-level
against the server). Its parties are the units it protects the data of: each client for a record-level
guarantee (every record lives on one client) or a guarantee against the server; the federation as a whole
for the public client-level one. A mechanism (privacy.mechanisms) decides which guarantees a run has, with
which accountant, and books its events; the ledger never asks what the trust model is.

Every accountant has one interface, whatever the events it composes:

- ``merge(events)``: the canonical history (equal events merged, their steps summed; a cache key);
- ``epsilon(history, delta)``: epsilon at ``delta`` of a merged history (0 for none, inf without noise);
- ``describe()``: plain data from which :func:`accountant_from` rebuilds it (checkpoints, sweeps);
- optionally ``additive(event)`` and ``epsilon_of_total(total, delta)``, when events compose by adding one
  number (Gaussian DP: mu^2), which makes "the worst party after one more event" O(1).

:class:`GaussianAccountant` composes Poisson-subsampled Gaussian events ``(z, q, steps)``
(privacy.accountants.accounting); :class:`SkellamAccountant` Skellam events ``(mu, l1, l2, q, steps)``,
sampled or not (privacy.accountants.skellam).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

import numpy as np

from privacy.accountants import accounting, skellam


@dataclass(frozen=True)
class GaussianAccountant:
    """Poisson-subsampled Gaussian events ``(noise_multiplier, sample_rate, steps)``; ``method``: pld, prv, rdp."""

    method: str

    def merge(self, events: Iterable[tuple]) -> tuple:
        return tuple(sorted(accounting.merge_events(tuple(e) for e in events)))

    def epsilon(self, history: tuple, delta: float) -> float:
        return accounting.epsilon(history, delta=delta, accountant=self.method)

    def describe(self) -> dict:
        return {"kind": "gaussian", "method": self.method}


@dataclass(frozen=True)
class SkellamAccountant:
    """Skellam events ``(mu, l1, l2, sample_rate, steps)``. ``method``: exact (the dominating Gaussian, accounted
    by ``gaussian``) or zhu_wang (the general RDP bound); ``sampled`` False: no amplification by sampling
    (an adversary who knows who took part), composed exactly as Gaussian DP under ``exact``."""

    method: str
    gaussian: str = "pld"
    sampled: bool = True

    def merge(self, events: Iterable[tuple]) -> tuple:
        return tuple(sorted(skellam.merge_events(tuple(e) for e in events)))

    def epsilon(self, history: tuple, delta: float) -> float:
        if self.sampled:
            return skellam.epsilon(history, delta=delta, accountant=self.method, gaussian=self.gaussian)
        return skellam.epsilon_unsampled(history, delta=delta, accountant=self.method)

    @property
    def is_additive(self) -> bool:
        return not self.sampled and self.method == "exact"

    def additive(self, event: tuple) -> float:
        """Unsampled, exact: the event's Gaussian-DP mu^2 (composition adds them)."""
        return _gdp_mu_squared(tuple(event))

    def epsilon_of_total(self, total: float, delta: float) -> float:
        from privacy.accountants.skellam_dominance import gdp_epsilon

        return gdp_epsilon(mu_gdp=math.sqrt(total), delta=delta)

    def describe(self) -> dict:
        return {"kind": "skellam", "method": self.method, "gaussian": self.gaussian, "sampled": self.sampled}


@dataclass(frozen=True)
class GaussianDPAccountant:
    """Gaussian mechanisms without sampling, events ``(noise_multiplier,)`` per unit sensitivity (inf: an event
    that reveals nothing), composed exactly: Gaussian mechanisms with multipliers z_i compose to the Gaussian
    mechanism of mu = sqrt(sum 1 / z_i^2) (Dong, Roth, Su 2022, "Gaussian Differential Privacy", Cor. 3.3), whose
    epsilon at delta is Balle & Wang's analytic one (2018, Thm. 8). DP-FTRL's guarantee is one such mechanism."""

    @property
    def is_additive(self) -> bool:
        return True

    def merge(self, events: Iterable[tuple]) -> tuple:
        return tuple(sorted(tuple(float(x) for x in e) for e in events))

    def additive(self, event: tuple) -> float:
        (z,) = event
        return 0.0 if math.isinf(z) else 1.0 / float(z) ** 2

    def epsilon_of_total(self, total: float, delta: float) -> float:
        from privacy.accountants.skellam_dominance import gdp_epsilon

        return gdp_epsilon(mu_gdp=math.sqrt(total), delta=delta)

    def epsilon(self, history: tuple, delta: float) -> float:
        return self.epsilon_of_total(sum(self.additive(e) for e in history), delta)

    def describe(self) -> dict:
        return {"kind": "gdp"}


Accountant = GaussianAccountant | SkellamAccountant | GaussianDPAccountant


@lru_cache(maxsize=4096)
def _gdp_mu_squared(event: tuple) -> float:
    """mu^2 of the Gaussian DP that one Skellam event is (c(mu) needs the pmf: computed once per event)."""
    from privacy.accountants.skellam_dominance import gdp_mu

    return gdp_mu([event]) ** 2


def accountant_from(description: Mapping) -> Accountant:
    """The accountant that ``describe()`` gave ``description``."""
    kind = description.get("kind")
    if kind == "gaussian":
        return GaussianAccountant(str(description["method"]))
    if kind == "gdp":
        return GaussianDPAccountant()
    if kind == "skellam":
        return SkellamAccountant(str(description["method"]), str(description["gaussian"]),
                                 bool(description["sampled"]))
    raise ValueError(f"unknown accountant {dict(description)!r}")


class GuaranteeLedger:
    """The histories of one guarantee over ``parties`` parties (0 .. parties - 1), at ``delta``, with an optional
    ``target`` epsilon that no booking may pass (checked by :meth:`worst_next`). ``name`` says what the
    guarantee is in messages ("record-level epsilon", "client-level epsilon against the server")."""

    def __init__(self, accountant: Accountant, *, parties: int, delta: float, name: str,
                 target: float | None = None):
        if parties < 1:
            raise ValueError("a guarantee protects at least one party")
        self.accountant, self.parties, self.delta, self.name, self.target = accountant, parties, delta, name, target
        self.histories: dict[int, tuple] = {}  # party -> merged history (parties that booked nothing: absent)
        self._cache: dict[tuple, float] = {}  # (merged history, delta) -> epsilon: parties share histories
        self._additive = getattr(accountant, "is_additive", False)
        self._total = np.zeros(parties)  # additive accountants: each party's composed total
        self._eps = np.zeros(parties)  # each party's epsilon at delta
        self._planned: list[tuple] | None = None  # each party's next event, if a target needs it
        self._next: np.ndarray | None = None  # each party's epsilon after its planned event

    # --- composing -------------------------------------------------------------------------------
    def _epsilon(self, history: tuple, delta: float | None = None) -> float:
        key = (history, self.delta if delta is None else delta)
        if key not in self._cache:
            self._cache[key] = self.accountant.epsilon(history, key[1])
        return self._cache[key]

    def _with(self, party: int, event: tuple) -> tuple:
        return self.accountant.merge(self.histories.get(party, ()) + (tuple(event),))

    def book(self, party: int, event: tuple) -> None:
        """Compose one more event into ``party``'s history."""
        k = int(party)
        if self._additive:  # kept in booking order: a restored total sums exactly as it did
            self.histories[k] = self.histories.get(k, ()) + (tuple(event),)
            self._total[k] += self.accountant.additive(event)
            return
        self.histories[k] = self._with(k, event)
        self._eps[k] = self._epsilon(self.histories[k])
        if self._next is not None:
            self._next[k] = self.epsilon_with(k, self._planned[k])

    def plan(self, events: Sequence[tuple]) -> None:
        """Each party's event in a coming round (its worst case: what a budget check assumes)."""
        if len(events) != self.parties:
            raise ValueError(f"one planned event per party: got {len(events)} for {self.parties}")
        self._planned = [tuple(e) for e in events]
        self._next = None if self._additive else np.array(  # additive: worst_next needs no table
            [self.epsilon_with(k, e) for k, e in enumerate(self._planned)], dtype=float)

    # --- what is reported ------------------------------------------------------------------------
    def epsilon(self, party: int, delta: float | None = None) -> float:
        k = int(party)
        if self._additive:
            return self.accountant.epsilon_of_total(self._total[k], self.delta if delta is None else delta)
        if delta is None:
            return float(self._eps[k])
        return self._epsilon(self.histories.get(k, ()), delta)

    def epsilon_with(self, party: int, event: tuple) -> float:
        """``party``'s epsilon if it booked ``event`` once more."""
        k = int(party)
        if self._additive:
            return self.accountant.epsilon_of_total(self._total[k] + self.accountant.additive(event), self.delta)
        return self._epsilon(self._with(k, event))

    def worst(self, delta: float | None = None) -> float:
        """The largest epsilon over the parties (0 before any event), at ``delta`` (default: the ledger's)."""
        if self._additive:
            return self.epsilon(int(np.argmax(self._total)), delta)
        if delta is None:
            return float(self._eps.max())
        return max((self._epsilon(h, delta) for h in set(self.histories.values())), default=0.0)

    def median(self) -> float:
        if self._additive:
            return float(np.median([self.epsilon(k) for k in range(self.parties)]))
        return float(np.median(self._eps))

    def worst_with(self, events: Mapping[int, tuple]) -> float:
        """The largest epsilon among the parties of ``events`` if each booked its event once more."""
        if not events:
            return 0.0
        if self._additive:  # max_k (t_k + a) = max_k t_k + a for one event a (rounding is monotone)
            total = max(float(self._total[int(k)]) + self.accountant.additive(e) for k, e in events.items())
            return self.accountant.epsilon_of_total(total, self.delta)
        return max(self.epsilon_with(int(k), e) for k, e in events.items())

    def worst_next(self) -> float:
        """The largest epsilon after every party's planned event (any party may take part next)."""
        if self._planned is None:
            raise ValueError(f"{self.name}: no planned events (plan() first)")
        if self._additive:  # the worst party has the largest total after its event
            add = np.array([self.accountant.additive(e) for e in self._planned])
            total = float(self._total.max()) + add[0] if (add == add[0]).all() else float((self._total + add).max())
            return self.accountant.epsilon_of_total(total, self.delta)
        return float(self._next.max())

    def planned_epsilons(self) -> np.ndarray:
        """Each party's epsilon after its planned event, as kept up to date booking by booking."""
        if self._planned is None:
            raise ValueError(f"{self.name}: no planned events (plan() first)")
        if self._next is None:
            return np.array([self.epsilon_with(k, e) for k, e in enumerate(self._planned)], dtype=float)
        return self._next.copy()

    def exceeded_next(self) -> str:
        """Why the next round could pass this guarantee's target ('' if it could not, or there is none)."""
        if self.target is None or self._planned is None:
            return ""
        worst = self.worst_next()
        return f"{self.name} would reach {worst:.4g} > target {self.target}" if worst > self.target else ""

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"accountant": self.accountant.describe(), "delta": self.delta,
                "histories": {str(k): [list(e) for e in h] for k, h in self.histories.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        if accountant_from(state["accountant"]) != self.accountant:
            raise ValueError(f"{self.name}: the checkpoint's accountant {state['accountant']} is not this run's "
                             f"{self.accountant.describe()}")
        self.histories, self._total, self._eps = {}, np.zeros(self.parties), np.zeros(self.parties)
        planned, self._planned, self._next = self._planned, None, None
        for k, history in state["histories"].items():
            for event in history:  # composed in booking order: additive totals sum as they did
                self.book(int(k), tuple(event))
        if planned is not None:
            self.plan(planned)


def histories_of(state: Mapping) -> dict[int, list[tuple]]:
    """A saved guarantee's histories, ``party -> events`` (sweeps compose them across trials)."""
    return {int(k): [tuple(e) for e in h] for k, h in state["histories"].items()}


def compose_across(states: Sequence[Mapping], *, delta: float) -> float:
    """Epsilon of publishing every run of ``states`` (saved ledgers of one guarantee, e.g. a sweep's trials):
    per party the events of every run composed (the parties hold the same data in every run: trials share
    the split), the worst party; 0 when nothing was booked. Composition is exact under the accountant, so
    this is at most, and usually far below, the sum of the runs' epsilons."""
    if not states:
        return 0.0
    accountant = accountant_from(states[0]["accountant"])
    if any(accountant_from(s["accountant"]) != accountant for s in states):
        raise ValueError("runs accounted with different accountants cannot be composed as one guarantee")
    per_party: dict[int, list[tuple]] = {}
    for state in states:
        for party, events in histories_of(state).items():
            per_party.setdefault(party, []).extend(events)
    distinct = {accountant.merge(events) for events in per_party.values()}
    return max((accountant.epsilon(h, delta) for h in distinct), default=0.0)
