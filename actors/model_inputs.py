"""What a model trains on: a data set (:mod:`actors.data`), then ``data.features`` (:mod:`actors.features`).

Also how the driver hands the data it loaded to the actors on its own node (:func:`share`,
:class:`SharedData`: memory-mapped files), so that they do not each read, parse and hash the same files
again at start-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from actors.data import DataError, ImageData, load_dataset, source_files
from actors.features import apply_features


def load_from_config(data_cfg, *, cache: bool = True) -> ImageData:
    """The data a model trains on for a :class:`privacy.config.experiment.DataConfig`: :func:`load_dataset`, then
    ``data.features`` (actors/features.py). ``cache=False`` loads afresh and keeps nothing: for actors that
    take the tensors they need once and drop the rest."""
    args = (data_cfg.dataset, data_cfg.root, data_cfg.test_fraction, data_cfg.split_seed, data_cfg.download)
    if data_cfg.features == "pixels":
        return load_dataset(*args) if cache else load_dataset.__wrapped__(*args)
    load = _load_features if cache else _load_features.__wrapped__
    return load(*args, data_cfg.features)


@lru_cache(maxsize=2)
def _load_features(dataset: str, root: str, test_fraction: float, seed: int, download: bool,
                   features: str) -> ImageData:
    return apply_features(load_dataset.__wrapped__(dataset, root, test_fraction, seed, download), features)


# --- the driver's copy, shared with the actors on its node ------------------------------------------

def _config_key(data_cfg) -> tuple:
    """Everything of a DataConfig that decides what :func:`load_from_config` returns."""
    return (data_cfg.dataset, data_cfg.root, data_cfg.test_fraction, data_cfg.split_seed, data_cfg.download,
            data_cfg.features)


def _fingerprint(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, modification time) of each file; OSError where one is missing."""
    return tuple((str(p), st.st_size, st.st_mtime_ns) for p in paths for st in [os.stat(p)])


@dataclass(frozen=True)
class _Mapped:
    """An array as the place of its bytes in a file on this node (a feature cache, actors/features.py, or a
    file :func:`share` wrote): another process on the node maps the same file and reads only its rows."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: str
    order: str

    @classmethod
    def of(cls, a) -> "_Mapped | None":
        """The map behind ``a`` if ``a`` is a whole memory-mapped file (not a view into one), else None."""
        if not (isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename):
            return None
        order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        return cls(str(a.filename), int(a.offset), tuple(a.shape), a.dtype.str, order)

    def open(self) -> np.memmap:
        return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape,
                         order=self.order)


@dataclass(frozen=True)
class SharedData:
    """The data the driver loaded, as read-only memory-mapped files on the driver's node, for its actors.

    An actor takes it (:meth:`load`) only where it runs on that node, for the same data config, and every
    file involved -- those the data set was read from, the feature cache, and the copies :func:`share`
    wrote -- is still there with the same size and modification time; anywhere else it reads its own copy,
    exactly as without this (a node of a cluster reads the files it has, and a file missing there is a
    DataError naming the node; an actor restarted after the driver removed its copies reads the files
    again). The arrays are the driver's own, so the data is the same either way."""

    node_id: str
    config: tuple
    files: tuple[tuple[str, int, int], ...]
    fields: dict  # ImageData's fields; its arrays as _Mapped

    def load(self, data_cfg) -> ImageData | None:
        """The driver's data where this process may use it (see the class), else None."""
        import ray

        if _config_key(data_cfg) != self.config or ray.get_runtime_context().get_node_id() != self.node_id:
            return None
        try:
            if _fingerprint(Path(p) for p, _, _ in self.files) != self.files:
                return None
            return ImageData(**{k: v.open() if isinstance(v, _Mapped) else v for k, v in self.fields.items()})
        except (OSError, ValueError):  # removed or replaced meanwhile: read as if never shared
            return None


def share(data_cfg, data: ImageData, folder: Path) -> SharedData | None:
    """``data`` -- what :func:`load_from_config` returned for ``data_cfg`` in this process, connected to Ray --
    for the actors on this node: each array not memory-mapped from a file already is written to ``folder``
    as ``.npy`` (the caller removes it once the actors have built). None where the files the data came from
    cannot be named or read: actors then read their own copy."""
    import ray

    try:
        files = list(source_files(data_cfg.dataset, data_cfg.root))
        fields = {}
        for f in dataclasses.fields(data):
            value = getattr(data, f.name)
            if isinstance(value, np.ndarray) and _Mapped.of(value) is None:
                path = Path(folder) / f"{f.name}.npy"
                np.save(path, value, allow_pickle=False)
                value = np.load(path, mmap_mode="r")
            mapped = _Mapped.of(value)
            if mapped is not None:
                files.append(Path(mapped.path))
            fields[f.name] = mapped or value
        fingerprint = _fingerprint(files)
    except (DataError, OSError):
        return None
    return SharedData(ray.get_runtime_context().get_node_id(), _config_key(data_cfg), fingerprint, fields)


_offered: SharedData | None = None


@contextlib.contextmanager
def offering(shared: SharedData | None) -> Iterator[None]:
    """Within this block, ``actors.client.load_on_this_node(cfg)`` may take ``shared`` (for code that loads
    the data without being handed it, such as the server's evaluator)."""
    global _offered
    saved, _offered = _offered, shared
    try:
        yield
    finally:
        _offered = saved


def offered() -> SharedData | None:
    """What :func:`offering` offers here and now (None outside it)."""
    return _offered
