"""Resource arithmetic: how many client actors fit, how many threads each gets, what a trial reserves.

Pure functions of numbers (plus :func:`cluster_capacity`, which asks Ray or the machine),
so that CPU-only tests cover what a GPU cluster will do. Ray's rules apply: fractional
resources share a device (``num_gpus = 0.25``: four actors per GPU), a fraction above 1 is
not allowed, and a placement-group bundle must reserve something.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

_EPS = 1e-9  # 1 / 0.1 is 9.999999999999998 in floating point: count it as 10


def cluster_capacity() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected Ray cluster, else of this machine."""
    try:
        import ray

        if ray.is_initialized():
            res = ray.cluster_resources()
            return float(res.get("CPU", 1)), float(res.get("GPU", 0))
    except Exception:  # pragma: no cover - ray import problems surface elsewhere
        pass
    return float(os.cpu_count() or 1), float(_local_gpus())


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install counts as no GPU
        return 0


def auto_num_actors(num_clients: int, num_cpus: float, num_gpus: float, capacity: tuple[float, float]) -> int:
    """One actor per client up to what the cluster can run at once, by CPUs and, if actors ask for
    them, by GPUs: 4 CPUs and 1 GPU with (1 CPU, 0.25 GPU) per actor give 4 actors."""
    cpus, gpus = capacity
    fits = [math.floor(cpus / num_cpus + _EPS) if num_cpus > 0 else num_clients]
    if num_gpus > 0:
        fits.append(math.floor(gpus / num_gpus + _EPS))
    return max(1, min(num_clients, *fits))


def actor_threads(num_cpus: float) -> int:
    """Torch threads for an actor holding ``num_cpus`` Ray CPUs (at least one)."""
    return max(1, int(math.floor(num_cpus + _EPS)))


def server_threads(server_cpus: float, client_cpus: float, num_client_actors: int) -> int:
    """Torch threads for the server actor. It evaluates and aggregates while its client actors wait for the
    next round, so it may use the CPUs they hold as well as its own: 1 + 1 CPU per client actor gives 2 threads
    for the server's evaluation, where one would leave a core idle (benchmarks/evaluation.py). The actor caps
    this at its node's cores (:class:`actors.server.ServerActor`)."""
    return actor_threads(max(server_cpus + client_cpus * num_client_actors, 1))


@dataclass(frozen=True)
class TrialPlacement:
    """The placement-group bundles of one federated trial and which bundle each actor goes in.

    Bundle 0 is the trial's own process (the driver of its federation); Ray Tune's
    ``PlacementGroupFactory`` accepts it empty. Actors that reserve nothing get no bundle (None).
    """

    bundles: tuple[dict[str, float], ...]
    server_bundle: int | None  # index into bundles
    client_bundles: tuple[int | None, ...]  # one per client actor

    def total(self) -> dict[str, float]:
        """Resources the trial reserves in all, e.g. {"CPU": 3.0, "GPU": 1.0}."""
        out: dict[str, float] = {}
        for b in self.bundles:
            for k, v in b.items():
                out[k] = out.get(k, 0.0) + v
        return out


def trial_placement(*, driver_cpus: float, server_cpus: float, client_cpus: float, client_gpus: float,
                    num_actors: int) -> TrialPlacement:
    """Bundles [{"CPU": driver}, {"CPU": server}, {"CPU": c, "GPU": g} x actors], zero amounts left out
    and bundles that would reserve nothing dropped (Ray rejects them)."""
    for name, v in (("driver_cpus", driver_cpus), ("server_cpus", server_cpus), ("client_cpus", client_cpus),
                    ("client_gpus", client_gpus)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} = {v!r}: must be a finite number >= 0")
    if client_gpus > 1 and not float(client_gpus).is_integer():
        raise ValueError(f"client_gpus = {client_gpus}: fractions are allowed only below 1 (Ray's rule)")
    if not (isinstance(num_actors, int) and num_actors >= 1):
        raise ValueError(f"num_actors = {num_actors!r}: must be an integer >= 1 (resolve the config first)")

    def bundle(cpu: float, gpu: float = 0.0) -> dict[str, float]:
        return {k: float(v) for k, v in (("CPU", cpu), ("GPU", gpu)) if v > 0}

    bundles = [bundle(driver_cpus)]
    server = None
    if bundle(server_cpus):
        server = len(bundles)
        bundles.append(bundle(server_cpus))
    clients: list[int | None] = []
    for _ in range(num_actors):
        b = bundle(client_cpus, client_gpus)
        clients.append(len(bundles) if b else None)
        if b:
            bundles.append(b)
    return TrialPlacement(tuple(bundles), server, tuple(clients))


def placement_for_config(cfg, *, driver_cpus: float = 1.0) -> TrialPlacement:
    """:func:`trial_placement` of a resolved :class:`privacy.config.experiment.ExperimentConfig`."""
    c = cfg.client
    return trial_placement(driver_cpus=driver_cpus, server_cpus=cfg.server.num_cpus, client_cpus=c.num_cpus,
                           client_gpus=c.num_gpus, num_actors=c.num_actors)
