"""Who takes part in a round, under either participation schema a client-level guarantee can rest on.

- ``poisson``: every client joins every round independently with probability q = m / N, in secret
  (:func:`privacy.mechanisms.sampling.sample_cohort`); DP-FedAvg's accounting amplifies by it.
- ``min_sep``: no sampling assumption, only a bound on how often and how closely a client joins
  ((k, b)-participation: at most k rounds, any two at least b apart; Choquette-Choo et al. 2023, "Amplified
  Banded Matrix Factorization"). Cohorts are cyclic: the clients are split once, from ``run.seed`` (the
  schedule is public: the guarantee does not need it secret, so it is kept apart from the noise seed), into
  G = max(b, ceil(T / k)) groups of sizes N / G rounded either way, and group ``t mod G`` is round t's cohort,
  so a client joins every G >= b rounds, at most ceil(T / G) <= k times. The server enforces the schema
  whatever it is asked (:meth:`MinSepParticipation.admit`): a client asked to join too early, or once too
  often, is skipped and counted, and every client's participations are recorded.

Both answer :meth:`cohort` with a :class:`Cohort`; a resumed run replays the (deterministic) schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privacy.mechanisms.sampling import sample_cohort
from privacy.seeding import COHORT, numpy_rng

_GROUPS = 1 << 20  # sub-stream of COHORT for the min_sep groups (under run.seed; rounds' cohorts use the noise seed)


@dataclass(frozen=True)
class Cohort:
    ids: np.ndarray  # client ids taking part, sorted
    skipped: int  # clients the schema refused this round (asked too early or too often)


def min_sep_groups(num_clients: int, groups: int, *, seed: int) -> np.ndarray:
    """Each client's group (0 .. G - 1): a random permutation of the clients from ``seed`` cut into G groups
    whose sizes differ by at most one (client ``perm[i]`` in group ``i mod G``)."""
    if groups < 1 or num_clients < groups:
        raise ValueError(f"{num_clients} clients cannot fill {groups} groups")
    perm = numpy_rng(seed, COHORT, _GROUPS).permutation(num_clients)
    group = np.empty(num_clients, dtype=np.int64)
    group[perm] = np.arange(num_clients) % groups
    return group


class PoissonParticipation:
    """Poisson (or fixed-size) sampling every round from the noise seed; nothing to enforce."""

    def __init__(self, server, num_clients: int, *, seed: int):
        self.server, self.num_clients, self.seed = server, int(num_clients), int(seed)

    def cohort(self, round_idx: int) -> Cohort:
        s = self.server
        return Cohort(sample_cohort(self.num_clients, s.clients_per_round, scheme=s.sampling, seed=self.seed,
                                    round_idx=round_idx), 0)

    def replay(self, rounds: int) -> None:
        """Nothing to restore: every round's cohort is a function of (seed, round)."""


class MinSepParticipation:
    """Cyclic cohorts under (k, b)-participation, enforced: ``last[k]`` and ``count[k]`` record each client's
    most recent round and how many rounds it joined."""

    def __init__(self, server, num_clients: int, *, seed: int):
        self.min_separation, self.max_participations = server.min_separation, server.participations
        self.groups = server.groups
        self.group = min_sep_groups(num_clients, self.groups, seed=seed)
        self.last = np.full(num_clients, -1, dtype=np.int64)  # -1: never joined
        self.count = np.zeros(num_clients, dtype=np.int64)

    def scheduled(self, round_idx: int) -> np.ndarray:
        """The clients whose turn round ``round_idx`` is: group ``round_idx mod G``."""
        return np.flatnonzero(self.group == round_idx % self.groups)

    def admit(self, round_idx: int, proposed) -> Cohort:
        """The clients of ``proposed`` the schema lets join round ``round_idx``, recorded as having joined; the
        others (joined fewer than b rounds ago, or k times already) are skipped and counted."""
        ids = np.unique(np.asarray(proposed, dtype=np.int64))
        ok = (self.count[ids] < self.max_participations) & (
            (self.last[ids] < 0) | (round_idx - self.last[ids] >= self.min_separation))
        admitted = ids[ok]
        self.last[admitted] = round_idx
        self.count[admitted] += 1
        return Cohort(admitted, int((~ok).sum()))

    def cohort(self, round_idx: int) -> Cohort:
        return self.admit(round_idx, self.scheduled(round_idx))

    def replay(self, rounds: int) -> None:
        """Restore the records of rounds 0 .. rounds - 1 (a resumed run): the schedule is deterministic."""
        self.last[:], self.count[:] = -1, 0
        for t in range(rounds):
            self.cohort(t)


def participation_for(cfg, num_clients: int):
    """The participation schema of a resolved config over ``num_clients`` clients."""
    if cfg.run.noise_seed is None:
        raise ValueError("run.noise_seed is unset: resolve the config first (orchestrator.resolve)")
    if cfg.server.participation == "min_sep":  # a public schedule: from run.seed
        return MinSepParticipation(cfg.server, num_clients, seed=cfg.run.seed)
    return PoissonParticipation(cfg.server, num_clients, seed=cfg.run.noise_seed)
