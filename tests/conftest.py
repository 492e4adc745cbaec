"""Shared fixtures: one local Ray for the whole session, the real data in ../shared/data."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FEDFRONTIER_SHARED_DATA", ROOT.parent / "shared" / "data"))
# (input channels, image side) each model of actors/models.py is built for in the model tests.
MODEL_SHAPES = {"mnist_cnn": (1, 28), "digits_cnn": (1, 8), "cifar_cnn": (3, 32), "tanh_cnn": (1, 28),
                "scatter_linear": (81, 7)}
# The [data], [model] and [client] tables of the small sweep configs the Tune, resume and job tests write:
# 4 clients on the 8x8 digits in one actor (seconds per trial).
DIGITS_SWEEP_BASE = """
[data]
dataset = "digits"
num_clients = 4
[model]
name = "digits_cnn"
[client]
lr = 0.5
num_actors = 1
num_cpus = 1.0
"""

# Feature caches of this test session go to a fresh folder (set before Ray starts: actors inherit it).
os.environ["FEDFRONTIER_CACHE"] = tempfile.mkdtemp(prefix="fedfrontier-test-cache-")


@pytest.fixture(scope="session", autouse=True)
def _ray_shutdown_at_end():
    """Whatever a test started, Ray is shut down when the session ends."""
    os.environ.pop("RAY_ADDRESS", None)
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs, loopback only, no dashboard, started once and shared by the
    session's tests (restarted if a test had to shut it down, e.g. for a job-submission cluster)."""
    import ray

    from orchestrator.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    return ray


@pytest.fixture(scope="module")
def ray_cluster():
    """Start private Ray clusters (``ray_cluster(loopback=True)``, see tests/ray_cluster.py): own temp
    dir, ports and auth token; stopped by their own process ids when the module's tests are done.
    Never `ray stop`, which would kill every Ray on the machine."""
    import ray

    from tests.ray_cluster import LocalRayCluster

    ray.shutdown()  # the session's in-process Ray gives its memory and CPUs to the cluster
    started: list[LocalRayCluster] = []

    def start(**kwargs) -> LocalRayCluster:
        cluster = LocalRayCluster(**kwargs)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    path = SHARED_DATA / "MNIST"
    if not (path / "raw" / "train-images-idx3-ubyte.gz").is_file():
        _missing(f"real MNIST not found under {path}")
    return path


@pytest.fixture(scope="session")
def breastmnist_path() -> Path:
    path = SHARED_DATA / "medmnist" / "breastmnist.npz"
    if not path.is_file():
        _missing(f"BreastMNIST not found at {path}")
    return path


def _missing(reason: str) -> None:
    """Real data absent: a skip on a developer's checkout without ../shared/data, a failure in CI, which
    always runs with shared/ beside the clone (so the real-data tests can never pass by skipping there)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI runs with ../shared/data beside the clone; set FEDFRONTIER_SHARED_DATA)")
    pytest.skip(reason)


def write_idx(path, array) -> None:
    """Write ``array`` as an unsigned-byte IDX file (gzipped), the MNIST format, for the loader tests."""
    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.asarray(array).astype(np.uint8).tobytes())
