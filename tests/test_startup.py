"""Start-up (issue 14): the driver's data shared with the actors on its node, and the driver's own start-up
overlapping ``ray.init``. What an actor gets must be the data it would have read, and anything doubtful
(another node, another config, a file changed or gone) must send it back to reading its own copy."""

import os

import numpy as np
import pytest

from actors.client import load_on_this_node
from actors.data import ImageData, load_dataset, source_files
from actors.model_inputs import SharedData, offering, share
from orchestrator.cluster import start_ray_while
from privacy.config.experiment import load_config

pytestmark = pytest.mark.usefixtures("ray_local")


def digits_npz(path):
    digits = load_dataset("digits")
    np.savez(path, train_images=(digits.x_train[:, 0] * 255).astype(np.uint8), train_labels=digits.y_train,
             test_images=(digits.x_test[:, 0] * 255).astype(np.uint8), test_labels=digits.y_test)
    return path


def npz_config(path):
    return load_config(overrides=["data.dataset=npz", f"data.root={path}"])


def same(a: ImageData, b: ImageData) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_test", "y_test")) \
        and (a.num_classes, a.mean, a.std) == (b.num_classes, b.mean, b.std)


def test_an_actor_on_the_drivers_node_gets_the_data_it_would_have_read(tmp_path):
    cfg = npz_config(digits_npz(tmp_path / "d.npz"))
    read = load_on_this_node(cfg)
    (tmp_path / "shared").mkdir()
    shared = share(cfg.data, read, tmp_path / "shared")

    got = shared.load(cfg.data)

    assert isinstance(got.x_train, np.memmap) and same(got, read)
    assert same(load_on_this_node(cfg, shared), read)
    with offering(shared):  # what the server's evaluator loads
        assert isinstance(load_on_this_node(cfg).x_train, np.memmap)
    assert not isinstance(load_on_this_node(cfg).x_train, np.memmap)
    x, y = got.tensors("test")  # read-only arrays: copied, no warning
    assert x.shape[0] == y.shape[0] == len(read.y_test)


def test_anything_doubtful_means_reading_the_files_again(tmp_path):
    path = digits_npz(tmp_path / "d.npz")
    cfg = npz_config(path)
    (tmp_path / "shared").mkdir()
    shared = share(cfg.data, load_on_this_node(cfg), tmp_path / "shared")

    assert shared.load(load_config(overrides=["data.dataset=npz", f"data.root={path}",
                                              "data.test_fraction=0.3"]).data) is None
    assert SharedData("another node", shared.config, shared.files, shared.fields).load(cfg.data) is None
    os.utime(path, ns=(0, 0))  # the data set's file replaced
    assert shared.load(cfg.data) is None
    path.unlink()  # gone: reading it is what reports it, naming the node
    with pytest.raises(ValueError, match="on node .*not found"):
        load_on_this_node(cfg, shared)


def test_a_copy_removed_after_start_up_is_read_again(tmp_path):
    cfg = npz_config(digits_npz(tmp_path / "d.npz"))
    (tmp_path / "shared").mkdir()
    shared = share(cfg.data, load_on_this_node(cfg), tmp_path / "shared")
    for f in (tmp_path / "shared").iterdir():
        f.unlink()

    assert shared.load(cfg.data) is None
    assert not isinstance(load_on_this_node(cfg, shared).x_train, np.memmap)


def test_every_source_names_the_files_it_reads(mnist_root):
    assert [p.name for p in source_files("mnist5k")] == ["mnist_5k.csv.gz"]
    assert source_files("digits")[0].is_file()
    assert len(source_files("mnist", str(mnist_root))) == 4


def test_the_work_beside_ray_init_returns_or_raises_its_own():
    assert start_ray_while(lambda: 42) == (42, False)  # Ray is up already: nothing started here

    def bad():
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        start_ray_while(bad)
