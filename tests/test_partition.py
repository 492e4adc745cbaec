import numpy as np
import pytest

from actors.data import load_dataset
from actors.partition import PartitionError, dirichlet, iid, partition, shards


@pytest.fixture(scope="module")
def labels():
    return load_dataset("mnist5k").y_train


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_sizes_sum_to_the_data_set_and_cover_each_record_once(labels, scheme):
    part = partition(labels, scheme=scheme, num_clients=20, seed=3, alpha=0.5, min_size=8)

    every = np.concatenate(part.indices)

    assert len(every) == len(labels)
    assert len(np.unique(every)) == len(labels)
    assert part.histogram.sum() == len(labels)
    assert part.sizes.min() >= 8


def test_dirichlet_skew_grows_as_alpha_falls(labels):
    skews = [dirichlet(labels, 10, alpha=a, seed=0, min_size=1).summary()["label_skew_tv"] for a in (100, 1, 0.1)]

    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.1 and skews[2] > 0.5


@pytest.mark.parametrize("make", [
    lambda y, s: iid(y, 10, seed=s),
    lambda y, s: dirichlet(y, 10, alpha=0.3, seed=s),
    lambda y, s: shards(y, 10, shards_per_client=2, seed=s)])
def test_same_seed_same_split_other_seed_other_split(labels, make):
    a, b, c = make(labels, 7), make(labels, 7), make(labels, 8)

    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not all(np.array_equal(x, y) for x, y in zip(a.indices, c.indices))


def test_shards_give_few_labels_per_client(labels):
    part = shards(labels, 10, shards_per_client=2, seed=0)

    labels_per_client = (part.histogram > 0).sum(1)

    assert labels_per_client.max() <= 4  # two shards, each at most straddling a class boundary


def test_impossible_minimum_size_is_refused(labels):
    with pytest.raises(PartitionError, match="min_client_size|cannot give"):
        iid(labels, 1000, seed=0, min_size=10)
