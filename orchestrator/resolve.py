"""Resolve a config against its data, before any Ray process starts.

Fills every default that depends on the data (model, deltas, number of actors) and the
run's noise seed (fresh OS entropy unless given),
calibrates noise from target epsilons with the accountant that will report, and
rejects what the data makes impossible -- all as :class:`ConfigError`, so the CLI
can print one line and exit 2 without having started anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actors.data import DataError, ImageData
from actors.model_inputs import load_from_config
from actors.models import auto_model_name, build_model
from actors.holdout import holdout_of, in_pool
from actors.partition import Partition, PartitionError, partition
from actors.client import local_spec
from actors.client_plan import ClientPlan
from privacy.audit.canaries import default_canary_count
from privacy.mechanisms.calibrated import calibrated_noise
from privacy.mechanisms.choice import mechanism_class, mechanism_for
from privacy.config.experiment import ConfigError, ExperimentConfig
from privacy.config.schema import WORK_MAX
from privacy.seeding import fresh_noise_seed
from orchestrator.resources import auto_num_actors, cluster_capacity


@dataclass(frozen=True)
class Plan:
    config: ExperimentConfig  # fully resolved: no 'auto', no missing delta, calibrated noise
    partition: Partition
    clients: ClientPlan
    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    n_train: int  # records of the clients: the training pool, validation held out
    n_test: int
    num_params: int  # of the model built for this data: what a checkpoint's weights must hold
    n_validation: int = 0  # records held out for choosing (the analyst's, no client's)

    def actor_shards(self) -> list[dict[int, np.ndarray]]:
        """Client id -> index array, grouped by hosting actor."""
        shards: list[dict[int, np.ndarray]] = [{} for _ in range(self.config.client.num_actors)]
        for k, a in enumerate(self.clients.actor):
            shards[a][k] = self.partition.indices[k]
        return shards


def default_delta(n: int) -> float:
    """delta = 1 / n^1.1: below 1/n, as a meaningful (eps, delta) guarantee over n units requires."""
    return 1.0 / n ** 1.1


def count_parameters(model: str, data: ImageData) -> int:
    """Parameters of ``model`` built for ``data``; a ConfigError if it cannot read those inputs (a
    model for another image size), here rather than in every client actor once the run has started."""
    c, h, w = data.shape
    net = build_model(model, in_channels=c, num_classes=data.num_classes, image_size=h, seed=0)
    try:
        with torch.no_grad():
            net(torch.zeros(1, c, h, w))
    except RuntimeError as exc:
        raise ConfigError("model.name", model, f"does not fit this data's {c}x{h}x{w} inputs "
                                               f"({str(exc).splitlines()[0]}); try model.name = \"auto\"") from exc
    return sum(p.numel() for p in net.parameters())


def load_data(cfg: ExperimentConfig) -> ImageData:
    try:
        return load_from_config(cfg.data)
    except (DataError, OSError) as exc:
        raise ConfigError("data.root" if cfg.data.root else "data.dataset",
                          cfg.data.root or cfg.data.dataset, str(exc)) from exc


def pool_and_validation(cfg: ExperimentConfig, data: ImageData) -> tuple[np.ndarray, np.ndarray]:
    """(training pool, validation rows) of ``data`` under ``data.validation`` (actors/holdout.py); a
    ConfigError if the validation set would leave no training pool."""
    try:
        return holdout_of(cfg.data, data)
    except ValueError as exc:
        raise ConfigError("data.validation", cfg.data.validation, str(exc)) from exc


def resolve_config(cfg: ExperimentConfig, capacity: tuple[float, float] | None = None) -> Plan:
    """Everything the run needs decided before Ray: see the module docstring."""
    data = load_data(cfg)
    d, c, s = cfg.data, cfg.client, cfg.server
    pool, validation = pool_and_validation(cfg, data)  # before partitioning: the validation records are no client's
    part = partition_pool(cfg, data, pool)
    model = cfg.model.name if cfg.model.name != "auto" else auto_model_name(data.shape[1], d.features)
    num_params = count_parameters(model, data)
    cfg = with_deltas(cfg, n_train=len(pool))
    rates, steps = client_schedule(cfg, part)

    kind = mechanism_class(cfg)  # the trust model: which accounting calibrates the noise
    batch = kind.expected_batch(rates, part.sizes) if kind.level == "record" else None  # secure FedSGD's B
    sigma, z = calibrated_noise(cfg, kind, num_params=num_params, rates=rates, steps=steps, batch=batch)
    num_actors = c.num_actors or auto_num_actors(d.num_clients, c.num_cpus, c.num_gpus,
                                                 capacity or cluster_capacity())
    if num_actors > d.num_clients:
        raise ConfigError("client.num_actors", num_actors, f"must be <= data.num_clients ({d.num_clients})")
    server = {"noise_multiplier": z}
    if s.adaptive_clip:  # validation refuses z >= 2 sigma_b here too, now that z may come from calibration
        server["clip_count_std"] = float(s.count_noise_std)
    canaries = cfg.audit.canaries
    if canaries is None:  # audit client-level DP wherever it is claimed and canaries cost little accuracy
        canaries = default_canary_count(noise_multiplier=z, sample_rate=s.clients_per_round / d.num_clients,
                                        clipping=s.clipping, num_params=num_params)
    noise_seed = cfg.run.noise_seed if cfg.run.noise_seed is not None else fresh_noise_seed()
    resolved = cfg.replace(
        model={"name": model}, client={"noise_multiplier": sigma, "num_actors": num_actors},
        server=server, audit={"canaries": canaries}, run={"noise_seed": noise_seed})
    mechanism_for(resolved, dim=num_params, sample_rates=rates, sizes=part.sizes)  # bits too few: refused before Ray
    plan = ClientPlan(actor=tuple(k % num_actors for k in range(d.num_clients)), sample_rate=tuple(rates),
                      steps=tuple(steps), sizes=tuple(int(n) for n in part.sizes))
    return Plan(resolved, part, plan, data.shape, data.num_classes, len(pool), len(data.y_test), num_params,
                len(validation))


def partition_pool(cfg: ExperimentConfig, data: ImageData, pool: np.ndarray) -> Partition:
    """The clients' shards of the training pool (indices into the training set)."""
    d = cfg.data
    if d.num_clients > len(pool):
        raise ConfigError("data.num_clients", d.num_clients, f"more clients than training records ({len(pool)})")
    try:
        return in_pool(partition(data.y_train[pool], scheme=d.partition, num_clients=d.num_clients, seed=cfg.run.seed,
                                 alpha=d.alpha, shards_per_client=d.shards_per_client, min_size=d.min_client_size),
                       pool)
    except PartitionError as exc:
        raise ConfigError("data.partition", d.partition, str(exc)) from exc


