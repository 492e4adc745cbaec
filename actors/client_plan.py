"""What the server knows of each client before any round: who hosts it and its privacy per round."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientPlan:
    actor: tuple[int, ...]  # actor index of client k
    sample_rate: tuple[float, ...]  # record-level Poisson rate of client k
    steps: tuple[int, ...]  # local steps per round of client k
    sizes: tuple[int, ...] = ()  # records n_k of client k (the fixed denominator of secure FedSGD needs them)

    def __post_init__(self) -> None:
        if not (len(self.actor) == len(self.sample_rate) == len(self.steps)) or not self.actor:
            raise ValueError("a client plan needs one actor, sample rate and step count per client")
        if self.sizes and len(self.sizes) != len(self.actor):
            raise ValueError("a client plan's sizes need one entry per client")

    def by_actor(self, cohort) -> dict[int, list[int]]:
        """The cohort's client ids grouped by hosting actor, actors in order of their first client."""
        out: dict[int, list[int]] = {}
        for k in cohort:
            out.setdefault(self.actor[int(k)], []).append(int(k))
        return out
