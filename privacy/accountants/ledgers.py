"""The ledgers of a federated run, one per guarantee, and the budget check: what every reported epsilon comes from.

A run has up to three guarantees, each one :class:`~privacy.accountants.guarantee.GuaranteeLedger` whose
accountant and events its mechanism chose (privacy.mechanisms.choice); this module never asks which trust
model is in force:

- ``record`` (``eps_record_max``/``_median``), one party per client (every record lives on one client):
  under DP-SGD on the clients a Gaussian event (sigma, q_k, steps_k) booked *when the round is dispatched*
  (a crash never under-reports); under secure FedSGD a Skellam event per released round whose sum holds the
  silo's vector, booked at release (nothing about the records leaves a silo before it);
- ``client`` (``eps_client``), one party, the federation: one event per round with server noise (Gaussian
  under a trusted server, Skellam under secure aggregation: against whoever sees only the released models);
  under DP-FTRL one party per client instead (no sampling: each client's participations are its events), the
  worst client reported;
- ``client_server`` (``eps_client_server_max``), one party per client: under secure aggregation the
  unsampled event of each round a client's vector is in the sum, against the server, which knows the cohort.

A run stops before a round that could push a guarantee past its target; under secure aggregation the
check is made again on the round's realised events (cohort, survivors, colluders) before its sum is
unmasked, and a round that would pass a target is not unmasked and ends the run. Per-round work is
O(cohort): only the parties that book change, and each one's epsilon "after one more round" (what the
budget check needs) is kept up to date for them alone.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from privacy.accountants.guarantee import GuaranteeLedger

FEDERATION = 0  # the client-level ledger's one party: the federation as a whole
GUARANTEES = ("record", "client", "client_server")  # in the order the budget check asks them


class PrivacyLedgers:
    """The guarantees of one run (None: the run does not claim it; its epsilon is ``unclaimed[name]``, inf by
    default, NaN for a guarantee that does not apply). ``dispatch_events[k]``: client k's record-level event
    booked when a round is dispatched to it (DP-SGD on the clients), or None when record-level events are
    booked at release. ``client_sample_rate`` q = m / N and ``sample_rates[k]`` (client k's record-level rate)
    are what the mechanism's events are built with."""

    def __init__(self, *, record: GuaranteeLedger | None, client: GuaranteeLedger | None,
                 client_server: GuaranteeLedger | None, delta_record: float, delta_client: float,
                 client_sample_rate: float, sample_rates: Sequence[float],
                 dispatch_events: Sequence[tuple] | None = None, unclaimed: Mapping[str, float] | None = None):
        self.guarantees: dict[str, GuaranteeLedger | None] = {
            "record": record, "client": client, "client_server": client_server}
        self.delta_record, self.delta_client = delta_record, delta_client
        self.client_sample_rate, self.sample_rates = client_sample_rate, tuple(sample_rates)
        self.dispatch_events = None if dispatch_events is None else [tuple(e) for e in dispatch_events]
        self.unclaimed = {"record": math.inf, "client": math.inf, "client_server": math.nan, **(unclaimed or {})}
        self.release_blocked = ""  # why a round was not unmasked: its realised events would pass a target

    # --- booking ---------------------------------------------------------------------------------
    def book_cohort(self, cohort: Sequence[int]) -> None:
        """The record-level events of a round's cohort, booked before any result is awaited (nothing when
        record-level events are booked at release)."""
        record = self.guarantees["record"]
        if record is None or self.dispatch_events is None:
            return
        for k in map(int, cohort):
            record.book(k, self.dispatch_events[k])

    def book(self, events: Mapping[str, Mapping[int, tuple]]) -> None:
        """A released round's events, ``{guarantee: {party: event}}`` (the mechanism's ``round_events``)."""
        for name, by_party in events.items():
            ledger = self.guarantees[name]
            if ledger is None:
                raise ValueError(f"a {name} event for a run that does not claim that guarantee")
            for party, event in by_party.items():
                ledger.book(int(party), tuple(event))

    def blocked(self, events: Mapping[str, Mapping[int, tuple]]) -> str:
        """Why a round with these realised events must not be released ('' if it may): one party would pass
        its guarantee's target. Once blocked, the run stops (:meth:`budget_exceeded_next_round` says why)."""
        for name, by_party in events.items():
            ledger = self.guarantees[name]
            if ledger is None or ledger.target is None or not by_party:
                continue
            worst = ledger.worst_with(by_party)
            if worst > ledger.target:
                self.release_blocked = (f"{ledger.name} would reach {worst:.4g} > target {ledger.target} "
                                        "with this round's survivors: nothing released")
                return self.release_blocked
        return ""

    # --- what is reported ------------------------------------------------------------------------
    def _worst(self, name: str) -> float:
        ledger = self.guarantees[name]
        return self.unclaimed[name] if ledger is None else ledger.worst()

    def eps_record_max(self) -> float:
        return self._worst("record")

    def eps_record_median(self) -> float:
        ledger = self.guarantees["record"]
        return self.unclaimed["record"] if ledger is None else ledger.median()

    def eps_client(self, delta: float | None = None) -> float:
        """Client-level epsilon at ``delta`` (default: the run's delta_client)."""
        ledger = self.guarantees["client"]
        if ledger is None:
            return self.unclaimed["client"]
        return ledger.epsilon(FEDERATION, delta) if ledger.parties == 1 else ledger.worst(delta)

    def eps_client_server_max(self) -> float:
        """Client-level epsilon against the server, the worst client (NaN where the server sees every update)."""
        return self._worst("client_server")

    def budget_exceeded_next_round(self) -> str:
        """Why one more round would exceed a target epsilon ('' if it would not)."""
        reasons = [self._exceeded("client"), self.release_blocked, self._exceeded("client_server"),
                   self._exceeded("record")]
        return next((r for r in reasons if r), "")

    def _exceeded(self, name: str) -> str:
        ledger = self.guarantees[name]
        return "" if ledger is None else ledger.exceeded_next()

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"guarantees": {n: g.state_dict() for n, g in self.guarantees.items() if g is not None},
                "release_blocked": self.release_blocked}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("guarantees")
        if not isinstance(saved, dict):
            raise ValueError("the checkpoint holds no ledgers of this version (guarantees)")
        claimed = {n for n, g in self.guarantees.items() if g is not None}
        if set(saved) != claimed:
            raise ValueError(f"the checkpoint's guarantees {sorted(saved)} are not this run's {sorted(claimed)}")
        for name in claimed:
            self.guarantees[name].load_state_dict(saved[name])
        self.release_blocked = str(state.get("release_blocked", ""))
