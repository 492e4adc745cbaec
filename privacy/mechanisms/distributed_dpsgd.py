"""Record-level DP across silos under secure aggregation: one DP-SGD step on the union per round (FedSGD).

Each silo k Poisson-samples its records at rate q_k, sums their per-sample gradients clipped to C,
encodes the sum on the integer grid (scale s, randomised Hadamard rotation, unbiased randomised
rounding), adds its share of Skellam noise and masks the ring vector (privacy.secagg.protocol). The
server unmasks only the sum: sum_i clip_C(g_i) over a Poisson sample of the union, plus Sk(mu),
mu = (sigma s C)^2 -- one DP-SGD step on the pooled data, so a record pays the noise of one centralised
run, not the sqrt(K) more that each silo's own DP-SGD pays. The server divides by the fixed expected
batch B = sum_k q_k n_k and applies ``server.lr`` (and momentum): post-processing.

Sensitivity to one record, after rounding (a record of silo k moves only silo k's vector):

- rounding is ``floor(y + U)``, U uniform on [0, 1)^d drawn by the silo (the same distribution as
  floor(y) + Bernoulli(y - floor(y))). For a fixed U the rounded vectors of neighbouring batches differ
  coordinate-wise by |floor(y_i + U_i) - floor(y'_i + U_i)| < |y_i - y'_i| + 1, so their L2 distance is at
  most s C + sqrt(d) and their L1 distance at most sqrt(d) s C + d (and, being integers, at most Delta_2^2).
  The released distribution in each world is the mixture over U of Skellam mechanisms with these
  sensitivities, and Renyi divergence is jointly quasi-convex (van Erven & Harremoes 2014, Theorem 13):
  the mixtures' divergence is at most the worst U's. Conditional rounding (privacy.secagg.quantization) is not
  used here: its re-draws depend on the data, which breaks this coupling.
- every silo stays in the protocol in both neighbouring worlds, so every survivor's share is noise that
  protects the record, its own silo's share included (that share is the silo's secret, not the server's).
  Each of the K silos adds Sk(mu / K); a silo that drops out takes its share with it, which no record can
  cause (drop-outs are independent of the records), so the noise of the sum reveals nothing about a record.

What reaches the server: each silo's masked vector (uniform on the ring without the others' masks), the
survivor set and the unmasked sum -- never a silo's batch size nor its sample (the denominator B is fixed).
The record sampling is the silo's secret, so amplification by it holds against the server too: the
record-level epsilon is one guarantee, against the server and a fortiori against whoever sees the models.
Colluding silos (``secagg.colluders``) reveal their shares to the server: the ledger books
mu_booked = share * (survivors - colluders), never less than the record's own silo's share, as
(mu_booked, Delta_1, Delta_2, q_k, 1) for every record of a silo whose vector is in a released sum, accounted
by the Gaussian mechanism that dominates Skellam noise (privacy.accountants.skellam_dominance) exactly as the
client-level events of :mod:`privacy.mechanisms.distributed_dp`. Large scales (24 bits) make sqrt(d) small against s C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from privacy.mechanisms.distributed_dp import (
    ReleasedSkellamAverage, SkellamDiagnostics, capped_scale, check_mu, check_quantisation_state, heuristic_scale,
    near_edge, quantisation_state, sum_range)
from privacy.accountants.skellam import SkellamEvent, skellam_event
from privacy.secagg.quantization import MAX_BITS, Quantizer, padded_dim, rotate, rounded_l1_bound, to_ring
from privacy.seeding import SERVER_NOISE, derive_seed
from privacy.mechanisms.skellam import sample_skellam
from privacy.config.validation import ConfigError

_ROTATION_STREAM = 2  # sub-stream tag under SERVER_NOISE (round): not the client-level mechanism's 1


def coupled_l2_sensitivity(*, l2: float, dim: int) -> float:
    """Delta_2 on the grid of a vector that moves by at most ``l2`` before unconditional randomised rounding
    ``floor(y + U)`` with U shared by both worlds: l2 + sqrt(dim) (see the module docstring)."""
    if l2 < 0 or dim < 1:
        raise ValueError(f"l2 = {l2}, dim = {dim}: need l2 >= 0 and dim >= 1")
    return l2 + math.sqrt(dim)


@dataclass(frozen=True)
class RingVector:
    vector: np.ndarray  # uint64 in [0, 2^b): the input of privacy.secagg.protocol


@dataclass(frozen=True)
class SkellamGradientStep:
    """What a silo does with its round's clipped gradient sum; picklable, built by the server half."""

    on_gradients = True  # the silo encodes its clipped-gradient sum (:meth:`encode`), not a trained delta
    scale: float  # s: integer units per model unit
    bits: int  # b of the ring Z_2^b
    rotate: bool  # randomised Hadamard rotation before rounding
    dim: int  # length of the flat gradient
    share_variance: float  # variance of this silo's Skellam share, integer grid
    rotation_seed: int  # public seed of the round's rotation

    def encode(self, grad_sum, *, rng: np.random.Generator) -> RingVector:
        """sum_i clip_C(g_i) -> s H D (padded) -> floor(. + U) -> + Sk(share) -> mod 2^b. ``rng`` draws U and the
        share: in a deployment the silo's own secret entropy, privacy.seeding streams in simulation. The caller
        clips every per-sample gradient to C (the sensitivity assumes it, not the sum's norm)."""
        flat = (grad_sum.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(grad_sum)
                else np.asarray(grad_sum, dtype=np.float64)).reshape(-1)
        if flat.size != self.dim:
            raise ValueError(f"gradient has {flat.size} values, the mechanism was built for dim = {self.dim}")
        if not np.isfinite(flat).all():
            raise FloatingPointError("non-finite gradient sum")
        y = self.scale * (rotate(flat, seed=self.rotation_seed) if self.rotate else flat)
        grid = np.floor(y + rng.random(y.shape)).astype(np.int64)
        noised = grid + sample_skellam(self.share_variance, grid.shape, rng=rng)
        return RingVector(to_ring(noised, bits=self.bits)[0])


