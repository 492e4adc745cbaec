"""The driver side of one federated run: start the actors, run the rounds, write the table.

``Federation`` is what both the CLI (:func:`run_federated`) and a Ray Tune trial use: ``start()``,
then the round loop (:mod:`orchestrator.round_loop`), then ``close()``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from actors.client import ClientActor, initial_weights
from actors.data import DataError
from actors.model_inputs import share
from actors.server import ServerActor
from orchestrator.files import atomic_write
from orchestrator.resolve import Plan, load_data, resolve_config
from orchestrator.resources import actor_threads, server_threads
from orchestrator.round_loop import CHECKPOINT, TIMING_COLUMNS, format_audit, rounds_frame, run_rounds
from privacy.config.experiment import ConfigError, ExperimentConfig

__all__ = ["CHECKPOINT", "TIMING_COLUMNS", "Federation", "run_federated", "load_checkpoint"]


class Federation:
    """One federated run on the connected Ray cluster.

    ``client_cls`` and ``mechanism`` replace the client actor class and the server's client-level
    mechanism (tests use them to inject faults and deliberate privacy bugs; runs never do)."""

    def __init__(self, plan: Plan, *, client_cls: type = ClientActor, mechanism=None):
        self.plan, self.config = plan, plan.config
        self.client_cls, self.mechanism = client_cls, mechanism
        self.server = None
        self.clients: list = []
        self._scratch: tempfile.TemporaryDirectory | None = None  # the data shared with the actors while they build

    def start(self) -> "Federation":
        """Create the client actors and the server actor (all at once: they build in parallel) and wait
        until every one has its data. Actors on this process's node take the data this process loaded
        (:func:`actors.model_inputs.share`) instead of each reading the files again; those elsewhere read
        their own node's copy."""
        import ray

        cfg, plan = self.config, self.plan
        c = cfg.client
        self._scratch = tempfile.TemporaryDirectory(prefix="fedfrontier-data-")
        try:
            shared = share(cfg.data, load_data(cfg), Path(self._scratch.name))  # resolve_config loaded it (cached)
        except ConfigError:  # gone since: each actor reads its own copy and names the node that lacks it
            shared = None
        client_cls = ray.remote(self.client_cls).options(num_cpus=c.num_cpus, num_gpus=c.num_gpus,
                                                         max_restarts=c.max_restarts, max_task_retries=0)
        self.clients = [client_cls.remote(cfg, shards, num_threads=actor_threads(c.num_cpus), shared=shared)
                        for shards in plan.actor_shards()]
        ch, h, _ = plan.image_shape
        args = (cfg, self.clients, plan.clients, initial_weights(cfg, ch, plan.num_classes, h))
        kwargs = dict(num_threads=server_threads(cfg.server.num_cpus, c.num_cpus, c.num_actors),
                      mechanism=self.mechanism, shared=shared)
        if not cfg.server.in_driver:  # the server actor
            self.server = ray.remote(ServerActor).options(num_cpus=cfg.server.num_cpus).remote(*args, **kwargs)
        else:  # built here while the client actors start: no process of its own to import torch
            try:
                self.server = InProcess(ServerActor(*args, **kwargs))
            except DataError as exc:  # the evaluator's data is gone from this node since resolve_config read it
                self.close()
                raise self._data_error(str(exc)) from exc
        self._wait_until_built()
        self._drop_shared()  # every actor has taken its rows; one restarted later reads its own copy
        return self

    def _drop_shared(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _wait_until_built(self) -> None:
        """Every actor has loaded its data; an actor that could not (a data file missing or damaged on its
        node) is a ConfigError naming that node, not a failure in every round."""
        import ray
        from ray.exceptions import RayActorError

        try:
            ray.get([c.client_ids.remote() for c in self.clients] + [self.server.budget_exceeded_next_round.remote()])
        except RayActorError as exc:
            self.close()
            lines = [ln for ln in str(exc).splitlines() if "DataError" in ln or "Error:" in ln]
            raise self._data_error((lines[-1] if lines else str(exc).splitlines()[0]).strip()[:300]) from exc

    def _data_error(self, why: str) -> ConfigError:
        d = self.config.data
        return ConfigError("data.root" if d.root else "data.dataset", d.root or d.dataset, why)

    def _call(self, method: str, *args):
        import ray

        return ray.get(getattr(self.server, method).remote(*args))

    def step(self, round_idx: int) -> dict:
        """Run round ``round_idx`` (0-based) and return its metrics row."""
        return self._call("run_round", round_idx)

    def budget_exceeded_next_round(self) -> str:
        return self._call("budget_exceeded_next_round")

    def final_columns(self, evaluate: bool = True) -> dict:
        """The audit (and, with ``evaluate``, accuracy and loss) of the model as it stands: the last row's."""
        return self._call("final_columns", evaluate)

    def state_dict(self) -> dict:
        return self._call("state_dict")

    def load_state_dict(self, state: dict) -> None:
        self._call("load_state_dict", state)

    def close(self) -> None:
        import ray

        for a in [self.server, *self.clients]:
            if a is not None and not isinstance(a, InProcess):
                ray.kill(a)
        self.server, self.clients = None, []
        self._drop_shared()


class InProcess:
    """An object of this process behind an actor handle's calling convention: ``handle.method.remote(*args)``
    runs the method now and returns an ObjectRef of its result, so that the federation (and a test) calls
    the server alike wherever it runs. An exception is raised by ``remote`` itself."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name: str):
        return _Now(getattr(self._obj, name))


class _Now:
    def __init__(self, method):
        self._method = method

    def remote(self, *args, **kwargs):
        import ray

        return ray.put(self._method(*args, **kwargs))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by the round loop; a missing or damaged file is a ConfigError naming it."""
    import torch

    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise ConfigError("--resume", str(path), f"not a readable fedfrontier checkpoint ({type(exc).__name__}); "
                                                 "start the run again without --resume") from exc
    missing = {"round", "weights", "rows", "config"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise ConfigError("--resume", str(path), f"checkpoint lacks {sorted(missing)}: written by another version?")
    return state


def check_same_config(state: dict, saved_config: dict, path: Path) -> None:
    """A checkpoint holds the config of the run directory it is resumed from (its config.json); else a
    ConfigError naming the keys that differ (saved state is input: checked before anything starts)."""
    ours, theirs = state["config"], saved_config
    if not isinstance(ours, dict) or not all(isinstance(v, dict) for v in ours.values()):
        raise ConfigError("--resume", str(path), "its config is not a table of sections: written by another version?")
    if ours != theirs:
        keys = sorted(f"{s}.{k}" for s in set(ours) | set(theirs) for k in set(ours.get(s, {})) | set(theirs.get(s, {}))
                      if ours.get(s, {}).get(k) != theirs.get(s, {}).get(k))
        raise ConfigError("--resume", str(path), f"its config differs from config.json in {keys[:5]}: "
                                                 "not this run's checkpoint")


def check_resumable(state: dict, plan: Plan, path: Path) -> None:
    """A checkpoint fits the run its config resolves to: weights of the model that config builds, ledgers of
    its clients; else a ConfigError, before any actor starts."""
    weights = state["weights"]
    if not hasattr(weights, "numel") or weights.numel() != plan.num_params:
        raise ConfigError("--resume", str(path), f"holds {getattr(weights, 'numel', lambda: '?')()} weights; "
                                                 f"model {plan.config.model.name} has {plan.num_params}")
    guarantees = state.get("guarantees")
    if not isinstance(guarantees, dict):
        raise ConfigError("--resume", str(path), "holds no ledgers this version reads (written by another version?)")
    clients = {int(k) for name in ("record", "client_server") for k in guarantees.get(name, {}).get("histories", {})}
    if clients and max(clients) >= plan.config.data.num_clients:
        raise ConfigError("--resume", str(path), f"has a ledger of client {max(clients)}; the run has "
                                                 f"{plan.config.data.num_clients} clients")


def run_federated(cfg: ExperimentConfig, *, progress: Callable[[str], None] | None = print, plan: Plan | None = None,
                  run_dir: Path | None = None, resume: bool = False, **federation_options) -> pd.DataFrame:
    """Run one federated training on the connected Ray cluster (or a fresh local one) and return its
    round table. With ``run_dir``, the table and a checkpoint are written every ``run.checkpoint_every``
    rounds; ``resume=True`` continues from that checkpoint to the same table as an uninterrupted run
    (every random stream is derived from (seed or noise seed, round), so no generator state is saved)."""
    from orchestrator.cluster import ensure_ray

    plan = plan or resolve_config(cfg)
    cfg = plan.config
    ensure_ray()
    fed = Federation(plan, **federation_options).start()
    rows, start = [], 0
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT)
        fed.load_state_dict(state)
        start = int(state["round"])
        rows = [r for r in state["rows"] if r["round"] <= start]
        if progress:
            progress(f"resumed {run_dir} after round {start}")

    def on_row(row: dict, checkpoint: dict | None) -> None:
        if run_dir is not None and checkpoint is not None:
            save_checkpoint(run_dir, checkpoint, rounds_frame(checkpoint["rows"]))

    t0 = time.perf_counter()
    try:
        rows = run_rounds(fed, cfg, on_row=on_row, rows=rows, start=start, progress=progress)
    finally:
        fed.close()
    if progress:
        if rows and format_audit(rows[-1]):
            progress(format_audit(rows[-1]))
        progress(f"{len(rows) - start} rounds in {time.perf_counter() - t0:.1f}s")
    df = rounds_frame(rows)
    if run_dir is not None:
        write_tables(run_dir, df)
    return df


def save_checkpoint(run_dir: Path, state: dict, df: pd.DataFrame) -> None:
    """Checkpoint (loads with ``torch.load(weights_only=True)``) and the table so far, each written to a
    temporary file and renamed, so a kill never leaves a torn file."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))
    write_tables(run_dir, df)


def write_tables(run_dir: Path, df: pd.DataFrame) -> None:
    for name, write in (("rounds.parquet", lambda p: df.to_parquet(p, index=False)),
                        ("rounds.csv", lambda p: df.to_csv(p, index=False))):
        atomic_write(run_dir / name, write)
