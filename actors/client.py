"""The client actor: one Ray actor hosting one or more federated clients.

Each hosted (virtual) client keeps, for the whole run, its own data shard and its own
random stream; the actor shares one model and one per-sample clipping engine among them.
A round's work for a client is a pure function of (global weights, client id, round,
noise seed), so results do not depend on how clients are packed into actors, and running
a client twice in a round (a retry after a crash) releases nothing new. The server keeps
every ledger: an actor holds no privacy state, so a restarted actor needs nothing back.

The actor applies the client half of the server's mechanism to each client's delta (a
:class:`privacy.mechanisms.client_level.ClipStep`: clip to S and report the adaptive-clipping bit) and
returns the *sum* of its clients' constrained deltas with per-client reports: transfers grow
with actors, not with clients.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from actors.allocator import keep_freed_memory
from actors.data import DataError, ImageData
from actors.local_training import LocalSpec, LocalTrainer, RoundDeadline
from actors.model_inputs import load_from_config
from actors.models import build_model
from actors.secure_step import SecureStep
from privacy.mechanisms.client_level import ClipStep
from privacy.config.experiment import ExperimentConfig
from privacy.seeding import CLIENT, torch_generator

if TYPE_CHECKING:  # imported where a secure-aggregation round needs them: a central run's actors never do
    from privacy.secagg.protocol import (AdvertiseKeys, ForwardedShares, KeyDirectory, MaskedInput,
                                            SharedKeys, Survivors, UnmaskingShares)


@dataclass(frozen=True)
class ClientReport:
    client_id: int
    examples: int  # shard size n_k (weights the reported train loss)
    train_loss: float  # mean local loss this round
    delta_norm: float  # L2 norm of the delta before clipping
    unclipped: bool  # 1[||delta|| <= S]: the adaptive-clipping bit
    error: str = ""  # non-empty: the client failed this round and contributed nothing


@dataclass
class ActorUpdate:
    delta_sum: np.ndarray | None  # sum of the clipped deltas of the clients that succeeded (float32); None
    #                              under secure aggregation: the deltas stay on the actor, masked
    reports: list[ClientReport] = field(default_factory=list)
    keys: list[AdvertiseKeys | int] | None = None  # secure aggregation: per client that succeeded its key message
    #                                                (its id on the sum-only path, secagg.protocol = "sum")
    actor: int = -1  # index of the actor that sent it (set by the server's dispatch)

    @property
    def succeeded(self) -> list[ClientReport]:
        return [r for r in self.reports if not r.error]


def local_spec(cfg: ExperimentConfig) -> LocalSpec:
    c = cfg.client
    return LocalSpec(dp=c.dp, noise_multiplier=c.noise_multiplier if c.dp else 0.0, max_grad_norm=c.max_grad_norm,
                     lr=c.lr, momentum=c.momentum, batch_size=c.batch_size, local_epochs=c.local_epochs,
                     local_steps=c.local_steps, grad_sample_mode=c.grad_sample_mode)


class ClientActor:
    """Hosts clients ``shards.keys()``. Wrap with ``ray.remote`` to run it as an actor."""

    def __init__(self, cfg: ExperimentConfig, shards: dict[int, np.ndarray], *, num_threads: int = 1,
                 shared=None):
        """``shared``: the driver's data (:class:`actors.model_inputs.SharedData`), taken instead of reading the
        files where this actor runs on the driver's node (see :func:`load_on_this_node`)."""
        torch.set_num_threads(max(1, int(num_threads)))
        keep_freed_memory()
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # Opacus hooks on input layers
        if cfg.run.noise_seed is None:
            raise ValueError("run.noise_seed is unset: resolve the config first (orchestrator.resolve)")
        self.cfg = cfg
        self.device = torch.device("cuda" if _assigned_gpu() and torch.cuda.is_available() else "cpu")
        data = load_on_this_node(cfg, shared)  # dropped when __init__ returns: only the views stay
        self.shards = _client_views(data, shards)
        c, h, _ = data.shape
        model = build_model(cfg.model.name, in_channels=c, num_classes=data.num_classes, image_size=h,
                            seed=cfg.run.seed)
        self.trainer = LocalTrainer(model, local_spec(cfg), self.device)

    def client_ids(self) -> list[int]:
        return sorted(self.shards)

    def device_name(self) -> str:
        return str(self.device)

    def train(self, weights: np.ndarray, client_ids: list[int], round_idx: int, step: ClipStep | SecureStep,
              time_budget: float = 0.0) -> ActorUpdate:
        """Train each listed client from ``weights`` for one round; return the sum of their deltas after
        ``step`` and one report per client. A client that raises is reported, never dropped silently.

        Under secure aggregation (``step`` a :class:`SecureStep`) each client's delta is clipped, quantised
        and noised here and kept on the actor, and the update carries only the clients' key messages and
        their success or failure: the masked vectors follow in :meth:`secagg_masked`, nothing else leaves.

        ``time_budget`` (seconds, 0 = none) is split evenly over the listed clients: a client that runs
        past its own share is stopped and reported failed, so whether a client fails depends on its own
        data alone, never on a larger neighbour's (docs/privacy.md, "Failures")."""
        start = torch.tensor(weights, dtype=torch.float32)
        secure = isinstance(step, SecureStep)
        total = None if secure else torch.zeros_like(start, device=self.trainer.device)
        if secure:
            self._secagg_round, self._secagg, self._ring = round_idx, {}, {}
            self._ring_bits = step.protocol.bits
        share = time_budget / len(client_ids) if time_budget > 0 and client_ids else 0.0
        reports = []
        for cid in sorted(int(k) for k in client_ids):
            stop_at = time.monotonic() + share if share else math.inf
            try:
                reports.append(self._train_one_secure(start, cid, round_idx, step, stop_at) if secure
                               else self._train_one(start, cid, round_idx, step, total, stop_at))
            except Exception as exc:  # recorded in the round's metrics by the server
                examples = len(self.shards[cid][1]) if cid in self.shards else 0
                reports.append(ClientReport(cid, examples, math.nan, math.nan, False,
                                            error=f"{type(exc).__name__}: {exc}"))
                if not isinstance(exc, RoundDeadline):
                    traceback.print_exc()
        if secure:  # the sum-only path (protocol.masked False) has no keys: it names the clients that trained
            return ActorUpdate(None, reports, keys=[self._secagg[r.client_id].advertise_keys() if step.protocol.masked
                                                   else r.client_id for r in reports if not r.error])
        return ActorUpdate(total.cpu().numpy(), reports)

    def _train_one(self, start: torch.Tensor, cid: int, round_idx: int, step: ClipStep, total: torch.Tensor,
                   stop_at: float) -> ClientReport:
        result = self._local_training(start, cid, round_idx, stop_at)
        out = step.constrain_sensitivity(result.delta)
        if not torch.isfinite(out.delta).all():
            raise FloatingPointError("non-finite model delta")
        total += out.delta
        return ClientReport(cid, len(self.shards[cid][1]), result.train_loss, out.norm, out.unclipped)

    def _local_training(self, start: torch.Tensor, cid: int, round_idx: int, stop_at: float):
        """Client ``cid``'s local training of round ``round_idx`` from ``start``, on its own random stream."""
        x, y = self.shards[cid]
        return self.trainer.train(start, x, y, torch_generator(self.cfg.run.noise_seed, CLIENT, cid, round_idx),
                                  stop_at=stop_at)

    def _train_one_secure(self, start: torch.Tensor, cid: int, round_idx: int, step: SecureStep,
                          stop_at: float) -> ClientReport:
        """Train, then clip, quantise and add the Skellam share; the ring vector stays here. The report
        carries no loss, norm or clip bit: under an untrusted server those stay on the client."""
        from privacy.mechanisms.distributed_dp import client_rng
        from privacy.secagg.protocol import SecAggClient

        rng = client_rng(noise_seed=self.cfg.run.noise_seed, client_id=cid, round_idx=round_idx)
        if step.skellam.on_gradients:  # secure FedSGD: this silo's clipped-gradient sum, one step on the union
            self._ring[cid] = step.skellam.encode(self._clipped_gradient_sum(start, cid, round_idx, stop_at), rng=rng)
        else:
            result = self._local_training(start, cid, round_idx, stop_at)
            if not torch.isfinite(result.delta).all():
                raise FloatingPointError("non-finite model delta")
            self._ring[cid] = step.skellam.constrain_sensitivity(result.delta, rng=rng)
        if step.protocol.masked:
            self._secagg[cid] = SecAggClient(cid, step.protocol)  # keys and masks from this process's OS entropy
        return ClientReport(cid, len(self.shards[cid][1]), math.nan, math.nan, False)

    def _clipped_gradient_sum(self, start: torch.Tensor, cid: int, round_idx: int, stop_at: float) -> torch.Tensor:
        """sum_i clip_C(grad_i) at ``start`` over a Poisson sample (rate q_k) of client ``cid``'s records, drawn
        from its own stream: a silo's part of one DP-SGD step on the union (secagg.level = "record")."""
        x, y = self.shards[cid]
        return self.trainer.clipped_gradient_sum(start, x, y, torch_generator(self.cfg.run.noise_seed, CLIENT, cid,
                                                                              round_idx), stop_at=stop_at)

    # --- secure aggregation: the later stages of the round begun by train() ------------------------
    def _secagg_clients(self, round_idx: int) -> dict:
        if getattr(self, "_secagg_round", None) != round_idx:
            raise RuntimeError(f"no secure-aggregation state for round {round_idx} (the actor restarted?)")
        return self._secagg

    def secagg_share(self, round_idx: int, directory: KeyDirectory, client_ids: list[int]) -> list[SharedKeys]:
        clients = self._secagg_clients(round_idx)
        return [clients[k].share_keys(directory) for k in client_ids]

    def secagg_masked(self, round_idx: int, forwarded: dict[int, ForwardedShares]) -> list[MaskedInput]:
        """Each client's masked ring vector, sent in the narrowest unsigned type that holds 2^b: nothing else
        about its vector (not even how many of its coordinates wrapped) reaches the server."""
        from privacy.secagg.protocol import MaskedInput, word_type

        clients, out, dtype = self._secagg_clients(round_idx), [], word_type(self._ring_bits)
        for k, shares in forwarded.items():
            masked = clients[k].masked_input(self._ring[k].vector, shares)
            out.append(MaskedInput(masked.sender, masked.vector.astype(dtype)))
        return out

    def secagg_sum(self, round_idx: int, client_ids: list[int]) -> tuple[list[int], np.ndarray | None]:
        """The sum-only path (``secagg.protocol = "sum"``): the listed clients and the sum mod 2^b of their ring
        vectors (None for no client), in the type :meth:`secagg_masked` would send: one vector per actor rather
        than one per client, the sum the full protocol's masks cancel to. The round's vectors are done with."""
        from privacy.secagg.protocol import word_type
        from privacy.secagg.quantization import ring_sum

        self._secagg_clients(round_idx)  # the round's state, or the actor restarted
        ids = [int(k) for k in client_ids]
        total = ring_sum([self._ring[k].vector for k in ids], bits=self._ring_bits) if ids else None
        self._secagg, self._ring, self._secagg_round = {}, {}, None
        return ids, None if total is None else total.astype(word_type(self._ring_bits))

    def secagg_unmask(self, round_idx: int, survivors: Survivors, client_ids: list[int]) -> list[UnmaskingShares]:
        clients = self._secagg_clients(round_idx)
        out = [clients[k].unmasking_shares(survivors) for k in client_ids]
        self._secagg, self._ring, self._secagg_round = {}, {}, None  # the round's secrets are done with
        return out


