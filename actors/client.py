"""The client actor: one Ray actor hosting one or more federated clients.

Each hosted (virtual) client keeps, for the whole run, its own data shard, its own
record-level privacy history and its own random stream; the actor shares one model,
one Opacus ``GradSampleModule`` and one ``DPOptimizer`` among them. A round's work
for a client is a pure function of (global weights, client id, round, run seed), so
results do not depend on how clients are packed into actors.

The actor clips each client's delta to the server's clip S (trusted code, inside
the trust boundary of the aggregator) and returns the *sum* of its clients' clipped
deltas with per-client reports: transfers grow with actors, not with clients.
"""

from __future__ import annotations

import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from actors.data import ImageData
from actors.model_inputs import load_from_config
from actors.local_training import LocalSpec, LocalTrainer
from actors.models import build_model
from privacy.accounting import Ledger
from privacy.clipping import clip_by_l2_norm
from privacy.config import ExperimentConfig
from privacy.seeding import CLIENT, torch_generator


@dataclass(frozen=True)
class ClientReport:
    client_id: int
    examples: int  # shard size n_k
    steps: int  # local DP-SGD steps this round
    sample_rate: float  # Poisson rate batch_size / n_k
    noise_multiplier: float  # sigma used (0 for the non-private baseline)
    train_loss: float  # mean local loss this round
    delta_norm: float  # L2 norm of the delta before server clipping
    unclipped: bool  # 1[||delta|| <= S]: the adaptive-clipping bit
    error: str = ""  # non-empty: the client failed this round and contributed nothing


@dataclass
class ActorUpdate:
    delta_sum: np.ndarray  # sum of the clipped deltas of the clients that succeeded (float32)
    reports: list[ClientReport] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the actor's work

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

    def __init__(self, cfg: ExperimentConfig, shards: dict[int, np.ndarray], *, num_threads: int = 1):
        torch.set_num_threads(max(1, int(num_threads)))
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # Opacus hooks on input layers
        self.cfg = cfg
        self.device = torch.device("cuda" if _assigned_gpu() and torch.cuda.is_available() else "cpu")
        data = load_from_config(cfg.data, cache=False)  # dropped when __init__ returns: only the views stay
        self.shards = _client_views(data, shards)
        c, h, _ = data.shape
        model = build_model(cfg.model.name, in_channels=c, num_classes=data.num_classes, image_size=h,
                            seed=cfg.run.seed)
        self.trainer = LocalTrainer(model, local_spec(cfg), self.device)
        # record-level histories of the hosted clients; the server's copy is the one that reports epsilon
        self.ledger = Ledger(accountant=cfg.client.accountant)
        self._faults: dict[int, tuple[str, float]] = {}

    def inject_fault(self, round_idx: int, kind: str, seconds: float = 0.0) -> None:
        """Test hook: misbehave in round ``round_idx``. ``exit`` kills the process, ``raise`` fails every
        hosted client, ``nan`` / ``shape`` return a malformed sum, ``sleep`` straggles for ``seconds``.
        One-shot: a restarted actor has no faults."""
        if kind not in ("exit", "raise", "nan", "shape", "sleep"):
            raise ValueError(f"unknown fault {kind!r}")
        self._faults[int(round_idx)] = (kind, float(seconds))

    def _fault(self, round_idx: int) -> None:
        """Faults that strike before training; ``nan`` and ``shape`` stay queued for the output."""
        kind, seconds = self._faults.get(round_idx, (None, 0.0))
        if kind in ("exit", "raise", "sleep"):
            del self._faults[round_idx]
        if kind == "exit":
            os._exit(1)
        if kind == "raise":
            raise RuntimeError("injected failure")
        if kind == "sleep":
            time.sleep(seconds)

    def restore_histories(self, histories: dict[int, list]) -> None:
        """Take the server's record-level histories of the hosted clients (after a resume or restart)."""
        for cid, hist in histories.items():
            if int(cid) in self.shards:
                self.ledger.histories[int(cid)] = [tuple(e) for e in hist]

    def client_ids(self) -> list[int]:
        return sorted(self.shards)

    def device_name(self) -> str:
        return str(self.device)

    def train(self, weights: np.ndarray, client_ids: list[int], round_idx: int, clip: float) -> ActorUpdate:
        """Train each listed client from ``weights`` for one round; return the sum of deltas clipped to ``clip``
        (0: no clipping) and one report per client. A client that raises is reported, not dropped silently."""
        t0 = time.perf_counter()
        self._fault(round_idx)
        start = torch.tensor(weights, dtype=torch.float32)
        total = torch.zeros_like(start, device=self.trainer.device)
        reports = []
        for cid in sorted(client_ids):
            try:
                reports.append(self._train_one(start, int(cid), round_idx, clip, total))
            except Exception as exc:  # recorded in the round's metrics by the server
                examples = len(self.shards[cid][1]) if cid in self.shards else 0
                reports.append(ClientReport(int(cid), examples, 0, 0.0, 0.0, math.nan, math.nan, False,
                                            error=f"{type(exc).__name__}: {exc}"))
                traceback.print_exc()
        update = ActorUpdate(total.cpu().numpy(), reports, time.perf_counter() - t0)
        if round_idx in self._faults:
            kind, _ = self._faults.pop(round_idx)
            update = self._apply_output_fault(update, kind)
        return update

    @staticmethod
    def _apply_output_fault(update: ActorUpdate, kind: str) -> ActorUpdate:
        if kind == "nan":
            update.delta_sum[0] = np.nan
        elif kind == "shape":
            update.delta_sum = update.delta_sum[:-1]
        return update

    def _train_one(self, start: torch.Tensor, cid: int, round_idx: int, clip: float,
                   total: torch.Tensor) -> ClientReport:
        x, y = self.shards[cid]
        spec = self.trainer.spec
        if spec.dp:  # recorded before training: a crash mid-round never under-reports
            self.ledger.record(cid, noise_multiplier=spec.noise_multiplier, sample_rate=spec.sample_rate(len(y)),
                               steps=spec.steps(len(y)))
        gen = torch_generator(self.cfg.run.seed, CLIENT, cid, round_idx)
        result = self.trainer.train(start, x, y, gen)
        delta, norm = clip_by_l2_norm(result.delta, clip)
        if not torch.isfinite(delta).all():
            raise FloatingPointError("non-finite model delta")
        total += delta
        return ClientReport(cid, len(y), result.steps, result.sample_rate, spec.noise_multiplier,
                            result.train_loss, norm, bool(clip == 0 or norm <= clip))


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

