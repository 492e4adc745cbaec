"""The one place a run's trust model is read from its config: which mechanism carries it.

- trusted server: :class:`~privacy.mechanisms.client_level.CentralGaussianMechanism` (DP-FedAvg);
- secure aggregation of client deltas (``secagg.enabled``, ``secagg.level = "client"``):
  :class:`~privacy.mechanisms.distributed_dp.DistributedSkellamMechanism`;
- secure aggregation of the silos' clipped-gradient sums (``secagg.level = "record"``):
  :class:`~privacy.mechanisms.distributed_dpsgd.DistributedDPSGD` (secure FedSGD);
- trusted server with correlated noise (``server.mechanism = "dp_ftrl"``, min_sep participation):
  :class:`~privacy.mechanisms.dp_ftrl.BandedMatrixFactorizationMechanism` (DP-FTRL, banded MF).

Every mechanism has the same shape: ``secure`` and ``level`` (whom the server is, what its noise protects),
``client_step(round_idx, cohort)`` (the client half), its release (the server half), ``ledgers(cfg, ...)`` (the
guarantees it claims), ``round_events`` and ``held_events`` (what a round books, and what is checked before
a secure sum is unmasked), ``noise_multiplier_of``/``reported_clip`` (its round-table columns) and
``state_dict``, and ``plan_round(ledgers, round_idx)`` (what the budget check assumes of the coming round,
for a mechanism whose events depend on the round). Nothing else in the code asks the config which trust model is in force: what must know it
before the mechanism exists (noise calibration, ``fedfrontier plan``, sweep checks) asks
:func:`mechanism_class`.
"""

from __future__ import annotations

from typing import Sequence


def mechanism_class(cfg):
    """The mechanism class of ``cfg``'s trust model; its ``secure`` and ``level`` say whom the server is and what
    the noise protects, before the mechanism itself can be built (calibration, plans, sweep checks)."""
    if cfg.secagg.enabled and cfg.secagg.level == "record":
        from privacy.mechanisms.distributed_dpsgd import DistributedDPSGD

        return DistributedDPSGD
    if cfg.secagg.enabled:
        from privacy.mechanisms.distributed_dp import DistributedSkellamMechanism  # a central run never imports it

        return DistributedSkellamMechanism
    if cfg.server.mechanism == "dp_ftrl":
        from privacy.mechanisms.dp_ftrl import BandedMatrixFactorizationMechanism

        return BandedMatrixFactorizationMechanism
    from privacy.mechanisms.client_level import CentralGaussianMechanism

    return CentralGaussianMechanism


def mechanism_for(cfg, *, dim: int, sample_rates: Sequence[float] = (), sizes: Sequence[int] = ()):
    """The mechanism of a resolved config for a flat model of ``dim`` parameters; ``sample_rates`` and ``sizes``
    (the clients' record-level rates and record counts) size secure FedSGD's fixed denominator. Raises
    ConfigError when secure aggregation's bits cannot hold the sum at this model size."""
    if cfg.run.noise_seed is None:
        raise ValueError("run.noise_seed is unset: resolve the config first (orchestrator.resolve)")
    kind = mechanism_class(cfg)
    if kind.level == "record":
        from privacy.mechanisms.distributed_dpsgd import expected_batch, from_experiment

        if len(sizes) == 0:
            raise ValueError("secure FedSGD needs the clients' record counts")
        return from_experiment(cfg, dim=dim, batch=expected_batch(sample_rates, sizes))
    if kind.secure:
        from privacy.mechanisms.distributed_dp import from_experiment

        return from_experiment(cfg, dim=dim)
    if cfg.server.mechanism == "dp_ftrl":
        return kind(cfg.server, noise_seed=cfg.run.noise_seed, schedule_seed=cfg.run.seed,
                    num_clients=cfg.data.num_clients, dim=dim)
    return kind(cfg.server, noise_seed=cfg.run.noise_seed)
