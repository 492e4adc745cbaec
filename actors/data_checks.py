"""Checks of data files when they are opened: a bad file is one :class:`DataError` that names the file
and the rule it breaks (resolve turns it into a one-line config error, exit code 2), never a traceback
from numpy or a run that silently trains on the wrong thing.

Every check is whole-array numpy (O(n), no Python loop over records). ``name`` below is what a message
calls the file (``breast.npz``, ``raw/train-labels-idx1-ubyte.gz``); ``what`` names the array in it.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

PIXEL_MAX = 255  # images are stored as 8-bit pixels (MedMNIST, IDX), or floats on that same scale
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (of members, or empty)
_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one MNIST uses


class DataError(ValueError):
    """The data set cannot be found or read, or breaks a rule; the message says which file and why."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---- images and labels (any source) ---------------------------------------------------------------

def check_images(a: np.ndarray, name: str, what: str, *, ranks: tuple[int, ...]) -> None:
    """Real numbers, of rank in ``ranks`` ((N, H, W) or (N, H, W, C) with C = 1 or 3), at least one
    image, every value finite and in [0, 255]."""
    if a.dtype.kind not in "uif":
        raise DataError(f"{name}: {what} has dtype {a.dtype}; images must be numbers (uint8 pixels 0-255)")
    if a.ndim not in ranks:
        layouts = " or ".join({3: "(N, H, W)", 4: "(N, H, W, C)"}[r] for r in ranks)
        raise DataError(f"{name}: {what} has shape {a.shape}; expected {layouts}")
    if a.shape[0] == 0 or 0 in a.shape[1:3]:
        raise DataError(f"{name}: {what} has shape {a.shape}: no images")
    if a.ndim == 4 and a.shape[3] not in (1, 3):
        raise DataError(f"{name}: {what} has {a.shape[3]} channels (shape {a.shape}); expected 1 or 3")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(f"{name}: {what} has {int(np.size(a) - np.isfinite(a).sum())} non-finite values (nan/inf)")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > PIXEL_MAX:
        raise DataError(f"{name}: {what} has values in [{lo}, {hi}]; pixels must lie in [0, {PIXEL_MAX}]")


def check_labels(y: np.ndarray, name: str, what: str, *, count: int, images: str,
                 classes: int | None = None) -> np.ndarray:
    """One integer class index per image, in [0, classes) (``classes`` None: only >= 0). Returns them as
    int64 (N,): MedMNIST stores (N, 1)."""
    if y.ndim == 2 and y.shape[1] != 1:
        raise DataError(f"{name}: {what} has shape {y.shape}: multi-label data (one column per label) is not "
                        "supported; one class index per image is")
    if y.ndim not in (1, 2):
        raise DataError(f"{name}: {what} has shape {y.shape}; expected (N,) or (N, 1)")
    if y.dtype.kind not in "iu":
        raise DataError(f"{name}: {what} has dtype {y.dtype}; labels must be integer class indices")
    y = y.reshape(-1)
    if len(y) != count:
        raise DataError(f"{name}: {count} {images} but {len(y)} {what}")
    if y.min() < 0:  # count > 0: check_images has seen at least one image
        raise DataError(f"{name}: {what} include negative labels (min {y.min()}); labels must be class indices >= 0")
    if classes is not None and y.max() >= classes:
        raise DataError(f"{name}: {what} include {y.max()}; this data set's labels lie in [0, {classes})")
    return y.astype(np.int64)


def check_same_image_shape(train: np.ndarray, test: np.ndarray, name: str) -> None:
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"{name}: train images are {train.shape[1:]} but test images {test.shape[1:]}")


def check_classes(num_classes: int, name: str, train_labels: np.ndarray | None = None) -> None:
    """At least two classes, and at least two of them among the training labels."""
    if num_classes < 2:
        raise DataError(f"{name}: every label is 0; a classifier needs at least 2 classes")
    if train_labels is not None:
        present = np.unique(train_labels)
        if len(present) < 2:
            raise DataError(f"{name}: every training label is {int(present[0])}; a classifier needs at least 2 "
                            "classes to learn from")


