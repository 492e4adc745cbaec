"""Every model input depends on its own record alone or on public constants (GUIDE section 3, issue 16.1).

A statistic of the private data (a normalisation mean, a feature scaler) would be a release that no
accountant books: one record could move every other record's input. These tests change or remove one
training record of a small written data set and check that no other record's model input
(``ImageData.tensors``) or ScatterNet feature moves, bit for bit.
"""


import numpy as np
import pytest
import torch

from actors.data import load_dataset
from actors.features import scatter_transform, scatternet
from tests.conftest import write_idx

N_TRAIN, N_TEST, SIDE = 12, 4, 28  # side 28: scatternet needs sides divisible by 4
CHANGED = 5  # the record that changes


def _images(rng, n: int, channels: int) -> np.ndarray:
    shape = (n, SIDE, SIDE) if channels == 1 else (n, SIDE, SIDE, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _write_npz(path, train_images, train_labels, test_images, test_labels):
    np.savez(path, train_images=train_images, train_labels=train_labels[:, None],
             test_images=test_images, test_labels=test_labels[:, None])
    return str(path)


def _neighbours(tmp_path, channels: int) -> tuple[str, str, str]:
    """Three .npz files: an original, the same with record CHANGED replaced (a far brighter image),
    and the same without its last training record."""
    rng = np.random.default_rng(channels)
    x, y = _images(rng, N_TRAIN, channels), np.arange(N_TRAIN) % 2
    xt, yt = _images(rng, N_TEST, channels), np.arange(N_TEST) % 2
    changed = x.copy()
    changed[CHANGED] = 255
    return (_write_npz(tmp_path / "original.npz", x, y, xt, yt),
            _write_npz(tmp_path / "changed.npz", changed, y, xt, yt),
            _write_npz(tmp_path / "removed.npz", x[:-1], y[:-1], xt, yt))


def _load(path: str):
    return load_dataset.__wrapped__("npz", path)  # uncached: each file loaded afresh


def _others(n: int, *skip: int) -> np.ndarray:
    return np.setdiff1d(np.arange(n), skip)


@pytest.mark.parametrize("channels", [1, 3])
def test_changing_one_record_moves_no_other_records_input(tmp_path, channels):
    original, changed, _ = _neighbours(tmp_path, channels)

    a, b = _load(original), _load(changed)
    xa, xb = a.tensors("train")[0], b.tensors("train")[0]

    keep = _others(N_TRAIN, CHANGED)
    assert not torch.equal(xa[CHANGED], xb[CHANGED])  # the changed record did change
    assert torch.equal(xa[keep], xb[keep])  # and nothing else, bit for bit
    assert torch.equal(a.tensors("test")[0], b.tensors("test")[0])
    assert (a.mean, a.std) == (b.mean, b.std)


def test_removing_one_record_moves_no_other_records_input(tmp_path):
    original, _, removed = _neighbours(tmp_path, 1)

    a, b = _load(original), _load(removed)

    assert torch.equal(a.tensors("train")[0][:-1], b.tensors("train")[0])
    assert torch.equal(a.tensors("test")[0], b.tensors("test")[0])


def test_npz_normalisation_is_the_public_constant_whatever_the_pixels(tmp_path):
    """MedMNIST pixels map to [-1, 1] with mean 0.5, std 0.5 per channel, not the data set's own moments."""
    rng = np.random.default_rng(0)
    dark = _write_npz(tmp_path / "dark.npz", rng.integers(0, 20, (8, SIDE, SIDE), dtype=np.uint8),
                      np.arange(8) % 2, rng.integers(0, 20, (2, SIDE, SIDE), dtype=np.uint8), np.arange(2))

    data = _load(dark)
    x = data.tensors("train")[0]

    assert data.mean == (0.5,) and data.std == (0.5,)
    np.testing.assert_allclose(x.numpy(), data.x_train * 2.0 - 1.0, atol=1e-6)


def test_changing_or_removing_one_record_moves_no_other_records_scatternet_features(tmp_path):
    """Through the on-disk feature cache: no other record's cached features move, and a record's cached
    features are the transform of that record alone."""
    original, changed, removed = _neighbours(tmp_path, 1)

    fa, fb, fc = (scatternet(_load(p)) for p in (original, changed, removed))
    a = _load(original)
    alone = {i: scatter_transform(a.tensors("train", np.array([i]))[0])[0].numpy() for i in (0, CHANGED)}

    keep = _others(N_TRAIN, CHANGED)
    assert not np.array_equal(fa.x_train[CHANGED], fb.x_train[CHANGED])
    np.testing.assert_allclose(fa.x_train[keep], fb.x_train[keep], rtol=0, atol=1e-6)
    np.testing.assert_allclose(fa.x_train[:-1], fc.x_train, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fa.x_test, fb.x_test, rtol=0, atol=1e-6)
    for i, features in alone.items():
        np.testing.assert_allclose(fa.x_train[i], features, rtol=0, atol=1e-6)


def test_idx_loader_inputs_are_per_record_too(tmp_path):
    """The MNIST loader uses the published MNIST constants: changing one record moves only that record."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N_TRAIN, SIDE, SIDE))
    changed = x.copy()
    changed[CHANGED] = 255
    for root, images in ((tmp_path / "a", x), (tmp_path / "b", changed)):
        (root / "raw").mkdir(parents=True)
        write_idx(root / "raw" / "train-images-idx3-ubyte.gz", images)
        write_idx(root / "raw" / "train-labels-idx1-ubyte.gz", np.arange(N_TRAIN) % 10)
        write_idx(root / "raw" / "t10k-images-idx3-ubyte.gz", x[:N_TEST])
        write_idx(root / "raw" / "t10k-labels-idx1-ubyte.gz", np.arange(N_TEST))

    a, b = (load_dataset.__wrapped__("mnist", str(tmp_path / r)) for r in ("a", "b"))

    keep = _others(N_TRAIN, CHANGED)
    assert torch.equal(a.tensors("train")[0][keep], b.tensors("train")[0][keep])
    assert (a.mean, a.std) == (b.mean, b.std) == ((0.1307,), (0.3081,))