@dataclass(frozen=True)
class DistributedDPSGDConfig:
    clip: float  # C: per-sample gradient clip, model units
    noise_multiplier: float  # sigma: Skellam variance mu = (sigma s C)^2 on the grid (noise sigma C in model units)
    silos: int  # K: parties of the secure sum, each adding a share
    expected_batch: float  # B = sum_k q_k n_k: the fixed denominator
    bits: int = 24
    scale: float | None = None  # None = heuristic_scale from the bits
    k_stddevs: float = 4.0
    rotate: bool = True
    colluders: int = 0  # silos whose shares the server may learn: not booked as noise

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, value, rule: str) -> None:
            if not cond:
                raise ConfigError(key, value, rule)

        need(math.isfinite(self.clip) and self.clip > 0, "client.max_grad_norm", self.clip, "must be > 0")
        need(math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0, "client.noise_multiplier",
             self.noise_multiplier, "must be > 0 with secagg.level = \"record\"")
        need(isinstance(self.silos, int) and self.silos >= 2, "data.num_clients", self.silos,
             "must be >= 2 with secure aggregation")
        need(math.isfinite(self.expected_batch) and self.expected_batch > 0, "client.batch_size",
             self.expected_batch, "the expected batch over the silos must be > 0")
        need(isinstance(self.bits, int) and 2 <= self.bits <= MAX_BITS, "secagg.bits", self.bits,
             f"must be an integer in [2, {MAX_BITS}]")
        need(self.scale is None or (math.isfinite(self.scale) and self.scale > 0), "secagg.scale", self.scale,
             "must be a positive finite number")
        need(isinstance(self.colluders, int) and 0 <= self.colluders < self.silos, "secagg.colluders", self.colluders,
             f"must be an integer in [0, {self.silos})")


