"""Client-level DP-FedAvg for an untrusted server: secure aggregation with distributed Skellam noise.

The sibling of :class:`privacy.mechanisms.client_level.CentralGaussianMechanism`, with the same shape (one object,
both halves, its own state and the event its ledger books), for the secure-aggregation trust model:

- the **client half**, :class:`SkellamClientStep` (frozen, picklable, handed out once per round): clip
  to S, quantise (scale, randomised Hadamard rotation, conditional rounding: privacy.secagg.quantization), add
  the client's Skellam share (privacy.mechanisms.skellam) and map to Z_{2^b}. The ring vector then goes through
  privacy.secagg.protocol, so the server sees only the sum;
- the **server half**, :meth:`DistributedSkellamMechanism.release`: decode the unmasked ring sum
  (centre, unrotate, unscale), divide by the fixed expected cohort m, report the noise actually present;
- the **event** of a round, ``(mu_present, l1, l2, q, 1)`` (:meth:`~DistributedSkellamMechanism.event`),
  accounted by :func:`privacy.accountants.skellam.epsilon` as Skellam noise, never by the continuous
  Gaussian's formula.

Noise, precisely. z is the noise multiplier of the central mechanism it replaces: the released sum
carries Skellam variance mu = (z s S)^2 per coordinate on the integer grid, s = 1/gamma the scale (integer
units per model unit), i.e. noise std z S in model units, as the trusted server adds -- whatever the cohort:

- each of the n clients of the realised cohort (announced before upload) adds a share Sk(mu / n);
- if only s < n survive, the server adds Sk(mu (n - s) / n) before it releases anything (:meth:`release`),
  so the released sum always carries exactly Sk(mu). Its noise depends neither on the cohort nor on the
  drop-outs: no variance channel reveals who took part.

Two guarantees, two events per released round (docs/privacy.md, "Threat model"):

- *against whoever sees only the released models* (``eps_client``): add/remove-one-client neighbours with
  Poisson amplification at q = m / N; the event ``(mu, Delta_1, Delta_2, q, 1)`` (:meth:`event`);
- *against the server*, which draws the cohort and sees who uploads (``eps_client_server_max``): the
  client's contribution replaced by zero while it still adds its secret share; no amplification; the noise
  is the survivors' shares, the client's own included, less those of ``secagg.colluders`` clients whose
  shares the server may learn (never the protected client's own); the server's top-up is its own and does
  not count. The event ``(share (survivors - colluders), Delta_1, Delta_2, 1, 1)`` is booked for each
  survivor (:meth:`server_event`) and composed over the rounds that client joined.

Sensitivities after rounding: Delta_2 = Quantizer.l2_sensitivity >= s S and Delta_1 = min(sqrt(d) Delta_2,
Delta_2^2). :func:`privacy.accountants.skellam.epsilon` accounts a history exactly by the Gaussian mechanism that dominates Skellam noise
(privacy.accountants.skellam_dominance; Zhu, Dong, Wang 2022); ``secagg.accountant = "zhu_wang"`` selects the general
RDP subsampling bound instead (Skellam RDP of Agarwal, Kairouz, Liu 2021 under Zhu & Wang 2019), a valid
but looser bound. Assumptions: honest-but-curious server and clients that really add their shares; the
server's masking graph of the survivors connected (else nothing is released: privacy.secagg.protocol).
Wrapping mod 2^b acts on the already-noised sum (post-processing): it costs accuracy, not privacy; the scale
rule keeps k standard deviations of head-room and :attr:`near_edge` reports the risk.

Adaptive clipping (Andrew et al. 2021) is NOT supported: the server would need the count of clients
under the clip, and under an untrusted server that count must itself be securely summed and noised
by the clients (a second secure sum with its own noise shares and its own accounting); clients here
report their clip bit only in their local diagnostics, which must not leave them in the clear.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from privacy.mechanisms.clipping import clip_by_l2_norm
from privacy.secagg.quantization import MAX_BITS, Quantizer, from_ring, to_ring
from privacy.secagg.quantization import ring_sum as ring_sum_of
from privacy.seeding import CLIENT, SERVER_NOISE, derive_seed, numpy_rng
from privacy.mechanisms.skellam import sample_skellam
from privacy.accountants.skellam import SkellamEvent, skellam_event
from privacy.config.validation import ConfigError

_SHARE_STREAM, _ROTATION_STREAM, _TOP_UP_STREAM = 1, 1, 3  # sub-streams under CLIENT (cid, round), SERVER_NOISE (round)
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
    colluders: int = 0  # clients whose noise shares the server may learn: not counted against the server
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
        _check(isinstance(self.colluders, int) and 0 <= self.colluders < self.expected_cohort, "secagg.colluders",
               self.colluders, f"must be an integer in [0, {self.expected_cohort}) (server.clients_per_round)")
        _check(isinstance(self.max_tries, int) and self.max_tries >= 1, "secagg.max_tries", self.max_tries,
               "must be an integer >= 1")
        _check(4.0 ** self.bits > self.expected_cohort * self.k_stddevs ** 2, "secagg.bits", self.bits,
               f"too few for a cohort of {self.expected_cohort}: the sum's expected range overflows Z_2^b "
               f"(need 4^bits > m k^2 = {self.expected_cohort * self.k_stddevs ** 2:g}); raise bits, lower "
               "the cohort or k_stddevs")

    @property
    def noise_std(self) -> float:
        """Noise std of the released sum in model units, whatever the cohort: z S."""
        return self.noise_multiplier * self.clip


def _check(cond: bool, key: str, value, rule: str) -> None:
    if not cond:
        raise ConfigError(key, value, rule)


def _positive(key: str, value) -> None:
    _check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, key, value,
           "must be a positive finite number")


# --- the client half ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RingUpdate:
    vector: np.ndarray  # uint64 in [0, 2^b): the input of privacy.secagg.protocol
    wrapped: int  # coordinates of this client's noised integer vector outside the ring's signed range
    norm: float  # ||Delta||_2 before clipping
    unclipped: bool  # 1[||Delta|| <= S] (local diagnostic only: see the module docstring)
    rounded_norm: float  # ||rounded||_2 on the grid (<= the L2 sensitivity)
    rounding_tries: int  # draws of conditional rounding


@dataclass(frozen=True)
class SkellamClientStep:
    """What a client does to its delta in one round; picklable, built by the server half."""

    on_gradients = False  # the client trains and encodes its delta (:meth:`constrain_sensitivity`)
    quantizer: Quantizer
    dim: int  # length of the flat delta
    share_variance: float  # variance of this client's Skellam share, integer grid
    rotation_seed: int  # public seed of the round's rotation (shared by the cohort and the server)

    def constrain_sensitivity(self, delta, *, rng: np.random.Generator) -> RingUpdate:
        """Delta -> clip_S -> s H D (padded) -> conditional rounding -> + Sk(share) -> mod 2^b.
        ``rng`` draws the rounding and the share: in a deployment it must be the client's own secret
        (a server that knew the seed could subtract the share); privacy.seeding streams in simulation."""
        clipped, norm = clip_by_l2_norm(self._flat(delta), self.quantizer.clip)
        grid, diag = self.quantizer.encode(clipped.numpy(), rng=rng, rotation_seed=self.rotation_seed)
        noised = grid + sample_skellam(self.share_variance, grid.shape, rng=rng)
        ring, wrapped = to_ring(noised, bits=self.quantizer.bits)
        return RingUpdate(ring, wrapped, norm, bool(norm <= self.quantizer.clip), diag.rounded_norm,
                          diag.rounding_tries)

    def _flat(self, delta) -> torch.Tensor:
        """A delta (tensor or array) as one float64 CPU vector of ``dim`` values."""
        flat = (delta.detach().to("cpu", torch.float64) if torch.is_tensor(delta)
                else torch.from_numpy(np.asarray(delta, dtype=np.float64))).reshape(-1)
        if flat.numel() != self.dim:
            raise ValueError(f"delta has {flat.numel()} values, the mechanism was built for dim = {self.dim}")
        return flat


def client_rng(*, noise_seed: int, client_id: int, round_idx: int) -> np.random.Generator:
    """Simulation stream of client ``client_id``'s rounding and share in round ``round_idx``.
    Reproducible on purpose; a deployment draws these from the client's own secure entropy."""
    return numpy_rng(noise_seed, CLIENT, client_id, round_idx, _SHARE_STREAM)


