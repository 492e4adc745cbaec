"""Client-level DP-FedAvg for an untrusted server: secure aggregation with distributed Skellam noise.

The sibling of :class:`privacy.client_level.CentralGaussianMechanism`, with the same shape (one object,
both halves, its own state and the event its ledger books), for the secure-aggregation trust model:

- the **client half**, :class:`SkellamClientStep` (frozen, picklable, handed out once per round): clip
  to S, quantise (scale, randomised Hadamard rotation, conditional rounding: privacy.quantization), add
  the client's Skellam share (privacy.skellam) and map to Z_{2^b}. The ring vector then goes through
  privacy.secure_aggregation, so the server sees only the sum;
- the **server half**, :meth:`DistributedSkellamMechanism.release`: decode the unmasked ring sum
  (centre, unrotate, unscale), divide by the fixed expected cohort m, report the noise actually present;
- the **event** of a round, ``(mu_present, l1, l2, q, 1)`` (:meth:`~DistributedSkellamMechanism.event`),
  and :func:`epsilon` of a history of them: Skellam RDP (Agarwal, Kairouz, Liu 2021) under Zhu-Wang
  Poisson subsampling (privacy.subsampled_rdp), never the continuous Gaussian's formula.

Noise, precisely. z is the noise multiplier of the central mechanism it replaces: the configured
Skellam variance per coordinate, on the integer grid, is mu = (z * s * S)^2, s = 1/gamma the scale
(integer units per model unit), i.e. noise std z * S in model units, as the trusted server adds. The
ledger never counts the protected client's own share: the noise that protects client u is the other
survivors' (a client's own share is its own secret, and under add/remove neighbours it is absent with
it). So each of the m expected clients adds Sk(mu / ceil((m - 1)(1 - tau))) (tau the drop-out tolerance:
the clients over-noise by about 1 / (1 - tau)), and the ledger books mu_booked = (survivors - 1) * share,
>= mu while at least (m - 1)(1 - tau) other clients survive. Booked with it: the sensitivities *after*
rounding, Delta_2 = Quantizer.l2_sensitivity >= s S and Delta_1 = min(sqrt(d) Delta_2, Delta_2^2): the
effective multiplier sqrt(mu) / Delta_2 is a little below z, so epsilon sits above the Gaussian's at z
and approaches it as s grows (Kairouz, Liu, Steinke 2021, Section 4; Agarwal, Kairouz, Liu 2021, Section 4).
The sum itself carries survivors * share (reported as ``variance_present``).

Assumptions: add/remove-one-client neighbours, with the client's share leaving with it and the others'
shares accounted as the noise (the analysis is that of the other survivors' Skellam noise on a shift of
L1/L2 sensitivity Delta_1/Delta_2); Poisson client sampling at q; honest-but-curious server and clients
that really add their shares. Wrapping mod 2^b acts on the already-noised sum (post-processing): it costs
accuracy, not privacy; the scale rule keeps k standard deviations of head-room and :attr:`near_edge`
reports the risk. A server that colludes with c clients learns their shares and can subtract them: only
the other clients' noise is left (about mu (m - 1 - c) / (m - 1)), which the ledger does not see.

Adaptive clipping (Andrew et al. 2021) is NOT supported: the server would need the count of clients
under the clip, and under an untrusted server that count must itself be securely summed and noised
by the clients (a second secure sum with its own noise shares and its own accounting); clients here
report their clip bit only in their local diagnostics, which must not leave them in the clear.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import numpy as np
import torch

from privacy.accounting import rdp_to_epsilon
from privacy.clipping import clip_by_l2_norm
from privacy.quantization import MAX_BITS, Quantizer, from_ring, to_ring
from privacy.seeding import CLIENT, SERVER_NOISE, derive_seed, numpy_rng
from privacy.skellam import sample_skellam, share_variance, variance_present
from privacy.subsampled_rdp import INTEGER_ORDERS, skellam_rdp_of_run
from privacy.validation import ConfigError

SkellamEvent = tuple[float, float, float, float, int]  # (mu_present, l1, l2, sample_rate q, steps): plain data
_SHARE_STREAM, _ROTATION_STREAM = 1, 1  # sub-stream tags under CLIENT (cid, round) and SERVER_NOISE (round)
EDGE = 0.75  # near_edge counts coordinates of the centred sum with |v| >= EDGE * 2^(b-1)


# --- the scale rule -----------------------------------------------------------------------------
def heuristic_scale(*, bits: int, clip: float, noise_std: float, expected_cohort: int, dim: int,
                    k_stddevs: float, rho: float = 1.0, signal_norm: float | None = None) -> float:
    """Scale s = 1/gamma so that k standard deviations of one coordinate of the noised, quantised sum
    fit the signed range of Z_{2^b}:

        2^b = 2 k sqrt( rho (S m)^2 / d + sigma^2 + m gamma^2 / 4 ) / gamma,
        i.e. gamma = sqrt( (rho (S m)^2 / d + sigma^2) / (4^b / (4 k^2) - m / 4) ).

    (S m)^2 / d: m clipped vectors aligned, spread flat by the rotation (rho its flatness, 1 for
    Hadamard); sigma^2 = noise_std^2: total noise variance of the sum in model units; m gamma^2 / 4: the
    rounding of m clients. d: the rounded length (padded when rotating). Needs 4^b > m k^2, else even the
    rounding alone overflows. ``signal_norm``: a bound on the norm of the sum of the inputs when it is not
    S m (record-level secure aggregation: S times the expected batch; then m counts the rounding parties).
    Source: Kairouz, Liu, Steinke 2021 (arXiv 2102.06387), Sections 4.2/4.4; the form of
    google-parfait/tensorflow-federated ``_heuristic_scale_factor``.
    """
    room = 4.0 ** bits / (4 * k_stddevs ** 2) - expected_cohort / 4
    if room <= 0:
        raise ValueError(f"bits = {bits} too few for a cohort of {expected_cohort}: the sum's expected range "
                         f"{k_stddevs:g} std wide overflows Z_2^{bits} (need 4^bits > m k^2 = "
                         f"{expected_cohort * k_stddevs ** 2:g}); raise bits or lower the cohort or k_stddevs")
    signal = clip * expected_cohort if signal_norm is None else signal_norm
    return 1.0 / math.sqrt((rho * signal ** 2 / dim + noise_std ** 2) / room)


def sum_range(*, scale: float, clip: float, noise_std: float, expected_cohort: int, dim: int,
              k_stddevs: float, signal_norm: float | None = None) -> float:
    """Width 2 k sqrt(...) on the integer grid of the sum that :func:`heuristic_scale` fits into 2^b."""
    m = expected_cohort
    signal = clip * m if signal_norm is None else signal_norm
    return 2 * k_stddevs * math.sqrt(scale ** 2 * (signal ** 2 / dim + noise_std ** 2) + m / 4)


def near_edge(ring_sum: np.ndarray, *, bits: int) -> int:
    """Coordinates of the centred sum with |v| >= EDGE * 2^(b-1), where wrapped ones land: a function of the
    released sum alone."""
    return int(np.count_nonzero(np.abs(from_ring(ring_sum, bits=bits)) >= EDGE * 2 ** (bits - 1)))


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistributedDPConfig:
    clip: float  # S: L2 clip of each client delta, model units
    noise_multiplier: float  # z: configured Skellam variance mu = (z s S)^2 on the grid (noise z S in model units)
    expected_cohort: int  # m: fixed denominator, and the number of shares the noise is split into
    bits: int = 16  # b: ring Z_{2^b} of secure aggregation
    scale: float | None = None  # s = 1/gamma, integer units per model unit; None = heuristic_scale from bits
    k_stddevs: float = 4.0  # head-room of the scale rule: std of the sum that fit half the ring
    rotate: bool = True  # randomised Hadamard rotation before rounding (flattens: fewer bits)
    beta: float = math.exp(-0.5)  # conditional rounding; 0 = unconditional (larger L2 sensitivity)
    dropout_tolerance: float = 0.0  # tau: shares sized so that m (1 - tau) survivors still carry mu
    max_tries: int = 1000  # conditional rounding draws before an error

    def __post_init__(self) -> None:
        _positive("secagg.clip", self.clip)
        _check(math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0, "secagg.noise_multiplier",
               self.noise_multiplier, "must be a finite number >= 0 (0: no client-level DP)")
        _check(isinstance(self.expected_cohort, int) and self.expected_cohort >= 2, "server.clients_per_round",
               self.expected_cohort, "must be an integer >= 2 with secure aggregation: a client's noise is the "
               "others' shares")
        _check(isinstance(self.bits, int) and 2 <= self.bits <= MAX_BITS, "secagg.bits", self.bits,
               f"must be an integer in [2, {MAX_BITS}]")
        if self.scale is not None:
            _positive("secagg.scale", self.scale)
        _positive("secagg.k_stddevs", self.k_stddevs)
        _check(0 <= self.beta < 1, "secagg.beta", self.beta, "must be in [0, 1); 0 = unconditional rounding")
        _check(0 <= self.dropout_tolerance < 1, "secagg.dropout_tolerance", self.dropout_tolerance,
               "must be in [0, 1): the share of clients that may drop out with the noise still >= mu")
        _check(isinstance(self.max_tries, int) and self.max_tries >= 1, "secagg.max_tries", self.max_tries,
               "must be an integer >= 1")
        _check(4.0 ** self.bits > self.expected_cohort * self.k_stddevs ** 2, "secagg.bits", self.bits,
               f"too few for a cohort of {self.expected_cohort}: the sum's expected range overflows Z_2^b "
               f"(need 4^bits > m k^2 = {self.expected_cohort * self.k_stddevs ** 2:g}); raise bits, lower "
               "the cohort or k_stddevs")

    @property
    def noise_std_full_cohort(self) -> float:
        """Noise std of the sum in model units when all m clients survive: z S sqrt(m / ceil(m (1 - tau)))."""
        m = self.expected_cohort
        return self.noise_multiplier * self.clip * math.sqrt(m * share_variance(
            total_variance=1.0, clients=m - 1, dropout_tolerance=self.dropout_tolerance))


def _check(cond: bool, key: str, value, rule: str) -> None:
    if not cond:
        raise ConfigError(key, value, rule)


def _positive(key: str, value) -> None:
    _check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, key, value,
           "must be a positive finite number")


# --- the client half ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RingUpdate:
    vector: np.ndarray  # uint64 in [0, 2^b): the input of privacy.secure_aggregation
    wrapped: int  # coordinates of this client's noised integer vector outside the ring's signed range
    norm: float  # ||Delta||_2 before clipping
    unclipped: bool  # 1[||Delta|| <= S] (local diagnostic only: see the module docstring)
    rounded_norm: float  # ||rounded||_2 on the grid (<= the L2 sensitivity)
    rounding_tries: int  # draws of conditional rounding


@dataclass(frozen=True)
class SkellamClientStep:
    """What a client does to its delta in one round; picklable, built by the server half."""

    quantizer: Quantizer
    dim: int  # length of the flat delta
    share_variance: float  # variance of this client's Skellam share, integer grid
    rotation_seed: int  # public seed of the round's rotation (shared by the cohort and the server)

    def constrain_sensitivity(self, delta, *, rng: np.random.Generator) -> RingUpdate:
        """Delta -> clip_S -> s H D (padded) -> conditional rounding -> + Sk(share) -> mod 2^b.
        ``rng`` draws the rounding and the share: in a deployment it must be the client's own secret
        (a server that knew the seed could subtract the share); privacy.seeding streams in simulation."""
        flat = (delta.detach().to("cpu", torch.float64) if torch.is_tensor(delta)
                else torch.from_numpy(np.asarray(delta, dtype=np.float64))).reshape(-1)
        if flat.numel() != self.dim:
            raise ValueError(f"delta has {flat.numel()} values, the mechanism was built for dim = {self.dim}")
        clipped, norm = clip_by_l2_norm(flat, self.quantizer.clip)
        grid, diag = self.quantizer.encode(clipped.numpy(), rng=rng, rotation_seed=self.rotation_seed)
        noised = grid + sample_skellam(self.share_variance, grid.shape, rng=rng)
        ring, wrapped = to_ring(noised, bits=self.quantizer.bits)
        return RingUpdate(ring, wrapped, norm, bool(norm <= self.quantizer.clip), diag.rounded_norm,
                          diag.rounding_tries)


def client_rng(*, noise_seed: int, client_id: int, round_idx: int) -> np.random.Generator:
    """Simulation stream of client ``client_id``'s rounding and share in round ``round_idx``.
    Reproducible on purpose; a deployment draws these from the client's own secure entropy."""
    return numpy_rng(noise_seed, CLIENT, client_id, round_idx, _SHARE_STREAM)


