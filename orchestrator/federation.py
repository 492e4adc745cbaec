"""The driver side of one federated run: start the actors, loop the rounds, collect the table.

``Federation`` is what both the CLI (:func:`run_federated`) and a Ray Tune trial use:
``start()``, then ``step()`` once per round, then ``close()``.
"""

from __future__ import annotations

import time
from typing import Callable

import pandas as pd

from actors.client import ClientActor, initial_weights
from actors.server import ServerActor
from orchestrator.config import ExperimentConfig
from orchestrator.resolve import Plan, resolve_config
from orchestrator.resources import actor_threads


class Federation:
    """One federated run on the connected Ray cluster."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.config = plan.config
        self.server = None
        self.clients: list = []
        self.stopped_reason = ""

    def start(self) -> "Federation":
        import ray

        cfg, plan = self.config, self.plan
        c = cfg.client
        client_cls = ray.remote(ClientActor).options(num_cpus=c.num_cpus, num_gpus=c.num_gpus)
        self.clients = [client_cls.remote(cfg, shards, num_threads=actor_threads(c.num_cpus))
                        for shards in plan.actor_shards()]
        ch, h, _ = plan.image_shape
        w0 = initial_weights(cfg, ch, plan.num_classes, h)
        server_cls = ray.remote(ServerActor).options(num_cpus=cfg.server.num_cpus)
        self.server = server_cls.remote(cfg, self.clients, plan.clients, w0, delta_record=c.delta,
                                        delta_client=cfg.server.delta,
                                        num_threads=actor_threads(max(cfg.server.num_cpus, 1)))
        return self

    def step(self, round_idx: int) -> dict | None:
        """Run round ``round_idx`` (0-based); None if a target epsilon forbids it (see ``stopped_reason``)."""
        import ray

        reason = ray.get(self.server.budget_exceeded_next_round.remote())
        if reason:
            self.stopped_reason = reason
            return None
        return ray.get(self.server.run_round.remote(round_idx))

    def close(self) -> None:
        import ray

        for a in [self.server, *self.clients]:
            if a is not None:
                ray.kill(a)
        self.server, self.clients = None, []


def rounds_frame(rows: list[dict], cfg: ExperimentConfig) -> pd.DataFrame:
    """The round table: metrics columns, then every resolved config value as a flat column."""
    df = pd.DataFrame(rows)
    flat = cfg.flat()
    for key, value in flat.items():
        df[key] = [value] * len(df) if len(df) else pd.Series(dtype=object)
    return df


def format_row(row: dict, total_rounds: int) -> str:
    return (f"round {row['round']:>3}/{total_rounds}  acc {row['test_accuracy']:.4f}  loss {row['test_loss']:.4f}  "
            f"eps_record max {row['eps_record_max']:.3g} (median {row['eps_record_median']:.3g}, "
            f"delta {row['delta_record']:.2g})  eps_client {row['eps_client']:.3g} "
            f"(delta {row['delta_client']:.2g})  failed {row['clients_failed']}  {row['seconds']:.1f}s")


def run_federated(cfg: ExperimentConfig, *, progress: Callable[[str], None] | None = print,
                  plan: Plan | None = None) -> pd.DataFrame:
    """Run one federated training on the connected Ray cluster (or a fresh local one)
    and return its round table."""
    from orchestrator.cluster import ensure_ray

    plan = plan or resolve_config(cfg)
    ensure_ray()
    fed = Federation(plan).start()
    rows = []
    t0 = time.perf_counter()
    try:
        for r in range(plan.config.server.rounds):
            row = fed.step(r)
            if row is None:
                if progress:
                    progress(f"stopped before round {r + 1}: {fed.stopped_reason}")
                break
            rows.append(row)
            if progress:
                progress(format_row(row, plan.config.server.rounds))
    finally:
        fed.close()
    if progress:
        progress(f"{len(rows)} rounds in {time.perf_counter() - t0:.1f}s")
    return rounds_frame(rows, plan.config)
