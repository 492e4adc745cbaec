"""Calibration: the smallest noise multiplier whose accounted epsilon meets a target.

Every search calls ``privacy.accountants.accounting.epsilon``, the function that reports, so a
calibrated run never reports more than its target. Two stages:

1. RDP, bisection on log sigma over ``bounds``: RDP is closed-form and cheap at any sigma,
   even 0.05 (where the grids of PLD/PRV would need gigabytes: Opacus's PRV asks for
   5.25 GiB at q = 0.064, T = 320 and 25.8 GiB at q = 0.01, T = 1000).
2. For ``pld``/``prv`` only: a search in [sigma_rdp * TIGHT_SEARCH_FLOOR, sigma_rdp].
   ``epsilon`` never reports a tight accountant above RDP (it returns the smaller of the
   two bounds), so sigma_rdp already meets the target under it; the tight accountant only
   lowers sigma. Only if the floor itself meets the target (one step at a tiny rate, where
   RDP is loosest) is the bracket moved down by the same factor, and so on. Secant steps
   on (log sigma, log eps), safeguarded by bisection: 2-5 evaluations instead of ~10.
   Nothing at tiny sigma can fail: there RDP's epsilon exceeds ``TIGHT_ACCOUNTANT_CAP``
   and ``epsilon`` answers with RDP alone, without building a PLD/PRV grid.

Record-level calibration is on the worst case -- every client sampled in every round --
so the bound holds whatever the client sampling turns out to be.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

from privacy.accountants.accounting import DEFAULT_ACCOUNTANT, Event, epsilon

NOISE_BOUNDS = (0.05, 500.0)  # the RDP search range of the noise multiplier
TIGHT_SEARCH_FLOOR = 0.5  # a tight accountant is searched in [sigma_rdp * this, sigma_rdp]: it saves
#                           8-22 % of eps (benchmarks/results/accounting.md), a few % of sigma


def calibrate_noise_multiplier(*, target_epsilon: float, eps_of: Callable[[float], float],
                               tolerance: float = 0.01, bounds: tuple[float, float] = NOISE_BOUNDS) -> float:
    """Smallest noise multiplier (within ``tolerance`` in epsilon) with ``eps_of(sigma) <= target_epsilon``.

    ``eps_of`` must be non-increasing in sigma (any accountant of a fixed schedule is) and cheap
    and safe over all of ``bounds`` (RDP is; use :func:`calibrate_for_histories` for pld/prv).
    Bisection on log sigma; the answer always satisfies the target. Raises ``ValueError`` if even
    the largest multiplier in ``bounds`` cannot reach it.
    """
    _check_target(target_epsilon, tolerance)
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds = {bounds}: need 0 < low < high")
    e_hi = eps_of(hi)
    if e_hi > target_epsilon:
        raise ValueError(f"target epsilon {target_epsilon} is unreachable: even noise multiplier {hi} spends "
                         f"{e_hi:.3g}; train for fewer rounds or steps, or sample less")
    if eps_of(lo) <= target_epsilon:
        return lo
    while hi / lo > 1 + 1e-6:
        mid = math.sqrt(lo * hi)
        e = eps_of(mid)
        if e > target_epsilon:
            lo = mid
        else:
            hi = mid
            if target_epsilon - e < tolerance:
                break
    return hi


def calibrate_for_histories(*, target_epsilon: float, delta: float,
                            histories: Callable[[float], Sequence[Sequence[Event]]],
                            accountant: str = DEFAULT_ACCOUNTANT, tolerance: float = 0.01,
                            bounds: tuple[float, float] = NOISE_BOUNDS) -> float:
    """Smallest sigma with max_h epsilon(h, delta, accountant) <= target over the histories ``histories(sigma)``.

    A max of non-increasing functions is non-increasing, so one search serves several clients. RDP
    first (stage 1 of the module docstring), then, for pld/prv, the bracketed tight search (stage 2).
    """
    def eps_of(acc: str) -> Callable[[float], float]:
        return lambda sigma: max(epsilon(h, delta=delta, accountant=acc) for h in histories(sigma))

    rdp_eps = eps_of("rdp")
    sigma_rdp = calibrate_noise_multiplier(target_epsilon=target_epsilon, eps_of=rdp_eps, tolerance=tolerance,
                                           bounds=bounds)
    if accountant == "rdp":
        return sigma_rdp
    tight_eps = eps_of(accountant)
    hi = sigma_rdp
    e_hi = tight_eps(hi)  # <= RDP's epsilon <= target: epsilon() never reports a tight accountant above RDP
    while target_epsilon - e_hi >= tolerance:
        floor = max(bounds[0], hi * TIGHT_SEARCH_FLOOR)
        hi, e_hi, floor_met = _search_below(tight_eps, target_epsilon, hi, e_hi, floor, tolerance,
                                            slope=_log_slope(rdp_eps, hi))
        if not floor_met or floor <= bounds[0]:
            break
    return hi


def calibrate_for_schedule(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                           accountant: str = DEFAULT_ACCOUNTANT, tolerance: float = 0.01) -> float:
    """Noise multiplier for ``steps`` Poisson-subsampled Gaussian steps at ``sample_rate`` to spend
    at most ``target_epsilon`` at ``delta`` (what Opacus's ``get_noise_multiplier`` answers). Client-level
    DP-FedAvg: ``sample_rate = m / N`` and ``steps = rounds``."""
    return calibrate_for_histories(target_epsilon=target_epsilon, delta=delta, accountant=accountant,
                                   tolerance=tolerance, histories=lambda z: [[(z, sample_rate, steps)]])


def worst_case_record_histories(*, noise_multiplier: float, sample_rates: Sequence[float],
                                steps_per_round: Sequence[int], rounds: int) -> list[list[Event]]:
    """Record-level histories if every client took part in every one of ``rounds`` rounds: client k
    runs ``steps_per_round[k]`` DP-SGD steps at Poisson rate ``sample_rates[k]`` per round. Only the
    Pareto-maximal (rate, steps) pairs are kept, since epsilon grows with both."""
    if len(sample_rates) != len(steps_per_round) or not len(sample_rates):
        raise ValueError("need one sample rate and one step count per client, and at least one client")
    if not (isinstance(rounds, numbers.Integral) and rounds >= 1):
        raise ValueError(f"rounds = {rounds!r}: must be an integer >= 1")
    pairs = sorted({(float(q), int(t) * int(rounds)) for q, t in zip(sample_rates, steps_per_round)}, reverse=True)
    front, best_steps = [], -1
    for q, t in pairs:  # rates descending: keep a pair only if it has more steps than every higher rate
        if t > best_steps:
            front.append([(float(noise_multiplier), q, t)])
            best_steps = t
    return front


def worst_case_record_epsilon(*, noise_multiplier: float, sample_rates: Sequence[float],
                              steps_per_round: Sequence[int], rounds: int, delta: float,
                              accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """Largest record-level epsilon any client could reach if sampled in every round."""
    return max(epsilon(h, delta=delta, accountant=accountant)
               for h in worst_case_record_histories(noise_multiplier=noise_multiplier, sample_rates=sample_rates,
                                                    steps_per_round=steps_per_round, rounds=rounds))


def calibrate_record_level(*, target_epsilon: float, delta: float, sample_rates: Sequence[float],
                           steps_per_round: Sequence[int], rounds: int, accountant: str = DEFAULT_ACCOUNTANT,
                           tolerance: float = 0.01) -> float:
    """DP-SGD sigma such that no client's record-level epsilon can exceed ``target_epsilon`` after
    ``rounds`` rounds (worst case: sampled in every round)."""
    worst_case_record_histories(noise_multiplier=1.0, sample_rates=sample_rates,  # validate once, up front
                                steps_per_round=steps_per_round, rounds=rounds)
    return calibrate_for_histories(
        target_epsilon=target_epsilon, delta=delta, accountant=accountant, tolerance=tolerance,
        histories=lambda s: worst_case_record_histories(noise_multiplier=s, sample_rates=sample_rates,
                                                        steps_per_round=steps_per_round, rounds=rounds))


def _check_target(target_epsilon: float, tolerance: float) -> None:
    if not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"target_epsilon = {target_epsilon}: must be a finite number > 0")
    if not tolerance > 0:
        raise ValueError(f"tolerance = {tolerance}: must be > 0")


def _log_slope(eps_of: Callable[[float], float], sigma: float) -> float:
    """d log eps / d log sigma at sigma, by a one-sided difference (of the cheap RDP curve)."""
    e0, e1 = eps_of(sigma), eps_of(sigma * 1.01)
    if not (0 < e1 < e0 < math.inf):
        return -1.0
    return (math.log(e1) - math.log(e0)) / math.log(1.01)


def _search_below(eps_of: Callable[[float], float], target: float, hi: float, e_hi: float, floor: float,
                  tolerance: float, *, slope: float) -> tuple[float, float, bool]:
    """Smallest sigma in [floor, hi] with eps_of(sigma) <= target, given e_hi = eps_of(hi) <= target.

    Returns (sigma, its epsilon, whether the floor itself met the target). Secant steps on
    g(x) = log eps(e^x) - log(target - tolerance / 2) through the last two points, kept inside the
    bracket (else bisection in log sigma); the first step uses ``slope`` (RDP's) for want of a second
    point. A sigma whose accountant fails (out of memory, no convergence) counts as not meeting the
    target, so a failure can only make the answer larger, never a crash.
    """
    aim = math.log(max(target - tolerance / 2, target / 2))

    def g(x: float) -> tuple[float, float]:
        try:
            e = eps_of(math.exp(x))
        except (MemoryError, ArithmeticError):
            e = math.inf
        return (math.log(e) - aim if e > 0 else -math.inf), e

    x_floor = math.log(floor)
    x_lo, x_hi, lo_met = x_floor, math.log(hi), False  # lo_met: the floor was shown to miss the target
    last = (x_hi, math.log(e_hi) - aim if e_hi > 0 else -math.inf)
    x_new = x_hi - last[1] / slope if slope < 0 and math.isfinite(last[1]) else 0.5 * (x_lo + x_hi)
    for _ in range(60):
        if x_hi - x_lo < 1e-7:
            break
        if x_new <= x_lo:  # aimed below the bracket: try the floor itself, unless it already failed
            x_new = 0.5 * (x_lo + x_hi) if lo_met else x_lo
        elif x_new >= x_hi - 1e-9:
            x_new = 0.5 * (x_lo + x_hi)
        g_new, e_new = g(x_new)
        if e_new <= target:
            x_hi, e_hi = x_new, e_new
            if target - e_new < tolerance or x_new == x_floor:
                break
        else:
            x_lo, lo_met = x_new, True
        (x_prev, g_prev), last = last, (x_new, g_new)
        finite = math.isfinite(g_new) and math.isfinite(g_prev) and g_new != g_prev
        x_new = x_new - g_new * (x_new - x_prev) / (g_new - g_prev) if finite else 0.5 * (x_lo + x_hi)
    return math.exp(x_hi), e_hi, x_hi == x_floor


def calibrate_secure_aggregation(*, target_epsilon: float, mechanism_of: Callable[[float], object], delta: float,
                                 sample_rate: float | Sequence[float], rounds: int, accountant: str = "exact",
                                 gaussian: str = DEFAULT_ACCOUNTANT, against_server: bool = False) -> float:
    """Smallest z whose distributed Skellam mechanism (``mechanism_of(z)``: a
    :class:`privacy.mechanisms.distributed_dp.DistributedSkellamMechanism` or
    :class:`privacy.mechanisms.distributed_dpsgd.DistributedDPSGD`, whose scale and sensitivities after rounding depend on
    z) spends at most ``target_epsilon`` over ``rounds`` rounds of its planned event, accounted as the run's
    ledger does: Poisson-subsampled at each of ``sample_rate`` (the worst meets the target), or with
    ``against_server`` its planned against-the-server event unsampled in every round.

    ``exact``: the Gaussian multiplier sigma* that the target needs (privacy.accountants.calibration on the Gaussian
    accountant ``gaussian``; exactly, by Gaussian DP, against the server), then the z whose dominating
    Gaussian sqrt(mu) / (c(mu) Delta_2) reaches sigma*, and a final check by the ledger's own function, which
    raises z until it holds. ``zhu_wang``: a search on the ledger's function alone."""
    from privacy.accountants.skellam import epsilon as skellam_epsilon, epsilon_unsampled

    rates = sorted({float(q) for q in ([sample_rate] if isinstance(sample_rate, numbers.Real) else sample_rate)})

    def planned(mech) -> list:
        if against_server:
            return [[mech.planned_server_event()[:4] + (rounds,)]]
        return [[mech.planned_event(sample_rate=q)[:4] + (rounds,)] for q in rates]

    def eps_of(z: float) -> float:
        mech = mechanism_of(z)
        if against_server:
            return epsilon_unsampled(planned(mech)[0], delta=delta, accountant=accountant)
        return max(skellam_epsilon(h, delta=delta, accountant=accountant, gaussian=gaussian) for h in planned(mech))

    if accountant != "exact":
        return calibrate_noise_multiplier(target_epsilon=target_epsilon, eps_of=eps_of)
    from privacy.accountants.skellam_dominance import effective_noise_multiplier, gdp_mu_for

    _check_target(target_epsilon, 0.01)
    if against_server:
        sigma_needed = math.sqrt(rounds) / gdp_mu_for(epsilon=target_epsilon, delta=delta)
    else:
        sigma_needed = calibrate_for_histories(target_epsilon=target_epsilon, delta=delta, accountant=gaussian,
                                               histories=lambda s: [[(s, q, rounds)] for q in rates])

    def dominating(z: float, exact: bool) -> float:  # the dominating Gaussian's multiplier at z (c = 1: cheap)
        mu, _, l2, *_ = planned(mechanism_of(z))[0][0]
        return effective_noise_multiplier(mu=mu, l2=l2) if exact else math.sqrt(mu) / l2

    aim = sigma_needed
    for _ in range(8):  # c(mu) ~ 1 + 1e-7: one or two passes
        z = _smallest_reaching(lambda z: dominating(z, exact=False), aim)
        if dominating(z, exact=True) >= sigma_needed:
            break
        aim *= sigma_needed / dominating(z, exact=True) * (1 + 1e-9)
    while eps_of(z) > target_epsilon:  # the ledger's own function has the last word
        z *= 1 + 1e-6
    return z


def _smallest_reaching(f: Callable[[float], float], aim: float, bounds: tuple[float, float] = NOISE_BOUNDS) -> float:
    """Smallest z in ``bounds`` (within 1e-9 relative) with f(z) >= aim, f non-decreasing: bisection on log z."""
    lo, hi = bounds
    if f(hi) < aim:
        raise ValueError(f"unreachable: even noise multiplier {hi} gives an effective multiplier {f(hi):.4g} < "
                         f"{aim:.4g} (the rounding's sensitivity dominates); raise secagg.bits")
    if f(lo) >= aim:
        return lo
    while hi / lo > 1 + 1e-9:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if f(mid) < aim else (lo, mid)
    return hi
