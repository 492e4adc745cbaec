"""The server actor: noisy FedAvg (DP-FedAvg) with client-level accounting.

Each round: Poisson-sample clients (rate q = m / N), put the global weights in the
object store once, let each client actor train its sampled clients and return the
sum of their clipped deltas, add N(0, (z S)^2) to the total, divide by the expected
cohort m (fixed denominator), apply with the server learning rate, evaluate, step
both ledgers, and return one metrics row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.client import ActorUpdate, ClientReport
from actors.data import load_from_config
from actors.models import build_model
from actors.local_training import load_flat_
from orchestrator.accounting import Ledger
from orchestrator.config import ExperimentConfig
from orchestrator.mechanisms import broadcast_noise, dp_fedavg_aggregate
from orchestrator.seeding import BROADCAST, COHORT, SERVER_NOISE, numpy_rng, torch_generator

FEDERATION = -1  # the client-level ledger's one party: the federation as a whole


@dataclass(frozen=True)
class ClientPlan:
    """What the server knows of each client before any round: who hosts it and its privacy per round."""

    actor: tuple[int, ...]  # actor index of client k
    sample_rate: tuple[float, ...]  # record-level Poisson rate of client k
    steps: tuple[int, ...]  # local steps per round of client k


def sample_cohort(num_clients: int, expected: int, *, scheme: str, seed: int, round_idx: int) -> np.ndarray:
    """Client ids of a round's cohort. ``poisson``: each client independently with q = m / N (what the
    accountant assumes). ``fixed``: exactly m without replacement (accounted with the Poisson bound)."""
    rng = numpy_rng(seed, COHORT, round_idx)
    if scheme == "fixed":
        return np.sort(rng.choice(num_clients, size=expected, replace=False))
    return np.flatnonzero(rng.random(num_clients) < expected / num_clients)


class ServerActor:
    """Holds the global model, the client actor handles and both ledgers. Wrap with ``ray.remote``."""

    def __init__(self, cfg: ExperimentConfig, clients: list, plan: ClientPlan, weights: np.ndarray, *,
                 delta_record: float, delta_client: float, num_threads: int = 1):
        torch.set_num_threads(max(1, int(num_threads)))
        self.cfg, self.clients, self.plan = cfg, clients, plan
        self.delta_record, self.delta_client = delta_record, delta_client
        self.num_clients = len(plan.actor)
        self.weights = torch.tensor(weights, dtype=torch.float32)
        data = load_from_config(cfg.data, cache=False)  # dropped when __init__ returns: the test split stays
        self.x_test, self.y_test = data.tensors("test")
        c, h, _ = data.shape
        self.model = build_model(cfg.model.name, in_channels=c, num_classes=data.num_classes, image_size=h,
                                 seed=cfg.run.seed)
        self.params = list(self.model.parameters())
        self.record = Ledger(accountant=cfg.client.accountant)
        self.client_level = Ledger(accountant=cfg.server.accountant)
        self.eps_record = np.zeros(self.num_clients)  # cache: only participants' epsilons change
        self.eps_record_next = self._one_round_epsilons()  # each client's epsilon after one more round
        self.round = 0

    # --- privacy --------------------------------------------------------------------------
    @property
    def sample_rate(self) -> float:
        return self.cfg.server.clients_per_round / self.num_clients

    def eps_client(self) -> float:
        s = self.cfg.server
        if s.noise_multiplier == 0:
            return math.inf
        return self.client_level.epsilon(FEDERATION, delta=self.delta_client)

    def _round_event(self, k: int) -> tuple[float, float, int]:
        """Client k's record-level event for one round in which it takes part."""
        return self.cfg.client.noise_multiplier, self.plan.sample_rate[k], self.plan.steps[k]

    def _one_round_epsilons(self) -> np.ndarray | None:
        """Every client's epsilon after a first round, computed once per distinct (rate, steps); None when no
        record-level target needs it. Kept up to date for participants only: O(cohort) work per round."""
        c = self.cfg.client
        if c.target_epsilon is None or not c.dp:
            return None
        once: dict[tuple[float, int], float] = {}
        out = np.empty(self.num_clients)
        for k in range(self.num_clients):
            key = (self.plan.sample_rate[k], self.plan.steps[k])
            if key not in once:
                once[key] = Ledger(c.accountant, {0: [self._round_event(k)]}).epsilon(0, delta=self.delta_record)
            out[k] = once[key]
        return out

    def _record_events(self, cohort: np.ndarray) -> None:
        """Record-level events of the cohort, booked before any result is awaited: a crash never under-reports."""
        if not self.cfg.client.dp:
            return
        for k in cohort:
            k = int(k)
            noise, rate, steps = self._round_event(k)
            self.record.record(k, noise_multiplier=noise, sample_rate=rate, steps=steps)
            self.eps_record[k] = self.record.epsilon(k, delta=self.delta_record)
            if self.eps_record_next is not None:
                hist = self.record.histories[k] + [self._round_event(k)]
                self.eps_record_next[k] = Ledger(self.record.accountant, {0: hist}).epsilon(0, delta=self.delta_record)

    def budget_exceeded_next_round(self) -> str:
        """Why one more round would exceed a target epsilon ('' if it would not)."""
        c, s = self.cfg.client, self.cfg.server
        if s.target_epsilon is not None and s.noise_multiplier > 0:
            hist = self.client_level.histories.get(FEDERATION, []) + [(s.noise_multiplier, self.sample_rate, 1)]
            eps = Ledger(s.accountant, {0: hist}).epsilon(0, delta=self.delta_client)
            if eps > s.target_epsilon:
                return f"client-level epsilon would reach {eps:.4g} > target {s.target_epsilon}"
        if self.eps_record_next is not None:
            worst = float(self.eps_record_next.max())  # any client may be sampled next: the worst one counts
            if worst > c.target_epsilon:
                return f"record-level epsilon would reach {worst:.4g} > target {c.target_epsilon}"
        return ""

    # --- one round ------------------------------------------------------------------------
    def run_round(self, round_idx: int) -> dict:
        import ray

        t0 = time.perf_counter()
        s = self.cfg.server
        cohort = sample_cohort(self.num_clients, s.clients_per_round, scheme=s.sampling, seed=self.cfg.run.seed,
                               round_idx=round_idx)
        by_actor: dict[int, list[int]] = {}
        for k in cohort:
            by_actor.setdefault(self.plan.actor[k], []).append(int(k))
        weights_ref = ray.put(self.weights.numpy())  # one copy in the object store per round
        futures = {a: self.clients[a].train.remote(weights_ref, ids, round_idx, s.clip) for a, ids in by_actor.items()}
        self._record_events(cohort)  # accounting overlaps the clients' training
        total = np.zeros(self.weights.shape, dtype=np.float32)
        reports: list[ClientReport] = []
        failures: list[str] = []
        for a, ref in futures.items():
            try:
                update: ActorUpdate = ray.get(ref, timeout=s.round_timeout or None)
            except Exception as exc:  # actor died or timed out: its clients failed this round
                reason = f"actor {a}: {type(exc).__name__}"
                failures += [f"client {k}: {reason}" for k in by_actor[a]]
                continue
            failed = [r for r in update.reports if r.error]
            failures += [f"client {r.client_id}: {r.error}" for r in failed]
            if update.succeeded:
                total += update.delta_sum
            reports += update.succeeded
        avg, diag = dp_fedavg_aggregate(torch.from_numpy(total), noise_multiplier=s.noise_multiplier, clip=s.clip,
                                        expected_cohort=s.clients_per_round,
                                        generator=torch_generator(self.cfg.run.seed, SERVER_NOISE, round_idx))
        self.weights = self.weights + s.lr * avg
        self.weights = broadcast_noise(self.weights, std=s.broadcast_noise,
                                       generator=torch_generator(self.cfg.run.seed, BROADCAST, round_idx))
        if s.noise_multiplier > 0:
            self.client_level.record(FEDERATION, noise_multiplier=s.noise_multiplier, sample_rate=self.sample_rate,
                                     steps=1)
        self.round = round_idx + 1
        last = self.round == self.cfg.server.rounds
        acc, loss = self.evaluate() if (self.round % self.cfg.run.eval_every == 0 or last) else (math.nan, math.nan)
        n = np.array([r.examples for r in reports], dtype=float)
        losses = np.array([r.train_loss for r in reports], dtype=float)
        ok = np.isfinite(losses)
        return {
            "round": self.round,
            "test_accuracy": acc,
            "test_loss": loss,
            "train_loss": float(np.average(losses[ok], weights=n[ok])) if ok.any() else math.nan,
            "eps_record_max": float(self.eps_record.max()) if self.cfg.client.dp else math.inf,
            "eps_record_median": float(np.median(self.eps_record)) if self.cfg.client.dp else math.inf,
            "delta_record": self.delta_record,
            "eps_client": self.eps_client(),
            "delta_client": self.delta_client,
            "clients_sampled": int(len(cohort)),
            "clients_failed": len(failures),
            "failures": "; ".join(failures),
            "noise_multiplier_local": self.cfg.client.noise_multiplier if self.cfg.client.dp else 0.0,
            "max_grad_norm_local": self.cfg.client.max_grad_norm if self.cfg.client.dp else math.inf,
            "noise_multiplier_server": s.noise_multiplier,
            "clip_server": s.clip if s.clip > 0 else math.inf,
            "unclipped_fraction": float(np.mean([r.unclipped for r in reports])) if reports else math.nan,
            "delta_norm_median": float(np.median([r.delta_norm for r in reports])) if reports else math.nan,
            "update_norm": float(avg.norm()),
            "server_noise_std": diag.std,
            "server_snr": diag.snr,
            "seconds": time.perf_counter() - t0,
        }

    @torch.no_grad()
    def evaluate(self, batch_size: int = 1000) -> tuple[float, float]:
        load_flat_(self.params, self.weights)
        self.model.eval()
        correct, loss = 0, 0.0
        for i in range(0, len(self.y_test), batch_size):
            out = self.model(self.x_test[i:i + batch_size])
            y = self.y_test[i:i + batch_size]
            loss += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
        return correct / len(self.y_test), loss / len(self.y_test)

    def get_weights(self) -> np.ndarray:
        return self.weights.numpy().copy()
