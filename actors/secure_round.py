"""The secure sum of one round over Ray: Bonawitz et al.'s stages between the server and the client actors.

After :func:`actors.dispatch.train_cohort` has trained the cohort with a :class:`~actors.secure_step.SecureStep`
(each actor keeps its clients' noised ring vectors and returns their public keys), the server here runs
the protocol of :mod:`privacy.secagg.protocol`: it builds the key directory, routes the encrypted
Shamir shares, collects one masked vector per client and, from the survivors, the unmasking shares, and
unmasks the exact sum mod 2^b of the survivors' ring vectors. The server sees public keys, ciphertexts,
masked vectors and shares -- never a client's vector.

A client whose actor fails or dies at a stage drops out of the round from that stage on; the protocol
tolerates drop-outs down to the threshold t. Below it the round releases nothing (``ring_sum`` is None and
``failure`` says why): never a wrong sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from actors.client import ActorUpdate
from privacy.secagg.protocol import (  # only a secagg run imports this module
    SecAggConfig, SecAggDiagnostics, SecAggServer, check_holders, check_survivors, masking_graph)
from privacy.secagg.quantization import ring_sum


@dataclass
class SecureSum:
    ring_sum: np.ndarray | None  # the survivors' exact sum mod 2^b; None if the round could not unmask
    survivors: int = 0  # clients whose masked vector (and noise share) is in the sum
    survivor_ids: tuple[int, ...] = ()  # which ones (secure FedSGD books record-level events for them)
    diagnostics: SecAggDiagnostics | None = None
    failures: list[str] = field(default_factory=list)  # "client k: why" for clients lost during the protocol
    failure: str = ""  # why nothing was released (too many drop-outs)


def secure_sum(clients: list, updates: list[ActorUpdate], protocol: SecAggConfig, round_idx: int, *,
               timeout: float | None = None, graph_seed: int = 0, hold=None) -> SecureSum:
    """Run the protocol's stages with the actors that trained; ``updates`` are their training results.
    ``hold(survivor_ids) -> str``, asked once the survivors are known and before any unmasking share is
    requested: a non-empty answer stops the round there (nothing unmasked, ``failure`` says why)."""
    import ray

    if not protocol.masked:
        return _unmasked_sum(clients, updates, protocol, round_idx, timeout=timeout, graph_seed=graph_seed, hold=hold)
    server = SecAggServer(protocol, graph_seed=graph_seed)
    owner = {}  # client id -> actor index
    keys = []
    for update in updates:
        for message in update.keys or []:
            owner[message.sender] = update.actor
            keys.append(message)
    out = SecureSum(None)
    try:
        directory = server.collect_keys(keys)
        directory_ref = ray.put(directory)
        shared = _stage(clients, _group(owner), out, timeout,
                        lambda a, ids: clients[a].secagg_share.remote(round_idx, directory_ref, ids))
        forwarded = server.route_shares([m for ms in shared.values() for m in ms])
        masked = _stage(clients, _group({k: owner[k] for k in forwarded}), out, timeout,
                        lambda a, ids: clients[a].secagg_masked.remote(round_idx, {k: forwarded[k] for k in ids}))
        survivors = server.collect_masked([m for ms in masked.values() for m in ms])
        if hold is not None and (why := hold(tuple(sorted(int(k) for k in survivors.ids)))):
            out.failure = why
            return out
        answers = _stage(clients, _group({k: owner[k] for k in survivors.ids}), out, timeout,
                         lambda a, ids: clients[a].secagg_unmask.remote(round_idx, survivors, ids))
        out.ring_sum, out.diagnostics = server.unmask([m for ms in answers.values() for m in ms])
        out.survivors, out.survivor_ids = len(survivors.ids), tuple(sorted(int(k) for k in survivors.ids))
    except ValueError as exc:  # too many drop-outs: the protocol refuses rather than release a wrong sum
        out.ring_sum, out.failure = None, str(exc)
    return out


def _unmasked_sum(clients: list, updates: list[ActorUpdate], protocol: SecAggConfig, round_idx: int, *,
                  timeout: float | None, graph_seed: int, hold) -> SecureSum:
    """``secagg.protocol = "sum"``: the sum :func:`secure_sum` would unmask, without keys, masks or shares. Every
    actor sends the sum mod 2^b of its clients' ring vectors, with their ids, in one stage; the server applies the
    full protocol's checks to the clients that trained and the ones that answered (threshold, a connected masking
    graph, t holders of every client's secret among the survivors, the ``hold``) and adds the actors' sums mod
    2^b. Masks cancel exactly in Z_2^b, so the sum, and the round, are the full protocol's; what it does not
    exercise is the cryptography and the protocol's own drop-out stages."""
    owner = {int(k): u.actor for u in updates for k in u.keys or []}  # the clients that trained, by actor
    out = SecureSum(None)
    try:
        graph = masking_graph(sorted(owner), protocol, seed=graph_seed)
        sent = _stage(clients, _group(owner), out, timeout,
                      lambda a, ids: clients[a].secagg_sum.remote(round_idx, ids))
        answered = [int(k) for ids, _ in sent.values() for k in ids]
        if len(set(answered)) != len(answered) or not set(answered) <= set(owner):
            raise ValueError("a client answered twice, or a client outside this round answered")
        survivors = frozenset(answered)
        check_survivors(graph, survivors, threshold=protocol.threshold)
        check_holders(graph, owner, survivors, threshold=protocol.threshold)  # the shares unmasking would need
        ids = tuple(sorted(survivors))
        if hold is not None and (why := hold(ids)):
            out.failure = why
            return out
        out.ring_sum = ring_sum([total for _, total in sent.values() if total is not None], bits=protocol.bits)
        out.diagnostics = SecAggDiagnostics(len(survivors), len(owner) - len(survivors), 0, len(survivors))
        out.survivors, out.survivor_ids = len(survivors), ids
    except ValueError as exc:  # too many drop-outs: refused as the full protocol refuses
        out.ring_sum, out.failure = None, str(exc)
    return out


def _group(owner: dict[int, int]) -> dict[int, list[int]]:
    by_actor: dict[int, list[int]] = {}
    for k, a in sorted(owner.items()):
        by_actor.setdefault(a, []).append(k)
    return by_actor


def _stage(clients: list, by_actor: dict[int, list[int]], out: SecureSum, timeout: float | None, call) -> dict:
    """One stage on every actor; an actor that raises, dies or times out loses its clients from here on."""
    import ray

    futures = {a: call(a, ids) for a, ids in by_actor.items()}
    ready, _ = ray.wait(list(futures.values()), num_returns=len(futures), timeout=timeout)
    ready, results = set(ready), {}
    for a, ref in futures.items():
        try:
            if ref not in ready:
                raise TimeoutError(f"no answer within {timeout}s")
            results[a] = ray.get(ref)
        except Exception as exc:  # the actor raised or died: its clients drop out of the round
            cause = getattr(exc, "cause", None) or exc
            out.failures += [f"client {k}: secure aggregation, actor {a}: {type(cause).__name__}"
                             for k in by_actor[a]]
    return results
