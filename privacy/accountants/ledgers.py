"""The two ledgers of a federated run and the budget check: what every reported epsilon comes from.

Record-level: one history per client, a (sigma, q_k, steps_k) event booked for client k in every
round it is sampled for, *when the round is dispatched* (a crash never under-reports). The
system's record-level epsilon is the maximum over clients (every record lives on one client).
Client-level: one history for the federation, one Poisson-subsampled Gaussian event (z, q, 1) per
round with server noise. Under secure aggregation (``secagg.enabled``) two guarantees instead: against
whoever sees only the released models, one Skellam event (mu, Delta_1, Delta_2, q, 1) per released round
(``eps_client``); against the server, which knows the cohort, one unsampled event (mu_server, Delta_1,
Delta_2, 1, 1) per round for each client whose vector is in the sum, composed per client over the rounds it
joined (``eps_client_server_max``, the worst client). Both accounted by :func:`privacy.accountants.skellam.epsilon`
and ``epsilon_unsampled`` with ``secagg.accountant``. Record-level under secure aggregation
(``secagg.level = "record"``, FedSGD across silos): client k's history is instead one Skellam event
(mu_booked, Delta_1, Delta_2, q_k, 1) per released round whose sum holds its vector, booked *after* the
release, since nothing about the records leaves a silo before it (privacy.mechanisms.distributed_dpsgd); it holds
against the server as well.
A run stops before a round that could push either past its target; under secure aggregation the
check is made again on the round's realised events (cohort, survivors, colluders) before its sum is
unmasked, and a round that would pass a target is not unmasked and ends the run.

Per-round work is O(cohort): only the sampled clients' epsilons change, and each client's epsilon
"after one more round" (what the budget check needs) is kept up to date for them alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from privacy.accountants.accounting import Event, Ledger
from privacy.config.experiment import ExperimentConfig

if TYPE_CHECKING:
    from privacy.accountants.skellam import SkellamEvent

FEDERATION = -1  # the client-level ledger's one party: the federation as a whole


class PrivacyLedgers:
    """Both guarantees of one run. ``sample_rates[k]`` and ``steps[k]`` are client k's record-level
    Poisson rate and local steps per round; deltas are the resolved ``client.delta``/``server.delta``."""

    def __init__(self, cfg: ExperimentConfig, *, sample_rates: Sequence[float], steps: Sequence[int]):
        if len(sample_rates) != len(steps) or not len(steps):
            raise ValueError("need one sample rate and one step count per client")
        self.cfg = cfg
        self.sample_rates, self.steps = tuple(sample_rates), tuple(steps)
        self.num_clients = len(steps)
        self.delta_record, self.delta_client = cfg.client.delta, cfg.server.delta
        self.record = Ledger(accountant=cfg.client.accountant)
        self.client_level = Ledger(accountant=cfg.server.accountant)
        self.skellam: list[SkellamEvent] = []  # the client-level history under secure aggregation (public)
        self.skellam_server: dict[int, list[SkellamEvent]] = {}  # per client: against the server, rounds joined
        self.server_planned: SkellamEvent | None = None  # a full round's against-the-server event (budget)
        self.release_blocked = ""  # why a round was not unmasked: its realised events would pass a target
        self.secagg_accountant = cfg.secagg.accountant
        self.skellam_planned: SkellamEvent | None = None  # the configured mu's event, set by the server (budget)
        self.record_secure = cfg.secagg.enabled and cfg.secagg.level == "record"
        self.record_skellam: dict[int, list[SkellamEvent]] = {}  # record-level histories under secure FedSGD
        self.record_planned: list[SkellamEvent] | None = None  # client k's planned event (budget), set by the server
        self._record_merged: dict[int, tuple] = {}  # client k's history merged (privacy.accountants.skellam.merge_events)
        self._skellam_cache: dict[tuple, float] = {}  # merged history -> epsilon at delta_record
        self._refresh()

    @property
    def client_sample_rate(self) -> float:
        """q = m / N, the rate at which the server samples clients."""
        return self.cfg.server.clients_per_round / self.num_clients

    def _event(self, k: int) -> Event:
        """Client k's record-level event for one round in which it takes part."""
        return self.cfg.client.noise_multiplier, self.sample_rates[k], self.steps[k]

    def _epsilon_after(self, history: list[Event]) -> float:
        return Ledger(self.record.accountant, {0: history}).epsilon(0, delta=self.delta_record)

    def _refresh(self) -> None:
        """Recompute every cached epsilon from the histories (at start and after a restore)."""
        self._server_eps = np.zeros(self.num_clients)  # zhu_wang accountant: each client's epsilon
        self._server_gdp_sq = np.zeros(self.num_clients)  # exact accountant: sum of 1 / sigma_eff^2 per client
        for k, hist in self.skellam_server.items():
            self._server_update(k, hist)
        self.eps_record = np.zeros(self.num_clients)
        if self.record_secure:
            self.eps_record_next = None
            self._record_merged = {k: _merged(hist) for k, hist in self.record_skellam.items()}
            for k, merged in self._record_merged.items():
                self.eps_record[k] = self._skellam_record_epsilon(merged)
            return
        self.eps_record_next = self._one_round_epsilons()
        if not self.cfg.client.dp:
            return
        for k in self.record.histories:
            self._update_client(k)

    def _skellam_record_epsilon(self, merged: tuple) -> float:
        """Record-level epsilon of a merged Skellam history (:func:`_merged`); silos share histories but for q_k,
        so cached."""
        if merged not in self._skellam_cache:
            self._skellam_cache[merged] = skellam_epsilon(merged, delta=self.delta_record,
                                                          accountant=self.secagg_accountant,
                                                          gaussian=self.cfg.client.accountant)
        return self._skellam_cache[merged]

    # --- against the server (client-level secure aggregation) ----------------------------------
    def book_server_events(self, events: dict[int, SkellamEvent]) -> None:
        """Each survivor's against-the-server event of a released round (a client not in the sum books nothing)."""
        for k, event in ((int(k), tuple(e)) for k, e in events.items()):
            self.skellam_server.setdefault(k, []).append(event)
            self._server_update(k, [event])

    def _server_update(self, k: int, new_events: list) -> None:
        if self.secagg_accountant == "exact":  # Gaussian DP composes in mu^2: O(1) per event, epsilon on demand
            from privacy.accountants.skellam_dominance import gdp_mu

            self._server_gdp_sq[k] += gdp_mu(new_events) ** 2
        else:
            self._server_eps[k] = server_epsilon(self.skellam_server[k], delta=self.delta_client,
                                                 accountant=self.secagg_accountant)

    def server_epsilon_of(self, k: int) -> float:
        """Client k's epsilon against the server: the rounds it joined, composed without amplification."""
        if self.secagg_accountant == "exact":  # exact Gaussian DP: epsilon grows with mu^2 = sum 1 / sigma_eff^2
            from privacy.accountants.skellam_dominance import gdp_epsilon

            return gdp_epsilon(mu_gdp=math.sqrt(self._server_gdp_sq[k]), delta=self.delta_client)
        return float(self._server_eps[k])

    def eps_client_server_max(self) -> float:
        """Client-level epsilon against the server under secure aggregation: the worst client (NaN otherwise: the
        trusted server sees every update). Under the exact accountant the worst client is the one of largest
        sum 1 / sigma_eff^2, so one evaluation serves the round."""
        if not self.cfg.secagg.enabled or self.record_secure:
            return math.nan
        if self.cfg.server.noise_multiplier == 0:
            return math.inf
        if self.secagg_accountant == "exact":
            return self.server_epsilon_of(int(np.argmax(self._server_gdp_sq)))
        return float(self._server_eps.max())

    def server_release_blocked(self, event: SkellamEvent, survivors) -> str:
        """Why this round's sum must not be released ('' if it may): one of its ``survivors`` would pass
        ``secagg.server_target_epsilon`` with ``event``, the round's realised against-the-server event (a smaller
        cohort or drop-outs book less noise than the planned round the check before the round assumed). Once
        blocked, the run stops: :meth:`budget_exceeded_next_round` says why."""
        target = self.cfg.secagg.server_target_epsilon
        ids = [int(k) for k in survivors]
        if target is None or not ids:
            return ""
        worst = self._server_epsilon_with(event, ids)
        if worst > target:
            self.release_blocked = (f"client-level epsilon against the server would reach {worst:.4g} > target "
                                   f"{target} with this round's cohort and survivors: nothing released")
        return self.release_blocked

    def record_release_blocked(self, events: dict[int, SkellamEvent]) -> str:
        """Secure FedSGD: why this round's sum must not be unmasked ('' if it may): with ``events``, the realised
        events of its surviving silos (drop-outs or colluders book less than the planned round), one would pass
        ``client.target_epsilon``. Once blocked, the run stops."""
        target = self.cfg.client.target_epsilon
        if target is None or not events:
            return ""
        worst = max(self._skellam_record_epsilon(_merged(self._record_merged.get(int(k), ()) + (tuple(e),)))
                    for k, e in events.items())
        if worst > target:
            self.release_blocked = (f"record-level epsilon would reach {worst:.4g} > target {target} with this "
                                    "round's survivors: nothing released")
        return self.release_blocked

    def _server_epsilon_with(self, event: SkellamEvent, clients) -> float:
        """The largest against-the-server epsilon among ``clients`` if each books ``event`` once more (under the exact
        accountant, the client of largest sum 1 / sigma_eff^2: one evaluation)."""
        ids = list(clients)
        if self.secagg_accountant == "exact":
            from privacy.accountants.skellam_dominance import gdp_epsilon, gdp_mu

            worst = float(self._server_gdp_sq[ids].max()) + gdp_mu([tuple(event)]) ** 2
            return gdp_epsilon(mu_gdp=math.sqrt(worst), delta=self.delta_client)
        return max(server_epsilon(self.skellam_server.get(k, []) + [tuple(event)], delta=self.delta_client,
                                  accountant=self.secagg_accountant) for k in ids)

    def book_record_release(self, events: dict[int, SkellamEvent]) -> None:
        """Secure FedSGD: each surviving silo's Skellam event of a released round (none for a silo whose vector
        is not in the sum, nor for a round that released nothing). The merged history grows by one event, so a
        round costs O(distinct events), not O(rounds so far)."""
        for k, event in ((int(k), tuple(e)) for k, e in events.items()):
            self.record_skellam.setdefault(k, []).append(event)
            self._record_merged[k] = _merged(self._record_merged.get(k, ()) + (event,))
            self.eps_record[k] = self._skellam_record_epsilon(self._record_merged[k])

    def _one_round_epsilons(self) -> np.ndarray | None:
        """Every client's epsilon after a first round, once per distinct (rate, steps); None when no
        record-level target needs it."""
        c = self.cfg.client
        if c.target_epsilon is None or not c.dp:
            return None
        once: dict[Event, float] = {}
        out = np.empty(self.num_clients)
        for k in range(self.num_clients):
            event = self._event(k)
            if event not in once:
                once[event] = self._epsilon_after([event])
            out[k] = once[event]
        return out

    def _update_client(self, k: int) -> None:
        self.eps_record[k] = self.record.epsilon(k, delta=self.delta_record)
        if self.eps_record_next is not None:
            self.eps_record_next[k] = self._epsilon_after(self.record.histories[k] + [self._event(k)])

    def book_cohort(self, cohort: Sequence[int]) -> None:
        """Record-level events of a round's cohort, booked before any result is awaited (under secure FedSGD
        at release instead: :meth:`book_record_release`)."""
        if not self.cfg.client.dp or self.record_secure:
            return
        for k in map(int, cohort):
            noise, rate, steps = self._event(k)
            self.record.record(k, noise_multiplier=noise, sample_rate=rate, steps=steps)
            self._update_client(k)

    def book_server_round(self, skellam_event: SkellamEvent | None = None) -> None:
        """The round's client-level event (nothing without server noise: then eps_client is inf). Under
        secure aggregation the mechanism's Skellam event of the round, with the other survivors' noise
        (None: the round released nothing, e.g. too many drop-outs to unmask)."""
        z = self.cfg.server.noise_multiplier
        if self.cfg.secagg.enabled:
            if z > 0 and skellam_event is not None:
                self.skellam.append(tuple(skellam_event))
        elif z > 0:
            self.client_level.record(FEDERATION, noise_multiplier=z, sample_rate=self.client_sample_rate, steps=1)

    # --- what is reported ---------------------------------------------------------------------
    def eps_record_max(self) -> float:
        return float(self.eps_record.max()) if self.cfg.client.dp else math.inf

    def eps_record_median(self) -> float:
        return float(np.median(self.eps_record)) if self.cfg.client.dp else math.inf

    def eps_client(self, delta: float | None = None) -> float:
        """Client-level epsilon at ``delta`` (default: the run's delta_client)."""
        if self.cfg.server.noise_multiplier == 0:
            return math.inf
        if self.cfg.secagg.enabled:
            return skellam_epsilon(self.skellam, delta=self.delta_client if delta is None else delta,
                                   accountant=self.secagg_accountant, gaussian=self.cfg.server.accountant)
        return self.client_level.epsilon(FEDERATION, delta=self.delta_client if delta is None else delta)

    def budget_exceeded_next_round(self) -> str:
        """Why one more round would exceed a target epsilon ('' if it would not)."""
        c, s = self.cfg.client, self.cfg.server
        if s.target_epsilon is not None and s.noise_multiplier > 0:
            if self.cfg.secagg.enabled:
                eps = skellam_epsilon(self.skellam + [self.skellam_planned], delta=self.delta_client,
                                      accountant=self.secagg_accountant, gaussian=s.accountant)
            else:
                hist = self.client_level.histories.get(FEDERATION, []) + [(s.noise_multiplier, self.client_sample_rate,
                                                                          1)]
                eps = Ledger(s.accountant, {0: hist}).epsilon(0, delta=self.delta_client)
            if eps > s.target_epsilon:
                return f"client-level epsilon would reach {eps:.4g} > target {s.target_epsilon}"
        if self.release_blocked:
            return self.release_blocked
        target = self.cfg.secagg.server_target_epsilon
        if target is not None and self.server_planned is not None and s.noise_multiplier > 0:
            eps = self._server_epsilon_with(self.server_planned, range(self.num_clients))
            if eps > target:
                return f"client-level epsilon against the server would reach {eps:.4g} > target {target}"
        if self.record_secure and c.target_epsilon is not None and self.record_planned is not None:
            merged = self._record_merged
            worst = max(self._skellam_record_epsilon(_merged(merged.get(k, ()) + (self.record_planned[k],)))
                        for k in range(self.num_clients))
            if worst > c.target_epsilon:
                return f"record-level epsilon would reach {worst:.4g} > target {c.target_epsilon}"
        if self.eps_record_next is not None:
            worst = float(self.eps_record_next.max())  # any client may be sampled next: the worst one counts
            if worst > c.target_epsilon:
                return f"record-level epsilon would reach {worst:.4g} > target {c.target_epsilon}"
        return ""

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"record": self.record.state_dict(), "client_level": self.client_level.state_dict(),
                "client_level_skellam": [list(e) for e in self.skellam],
                "client_level_skellam_server": {str(k): [list(e) for e in h] for k, h in self.skellam_server.items()},
                "record_skellam": {str(k): [list(e) for e in h] for k, h in self.record_skellam.items()},
                "release_blocked": self.release_blocked}

    def load_state_dict(self, state: dict) -> None:
        self.record = Ledger.from_state_dict(state["record"])
        self.client_level = Ledger.from_state_dict(state["client_level"])
        self.skellam = [tuple(e) for e in state.get("client_level_skellam", [])]
        self.skellam_server = {int(k): [tuple(e) for e in h]
                               for k, h in state.get("client_level_skellam_server", {}).items()}
        self.record_skellam = {int(k): [tuple(e) for e in h] for k, h in state.get("record_skellam", {}).items()}
        self.release_blocked = str(state.get("release_blocked", ""))
        self._refresh()


def _merged(history) -> tuple:
    """A Skellam history with equal events merged (their steps summed), in a canonical order: a cache key."""
    from privacy.accountants.skellam import merge_events

    return tuple(sorted(merge_events(history)))


def skellam_epsilon(events, *, delta: float, accountant: str, gaussian: str) -> float:
    """:func:`privacy.accountants.skellam.epsilon`, imported when a secure-aggregation run first needs it."""
    from privacy.accountants.skellam import epsilon

    return epsilon(events, delta=delta, accountant=accountant, gaussian=gaussian)


def server_epsilon(events, *, delta: float, accountant: str) -> float:
    """:func:`privacy.accountants.skellam.epsilon_unsampled`: no amplification by sampling against the server."""
    from privacy.accountants.skellam import epsilon_unsampled

    return epsilon_unsampled(events, delta=delta, accountant=accountant)
