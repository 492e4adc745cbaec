"""The server's round step without Ray: sum the clients' constrained deltas, release, apply.

Given the actors' updates of one round, :meth:`Aggregator.step` adds the audit's canaries to
the clipped sum (before the noise, as a real client's update would be), lets the client-level
mechanism release the noisy fixed-denominator average (:mod:`privacy.mechanisms.client_level`), and applies
it with the server optimiser (:mod:`actors.server_optimizer`: post-processing), then the optional
broadcast noise (post-processing, no privacy gain). Everything here is testable without Ray.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from actors.client import ActorUpdate, ClientReport
from actors.server_optimizer import server_learning_rate, server_step
from privacy.audit.canaries import Canaries
from privacy.mechanisms.client_level import CentralGaussianMechanism, ReleasedAverage
from privacy.config.experiment import ExperimentConfig
from privacy.mechanisms.gaussian import broadcast_noise
from privacy.seeding import AUDIT, BROADCAST, numpy_rng, torch_generator

if TYPE_CHECKING:
    from privacy.mechanisms.distributed_dp import DistributedSkellamMechanism, ReleasedSkellamAverage


_CANARY_ROUNDING = 5  # sub-stream of AUDIT (privacy.seeding)


@dataclass(frozen=True)
class StepResult:
    released: ReleasedAverage | ReleasedSkellamAverage | None  # what the mechanism released (None: nothing)
    reports: list[ClientReport]  # the clients whose updates are in the sum
    lr: float  # server learning rate used
    canaries_in_round: int  # canary clients in the sum
    audit_seconds: float  # time spent on the canaries


class Aggregator:
    """Global weights, the client-level mechanism, the canaries and the server optimiser's state."""

    def __init__(self, cfg: ExperimentConfig, weights: np.ndarray, *,
                 mechanism: CentralGaussianMechanism | DistributedSkellamMechanism, canaries: Canaries | None):
        self.cfg, self.mechanism, self.canaries = cfg, mechanism, canaries
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.initial_weights = self.weights.clone()  # w_0, for the canary scores <u_j, w_T - w_0>
        self.velocity: torch.Tensor | None = None  # server momentum buffer (FedAvgM)
        self._canary_ring = None  # (round, ring sum, count, seconds) of the canaries under secure aggregation

    def step(self, round_idx: int, updates: list[ActorUpdate]) -> StepResult:
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
        return self._apply(round_idx, released, reports, canaries_in_round, audit_seconds)

    def step_secure(self, round_idx: int, ring_total: np.ndarray | None, *, survivors: int, cohort: int,
                    reports: list[ClientReport]) -> StepResult:
        """Under secure aggregation: add the canaries' ring vectors to the unmasked sum (as canary clients
        taking part in the secure sum would; they add no noise share and are not survivors, so the claim
        books only the real clients' noise), decode, divide by m, apply. ``ring_total`` None: the round
        could not unmask, nothing is released and the model stays. ``cohort``: the clients announced for the
        round (their shares were mu / cohort; the mechanism tops up the drop-outs' noise)."""
        from privacy.secagg.quantization import ring_sum

        if ring_total is None:
            return StepResult(None, [], 0.0, 0, 0.0)
        canaries_in_round, audit_seconds = 0, 0.0
        if self.canaries is not None:
            canary_total, canaries_in_round, audit_seconds = self.prepare_canaries(round_idx)
            ring_total = ring_sum([ring_total, canary_total], bits=self.mechanism.config.bits)
        released = self.mechanism.release(ring_total, survivors=survivors, cohort=cohort, round_idx=round_idx)
        return self._apply(round_idx, released, reports, canaries_in_round, audit_seconds)

    def prepare_canaries(self, round_idx: int) -> tuple[np.ndarray, int, float]:
        """The ring sum of round ``round_idx``'s canaries under secure aggregation, each encoded like a client
        (clip, rotate, round) without a noise share; how many; seconds. Computed once per round, ideally
        while the clients train (the server actor is idle then)."""
        from privacy.mechanisms.distributed_dp import without_noise

        if self._canary_ring is None or self._canary_ring[0] != round_idx:
            t0 = time.perf_counter()
            step, mech = without_noise(self.mechanism.client_step(round_idx, 1)), self.mechanism
            ids = self.canaries.participants(round_idx)
            total = np.zeros(mech.quantizer.grid_dim(mech.dim), dtype=np.uint64)
            for j in ids:
                total += step.constrain_sensitivity(
                    self.canaries.dense_direction(int(j)) * mech.config.clip,
                    rng=numpy_rng(mech.noise_seed, AUDIT, _CANARY_ROUNDING, round_idx, int(j))).vector
            self._canary_ring = (round_idx, total, len(ids), time.perf_counter() - t0)
        return self._canary_ring[1:]

    def _apply(self, round_idx: int, released, reports: list[ClientReport], canaries_in_round: int,
               audit_seconds: float) -> StepResult:
        """The server optimiser and the broadcast noise on a released average (post-processing)."""
        s = self.cfg.server
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
