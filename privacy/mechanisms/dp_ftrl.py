"""DP-FTRL with a banded matrix factorization: client-level DP without a sampling assumption, as one object.

The server releases the model trajectory of T rounds. With G_t the round's sum of clipped deltas (norm <= S
each) and A the workload (prefix sums, with the server's momentum folded in), a factorization A = B C lets it
release ``C G + z S Z`` (Z i.i.d. standard normal) and decode the trajectory as ``B (C G + z S Z) = A G +
z S B Z``; equivalently it adds ``z S w_t`` with ``w = C^-1 Z`` to round t's clipped sum and runs its optimiser
as usual (Kairouz et al. 2021, "Practical and Private (Deep) Learning without Sampling or Shuffling", ICML;
Denisov et al. 2022 show the guarantee holds for adaptively chosen inputs). C is the optimal b-banded
lower-triangular Toeplitz strategy, scaled to columns of norm <= 1, computed at start-up
(Choquette-Choo et al. 2023, "Amplified Banded Matrix Factorization", NeurIPS; McKenna 2024):
:mod:`privacy.mechanisms.matrix_factorization`. ``w_t`` is generated round by round from the last b - 1
outputs (never T x d).

Participation is ``min_sep`` (:mod:`privacy.mechanisms.participation`): a client of group g joins rounds
g, g + G, ... with G >= b. Columns of a b-banded C that far apart touch disjoint rows, so a client's
contributions are orthogonal and the whole run is one Gaussian mechanism of sensitivity
sqrt(sum over its rounds of ||C[:, t]||^2) <= sqrt(k) per unit clip; the client ledger books each participation
as its own Gaussian event (multiplier z / ||C[:, t]||), composed exactly (Gaussian DP), so the worst client's
epsilon is exactly that mechanism's. Neighbouring federations differ in one client that sends nothing at all
(neither delta nor clip bit: its data removed, its slot in the schedule kept); the schedule (who is in which
group) is public and fixed independently of the data, as in the papers above.

With adaptive clipping (Andrew et al. 2021) the clip-bit count, centred at 1/2, is noised independently each
round with sigma_b: a client that sends nothing moves it by 1/2; the deltas then take
sigma_Delta = (z^-2 - (2 sigma_b)^-2)^-1/2, and a participation at a full column costs exactly what one round
of multiplier z does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from privacy.mechanisms.client_level import ClipStep, ReleasedAverage
from privacy.mechanisms.clipping import adaptive_clip_update
from privacy.mechanisms.gaussian import (NoiseDiagnostics, adaptive_clipping_delta_multiplier,
                                         noised_unclipped_fraction)
from privacy.mechanisms.participation import min_sep_groups
from privacy.seeding import CLIP_NOISE, SERVER_NOISE, torch_generator


@lru_cache(maxsize=16)
def strategy(rounds: int, bands: int, momentum: float) -> tuple[float, ...]:
    """The b-banded Toeplitz strategy's coefficients (max column norm 1) for the prefix-sum workload with the
    server's heavy-ball momentum folded in. A constant learning rate only scales the workload; a cosine schedule
    is not folded in (it changes which strategy is best for accuracy, never the privacy of the one used)."""
    from privacy.mechanisms.matrix_factorization import optimal_banded_toeplitz, prefix_workload

    coefs = optimal_banded_toeplitz(rounds, bands, workload=prefix_workload(rounds, momentum=momentum))
    return tuple(float(c) for c in coefs)


def column_norms(coefs, rounds: int) -> np.ndarray:
    """||C[:, t]|| for t < T: column t holds c_0 .. c_{b-1} on rows t .. t + b - 1, cut at row T - 1."""
    c2 = np.cumsum(np.asarray(coefs, dtype=float) ** 2)
    return np.sqrt(c2[np.minimum(len(c2), rounds - np.arange(rounds)) - 1])


def participation_multipliers(server, norms: np.ndarray, z: float) -> np.ndarray:
    """Per round t, the Gaussian multiplier one participation costs: z / ||C[:, t]|| with a fixed clip; with
    adaptive clipping the deltas' ||C[:, t]||^2 / sigma_Delta^2 and the bit count's 1 / (2 sigma_b)^2 add up."""
    if not server.adaptive_clip:
        return z / norms
    sigma_b = server.count_noise_std
    delta_z = adaptive_clipping_delta_multiplier(noise_multiplier=z, count_noise_std=sigma_b)
    return (norms ** 2 / delta_z ** 2 + 1 / (2 * sigma_b) ** 2) ** -0.5


def group_totals(server, norms: np.ndarray, z: float) -> np.ndarray:
    """Per group g (rounds g, g + G, ... < T), the composed Gaussian-DP mu^2 of its whole run."""
    from privacy.accountants.guarantee import GaussianDPAccountant

    additive, multipliers = GaussianDPAccountant().additive, participation_multipliers(server, norms, z)
    totals = np.zeros(server.groups)
    for t, multiplier in enumerate(multipliers):  # in booking order, as the ledger adds them (same rounding)
        totals[t % server.groups] += additive((float(multiplier),))
    return totals


def calibrate_dp_ftrl(server, *, target_epsilon: float, delta: float) -> float:
    """The smallest z whose worst group meets ``target_epsilon`` at ``delta``: mu^2 = sum_t a_t / z^2 + b_t per
    group is solved for z group by group, the largest z taken."""
    from privacy.accountants.guarantee import GaussianDPAccountant
    from privacy.accountants.skellam_dominance import gdp_mu_for

    norms = column_norms(strategy(server.rounds, server.bands, server.momentum), server.rounds)
    mu2 = gdp_mu_for(epsilon=target_epsilon, delta=delta) ** 2
    zs = []
    for g in range(server.groups):
        n2 = norms[g::server.groups] ** 2
        fixed = 0.0 if not server.adaptive_clip else float((1 - n2).sum()) / (2 * server.count_noise_std) ** 2
        if mu2 <= fixed:
            raise ValueError(f"epsilon {target_epsilon} is below what the clip-bit count alone costs; "
                             "raise server.clip_count_std")
        zs.append(math.sqrt(float(n2.sum()) / (mu2 - fixed)))
    z = max(zs)
    epsilon = GaussianDPAccountant().epsilon_of_total
    while epsilon(float(group_totals(server, norms, z).max()), delta) > target_epsilon:  # rounding: step up
        z *= 1 + 1e-12
    return z


class BandedMatrixFactorizationMechanism:
    """DP-FTRL's correlated Gaussian noise with a fixed clip S or Andrew et al.'s adaptive clip S_t, under
    min_sep participation over ``num_clients`` clients (the groups from ``schedule_seed``, as the server's
    :class:`~privacy.mechanisms.participation.MinSepParticipation`) and a model of ``dim`` parameters. Noise
    comes from streams of ``noise_seed``."""

    secure = False  # the server sees each client's clipped delta (and adds the noise)
    level = "client"  # its noise protects a client's whole data

    def __init__(self, server, *, noise_seed: int, schedule_seed: int, num_clients: int, dim: int):
        self.config, self.noise_seed, self.dim = server, int(noise_seed), int(dim)
        self.clip = server.initial_clip if server.adaptive_clip else server.clip  # S_t of the coming round
        self.delta_multiplier = (
            adaptive_clipping_delta_multiplier(noise_multiplier=server.noise_multiplier,
                                               count_noise_std=server.count_noise_std)
            if server.adaptive_clip else server.noise_multiplier)
        self.group = min_sep_groups(num_clients, server.groups, seed=schedule_seed)
        self._use(strategy(server.rounds, server.bands, server.momentum))

    def _use(self, coefs) -> None:
        """Take ``coefs`` as the strategy C: its column norms, events, noise scale and a fresh noise stream."""
        from privacy.mechanisms.matrix_factorization import BandedNoise, inverse_coefficients

        s = self.config
        self.coefs = tuple(float(c) for c in coefs)
        self.norms = column_norms(self.coefs, s.rounds)
        self.multipliers = participation_multipliers(s, self.norms, s.noise_multiplier)
        self.noise_scale = np.sqrt(np.cumsum(inverse_coefficients(self.coefs, s.rounds) ** 2))  # std of w_t
        self._noise, self._noised = BandedNoise(self.coefs), 0  # w_0 .. w_{noised - 1} drawn

    def worst_total(self) -> float:
        """The worst group's whole run as Gaussian DP: mu^2 (what the client ledger will reach at the end)."""
        return float(group_totals(self.config, self.norms, self.config.noise_multiplier).max())

    def sensitivity(self) -> float:
        """L2 sensitivity of C G per unit clip for the worst group: sqrt(sum of its columns' squared norms)."""
        s = self.config
        return float(max(np.sqrt((self.norms[g::s.groups] ** 2).sum()) for g in range(s.groups)))

    def client_step(self, round_idx: int = 0, cohort: int = 0) -> ClipStep:
        return ClipStep(self.clip)

    # --- the guarantees it claims and the events it books ----------------------------------------
    def ledgers(self, cfg, *, sample_rates, steps):
        """DP-SGD's record-level guarantee if the clients run it; client-level, one party per client."""
        from privacy.accountants.guarantee import GaussianDPAccountant, GuaranteeLedger
        from privacy.mechanisms import guarantees as g

        record, dispatch = g.local_dpsgd(cfg, sample_rates=sample_rates, steps=steps)
        client = None
        if self.config.noise_multiplier > 0:
            client = GuaranteeLedger(GaussianDPAccountant(), parties=len(steps), delta=self.config.delta,
                                     name=g.CLIENT, target=self.config.target_epsilon)
        book = g.ledgers(cfg, sample_rates=sample_rates, steps=steps, record=record, client=client,
                         dispatch_events=dispatch)
        self.plan_round(book, 0)
        return book

    def event(self, round_idx: int) -> tuple:
        """What one participation in round ``round_idx`` costs: a Gaussian event (multiplier,)."""
        return (float(self.multipliers[round_idx]),)

    def plan_round(self, ledgers, round_idx: int) -> None:
        """Plan round ``round_idx``'s events (its group's clients; nothing for the others) for the budget check."""
        client = ledgers.guarantees["client"]
        if client is None or client.target is None or round_idx >= self.config.rounds:
            return
        on = self.group == round_idx % self.config.groups
        client.plan([self.event(round_idx) if joins else (math.inf,) for joins in on])

    def round_events(self, released, *, ledgers, admitted=(), round_idx: int, **_) -> dict:
        """Every client the round admitted books its participation (whether or not its update arrived)."""
        if self.config.noise_multiplier <= 0:
            return {}
        event, group = self.event(round_idx), round_idx % self.config.groups
        outside = [int(k) for k in admitted if self.group[int(k)] != group]
        if outside:  # the ledger's plan assumed the round's group: anyone else would be booked unplanned
            raise ValueError(f"clients {outside[:5]} admitted to round {round_idx}, not in its group {group}")
        return {"client": {int(k): event for k in admitted}}

    def noise_multiplier_of(self, released) -> float:
        return self.delta_multiplier

    def reported_clip(self, released) -> float:
        return released.clip if released.clip > 0 else math.inf

    # --- the release ---------------------------------------------------------------------------------
    def _draw(self, round_idx: int) -> torch.Tensor:
        z = torch.randn(self.dim, generator=torch_generator(self.noise_seed, SERVER_NOISE, round_idx))
        self._noised = round_idx + 1
        return self._noise.step(z)

    def add_noise(self, clipped_sum: torch.Tensor, *, unclipped: int, reported: int,
                  round_idx: int) -> ReleasedAverage:
        """Round ``round_idx``'s noisy average (clipped sum + z S_t w_t) / m; with adaptive clipping also the
        bit share, then move S. Rounds must come in order (the noise is correlated across them)."""
        s, clip = self.config, self.clip
        if round_idx != self._noised:
            raise ValueError(f"DP-FTRL noise for round {round_idx} asked after round {self._noised - 1}")
        m, std_sum = s.clients_per_round, self.delta_multiplier * clip
        signal = clipped_sum / m
        w = self._draw(round_idx).to(clipped_sum.dtype)
        if std_sum == 0:
            average, diag = signal, NoiseDiagnostics(0.0, float(signal.norm()), 0.0, math.inf)
        else:
            noise = w * (std_sum / m)
            sn, nn = float(signal.norm()), float(noise.norm())
            average = signal + noise
            diag = NoiseDiagnostics(std_sum * float(self.noise_scale[round_idx]) / m, sn, nn,
                                    sn / nn if nn > 0 else math.inf)
        fraction = math.nan
        if s.adaptive_clip:
            fraction = noised_unclipped_fraction(
                unclipped, reported, expected_cohort=m, std=s.count_noise_std,
                generator=torch_generator(self.noise_seed, CLIP_NOISE, round_idx))
            self.clip = adaptive_clip_update(clip, fraction, target_quantile=s.target_quantile,
                                             learning_rate=s.clip_lr)
        return ReleasedAverage(average, diag, clip, fraction)

    def state_dict(self) -> dict:
        return {"clip": float(self.clip), "noised_rounds": int(self._noised), "strategy": list(self.coefs)}

    def load_state_dict(self, state: dict) -> None:
        """Continue where a checkpoint stopped: the clip, the strategy C the run started with (not optimised
        again: another machine's libraries could round it differently), and the correlated noise's recent
        past, regenerated from the seed (each w_t is a function of the first t + 1 rounds' draws)."""
        coefs = [float(c) for c in state["strategy"]]
        if len(coefs) != self.config.bands:
            raise ValueError(f"the checkpoint's strategy has {len(coefs)} bands, this run {self.config.bands}")
        self.clip = float(state["clip"])
        self._use(coefs)
        for t in range(int(state["noised_rounds"])):
            self._draw(t)
