"""Partitioning a training set over federated clients.

Pure numpy on the label vector; every partitioner takes an explicit seed and a
minimum client size and returns per-client index arrays plus a label histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privacy.seeding import PARTITION, numpy_rng


class PartitionError(ValueError):
    """The requested partition cannot be made (too few records, impossible constraints)."""


@dataclass(frozen=True)
class Partition:
    indices: tuple[np.ndarray, ...]  # one sorted int64 index array per client
    histogram: np.ndarray  # (num_clients, num_classes) label counts

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.indices])

    def summary(self) -> dict[str, float]:
        """Sizes and label skew: mean total-variation distance of client label mixes to the global one."""
        sizes = self.sizes
        mix = self.histogram / np.maximum(sizes[:, None], 1)
        glob = self.histogram.sum(0) / self.histogram.sum()
        return {"clients": len(sizes), "size_min": int(sizes.min()), "size_median": float(np.median(sizes)),
                "size_max": int(sizes.max()), "label_skew_tv": float(0.5 * np.abs(mix - glob).sum(1).mean())}


def _finish(parts: list[np.ndarray], labels: np.ndarray, num_classes: int, min_size: int) -> Partition:
    parts = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    small = min(len(p) for p in parts)
    if small < min_size:
        raise PartitionError(f"a client got {small} records, fewer than data.min_client_size = {min_size}; "
                             f"use fewer clients or a lower minimum")
    hist = np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
    return Partition(tuple(parts), hist)


def iid(labels: np.ndarray, num_clients: int, *, seed: int, min_size: int = 1) -> Partition:
    """Uniformly shuffled, near-equal shards."""
    _check_enough(labels, num_clients, min_size)
    perm = numpy_rng(seed, PARTITION).permutation(len(labels))
    return _finish(np.array_split(perm, num_clients), labels, int(labels.max()) + 1, min_size)


def dirichlet(labels: np.ndarray, num_clients: int, *, alpha: float, seed: int, min_size: int = 1,
              max_tries: int = 100) -> Partition:
    """Label-skewed shards: each class is spread over clients by proportions ~ Dir(alpha).

    Smaller alpha, more skew (Hsu, Qi, Brown 2019). Re-draws (seeded) until every client
    has at least ``min_size`` records.
    """
    if not alpha > 0:
        raise PartitionError(f"alpha = {alpha}: must be > 0")
    _check_enough(labels, num_clients, min_size)
    rng = numpy_rng(seed, PARTITION)
    num_classes = int(labels.max()) + 1
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            props = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        flat = [np.concatenate(p) for p in parts]
        if min(len(p) for p in flat) >= min_size:
            return _finish(flat, labels, num_classes, min_size)
    raise PartitionError(f"no Dirichlet(alpha={alpha}) split gave every one of {num_clients} clients "
                         f">= {min_size} records in {max_tries} draws; raise alpha or lower the minimum")


def shards(labels: np.ndarray, num_clients: int, *, shards_per_client: int, seed: int,
           min_size: int = 1) -> Partition:
    """Pathological non-IID split of McMahan et al. 2017: sort by label, cut into
    ``num_clients * shards_per_client`` shards, give each client ``shards_per_client`` at random."""
    _check_enough(labels, num_clients * shards_per_client, min_size)
    rng = numpy_rng(seed, PARTITION)
    order = np.argsort(labels + rng.random(len(labels)) * 0.5, kind="stable")  # random order within a class
    pieces = np.array_split(order, num_clients * shards_per_client)
    assign = rng.permutation(len(pieces)).reshape(num_clients, shards_per_client)
    parts = [np.concatenate([pieces[j] for j in row]) for row in assign]
    return _finish(parts, labels, int(labels.max()) + 1, min_size)


def _check_enough(labels: np.ndarray, pieces: int, min_size: int) -> None:
    if len(labels) < pieces * min_size:
        raise PartitionError(f"{len(labels)} training records cannot give {pieces} parts of >= {min_size} records")


def partition(labels: np.ndarray, *, scheme: str, num_clients: int, seed: int, alpha: float = 0.5,
              shards_per_client: int = 2, min_size: int = 1) -> Partition:
    """Dispatch on the config name of the scheme."""
    if scheme == "iid":
        return iid(labels, num_clients, seed=seed, min_size=min_size)
    if scheme == "dirichlet":
        return dirichlet(labels, num_clients, alpha=alpha, seed=seed, min_size=min_size)
    if scheme == "shards":
        return shards(labels, num_clients, shards_per_client=shards_per_client, seed=seed, min_size=min_size)
    raise PartitionError(f"unknown partition scheme {scheme!r}")