def with_deltas(cfg: ExperimentConfig, *, n_train: int) -> ExperimentConfig:
    """``cfg`` with both deltas set (1 / n^1.1 by default), each below 1 / its number of units."""
    c, s, clients = cfg.client, cfg.server, cfg.data.num_clients
    delta_record = c.delta if c.delta is not None else default_delta(n_train)
    if delta_record >= 1 / n_train:
        raise ConfigError("client.delta", c.delta, f"must be < 1/n = {1 / n_train:.3g} (n = {n_train} records)")
    delta_client = s.delta if s.delta is not None else default_delta(clients)
    if delta_client >= 1 / clients:
        raise ConfigError("server.delta", s.delta, f"must be < 1/N = {1 / clients:.3g} (N = {clients} clients)")
    if c.target_epsilon is not None and not c.dp:
        raise ConfigError("client.target_epsilon", c.target_epsilon, "needs client.dp = true")
    return cfg.replace(client={"delta": delta_record}, server={"delta": delta_client})


def client_schedule(cfg: ExperimentConfig, part: Partition) -> tuple[list[float], list[int]]:
    """Each client's record-level sampling rate and local steps per round; a ConfigError for a batch no shard
    can hold or a run of more per-sample gradients than ``WORK_MAX``."""
    c, s = cfg.client, cfg.server
    if c.batch_size > max(part.sizes):  # a Poisson rate above 1 for every client: a batch no shard can hold
        raise ConfigError("client.batch_size", c.batch_size, f"must be <= the largest client's shard "
                                                           f"({int(max(part.sizes))} records); a smaller shard "
                                                           f"trains on all its records (sampling rate 1)")
    spec = local_spec(cfg)
    rates = [spec.sample_rate(int(n)) for n in part.sizes]
    steps = [spec.steps(int(n)) for n in part.sizes]
    work = s.rounds * s.clients_per_round / cfg.data.num_clients * sum(k * min(c.batch_size, int(n))
                                                                       for k, n in zip(steps, part.sizes))
    if work > WORK_MAX:  # each key within its cap, their product still a run of years
        raise ConfigError("server.rounds", s.rounds, f"with these clients, steps and batches the run would compute "
                                                     f"{work:.3g} per-sample gradients; at most {WORK_MAX:.0e}")
    return rates, steps
