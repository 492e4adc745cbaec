"""ScatterNet features: per-record (so no privacy cost), computed once, cached, and wired into runs."""

import time

import numpy as np
import pytest
import torch

from actors import features
from actors.data import ImageData, load_dataset
from actors.model_inputs import load_from_config
from actors.features import scatter_channels, scatter_transform, scatternet
from privacy.config.experiment import ConfigError, load_config


def small_data(seed: int = 0, n: int = 12) -> ImageData:
    rng = np.random.default_rng(seed)
    x = rng.random((n + 4, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, n + 4)
    return ImageData(x[:n], y[:n], x[n:], y[n:], 3, (0.5,), (0.25,))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDFRONTIER_CACHE", str(tmp_path))
    return tmp_path / "features"


def test_channel_count_is_that_of_j2_l8():
    assert scatter_channels(1) == 81  # 1 + J L + L^2 J (J - 1) / 2 with J = 2, L = 8
    assert scatter_channels(3) == 243
    assert scatter_transform(torch.zeros(2, 3, 32, 32)).shape == (2, 243, 8, 8)


def test_a_records_features_depend_on_that_record_alone():
    """The privacy argument: features are a per-record map, so a batch transforms as its rows do."""
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    batch = scatter_transform(x, chunk=4)  # chunks of 4 and 2
    alone = torch.cat([scatter_transform(x[i:i + 1]) for i in range(6)])

    assert torch.allclose(batch, alone, atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_features_are_nearly_invariant_to_a_one_pixel_shift():
    """What makes them good features: a shift well below 2^J moves the coefficients much less than the pixels."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 8:20, 12:15] = 1.0  # a bar
    shifted = torch.roll(x, 1, dims=3)

    f, g = scatter_transform(x), scatter_transform(shifted)

    assert float((f - g).norm() / f.norm()) < 0.5 * float((x - shifted).norm() / x.norm())


def test_cache_is_filled_once_and_read_back(cache, monkeypatch):
    data = small_data()
    calls = []
    real = features.scatter_transform
    monkeypatch.setattr(features, "scatter_transform", lambda x, **kw: calls.append(len(x)) or real(x, **kw))

    first = scatternet(data)
    second = scatternet(data)

    assert calls == [12, 4]  # train and test, once
    x, _ = data.tensors("train")
    assert np.allclose(first.x_train, real(x).numpy(), atol=1e-6)
    assert np.array_equal(first.x_test, second.x_test)
    assert first.shape == (81, 2, 2) and np.array_equal(first.y_train, data.y_train)
    assert not first.x_train.flags.writeable  # a read-only memory map of the cache
    xt, _ = first.tensors("train", np.array([3, 5]))
    assert torch.allclose(xt, torch.from_numpy(np.asarray(first.x_train[[3, 5]])))  # no second normalisation
    assert len(list(cache.glob("*.npy"))) == 2 and not list(cache.glob("*.tmp"))
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in cache.glob("*.npy"))  # features of private records
    assert cache.stat().st_mode & 0o777 == 0o700


def test_concurrent_first_uses_compute_once(cache, monkeypatch):
    """Two trials starting together on one node: one fills the cache, the other waits and reads it."""
    from concurrent.futures import ThreadPoolExecutor

    data = small_data()
    calls = []
    real = features.scatter_transform

    def slow(x, **kw):
        calls.append(len(x))
        time.sleep(0.3)  # long enough for the others to reach the lock
        return real(x, **kw)

    monkeypatch.setattr(features, "scatter_transform", slow)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: scatternet(data), range(3)))

    assert calls == [12, 4]
    assert all(np.array_equal(r.x_train, results[0].x_train) for r in results)


def test_other_images_get_another_cache_entry(cache):
    scatternet(small_data(0))
    scatternet(small_data(1))

    assert len(list(cache.glob("*.train.npy"))) == 2


def test_a_damaged_cache_is_a_clear_error(cache):
    scatternet(small_data())
    path = next(cache.glob("*.train.npy"))
    np.save(path, np.zeros((3, 81, 2, 2), dtype=np.float32))

    with pytest.raises(ValueError, match="delete it to recompute"):
        scatternet(small_data())


def test_load_from_config_applies_the_features(cache):
    cfg = load_config(overrides=["data.dataset=digits", "data.features=scatternet"])

    data = load_from_config(cfg.data, cache=False)

    assert data.shape == (81, 2, 2)
    assert len(data.y_train) == len(load_dataset("digits").y_train)


def test_features_and_model_must_agree():
    assert load_config(overrides=["data.features=scatternet"]).model.name == "auto"
    with pytest.raises(ConfigError, match="model.name"):
        load_config(overrides=["data.features=scatternet", "model.name=tanh_cnn"])
    with pytest.raises(ConfigError, match="model.name"):
        load_config(overrides=["model.name=scatter_linear"])
    with pytest.raises(ConfigError, match="data.features"):
        load_config(overrides=["data.features=wavelets"])


def test_image_sides_must_divide_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        scatter_transform(torch.zeros(1, 1, 10, 10))


@pytest.mark.slow
def test_a_federated_run_on_scatternet_features(ray_local):
    """The real path: the driver fills the cache, client and server actors read their rows from it."""
    from orchestrator.federation import run_federated

    cfg = load_config(overrides=["data.dataset=digits", "data.features=scatternet", "server.rounds=3",
                                 "client.lr=4.0", "client.max_grad_norm=0.1", "client.num_cpus=0.5",
                                 "run.noise_seed=0"])

    df = run_federated(cfg, progress=None)

    assert df["model.name"].iloc[0] == "scatter_linear"
    assert (df["clients_failed"] == 0).all()
    assert df["test_accuracy"].iloc[-1] > 0.5  # 10 classes: chance is 0.1
    assert np.isfinite(df["eps_record_max"]).all()
