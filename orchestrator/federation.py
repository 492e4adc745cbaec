"""The driver side of one federated run: start the actors, loop the rounds, collect the table.

``Federation`` is what both the CLI (:func:`run_federated`) and a Ray Tune trial use:
``start()``, then ``step()`` once per round, then ``close()``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from actors.client import ClientActor, initial_weights
from actors.server import ServerActor
from privacy.config import ExperimentConfig
from orchestrator.resolve import Plan, resolve_config
from orchestrator.resources import actor_threads


class Federation:
    """One federated run on the connected Ray cluster."""

    def __init__(self, plan: Plan, *, test_fault: str = ""):
        """``test_fault`` switches on a deliberate privacy bug in the server (see ``actors.server.TEST_FAULTS``),
        only for tests that prove the audit catches it."""
        self.plan = plan
        self.config = plan.config
        self.test_fault = test_fault
        self.server = None
        self.clients: list = []
        self.stopped_reason = ""

    def start(self) -> "Federation":
        import ray

        cfg, plan = self.config, self.plan
        c = cfg.client
        client_cls = ray.remote(ClientActor).options(num_cpus=c.num_cpus, num_gpus=c.num_gpus,
                                                     max_restarts=c.max_restarts, max_task_retries=0)
        self.clients = [client_cls.remote(cfg, shards, num_threads=actor_threads(c.num_cpus))
                        for shards in plan.actor_shards()]
        ch, h, _ = plan.image_shape
        w0 = initial_weights(cfg, ch, plan.num_classes, h)
        server_cls = ray.remote(ServerActor).options(num_cpus=cfg.server.num_cpus)
        self.server = server_cls.remote(cfg, self.clients, plan.clients, w0, delta_record=c.delta,
                                        delta_client=cfg.server.delta,
                                        num_threads=actor_threads(max(cfg.server.num_cpus, 1)),
                                        test_fault=self.test_fault)
        return self

    def step(self, round_idx: int) -> dict | None:
        """Run round ``round_idx`` (0-based); None if a target epsilon forbids it (see ``stopped_reason``)."""
        import ray

        reason = ray.get(self.server.budget_exceeded_next_round.remote())
        if reason:
            self.stopped_reason = reason
            return None
        return ray.get(self.server.run_round.remote(round_idx))

    def state_dict(self) -> dict:
        import ray

        return ray.get(self.server.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        """Resume from a checkpoint: the server's weights, round and ledgers; each client actor
        gets back its clients' record-level histories."""
        import ray

        ray.get(self.server.load_state_dict.remote(state))
        hist = {int(k): v for k, v in state["record"]["histories"].items()}
        ray.get([a.restore_histories.remote({k: hist[k] for k in shards if k in hist})
                 for a, shards in zip(self.clients, self.plan.actor_shards())])

    def audit(self) -> dict:
        """The audit columns for the model as it stands (the server fills them itself after its last round;
        call this when a run stops early)."""
        import ray

        return ray.get(self.server.audit.remote())

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


def format_audit(row: dict) -> str:
    """One line on the final model's audit: what the claims allow beside what was measured."""
    parts = []
    if math.isfinite(row.get("eps_audit_lower", math.nan)):
        parts.append(f"eps_audit_lower {row['eps_audit_lower']:.3g} vs claimed {row['eps_client_at_audit_delta']:.3g} "
                     f"at delta {row['audit_delta']:.2g} ({row['audit_correct']:.0f}/{row['audit_guesses']:.0f} "
                     f"canary guesses right)")
    if math.isfinite(row.get("mia_auc", math.nan)):
        parts.append(f"membership AUC {row['mia_auc']:.3f} (bound {row['mia_auc_bound']:.3f})")
    return "audit: " + "; ".join(parts) if parts else ""


CHECKPOINT = "checkpoint.pt"
TIMING_COLUMNS = ("seconds", "audit_seconds")  # wall-clock columns: the only ones that differ between equal runs


def run_federated(cfg: ExperimentConfig, *, progress: Callable[[str], None] | None = print,
                  plan: Plan | None = None, run_dir: Path | None = None, resume: bool = False,
                  test_fault: str = "") -> pd.DataFrame:
    """Run one federated training on the connected Ray cluster (or a fresh local one) and
    return its round table. With ``run_dir``, the table and a checkpoint are written every
    ``run.checkpoint_every`` rounds; ``resume=True`` continues from that checkpoint and
    gives the same table as an uninterrupted run (every random stream is derived from
    (seed, round), so no generator state needs saving). ``test_fault``: tests only (see
    :class:`Federation`)."""
    import torch

    from orchestrator.cluster import ensure_ray

    plan = plan or resolve_config(cfg)
    cfg = plan.config
    ensure_ray()
    fed = Federation(plan, test_fault=test_fault).start()
    rows: list[dict] = []
    start = 0
    if resume:
        state = torch.load(run_dir / CHECKPOINT, weights_only=True)
        fed.load_state_dict(state)
        start = int(state["round"])
        rows = [r for r in state["rows"] if r["round"] <= start]
        if progress:
            progress(f"resumed {run_dir} after round {start}")
    t0 = time.perf_counter()
    try:
        for r in range(start, cfg.server.rounds):
            row = fed.step(r)
            if row is None:
                if progress:
                    progress(f"stopped before round {r + 1}: {fed.stopped_reason}")
                if rows:  # the audit belongs to the model the run ends with
                    t_audit = time.perf_counter()
                    rows[-1].update(fed.audit())
                    rows[-1]["audit_seconds"] += time.perf_counter() - t_audit
                break
            rows.append(row)
            if progress:
                progress(format_row(row, cfg.server.rounds))
            if run_dir is not None and ((r + 1) % cfg.run.checkpoint_every == 0 or r + 1 == cfg.server.rounds):
                save_checkpoint(run_dir, {**fed.state_dict(), "rows": rows}, rounds_frame(rows, cfg))
    finally:
        fed.close()
    if progress:
        if rows and format_audit(rows[-1]):
            progress(format_audit(rows[-1]))
        progress(f"{len(rows) - (start if resume else 0)} rounds in {time.perf_counter() - t0:.1f}s")
    df = rounds_frame(rows, cfg)
    if run_dir is not None:
        write_tables(run_dir, df)
    return df


def save_checkpoint(run_dir: Path, state: dict, df: pd.DataFrame) -> None:
    """Checkpoint (tensors and plain containers: loads with ``torch.load(weights_only=True)``) and the
    table so far, each written to a temporary file and renamed, so a kill never leaves a torn file."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run_dir / CHECKPOINT)
    write_tables(run_dir, df)


def write_tables(run_dir: Path, df: pd.DataFrame) -> None:
    for name, write in (("rounds.parquet", lambda p: df.to_parquet(p, index=False)),
                        ("rounds.csv", lambda p: df.to_csv(p, index=False))):
        tmp = run_dir / (name + ".tmp")
        write(tmp)
        os.replace(tmp, run_dir / name)