class DistributedDPSGD:
    """FedSGD under secure aggregation with distributed Skellam noise, for a flat model of ``dim``."""

    def __init__(self, config: DistributedDPSGDConfig, *, dim: int, noise_seed: int):
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim = {dim}: the model needs at least one parameter")
        c = self.config = config
        self.dim, self.noise_seed = dim, int(noise_seed)
        self.grid_dim = padded_dim(dim) if c.rotate else dim
        noise_std = c.noise_multiplier * c.clip
        args = dict(clip=c.clip, noise_std=noise_std, expected_cohort=c.silos, dim=self.grid_dim,
                    k_stddevs=c.k_stddevs, signal_norm=c.clip * c.expected_batch)  # B clipped gradients aligned
        self.scale = (capped_scale(heuristic_scale(bits=c.bits, **args), noise_std=noise_std) if c.scale is None
                      else float(c.scale))
        # its decoding half (the silos round with floor(y + U) in SkellamGradientStep.encode, not conditionally)
        self.quantizer = Quantizer(scale=self.scale, clip=c.clip, bits=c.bits, rotate=c.rotate, beta=0.0)
        width = sum_range(scale=self.scale, **args)
        if width > 2 ** c.bits * (1 + 1e-9):
            raise ConfigError("secagg.bits", c.bits, f"too few at scale {self.scale:.4g}: the sum's expected range "
                              f"({width:.4g}) overflows 2^{c.bits}; raise bits, lower the scale, or leave it unset")
        self.l2 = coupled_l2_sensitivity(l2=self.scale * c.clip, dim=self.grid_dim)
        self.l1 = rounded_l1_bound(l2=self.l2, dim=self.grid_dim)
        self.mu = (c.noise_multiplier * self.scale * c.clip) ** 2
        check_mu(self.mu)
        self.share = self.mu / c.silos  # one silo's share: the K of them carry mu

    @property
    def effective_noise_multiplier(self) -> float:
        """sqrt(mu) / Delta_2: sigma shrunk by the rounding's sqrt(d) (the multiplier the accounting sees)."""
        return math.sqrt(self.mu) / self.l2

    def mu_booked(self, survivors: int, threshold: int | None = None) -> float:
        """Noise that protects a record of one of ``survivors`` silos: their shares but the colluders', at least
        its own silo's: share * max(survivors - colluders, 1); its own silo's share alone if the colluders could be
        ``threshold`` of its holders (they and the server could then unmask its silo's vector)."""
        c = self.config.colluders
        if threshold is not None and c >= threshold:
            return self.share
        return self.share * max(int(survivors) - c, 1)

    def planned_event(self, *, sample_rate: float) -> SkellamEvent:
        """The event of a round in which every silo survives (calibration, budget stop)."""
        return skellam_event(mu=self.mu_booked(self.config.silos), l1=self.l1, l2=self.l2, sample_rate=sample_rate)

    def event(self, released: ReleasedSkellamAverage, *, sample_rate: float) -> SkellamEvent:
        """What the ledger books for the records of one surviving silo of rate ``sample_rate``."""
        return self.event_for(survivors=released.noise.survivors, sample_rate=sample_rate)

    def event_for(self, *, survivors: int, sample_rate: float, threshold: int | None = None) -> SkellamEvent:
        """The same from the survivors' count and the Shamir threshold (known before the sum is unmasked)."""
        return skellam_event(mu=self.mu_booked(survivors, threshold), l1=self.l1, l2=self.l2, sample_rate=sample_rate)

    def rotation_seed(self, round_idx: int) -> int:
        return derive_seed(self.noise_seed, SERVER_NOISE, round_idx, _ROTATION_STREAM)

    def client_step(self, round_idx: int, cohort: int | None = None) -> SkellamGradientStep:
        """Every silo's step of round ``round_idx`` (every silo takes part: ``cohort`` is K or None)."""
        c = self.config
        return SkellamGradientStep(self.scale, c.bits, c.rotate, self.dim, self.share, self.rotation_seed(round_idx))

    def release(self, ring_sum: np.ndarray, *, survivors: int, round_idx: int, cohort: int | None = None
                ) -> ReleasedSkellamAverage:
        """The unmasked sum decoded and divided by -B: the FedSGD step at unit learning rate (a delta)."""
        c = self.config
        total = self.quantizer.decode(ring_sum, dim=self.dim, rotation_seed=self.rotation_seed(round_idx))
        average = torch.from_numpy(-total / c.expected_batch).float()
        present = self.share * survivors
        return ReleasedSkellamAverage(average, SkellamDiagnostics(
            present, self.mu, math.sqrt(present) / (self.scale * c.expected_batch), int(survivors),
            near_edge(ring_sum, bits=c.bits), self.scale, float(average.norm()), variance_clients=present,
            cohort=c.silos))

    # --- the guarantees it claims and the events it books ----------------------------------------
    secure = True  # the server sees only the masked sum
    level = "record"

    @staticmethod
    def expected_batch(sample_rates, sizes) -> float:
        """The fixed denominator B of a run whose silos sample at ``sample_rates`` from ``sizes`` records."""
        return expected_batch(sample_rates, sizes)

    def ledgers(self, cfg, *, sample_rates, steps):
        """Record-level only, per silo, booked at release (against the server as well: the samples are secret)."""
        from privacy.mechanisms import guarantees as g

        c = cfg.client
        record = g.per_client(g.skellam(cfg.secagg.accountant, c.accountant), parties=len(steps), delta=c.delta,
                              name=g.RECORD, target=c.target_epsilon,
                              planned=[self.planned_event(sample_rate=q) for q in sample_rates])
        return g.ledgers(cfg, sample_rates=sample_rates, steps=steps, record=record)

    def plan_round(self, ledgers, round_idx: int) -> None:
        """Nothing to re-plan: every round's planned events are the same (set in :meth:`ledgers`)."""

    def round_events(self, released, *, survivors, threshold, ledgers, **_) -> dict:
        """Each surviving silo's records took one step under the booked noise; nothing if nothing was released."""
        if released is None:
            return {}
        return self.held_events(survivors, threshold=threshold, ledgers=ledgers)

    def held_events(self, survivors, *, threshold, ledgers, **_) -> dict:
        rates = ledgers.sample_rates
        return {"record": {k: self.event_for(survivors=len(survivors), sample_rate=rates[k], threshold=threshold)
                           for k in survivors}}

    def noise_multiplier_of(self, released) -> float:
        return math.nan  # no client-level noise: the silos' noise is record-level

    def reported_clip(self, released) -> float:
        return math.inf  # deltas are not clipped: the silos clip their records' gradients

    def state_dict(self) -> dict:
        return quantisation_state(self)

    def load_state_dict(self, state: dict) -> None:
        check_quantisation_state(self, state)


def expected_batch(sample_rates, sizes) -> float:
    """B = sum_k q_k n_k: the expected size of the pooled Poisson batch, the FedSGD step's fixed denominator."""
    return float(sum(float(q) * int(n) for q, n in zip(sample_rates, sizes)))


def from_experiment(cfg, *, dim: int, batch: float) -> DistributedDPSGD:
    """The record-level mechanism of an ExperimentConfig with ``secagg.level = "record"``: C =
    client.max_grad_norm, sigma = client.noise_multiplier, K = data.num_clients, B = ``batch``."""
    c, sa = cfg.client, cfg.secagg
    return DistributedDPSGD(
        DistributedDPSGDConfig(clip=c.max_grad_norm, noise_multiplier=c.noise_multiplier, silos=cfg.data.num_clients,
                               expected_batch=batch, bits=sa.bits, scale=sa.scale or None, k_stddevs=sa.k_stddevs,
                               rotate=sa.rotate, colluders=sa.colluders),
        dim=dim, noise_seed=cfg.run.noise_seed if cfg.run.noise_seed is not None else 0)