def load_on_this_node(cfg: ExperimentConfig, shared=None) -> ImageData:
    """The data as this node sees it; a DataError names the node, since every node reads its own copy.

    On the driver's node, ``shared`` (or what :func:`actors.model_inputs.offering` offers) is the driver's
    copy of those same files, taken without reading them again where they are unchanged
    (:meth:`actors.model_inputs.SharedData.load`)."""
    from actors.model_inputs import offered

    shared = shared if shared is not None else offered()
    data = shared.load(cfg.data) if shared is not None else None
    if data is not None:
        return data
    try:
        return load_from_config(cfg.data, cache=False)
    except (DataError, OSError) as exc:
        import socket

        raise DataError(f"on node {socket.gethostname()}: {exc}") from exc


def _client_views(data: ImageData, shards: dict[int, np.ndarray]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """One normalised tensor of the hosted clients' records, and each client's (x, y) as a view into it:
    memory is that of the actor's share of the data, whatever the number of clients."""
    ids = sorted(int(k) for k in shards)
    x, y = data.tensors("train", np.concatenate([np.asarray(shards[k], dtype=np.int64) for k in ids]))
    ends = np.cumsum([len(shards[k]) for k in ids])
    return {k: (x[e - len(shards[k]):e], y[e - len(shards[k]):e]) for k, e in zip(ids, ends)}


def initial_weights(cfg: ExperimentConfig, in_channels: int, num_classes: int, image_size: int) -> np.ndarray:
    """The global model's initial flat weights, a function of the run seed alone."""
    from torch.nn.utils import parameters_to_vector

    model = build_model(cfg.model.name, in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                        seed=cfg.run.seed)
    return parameters_to_vector(model.parameters()).detach().numpy().copy()


def _assigned_gpu() -> bool:
    try:
        import ray

        return ray.is_initialized() and bool(ray.get_gpu_ids())
    except Exception:  # outside a Ray worker
        return False