# --- the server half ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SkellamDiagnostics:
    variance_present: float  # mu_present: Skellam variance per coordinate in the sum, integer grid
    variance_configured: float  # mu = (z s S)^2
    std: float  # noise std per coordinate of the released average, model units: sqrt(mu_present) / (s m)
    survivors: int  # clients whose noise share is in the sum
    near_edge: int  # coordinates of the centred sum with |v| >= 3/4 2^(b-1), where wrapped ones land; with the
    #                 heuristic scale an unwrapped coordinate gets there w.p. <= 2 Phi(-3 k / 4) (0.27 % at k = 4)
    scale: float  # s in use
    signal_norm: float  # ||average||_2 (noise included: the server never sees the signal alone)


@dataclass(frozen=True)
class ReleasedSkellamAverage:
    average: torch.Tensor  # decoded ring sum / m, float32, length dim
    noise: SkellamDiagnostics


class DistributedSkellamMechanism:
    """DP-FedAvg under secure aggregation with distributed Skellam noise, for a flat model of ``dim``."""

    def __init__(self, config: DistributedDPConfig, *, dim: int, noise_seed: int):
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim = {dim}: the model needs at least one parameter")
        c = self.config = config
        self.dim, self.noise_seed = dim, int(noise_seed)
        self.grid_dim = Quantizer(scale=1.0, clip=c.clip, bits=c.bits, rotate=c.rotate).grid_dim(dim)
        args = dict(bits=c.bits, clip=c.clip, noise_std=c.noise_std_full_cohort, expected_cohort=c.expected_cohort,
                    dim=self.grid_dim, k_stddevs=c.k_stddevs)
        self.scale = heuristic_scale(**args) if c.scale is None else float(c.scale)
        width = sum_range(scale=self.scale, **{k: v for k, v in args.items() if k != "bits"})
        if width > 2 ** c.bits * (1 + 1e-9):
            raise ConfigError("secagg.bits", c.bits, f"too few for a cohort of {c.expected_cohort} at scale "
                              f"{self.scale:.4g}: the sum's expected range ({width:.4g}) overflows 2^{c.bits}; "
                              "raise bits, lower the scale, or leave scale unset")
        self.quantizer = Quantizer(scale=self.scale, clip=c.clip, bits=c.bits, rotate=c.rotate, beta=c.beta,
                                   max_tries=c.max_tries)
        self.l2 = self.quantizer.l2_sensitivity(dim)  # Delta_2 after rounding, integer grid
        self.l1 = self.quantizer.l1_sensitivity(dim)  # Delta_1 after rounding, integer grid
        self.mu = (c.noise_multiplier * self.scale * c.clip) ** 2  # configured total variance, integer grid
        self.share = share_variance(total_variance=self.mu, clients=c.expected_cohort - 1,
                                    dropout_tolerance=c.dropout_tolerance)

    def mu_booked(self, survivors: int) -> float:
        """The noise variance the ledger books for a round with ``survivors``: the other survivors' shares,
        (survivors - 1) * share (>= mu when all m expected clients survive)."""
        return variance_present(share_variances=self.share, survivors=max(int(survivors) - 1, 0))

    def planned_event(self, *, sample_rate: float) -> SkellamEvent:
        """The event calibration and the budget stop plan with: the configured mu, which the other survivors
        carry as long as at most a fraction tau of the other m - 1 expected clients is missing (drop-outs, or
        a Poisson cohort smaller than m). A round short of more books less noise, and its epsilon is higher."""
        return skellam_event(mu=self.mu, l1=self.l1, l2=self.l2, sample_rate=sample_rate)

    def rotation_seed(self, round_idx: int) -> int:
        """Public seed of round ``round_idx``'s rotation (the server may know it; it protects nothing)."""
        return derive_seed(self.noise_seed, SERVER_NOISE, round_idx, _ROTATION_STREAM)

    def client_step(self, round_idx: int) -> SkellamClientStep:
        return SkellamClientStep(self.quantizer, self.dim, self.share, self.rotation_seed(round_idx))

    def release(self, ring_sum: np.ndarray, *, survivors: int, round_idx: int) -> ReleasedSkellamAverage:
        """Decode the unmasked sum mod 2^b of the survivors' ring vectors and divide by the fixed m:
        average = unrotate(centre(sum) / s) / m. ``survivors``: clients whose input (and share) is in it."""
        c, q = self.config, self.quantizer
        total = q.decode(ring_sum, dim=self.dim, rotation_seed=self.rotation_seed(round_idx))
        average = torch.from_numpy(total / c.expected_cohort).float()
        present = variance_present(share_variances=self.share, survivors=survivors)
        return ReleasedSkellamAverage(average, SkellamDiagnostics(
            present, self.mu, math.sqrt(present) / (self.scale * c.expected_cohort), int(survivors),
            near_edge(ring_sum, bits=c.bits),
            self.scale, float(average.norm())))

    def event(self, released: ReleasedSkellamAverage, *, sample_rate: float) -> SkellamEvent:
        """What the client-level ledger books for the round: (mu_booked, Delta_1, Delta_2, q, 1), mu_booked the
        other survivors' noise (:meth:`mu_booked`)."""
        return skellam_event(mu=self.mu_booked(released.noise.survivors), l1=self.l1, l2=self.l2,
                             sample_rate=sample_rate)

    def state_dict(self) -> dict:
        return quantisation_state(self)

    def load_state_dict(self, state: dict) -> None:
        check_quantisation_state(self, state)