# --- the server half ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SkellamDiagnostics:
    variance_present: float  # Skellam variance per coordinate in the released sum, integer grid (mu once released)
    variance_configured: float  # mu = (z s S)^2
    std: float  # noise std per coordinate of the released average, model units: sqrt(variance_present) / (s m)
    survivors: int  # clients whose input and noise share are in the sum
    near_edge: int  # coordinates of the centred sum with |v| >= 3/4 2^(b-1), where wrapped ones land; with the
    #                 heuristic scale an unwrapped coordinate gets there w.p. <= 2 Phi(-3 k / 4) (0.27 % at k = 4)
    scale: float  # s in use
    signal_norm: float  # ||average||_2 (noise included: the server never sees the signal alone)
    variance_clients: float = math.nan  # the survivors' shares alone (the rest is the server's top-up)
    cohort: int = 0  # n: clients announced for the round, each share mu / n


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
        args = dict(bits=c.bits, clip=c.clip, noise_std=c.noise_std, expected_cohort=c.expected_cohort,
                    dim=self.grid_dim, k_stddevs=c.k_stddevs)
        self.scale = capped_scale(heuristic_scale(**args), noise_std=c.noise_std) if c.scale is None else float(c.scale)
        width = sum_range(scale=self.scale, **{k: v for k, v in args.items() if k != "bits"})
        if width > 2 ** c.bits * (1 + 1e-9):
            raise ConfigError("secagg.bits", c.bits, f"too few for a cohort of {c.expected_cohort} at scale "
                              f"{self.scale:.4g}: the sum's expected range ({width:.4g}) overflows 2^{c.bits}; "
                              "raise bits, lower the scale, or leave scale unset")
        self.quantizer = Quantizer(scale=self.scale, clip=c.clip, bits=c.bits, rotate=c.rotate, beta=c.beta,
                                   max_tries=c.max_tries)
        self.l2 = self.quantizer.l2_sensitivity(dim)  # Delta_2 after rounding, integer grid
        self.l1 = self.quantizer.l1_sensitivity(dim)  # Delta_1 after rounding, integer grid
        self.mu = (c.noise_multiplier * self.scale * c.clip) ** 2  # the released sum's variance, integer grid
        check_mu(self.mu)

    def share(self, cohort: int) -> float:
        """Variance of each client's share in a round whose realised cohort has ``cohort`` clients: mu / n."""
        if cohort < 1:
            raise ValueError(f"cohort = {cohort}: a round needs at least one client")
        return self.mu / cohort

    def mu_against_server(self, *, survivors: int, cohort: int, threshold: int | None = None) -> float:
        """The noise that protects a survivor against the server: every survivor's share, its own included (its
        secret), less the shares of ``colluders`` other survivors: share (survivors - colluders), at least its own.
        If the colluders could be ``threshold`` (t) of its holders, they and the server can unmask its vector:
        then its own share alone."""
        c = self.config.colluders
        if threshold is not None and c >= threshold:
            return self.share(cohort)
        return self.share(cohort) * max(int(survivors) - c, 1)

    def planned_event(self, *, sample_rate: float) -> SkellamEvent:
        """The public event of every released round (calibration and the budget stop plan with it): exactly
        the round's event, since the released sum always carries mu."""
        return skellam_event(mu=self.mu, l1=self.l1, l2=self.l2, sample_rate=sample_rate)

    def planned_server_event(self) -> SkellamEvent:
        """The against-the-server event of a round with the expected cohort m, everyone surviving (calibration of
        ``secagg.server_target_epsilon``); a smaller cohort or drop-outs book less noise, which the budget stop
        checks on the booked events."""
        m = self.config.expected_cohort
        return skellam_event(mu=self.mu_against_server(survivors=m, cohort=m), l1=self.l1, l2=self.l2,
                             sample_rate=1.0)

    def rotation_seed(self, round_idx: int) -> int:
        """Public seed of round ``round_idx``'s rotation (the server may know it; it protects nothing)."""
        return derive_seed(self.noise_seed, SERVER_NOISE, round_idx, _ROTATION_STREAM)

    def client_step(self, round_idx: int, cohort: int) -> SkellamClientStep:
        """What each of the round's ``cohort`` announced clients does: its share is mu / cohort."""
        return SkellamClientStep(self.quantizer, self.dim, self.share(cohort), self.rotation_seed(round_idx))

    def top_up(self, ring_sum: np.ndarray, *, survivors: int, cohort: int, round_idx: int) -> np.ndarray:
        """The server's share of drop-outs: + Sk(mu (cohort - survivors) / cohort) mod 2^b, so that the released
        sum carries mu whatever survived. From the server's own stream (it knows this noise: it protects
        against the public only, and is never counted against the server)."""
        missing = int(cohort) - int(survivors)
        if missing <= 0:
            return ring_sum
        noise = sample_skellam(self.share(cohort) * missing, ring_sum.shape,
                               rng=numpy_rng(self.noise_seed, SERVER_NOISE, round_idx, _TOP_UP_STREAM))
        ring, _ = to_ring(noise, bits=self.config.bits)
        return ring_sum_of([ring_sum, ring], bits=self.config.bits)

    def release(self, ring_sum: np.ndarray, *, survivors: int, cohort: int, round_idx: int
                ) -> ReleasedSkellamAverage:
        """Top up the noise of drop-outs, decode the unmasked sum mod 2^b and divide by the fixed m:
        average = unrotate(centre(sum) / s) / m. ``survivors``: clients whose input (and share) is in the sum;
        ``cohort``: the clients announced for the round (the shares were mu / cohort)."""
        c, q = self.config, self.quantizer
        if not 1 <= survivors <= cohort:
            raise ValueError(f"survivors = {survivors}, cohort = {cohort}: need 1 <= survivors <= cohort")
        ring_sum = self.top_up(ring_sum, survivors=survivors, cohort=cohort, round_idx=round_idx)
        total = q.decode(ring_sum, dim=self.dim, rotation_seed=self.rotation_seed(round_idx))
        average = torch.from_numpy(total / c.expected_cohort).float()
        return ReleasedSkellamAverage(average, SkellamDiagnostics(
            self.mu, self.mu, math.sqrt(self.mu) / (self.scale * c.expected_cohort), int(survivors),
            near_edge(ring_sum, bits=c.bits), self.scale, float(average.norm()),
            variance_clients=self.share(cohort) * survivors, cohort=int(cohort)))

    def event(self, released: ReleasedSkellamAverage, *, sample_rate: float) -> SkellamEvent:
        """The public event of a released round: (mu, Delta_1, Delta_2, q, 1), Poisson rate q = m / N."""
        return skellam_event(mu=released.noise.variance_present, l1=self.l1, l2=self.l2, sample_rate=sample_rate)

    def server_event(self, released: ReleasedSkellamAverage) -> SkellamEvent:
        """The against-the-server event booked for each survivor: (mu_against_server, Delta_1, Delta_2, 1, 1)."""
        return self.server_event_for(survivors=released.noise.survivors, cohort=released.noise.cohort)

    def server_event_for(self, *, survivors: int, cohort: int, threshold: int | None = None) -> SkellamEvent:
        """The against-the-server event of a round with ``survivors`` of ``cohort`` announced clients and Shamir
        threshold t (known to the server before it unmasks: the budget is checked on it first)."""
        return skellam_event(mu=self.mu_against_server(survivors=survivors, cohort=cohort, threshold=threshold),
                             l1=self.l1, l2=self.l2, sample_rate=1.0)

    # --- the guarantees it claims and the events it books ----------------------------------------
    secure = True  # the server sees only the masked sum
    level = "client"

    def ledgers(self, cfg, *, sample_rates, steps):
        """DP-SGD's record-level guarantee if the clients run it; with noise, client-level against whoever sees
        the released models (sampled) and against the server (each client, unsampled)."""
        from privacy.mechanisms import guarantees as g

        record, dispatch = g.local_dpsgd(cfg, sample_rates=sample_rates, steps=steps)
        s, sa, n = cfg.server, cfg.secagg, len(steps)
        if s.noise_multiplier == 0:  # no noise, no client-level guarantee against anyone
            return g.ledgers(cfg, sample_rates=sample_rates, steps=steps, record=record, dispatch_events=dispatch,
                             unclaimed={"client_server": math.inf})
        client = g.federation(g.skellam(sa.accountant, s.accountant), delta=s.delta, target=s.target_epsilon,
                              planned=self.planned_event(sample_rate=s.clients_per_round / n))
        server = g.per_client(g.skellam(sa.accountant, s.accountant, sampled=False), parties=n, delta=s.delta,
                              name=g.CLIENT_SERVER, target=sa.server_target_epsilon,
                              planned=[self.planned_server_event()] * n)
        return g.ledgers(cfg, sample_rates=sample_rates, steps=steps, record=record, client=client,
                         client_server=server, dispatch_events=dispatch)

    def plan_round(self, ledgers, round_idx: int) -> None:
        """Nothing to re-plan: every round's planned events are the same (set in :meth:`ledgers`)."""

    def round_events(self, released, *, survivors, cohort, threshold, ledgers, **_) -> dict:
        """A released round's public event and, for each survivor, its event against the server; nothing for a
        round that released nothing."""
        from privacy.accountants.ledgers import FEDERATION

        if released is None or ledgers.guarantees["client"] is None:
            return {}
        against_server = self.server_event_for(survivors=len(survivors), cohort=cohort, threshold=threshold)
        return {"client": {FEDERATION: self.event(released, sample_rate=ledgers.client_sample_rate)},
                "client_server": {k: against_server for k in survivors}}

    def held_events(self, survivors, *, cohort, threshold, ledgers) -> dict:
        """What the survivors would book against the server: checked before anything is unmasked."""
        event = self.server_event_for(survivors=len(survivors), cohort=cohort, threshold=threshold)
        return {"client_server": {k: event for k in survivors}}

    def noise_multiplier_of(self, released) -> float:
        return math.sqrt(released.noise.variance_present) / self.l2 if released is not None else math.nan

    def reported_clip(self, released) -> float:
        return self.config.clip

    def state_dict(self) -> dict:
        return quantisation_state(self)

    def load_state_dict(self, state: dict) -> None:
        check_quantisation_state(self, state)


def capped_scale(scale: float, *, noise_std: float) -> float:
    """The scale, lowered if needed so that the noise variance (noise_std s)^2 stays within what the exact
    accountant evaluates (privacy.accountants.skellam_dominance.MU_MAX): beyond it the rounding is already negligible."""
    from privacy.accountants.skellam_dominance import MU_MAX

    if noise_std > 0:
        return min(scale, 0.999 * math.sqrt(MU_MAX) / noise_std)
    return scale


def check_mu(mu: float) -> None:
    from privacy.accountants.skellam_dominance import MU_MAX

    if mu > MU_MAX:
        raise ConfigError("secagg.scale", mu, f"gives a noise variance of {mu:.4g} on the grid, above the {MU_MAX:g} "
                          "the exact accountant evaluates; lower secagg.scale or leave it unset")


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
                            colluders=sa.colluders),
        dim=dim, noise_seed=cfg.run.noise_seed if cfg.run.noise_seed is not None else 0)
