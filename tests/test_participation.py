"""min_sep participation: cyclic groups, the schema enforced whatever the server is asked, replayed on resume."""

import subprocess
import sys

import numpy as np
import pytest

from privacy.config.experiment import ConfigError, from_dict
from privacy.mechanisms.participation import MinSepParticipation, min_sep_groups, participation_for
from privacy.mechanisms.sampling import sample_cohort


def _server(**kw):
    base = {"mechanism": "dp_ftrl", "participation": "min_sep", "rounds": 20, "min_separation": 4,
            "clients_per_round": 5, "noise_multiplier": 1.0, "clip": 1.0}
    return from_dict({"server": {**base, **kw}, "data": {"num_clients": 20}}).server


def test_groups_are_balanced_and_a_function_of_the_seed():
    group = min_sep_groups(23, 5, seed=7)
    assert sorted(np.bincount(group)) == [4, 4, 5, 5, 5]
    assert (group == min_sep_groups(23, 5, seed=7)).all() and not (group == min_sep_groups(23, 5, seed=8)).all()


@pytest.mark.parametrize("k, groups", [(None, 4), (5, 4), (2, 10)])
def test_every_client_joins_at_most_k_times_at_least_b_apart(k, groups):
    server = _server(max_participations=k, clients_per_round=20 // groups)
    assert server.groups == groups
    schema = MinSepParticipation(server, 20, seed=3)
    rounds = {c: [] for c in range(20)}
    for t in range(server.rounds):
        cohort = schema.cohort(t)
        assert cohort.skipped == 0 and len(cohort.ids) == 20 // groups
        for c in cohort.ids:
            rounds[int(c)].append(t)
    for joined in rounds.values():
        assert 1 <= len(joined) <= server.participations
        assert all(b - a >= server.min_separation for a, b in zip(joined, joined[1:]))
    assert (schema.count == [len(r) for r in rounds.values()]).all()


def test_a_client_asked_too_early_or_too_often_is_skipped_and_counted():
    schema = MinSepParticipation(_server(max_participations=2, clients_per_round=2), 20, seed=0)
    first = schema.admit(0, [1, 2, 3])
    assert list(first.ids) == [1, 2, 3] and first.skipped == 0
    early = schema.admit(3, [1, 2, 4])  # 1 and 2 joined 3 rounds ago: b = 4
    assert list(early.ids) == [4] and early.skipped == 2
    assert list(schema.admit(4, [1, 4]).ids) == [1]  # 4 joined at round 3
    again = schema.admit(8, [1, 2])  # client 1 has joined twice already (k = 2)
    assert list(again.ids) == [2] and again.skipped == 1
    assert schema.count[[1, 2, 3, 4]].tolist() == [2, 2, 1, 1]


def test_a_resumed_run_replays_the_records():
    server = _server()
    ran, resumed = MinSepParticipation(server, 20, seed=5), MinSepParticipation(server, 20, seed=5)
    for t in range(9):
        ran.cohort(t)
    resumed.replay(9)
    assert (ran.last == resumed.last).all() and (ran.count == resumed.count).all()
    assert (ran.cohort(9).ids == resumed.cohort(9).ids).all()


def test_poisson_participation_is_todays_sampling():
    cfg = from_dict({"server": {"clients_per_round": 4}, "data": {"num_clients": 20}, "run": {"noise_seed": 11}})
    schema = participation_for(cfg, 20)
    for t in range(3):
        assert (schema.cohort(t).ids == sample_cohort(20, 4, scheme="poisson", seed=11, round_idx=t)).all()


@pytest.mark.parametrize("server, key", [
    ({"mechanism": "dp_ftrl"}, "server.participation"),  # Poisson participation
    ({"participation": "min_sep"}, "server.participation"),  # min_sep without dp_ftrl
    ({"mechanism": "dp_ftrl", "participation": "min_sep", "min_separation": 30}, "server.min_separation"),  # b > T
    ({"mechanism": "dp_ftrl", "participation": "min_sep", "min_separation": 4, "max_participations": 0},
     "server.max_participations"),  # k < 1
    ({"mechanism": "dp_ftrl", "participation": "min_sep", "min_separation": 4, "ftrl_bands": 5},
     "server.ftrl_bands"),  # bands > b
    ({"mechanism": "dp_ftrl", "participation": "min_sep", "min_separation": 4, "clients_per_round": 9},
     "server.clients_per_round"),  # not a group's size
])
def test_bad_participation_settings_name_their_key(server, key):
    base = {"rounds": 20, "clients_per_round": 5, "noise_multiplier": 1.0, "clip": 1.0}
    with pytest.raises(ConfigError) as err:
        from_dict({"server": {**base, **server}, "data": {"num_clients": 20}})
    assert err.value.key == key


def test_dp_ftrl_is_refused_with_secure_aggregation():
    with pytest.raises(ConfigError) as err:
        from_dict({"server": {"mechanism": "dp_ftrl", "participation": "min_sep", "min_separation": 2, "rounds": 4,
                              "clients_per_round": 5, "clip": 1.0, "noise_multiplier": 1.0},
                   "data": {"num_clients": 10}, "secagg": {"enabled": True}})
    assert err.value.key == "server.mechanism" and "trusted server" in str(err.value)


@pytest.mark.parametrize("sets", [
    ["server.mechanism=dp_ftrl", "server.participation=min_sep", "server.min_separation=50"],
    ["server.mechanism=dp_ftrl"],
    ["server.mechanism=dp_ftrl", "server.participation=min_sep", "server.max_participations=0"],
    ["server.mechanism=dp_ftrl", "server.participation=min_sep", "server.min_separation=2",
     "server.clients_per_round=5", "server.clip=1", "secagg.enabled=true"],
])
def test_the_cli_refuses_them_in_one_line_with_exit_code_2(sets):
    args = [a for s in sets for a in ("--set", s)]
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "server." in result.stderr