def quantisation_state(mechanism) -> dict:
    """A distributed mechanism's checkpoint: nothing adaptive, only its quantisation (clip, scale, bits), recorded
    so that a resume cannot change it silently."""
    return {"clip": float(mechanism.config.clip), "scale": float(mechanism.scale), "bits": int(mechanism.config.bits)}


def check_quantisation_state(mechanism, state: dict) -> None:
    """Refuse to resume a checkpoint quantised otherwise than ``mechanism``."""
    mine = quantisation_state(mechanism)
    if (float(state["clip"]), float(state["scale"]), int(state["bits"])) != (mine["clip"], mine["scale"], mine["bits"]):
        raise ValueError(f"checkpoint quantised with {state}, this run with {mine}: resume with the same secagg "
                         "settings")


# --- accounting ---------------------------------------------------------------------------------
def skellam_event(*, mu: float, l1: float, l2: float, sample_rate: float, steps: int = 1) -> SkellamEvent:
    if mu < 0 or l1 < 0 or l2 < 0 or not 0 <= sample_rate <= 1 or steps < 0:
        raise ValueError(f"invalid Skellam event mu={mu}, l1={l1}, l2={l2}, q={sample_rate}, steps={steps}")
    return float(mu), float(l1), float(l2), float(sample_rate), int(steps)


