"""Resource arithmetic for fractional CPUs and GPUs, checked on a CPU-only machine."""

import pytest

from privacy.config.experiment import load_config
from orchestrator.resolve import resolve_config
from orchestrator.resources import (actor_threads, auto_num_actors, placement_for_config, server_threads,
                                    trial_placement)


@pytest.mark.parametrize("num_clients,cpus_each,gpus_each,capacity,expected", [
    (10, 1.0, 0.0, (2.0, 0.0), 2),  # this laptop: one actor per core
    (10, 0.5, 0.0, (2.0, 0.0), 4),
    (3, 0.5, 0.0, (2.0, 0.0), 3),  # never more actors than clients
    (100, 1.0, 0.25, (16.0, 1.0), 4),  # four actors share the one GPU
    (100, 1.0, 0.25, (2.0, 1.0), 2),  # ... unless CPUs run out first
    (100, 0.5, 0.1, (16.0, 1.0), 10),  # 1 / 0.1 is 9.999999999999998 in floats: still 10
    (100, 0.5, 0.1, (16.0, 0.3), 3),  # 0.3 / 0.1 is 2.9999999999999996: still 3
    (100, 1.0, 0.5, (64.0, 8.0), 16),
    (100, 1.0, 0.25, (16.0, 0.0), 1),  # GPUs asked for, none there: one actor, which Ray will hold back
    (5, 0.0, 0.0, (2.0, 0.0), 5),  # actors that reserve nothing: one per client
])
def test_auto_actor_count_fits_cpus_and_fractional_gpus(num_clients, cpus_each, gpus_each, capacity, expected):
    assert auto_num_actors(num_clients, cpus_each, gpus_each, capacity) == expected


def test_resolve_fills_the_actor_count_from_the_cluster_gpus():
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=12", "server.clients_per_round=4",
                                 "client.num_cpus=1", "client.num_gpus=0.25"])

    plan = resolve_config(cfg, capacity=(16.0, 1.0))

    assert plan.config.client.num_actors == 4
    assert sorted(set(plan.clients.actor)) == [0, 1, 2, 3]  # every actor hosts clients


@pytest.mark.parametrize("num_cpus,threads", [(0.5, 1), (1.0, 1), (1.9999999999, 2), (2.0, 2), (3.5, 3)])
def test_threads_follow_the_actors_cpu_share(num_cpus, threads):
    assert actor_threads(num_cpus) == threads


@pytest.mark.parametrize("server_cpus,client_cpus,actors,threads", [
    (0.0, 1.0, 2, 2),  # the default run on two cores: the server evaluates on both while its clients wait
    (0.0, 0.5, 2, 1),  # two actors sharing one core: one thread
    (0.0, 0.0, 4, 1),  # nothing reserved: one thread
    (1.0, 0.25, 4, 2),
    (0.0, 0.1, 10, 1),  # 0.1 * 10 is 1.0000000000000002 or 0.9999999999999999 in floats: 1 either way
])
def test_the_server_evaluates_on_its_own_and_its_waiting_clients_cpus(server_cpus, client_cpus, actors, threads):
    assert server_threads(server_cpus, client_cpus, actors) == threads


def test_trial_bundles_reserve_driver_server_and_each_client_actor():
    placement = trial_placement(driver_cpus=1, server_cpus=0.5, client_cpus=0.5, client_gpus=0.25, num_actors=4)

    assert placement.bundles == ({"CPU": 1.0}, {"CPU": 0.5}, *[{"CPU": 0.5, "GPU": 0.25}] * 4)
    assert placement.server_bundle == 1 and placement.client_bundles == (2, 3, 4, 5)
    assert placement.total() == {"CPU": 3.5, "GPU": 1.0}  # four quarter-GPU actors: exactly one device


def test_bundles_that_would_reserve_nothing_are_left_out():
    placement = trial_placement(driver_cpus=1, server_cpus=0.0, client_cpus=1.0, client_gpus=0.0, num_actors=2)
    free_clients = trial_placement(driver_cpus=1, server_cpus=0.0, client_cpus=0.0, client_gpus=0.0, num_actors=2)

    assert placement.bundles == ({"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0})  # no GPU key, no empty server bundle
    assert placement.server_bundle is None and placement.client_bundles == (1, 2)
    assert free_clients.bundles == ({"CPU": 1.0},) and free_clients.client_bundles == (None, None)


@pytest.mark.parametrize("kwargs,message", [
    ({"client_gpus": 1.5}, "fractions are allowed only below 1"),
    ({"client_cpus": -1.0}, "client_cpus"),
    ({"num_actors": 0}, "num_actors"),
    ({"server_cpus": float("nan")}, "server_cpus"),
])
def test_invalid_resources_are_refused(kwargs, message):
    args = {"driver_cpus": 1.0, "server_cpus": 0.0, "client_cpus": 1.0, "client_gpus": 0.0, "num_actors": 2, **kwargs}

    with pytest.raises(ValueError, match=message):
        trial_placement(**args)


def test_placement_of_a_resolved_config():
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=8", "server.clients_per_round=4",
                                 "client.num_cpus=0.5", "client.num_gpus=0.5", "server.num_cpus=1"])
    plan = resolve_config(cfg, capacity=(8.0, 2.0))

    placement = placement_for_config(plan.config, driver_cpus=0.5)

    assert plan.config.client.num_actors == 4  # two GPUs at half a GPU each
    assert placement.total() == {"CPU": 0.5 + 1 + 4 * 0.5, "GPU": 2.0}
    assert len(placement.client_bundles) == 4 and placement.server_bundle == 1


def test_rays_paragraph_about_a_dead_worker_becomes_one_line_of_ours(capsys):
    from orchestrator.cluster import filter_worker_logs

    paragraph = ("A worker died or was killed while executing a task by an unexpected system error. To "
                 "troubleshoot the problem, check the logs for the dead worker. Worker PID: 8357 Worker exit type: "
                 "SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error code 2.")
    emitted = []

    filter_worker_logs({"pid": "raylet", "is_err": True,
                        "lines": [paragraph, "[...] worker.cc:239: Failed to send wait complete: RpcError",
                                  "a client's own print"]}, emitted.append)

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "pid 8357, SYSTEM_ERROR" in err[0] and "retried" in err[0]
    assert [d["lines"] for d in emitted] == [["a client's own print"]]