# ---- .npz (MedMNIST layout) ------------------------------------------------------------------------

NPZ_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
NPZ_VALIDATION = ("val_images", "val_labels")  # optional: the file's own validation split (MedMNIST has one)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four MedMNIST arrays of ``path``; a DataError if it is empty, not an .npz, or lacks one."""
    name = path.name
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise DataError(f"{name}: empty file")
    if head not in _ZIP_MAGIC:
        raise DataError(f"{name}: not an .npz archive (a zip of .npy arrays, as numpy.savez writes)")
    try:
        check_declared_sizes(path)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{name}: unreadable .npz ({_first_line(exc)})") from exc
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in NPZ_ARRAYS + NPZ_VALIDATION if k in f.files}
    except (ValueError, OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{name}: unreadable .npz ({_first_line(exc)})") from exc
    missing = [k for k in NPZ_ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{name}: missing arrays {missing} (MedMNIST layout expected: {', '.join(NPZ_ARRAYS)})")
    if len([k for k in NPZ_VALIDATION if k in arrays]) == 1:
        raise DataError(f"{name}: has one of {list(NPZ_VALIDATION)} without the other")
    return arrays


def available_memory() -> int:
    """Bytes of physical memory of this machine (what no single array may exceed)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_declared_sizes(path: Path) -> None:
    """Read only the .npy headers of the arrays in ``path``: an array whose declared shape would take more
    than half this machine's memory, or more bytes than its member holds, is a DataError before numpy
    allocates it (a crafted header can declare terabytes in a file of a few bytes)."""
    name, limit = path.name, available_memory() // 2
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            if key not in NPZ_ARRAYS + NPZ_VALIDATION:
                continue
            with zf.open(info) as fh:
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(fh))
                if read_header is None:
                    raise DataError(f"{name}: {key} is not a .npy array of format 1.0 or 2.0")
                shape, _, dtype = read_header(fh)
                header = fh.tell()
            if dtype.hasobject:  # pickled objects: np.load below refuses them (allow_pickle=False)
                continue
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > limit:
                raise DataError(f"{name}: {key} declares shape {shape} ({nbytes / 2**30:.3g} GiB), more than half "
                                f"this machine's memory ({limit * 2 / 2**30:.3g} GiB)")
            if nbytes != info.file_size - header:
                raise DataError(f"{name}: {key} declares shape {shape} ({nbytes} bytes) but holds "
                                f"{info.file_size - header} bytes")


# ---- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------------

def read_bytes(path: Path, name: str) -> bytes:
    """The (gunzipped) bytes of ``path``; a DataError if the file or its gzip stream is broken."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{name}: unreadable ({_first_line(exc)})") from exc


def parse_idx(data: bytes, name: str, *, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array of rank ``ndim`` (LeCun's format: two zero bytes, a type code, the rank,
    one big-endian uint32 per dimension, then the bytes). The payload must be exactly the header's size."""
    if not data:
        raise DataError(f"{name}: empty file")
    if len(data) < 4:
        raise DataError(f"{name}: truncated: {len(data)} bytes, shorter than an IDX header")
    zero, dtype_code, rank = struct.unpack(">HBB", data[:4])
    if zero != 0:
        expected = f"0000{_IDX_UBYTE:02x}{ndim:02x}"
        raise DataError(f"{name}: not an IDX file (magic number {data[:4].hex()}, expected {expected})")
    if dtype_code != _IDX_UBYTE:
        raise DataError(f"{name}: IDX type code 0x{dtype_code:02x}; only unsigned bytes (0x08) are supported")
    if rank != ndim:
        raise DataError(f"{name}: IDX array of rank {rank}; expected {ndim}")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{name}: truncated: {len(data)} bytes, shorter than its {start}-byte header")
    dims = struct.unpack(">" + "I" * ndim, data[4:start])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - start != expected:
        shape = "x".join(map(str, dims))
        state = "truncated" if len(data) - start < expected else "longer than its header says"
        raise DataError(f"{name}: {state}: header says {shape} = {expected:,} bytes of data, file has "
                        f"{len(data) - start:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)