def merge_events(events: Iterable[SkellamEvent]) -> list[SkellamEvent]:
    """Equal (mu, l1, l2, q) merged with summed steps; zero-step or q = 0 events dropped (they spend nothing)."""
    merged: dict[tuple[float, float, float, float], int] = {}
    for e in events:
        mu, l1, l2, q, steps = skellam_event(mu=e[0], l1=e[1], l2=e[2], sample_rate=e[3], steps=e[4])
        if steps and q > 0:
            merged[(mu, l1, l2, q)] = merged.get((mu, l1, l2, q), 0) + steps
    return [(*k, s) for k, s in merged.items()]


@lru_cache(maxsize=4096)
def _rdp_one_step(mu: float, l1: float, l2: float, q: float) -> np.ndarray:
    return skellam_rdp_of_run(mu=mu, l1=l1, l2=l2, sample_rate=q, steps=1, orders=INTEGER_ORDERS)


def rdp(events: Iterable[SkellamEvent]) -> np.ndarray:
    """RDP at INTEGER_ORDERS of a history: sum over events of steps x Zhu-Wang(Skellam RDP) (Mironov 2017, Prop. 1)."""
    out = np.zeros(len(INTEGER_ORDERS))
    for mu, l1, l2, q, steps in merge_events(events):
        out = out + (np.full(len(INTEGER_ORDERS), np.inf) if mu == 0 else _rdp_one_step(mu, l1, l2, q) * steps)
    return out


