"""Accounting of Skellam events: epsilon of a history of Poisson-subsampled Skellam mechanisms.

An event ``(mu, l1, l2, q, steps)`` is what one round of integer noise books: the Skellam variance mu per
coordinate on the integer grid, the L1 and L2 sensitivities after rounding, the Poisson rate q at which
the protected party takes part, and the number of such rounds. The mechanisms that book them are
privacy.mechanisms.distributed_dp (client level) and privacy.mechanisms.distributed_dpsgd (record level);
:func:`epsilon` accounts a history exactly through the dominating Gaussian (privacy.accountants.skellam_dominance),
or by the general RDP bound (``zhu_wang``); :func:`epsilon_unsampled` without amplification by sampling.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import numpy as np

from privacy.accountants.accounting import rdp_to_epsilon
from privacy.accountants.subsampled_rdp import INTEGER_ORDERS, skellam_rdp_of_run

SkellamEvent = tuple[float, float, float, float, int]  # (mu, l1, l2, sample_rate q, steps): noise booked, plain data


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


ACCOUNTANTS = ("exact", "zhu_wang")  # secagg.accountant: see epsilon()


def epsilon(events: Iterable[SkellamEvent], *, delta: float, accountant: str = "exact", gaussian: str = "pld"
            ) -> float:
    """epsilon at ``delta`` of a history of Poisson-subsampled Skellam events, add/remove neighbours (0 for none,
    inf if a round had no noise).

    ``exact`` (default): each event as the Gaussian mechanism that dominates it, sigma_eff = sqrt(mu) /
    (c(mu) Delta_2) (privacy.accountants.skellam_dominance), the history accounted by privacy.accountants.accounting with ``gaussian``
    (pld, rdp or prv) -- tight up to that accountant's own discretisation. ``zhu_wang``: Skellam RDP
    (privacy.accountants.skellam_rdp.skellam_rdp) -> Zhu-Wang Poisson subsampling (privacy.accountants.subsampled_rdp) -> additive
    composition -> (eps, delta) by Balle et al. 2020: valid, several times looser at small q."""
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta}: must be in (0, 1)")
    merged = merge_events(events)
    if not merged:
        return 0.0
    if accountant == "exact":
        from privacy.accountants.skellam_dominance import epsilon_sampled

        return epsilon_sampled(merged, delta=delta, accountant=gaussian)
    if accountant == "zhu_wang":
        return rdp_to_epsilon(orders=INTEGER_ORDERS, rdp=rdp(merged), delta=delta)
    raise ValueError(f"accountant = {accountant!r}: must be one of {', '.join(ACCOUNTANTS)}")


def epsilon_unsampled(events: Iterable[SkellamEvent], *, delta: float, accountant: str = "exact") -> float:
    """epsilon at ``delta`` of Skellam events without amplification by sampling (an adversary who knows who took
    part: the sample rates are ignored). ``exact``: the dominating Gaussians compose exactly as Gaussian DP
    (privacy.accountants.skellam_dominance.epsilon_unsampled); ``zhu_wang``: the Skellam RDP bound, composed."""
    unsampled = [(mu, l1, l2, 1.0, steps) for mu, l1, l2, _q, steps in events]
    if accountant == "exact":
        from privacy.accountants.skellam_dominance import epsilon_unsampled as exact

        if not 0 < delta < 1:
            raise ValueError(f"delta = {delta}: must be in (0, 1)")
        return exact(merge_events(unsampled), delta=delta)
    return epsilon(unsampled, delta=delta, accountant=accountant)


