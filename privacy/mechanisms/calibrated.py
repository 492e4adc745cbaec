"""Noise for a config's target epsilons, with the accounting its mechanism's ledgers will use.

``calibrated_noise`` answers ``(sigma, z)``: the clients' DP-SGD noise multiplier for ``client.target_epsilon``
(record level) and the server's for ``server.target_epsilon`` / ``secagg.server_target_epsilon`` (client
level). Which accounting that is follows from the mechanism (:func:`privacy.mechanisms.choice.mechanism_class`):

- record level, local DP-SGD (trusted server, or secure aggregation of client deltas): every client sampled in
  every round, Gaussian accountant (Abadi et al. 2016; Mironov 2017; Koskela et al. 2020 for PLD);
- record level, secure FedSGD: every silo in every round, the worst silo's rate, Skellam accounting after
  rounding (Agarwal et al. 2021, dominated by a Gaussian: privacy/accountants/skellam_dominance.py);
- client level, central Gaussian: DP-FedAvg at q = m / N (McMahan et al. 2018);
- client level, DP-FTRL (banded MF, min_sep participation): the worst group's participations as one Gaussian
  mechanism, exactly (privacy/mechanisms/dp_ftrl.py);
- client level, distributed Skellam: the released sum's Skellam accounting, and against the server (no
  amplification) when ``secagg.server_target_epsilon`` is set; the larger z meets both.

An impossible target is a :class:`ConfigError` on its key, before Ray starts.
"""

from __future__ import annotations

from typing import Callable, Sequence

from privacy.accountants.calibration import (calibrate_for_schedule, calibrate_record_level,
                                             calibrate_secure_aggregation)
from privacy.config.experiment import ConfigError


def _on_key(key: str, target: float, calibrate: Callable[[], float]) -> float:
    """A calibration whose impossible target is a ConfigError on ``key``."""
    try:
        return calibrate()
    except ValueError as exc:
        raise ConfigError(key, target, str(exc)) from exc


def calibrated_noise(cfg, kind, *, num_params: int, rates: Sequence[float], steps: Sequence[int],
                     batch: float | None) -> tuple[float, float]:
    """``(client.noise_multiplier, server.noise_multiplier)`` of ``cfg`` (deltas resolved) for its targets under
    the mechanism class ``kind``; a value without a target is the config's own. ``batch`` is secure FedSGD's
    fixed denominator (None for the other mechanisms)."""
    return (_record_sigma(cfg, kind, num_params=num_params, rates=rates, steps=steps, batch=batch),
            _client_z(cfg, kind, num_params=num_params))


def _record_sigma(cfg, kind, *, num_params, rates, steps, batch) -> float:
    c, s = cfg.client, cfg.server
    if c.target_epsilon is None:
        return c.noise_multiplier
    if kind.level == "record":  # secure FedSGD: the silos' shares sum to one pooled DP-SGD step
        from privacy.mechanisms.distributed_dpsgd import from_experiment

        return _on_key("client.target_epsilon", c.target_epsilon, lambda: calibrate_secure_aggregation(
            target_epsilon=c.target_epsilon, delta=c.delta, sample_rate=rates, rounds=s.rounds,
            accountant=cfg.secagg.accountant, gaussian=c.accountant,
            mechanism_of=lambda sigma: from_experiment(
                cfg.replace(client={"noise_multiplier": sigma, "target_epsilon": None}), dim=num_params, batch=batch)))
    return _on_key("client.target_epsilon", c.target_epsilon, lambda: calibrate_record_level(
        target_epsilon=c.target_epsilon, delta=c.delta, sample_rates=rates, steps_per_round=steps,
        rounds=s.rounds, accountant=c.accountant))


def _client_z(cfg, kind, *, num_params) -> float:
    s = cfg.server
    q = s.clients_per_round / cfg.data.num_clients
    if kind.level == "record":  # no server noise: the guarantee is the silos' record-level one
        return s.noise_multiplier
    if s.mechanism == "dp_ftrl":  # one Gaussian mechanism over the run, no sampling: mu-GDP solved for z
        from privacy.mechanisms.dp_ftrl import calibrate_dp_ftrl

        if s.target_epsilon is None:
            return s.noise_multiplier
        return _on_key("server.target_epsilon", s.target_epsilon, lambda: calibrate_dp_ftrl(
            s, target_epsilon=s.target_epsilon, delta=s.delta))
    if not kind.secure:
        if s.target_epsilon is None:
            return s.noise_multiplier
        return _on_key("server.target_epsilon", s.target_epsilon, lambda: calibrate_for_schedule(
            target_epsilon=s.target_epsilon, delta=s.delta, sample_rate=q, steps=s.rounds, accountant=s.accountant))
    z = s.noise_multiplier
    if s.target_epsilon is not None:
        z = _skellam_z(cfg, num_params, sample_rate=q, target=s.target_epsilon, key="server.target_epsilon")
    against_server = cfg.secagg.server_target_epsilon
    if against_server is not None:  # both targets: the larger z meets both
        z = max(z if s.target_epsilon is not None else 0.0,
                _skellam_z(cfg, num_params, sample_rate=q, target=against_server,
                           key="secagg.server_target_epsilon", against_server=True))
    return z


def _skellam_z(cfg, num_params: int, *, sample_rate: float, target: float, key: str,
               against_server: bool = False) -> float:
    """z of the distributed Skellam mechanism for ``target`` against whoever sees the models or, with
    ``against_server``, against the server."""
    from privacy.mechanisms.distributed_dp import from_experiment

    s = cfg.server
    return _on_key(key, target, lambda: calibrate_secure_aggregation(
        target_epsilon=target, delta=s.delta, sample_rate=sample_rate, rounds=s.rounds,
        accountant=cfg.secagg.accountant, gaussian=s.accountant, against_server=against_server,
        mechanism_of=lambda z: from_experiment(cfg.replace(server={"noise_multiplier": z, "target_epsilon": None}),
                                               dim=num_params)))