def epsilon(events: Iterable[SkellamEvent], *, delta: float) -> float:
    """epsilon at ``delta`` of a history of Skellam events (0 for none, inf if a round had no noise):
    Skellam RDP (privacy.skellam.skellam_rdp) -> Zhu-Wang Poisson subsampling (privacy.subsampled_rdp)
    -> additive composition -> (eps, delta) by privacy.accounting.rdp_to_epsilon (Balle et al. 2020)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta}: must be in (0, 1)")
    merged = merge_events(events)
    if not merged:
        return 0.0
    return rdp_to_epsilon(orders=INTEGER_ORDERS, rdp=rdp(merged), delta=delta)


def without_noise(step: SkellamClientStep) -> SkellamClientStep:
    """The same step adding no share: for audit canaries (the claim books no noise for them) and for the
    deliberate-bug test. Never for a real client."""
    return dataclasses.replace(step, share_variance=0.0)


def from_experiment(cfg, *, dim: int) -> DistributedSkellamMechanism:
    """The mechanism of an ExperimentConfig with ``secagg.enabled``: S = server.clip, z =
    server.noise_multiplier, m = server.clients_per_round, the rest from ``[secagg]``. Raises ConfigError
    when the bits cannot hold the sum at this model size (checked before Ray starts: orchestrator.resolve)."""
    s, sa = cfg.server, cfg.secagg
    return DistributedSkellamMechanism(
        DistributedDPConfig(clip=s.clip, noise_multiplier=s.noise_multiplier, expected_cohort=s.clients_per_round,
                            bits=sa.bits, scale=sa.scale or None, k_stddevs=sa.k_stddevs, rotate=sa.rotate,
                            dropout_tolerance=sa.dropout_tolerance),
        dim=dim, noise_seed=cfg.run.noise_seed if cfg.run.noise_seed is not None else 0)
