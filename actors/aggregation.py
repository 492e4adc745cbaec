"""The server's round step without Ray: sum the clients' constrained deltas, release, apply.

Given the actors' updates of one round, :meth:`Aggregator.step` adds the audit's canaries to
the clipped sum (before the noise, as a real client's update would be), lets the client-level
mechanism release the noisy fixed-denominator average (:mod:`privacy.client_level`), and applies
it with the server optimiser (:mod:`actors.server_optimizer`: post-processing), then the optional
broadcast noise (post-processing, no privacy gain). Everything here is testable without Ray.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.client import ActorUpdate, ClientReport
from actors.server_optimizer import server_learning_rate, server_step
from privacy.canaries import Canaries
from privacy.client_level import CentralGaussianMechanism, ReleasedAverage
from privacy.config import ExperimentConfig
from privacy.mechanisms import broadcast_noise
from privacy.seeding import BROADCAST, torch_generator


@dataclass(frozen=True)
class StepResult:
    released: ReleasedAverage  # what the mechanism released this round
    reports: list[ClientReport]  # the clients whose updates are in the sum
    lr: float  # server learning rate used
    canaries_in_round: int  # canary clients in the sum
    audit_seconds: float  # time spent on the canaries


class Aggregator:
    """Global weights, the client-level mechanism, the canaries and the server optimiser's state."""

    def __init__(self, cfg: ExperimentConfig, weights: np.ndarray, *, mechanism: CentralGaussianMechanism,
                 canaries: Canaries | None):
        self.cfg, self.mechanism, self.canaries = cfg, mechanism, canaries
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.initial_weights = self.weights.clone()  # w_0, for the canary scores <u_j, w_T - w_0>
        self.velocity: torch.Tensor | None = None  # server momentum buffer (FedAvgM)

    def step(self, round_idx: int, updates: list[ActorUpdate]) -> StepResult:
        s = self.cfg.server
        total = np.zeros(self.weights.shape, dtype=np.float32)
        reports: list[ClientReport] = []
        for update in updates:
            succeeded = update.succeeded
            if succeeded:
                total += update.delta_sum
            reports += succeeded
        clipped_sum = torch.from_numpy(total)
        canaries_in_round, audit_seconds = 0, 0.0
        if self.canaries is not None:
            t0 = time.perf_counter()
            canary_sum, canaries_in_round = self.canaries.round_sum(round_idx, self.mechanism.clip)
            clipped_sum = clipped_sum + canary_sum
            audit_seconds = time.perf_counter() - t0
        released = self.mechanism.add_noise(clipped_sum, unclipped=sum(r.unclipped for r in reports),
                                            reported=len(reports), round_idx=round_idx)
        lr = server_learning_rate(s.lr, s.lr_schedule, round_idx, s.rounds)
        self.weights, self.velocity = server_step(self.weights, released.average, self.velocity, lr=lr,
                                                  momentum=s.momentum)
        self.weights = broadcast_noise(self.weights, std=s.broadcast_noise,
                                       generator=torch_generator(self.mechanism.noise_seed, BROADCAST, round_idx))
        return StepResult(released, reports, lr, canaries_in_round, audit_seconds)

    def state_dict(self) -> dict:
        return {"weights": self.weights.clone(), "mechanism": self.mechanism.state_dict(),
                "velocity": None if self.velocity is None else self.velocity.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.weights = state["weights"].clone().float()
        self.mechanism.load_state_dict(state["mechanism"])
        velocity = state.get("velocity")
        self.velocity = None if velocity is None else velocity.clone().float()
