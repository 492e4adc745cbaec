"""The validation split: records held out of the training pool before partitioning (``data.validation``).

Every choice a user or a sweep makes -- a recipe, a noise level, a trial, a stopping round -- is made on
these records; the test set only gives the number reported for what was chosen (GUIDE section 3). They
are the analyst's own: no client ever holds one, so the guarantees (which cover the clients' records)
do not cover them, and the choices made on them cost no client any privacy. The rows are drawn by
position from ``(data.split_seed, n)`` alone, never from labels or pixels: what a validation record
holds changes neither which records are held out nor any client's shard (tests/test_holdout.py).

A source with its own validation split (a MedMNIST ``.npz`` with ``val_images``/``val_labels``) keeps
it: those rows are the validation set, and never training records even with ``data.validation = 0``.
"""

from __future__ import annotations

import numpy as np

from actors.partition import Partition
from privacy.seeding import SPLIT, numpy_rng

_VALIDATION_STREAM = 1  # sub-stream of SPLIT (stream 0 is the train/test split of actors.data)


def validation_size(n: int, validation: float) -> int:
    """How many of ``n`` training records ``data.validation`` holds out: a fraction below 1 (rounded), or a
    count of at least 1; 0 for none."""
    return int(round(validation * n)) if validation < 1 else int(validation)


def holdout(n: int, validation: float, seed: int, fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(pool, validation rows)``, sorted indices into the ``n`` training records. ``fixed``: the rows the
    source designates as its validation split (then used whenever ``validation > 0``, and never pooled)."""
    if fixed is not None and len(fixed):
        rows = np.sort(np.asarray(fixed, dtype=np.int64))
        pool = np.setdiff1d(np.arange(n, dtype=np.int64), rows)
        return pool, rows if validation > 0 else rows[:0]
    k = validation_size(n, validation)
    if not 0 <= k < n:
        raise ValueError(f"holds out {k} of {n} training records: leaves no training pool")
    if validation > 0 and k == 0:
        raise ValueError(f"holds out no record of {n} (rounded): give a larger fraction or a count")
    order = numpy_rng(seed, SPLIT, _VALIDATION_STREAM).permutation(n)
    return np.sort(order[k:]).astype(np.int64), np.sort(order[:k]).astype(np.int64)


def holdout_of(data_cfg, data) -> tuple[np.ndarray, np.ndarray]:
    """:func:`holdout` of an :class:`actors.data.ImageData` under a :class:`privacy.config.experiment.DataConfig`."""
    return holdout(len(data.y_train), data_cfg.validation, data_cfg.split_seed, data.validation_rows)


def in_pool(part: Partition, pool: np.ndarray) -> Partition:
    """A partition of ``labels[pool]`` with its indices mapped back to rows of the whole training array."""
    return Partition(tuple(pool[i] for i in part.indices), part.histogram)
