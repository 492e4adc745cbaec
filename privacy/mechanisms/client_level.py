"""The client-level mechanism of DP-FedAvg under a trusted server, fixed or adaptive clip, as one object.

Like pfl-research's ``AdaptiveClippingGaussianMechanism``, one object owns both halves:

- the **client half**, :class:`ClipStep`: what a client does to its delta before it leaves
  (clip to S_t, report the adaptive-clipping bit 1[||Delta_k|| <= S_t]); the server hands a
  fresh, picklable ``ClipStep`` to the client actors every round;
- the **server half**, :meth:`CentralGaussianMechanism.add_noise`: noise the clipped sum with
  the fixed denominator and, with adaptive clipping, release the noised bit share and move S_t;
- its **state** (S_t) for checkpoints, and the **event** its ledger books every round.

Formulas live in :mod:`privacy.mechanisms.gaussian` and :mod:`privacy.mechanisms.clipping`, one named function each;
this module only composes them. A secure-aggregation mechanism is a sibling with the same shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from privacy.mechanisms.clipping import adaptive_clip_update, clip_by_l2_norm
from privacy.config.experiment import ServerConfig
from privacy.mechanisms.gaussian import (NoiseDiagnostics, adaptive_clipping_delta_multiplier, dp_fedavg_aggregate,
                                noised_unclipped_fraction)
from privacy.seeding import CLIP_NOISE, SERVER_NOISE, torch_generator


@dataclass(frozen=True)
class ClippedDelta:
    delta: torch.Tensor  # the delta scaled to norm <= S (unchanged without clipping)
    norm: float  # its L2 norm before clipping
    unclipped: bool  # 1[||Delta|| <= S]: the adaptive-clipping bit (True without clipping)


@dataclass(frozen=True)
class ClipStep:
    """The client half for one round: clip to ``clip`` (0 = no clipping)."""

    clip: float

    def constrain_sensitivity(self, delta: torch.Tensor) -> ClippedDelta:
        clipped, norm = clip_by_l2_norm(delta, self.clip)
        return ClippedDelta(clipped, norm, bool(self.clip == 0 or norm <= self.clip))


@dataclass(frozen=True)
class ReleasedAverage:
    """What the server half released in one round, with its diagnostics."""

    average: torch.Tensor  # (clipped sum + noise) / m
    noise: NoiseDiagnostics  # std used and signal-to-noise ratio of the delta release
    clip: float  # S_t the round used
    unclipped_fraction_noised: float  # the released b_t (NaN without adaptive clipping)


class CentralGaussianMechanism:
    """DP-FedAvg's Gaussian mechanism with a fixed clip S or Andrew et al.'s adaptive clip S_t.

    The ledger books multiplier z for every round. With adaptive clipping the deltas get
    sigma_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) and the bit count sigma_b, which compose to z.
    Noise is drawn from streams of ``noise_seed`` (one per round and purpose).
    """

    def __init__(self, server: ServerConfig, *, noise_seed: int):
        self.config = server
        self.noise_seed = int(noise_seed)
        self.clip = server.initial_clip if server.adaptive_clip else server.clip  # S_t of the coming round
        self.delta_multiplier = (
            adaptive_clipping_delta_multiplier(noise_multiplier=server.noise_multiplier,
                                               count_noise_std=server.count_noise_std)
            if server.adaptive_clip else server.noise_multiplier)

    secure = False  # the server sees each client's clipped delta (and adds the noise)
    level = "client"  # its noise protects a client's whole data

    def client_step(self, round_idx: int = 0, cohort: int = 0) -> ClipStep:
        """What every client of a round does: clip to S_t (the same whatever the round and cohort)."""
        return ClipStep(self.clip)

    # --- the guarantees it claims and the events it books ----------------------------------------
    def ledgers(self, cfg, *, sample_rates, steps):
        """DP-SGD's record-level guarantee if the clients run it; client-level with server noise."""
        from privacy.accountants.guarantee import GaussianAccountant
        from privacy.mechanisms import guarantees as g

        record, dispatch = g.local_dpsgd(cfg, sample_rates=sample_rates, steps=steps)
        s = self.config
        client = None
        if s.noise_multiplier > 0:
            client = g.federation(GaussianAccountant(s.accountant), delta=s.delta, target=s.target_epsilon,
                                  planned=(s.noise_multiplier, s.clients_per_round / len(steps), 1))
        return g.ledgers(cfg, sample_rates=sample_rates, steps=steps, record=record, client=client,
                         dispatch_events=dispatch)

    def plan_round(self, ledgers, round_idx: int) -> None:
        """Nothing to re-plan: every round's planned events are the same (set in :meth:`ledgers`)."""

    def round_events(self, released, *, ledgers, **_) -> dict:
        """Every round books multiplier z at the client rate q (the deltas' and the bit count's together)."""
        from privacy.accountants.ledgers import FEDERATION

        z = self.config.noise_multiplier
        return {"client": {FEDERATION: (z, ledgers.client_sample_rate, 1)}} if z > 0 else {}

    def noise_multiplier_of(self, released) -> float:
        """The deltas' multiplier (below z with adaptive clipping: the bit count takes its part)."""
        return self.delta_multiplier

    def reported_clip(self, released) -> float:
        return released.clip if released.clip > 0 else math.inf

    def add_noise(self, clipped_sum: torch.Tensor, *, unclipped: int, reported: int,
                  round_idx: int) -> ReleasedAverage:
        """Release the round's noisy average; with adaptive clipping also the bit share, then move S.
        ``unclipped``: how many reporting clients had norm <= S_t; ``reported``: how many reported."""
        s, clip = self.config, self.clip
        average, diag = dp_fedavg_aggregate(
            clipped_sum, noise_multiplier=self.delta_multiplier, clip=clip, expected_cohort=s.clients_per_round,
            generator=torch_generator(self.noise_seed, SERVER_NOISE, round_idx))
        fraction = math.nan
        if s.adaptive_clip:
            fraction = noised_unclipped_fraction(
                unclipped, reported, expected_cohort=s.clients_per_round, std=s.count_noise_std,
                generator=torch_generator(self.noise_seed, CLIP_NOISE, round_idx))
            self.clip = adaptive_clip_update(clip, fraction, target_quantile=s.target_quantile,
                                             learning_rate=s.clip_lr)
        return ReleasedAverage(average, diag, clip, fraction)

    def state_dict(self) -> dict:
        return {"clip": float(self.clip)}

    def load_state_dict(self, state: dict) -> None:
        self.clip = float(state["clip"])  # adaptive clipping continues where it stopped
