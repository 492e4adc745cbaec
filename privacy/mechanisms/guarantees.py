"""The ledgers a mechanism sets up: which guarantees a run claims, with which accountant and target.

Every mechanism builds its run's :class:`~privacy.accountants.ledgers.PrivacyLedgers` through these; the
record-level guarantee of DP-SGD on the clients (:func:`local_dpsgd`) is the same under a trusted server and
under secure aggregation of client deltas, since it is the clients' own noise.
"""

from __future__ import annotations

from typing import Sequence

from privacy.accountants.guarantee import GaussianAccountant, GuaranteeLedger, SkellamAccountant
from privacy.accountants.ledgers import PrivacyLedgers

RECORD, CLIENT, CLIENT_SERVER = "record-level epsilon", "client-level epsilon", "client-level epsilon against the server"


def local_dpsgd(cfg, *, sample_rates: Sequence[float], steps: Sequence[int]):
    """``(ledger, dispatch events)`` of DP-SGD on the clients: client k books (sigma, q_k, steps_k) in every
    round it is dispatched; ``(None, None)`` without it (``client.dp = false``)."""
    c = cfg.client
    if not c.dp:
        return None, None
    events = [(c.noise_multiplier, float(q), int(s)) for q, s in zip(sample_rates, steps)]
    ledger = GuaranteeLedger(GaussianAccountant(c.accountant), parties=len(events), delta=c.delta, name=RECORD,
                             target=c.target_epsilon)
    if c.target_epsilon is not None:
        ledger.plan(events)
    return ledger, events


def federation(accountant, *, delta: float, target: float | None, planned: tuple) -> GuaranteeLedger:
    """The client-level guarantee of the released models: one party, the federation."""
    ledger = GuaranteeLedger(accountant, parties=1, delta=delta, name=CLIENT, target=target)
    if target is not None:
        ledger.plan([planned])
    return ledger


def per_client(accountant, *, parties: int, delta: float, name: str, target: float | None,
               planned: Sequence[tuple]) -> GuaranteeLedger:
    """A guarantee with one party per client, planned with each client's event of a full round."""
    ledger = GuaranteeLedger(accountant, parties=parties, delta=delta, name=name, target=target)
    if target is not None:
        ledger.plan(planned)
    return ledger


def ledgers(cfg, *, sample_rates: Sequence[float], steps: Sequence[int], record=None, client=None,
            client_server=None, dispatch_events=None, unclaimed=None) -> PrivacyLedgers:
    """The run's ledgers from the guarantees a mechanism claims."""
    return PrivacyLedgers(record=record, client=client, client_server=client_server, delta_record=cfg.client.delta,
                          delta_client=cfg.server.delta,
                          client_sample_rate=cfg.server.clients_per_round / len(steps), sample_rates=sample_rates,
                          dispatch_events=dispatch_events, unclaimed=unclaimed)


def skellam(method: str, gaussian: str, *, sampled: bool = True) -> SkellamAccountant:
    return SkellamAccountant(method, gaussian, sampled)
