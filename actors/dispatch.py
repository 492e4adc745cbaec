"""Sending a round to the client actors over Ray and collecting what comes back, failures included.

A failed client is recorded in the round's metrics, never dropped silently. What can happen:

- a client raises inside training, or runs past its share of the round's time: that client only
  (reported by its actor);
- the actor process dies: Ray restarts it (``client.max_restarts``) and its clients are trained
  **once more** on the restarted actor within the round. A client's update is a pure function of
  (weights, client, round, noise seed), so the retry releases nothing the first try would not have;
  ``clients_retried`` counts them;
- the actor raises, returns NaN/Inf or a sum of the wrong shape: all its clients (not retried: the
  same inputs would give the same result);
- the actor does not answer within ``server.round_timeout`` (plus a grace): killed, restarted by Ray,
  all its clients failed for the round.

Failed clients contribute nothing; the fixed denominator keeps the accounting valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from actors.client import ActorUpdate
from actors.client_plan import ClientPlan
from actors.secure_step import SecureStep
from privacy.mechanisms.client_level import ClipStep


@dataclass
class Collected:
    updates: list[ActorUpdate] = field(default_factory=list)  # well-formed updates, in dispatch order
    failures: list[str] = field(default_factory=list)  # "client k: why", one per failed client
    retried: int = 0  # clients trained a second time after their actor died
    restarting: set[int] = field(default_factory=set)  # actors left dead or killed: Ray is restarting them


def hard_timeout(round_timeout: float) -> float | None:
    """How long the server waits for an actor: the clients' time budget plus a grace for the transfer."""
    return round_timeout * 1.1 + 2.0 if round_timeout > 0 else None


def train_cohort(clients: list, plan: ClientPlan, cohort: np.ndarray, weights: np.ndarray, round_idx: int,
                 step: ClipStep | SecureStep, *, round_timeout: float, on_dispatched=None, restarting=()) -> Collected:
    """Train the cohort on its actors; ``on_dispatched()`` runs while they train (the ledgers book then).
    ``restarting``: actors the last round left dead or killed, waited for before they get work."""
    import ray

    by_actor = plan.by_actor(cohort)
    for a in set(restarting) & set(by_actor):
        wait_until_ready(clients[a])  # a call now would find it unavailable and count as a spurious retry
    weights_ref = ray.put(weights)  # one copy in the object store per round

    def submit(a: int):
        return clients[a].train.remote(weights_ref, by_actor[a], round_idx, step, round_timeout)

    first = {a: submit(a) for a in by_actor}
    if on_dispatched is not None:
        on_dispatched()
    out = Collected(restarting=set(restarting) - set(by_actor))  # not sampled this round: still to wait for
    died = _collect(clients, first, by_actor, weights.shape, round_timeout, out, may_retry=True)
    if died:  # once more, on the restarted processes
        back = [a for a in died if wait_until_ready(clients[a])]
        for a in set(died) - set(back):
            out.failures += [f"client {k}: actor {a} died and did not come back" for k in by_actor[a]]
            out.restarting.add(a)
        if back:
            _collect(clients, {a: submit(a) for a in back}, by_actor, weights.shape, round_timeout, out,
                     may_retry=False)
        out.retried = sum(len(by_actor[a]) for a in died)
    return out


def wait_until_ready(actor, wait_s: float = 180.0) -> bool:
    """Wait for a restarting actor to answer (Ray reports it unavailable meanwhile); False if it is dead
    for good (out of restarts) or does not answer within ``wait_s``."""
    import time

    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.client_ids.remote(), timeout=30)
            return True
        except ActorDiedError:
            return False
        except (ActorUnavailableError, GetTimeoutError):
            time.sleep(0.5)
    return False


def _collect(clients: list, futures: dict, by_actor: dict[int, list[int]], shape: tuple, round_timeout: float,
             out: Collected, *, may_retry: bool) -> list[int]:
    """Wait for ``futures`` (actor -> ref), add updates and failures to ``out``; return the actors that died
    when ``may_retry`` (their clients are not failed yet)."""
    import ray

    ready, _ = ray.wait(list(futures.values()), num_returns=len(futures), timeout=hard_timeout(round_timeout))
    ready = set(ready)
    died = []
    for a, ref in futures.items():
        update, reason, dead = _result(clients[a], a, ref, ref in ready, shape, round_timeout)
        if update is not None:
            update.actor = a
            out.failures += [f"client {r.client_id}: {r.error}" for r in update.reports if r.error]
            out.updates.append(update)
        elif dead and may_retry:
            died.append(a)
        else:
            out.failures += [f"client {k}: {reason}" for k in by_actor[a]]
            if dead or ref not in ready:  # died twice, or straggled and was killed
                out.restarting.add(a)
    return died


def _result(actor, a: int, ref, ready: bool, shape: tuple, round_timeout: float) -> tuple[ActorUpdate | None, str, bool]:
    """(update, "", False), or (None, why, whether the actor died)."""
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError

    if not ready:
        ray.kill(actor, no_restart=False)  # Ray restarts it for the next round
        return None, f"actor {a} straggled past server.round_timeout = {round_timeout}s", False
    try:
        update: ActorUpdate = ray.get(ref)
    except (RayActorError, ActorUnavailableError) as exc:  # the process died: Ray restarts it
        return None, f"actor {a} died: {type(exc).__name__}", True
    except Exception as exc:  # the actor raised
        cause = getattr(exc, "cause", None) or exc
        detail = str(cause).strip().splitlines()[-1][:200] if str(cause).strip() else ""
        return None, f"actor {a} failed: {type(cause).__name__}" + (f": {detail}" if detail else ""), False
    if update.keys is not None:  # secure aggregation: only key messages, one per client that succeeded
        if len(update.keys) != len(update.succeeded):
            return None, f"actor {a} sent {len(update.keys)} key messages for {len(update.succeeded)} clients", False
        return update, "", False
    d = update.delta_sum
    if not isinstance(d, np.ndarray) or d.shape != tuple(shape):
        return None, f"actor {a} sent a malformed update (shape {getattr(d, 'shape', None)}, expected {tuple(shape)})", False
    if not np.isfinite(d).all():
        return None, f"actor {a} sent a non-finite update", False
    return update, "", False
