"""Results do not depend on how virtual clients are packed into client actors."""

import numpy as np
import pandas as pd
import pytest

from privacy.config.experiment import load_config
from orchestrator.federation import TIMING_COLUMNS, run_federated

pytestmark = pytest.mark.slow

DIGITS_8_CLIENTS = ["data.dataset=digits", "data.num_clients=8", "server.clients_per_round=5", "server.rounds=3",
                    "client.num_cpus=0.5", "client.lr=0.5", "client.noise_multiplier=0.8", "server.clip=2.0",
                    "server.noise_multiplier=0.05", "run.seed=7", "run.noise_seed=7"]
PACKING = ["client.num_actors", *TIMING_COLUMNS]  # what may differ between packings: the knob itself and timing


@pytest.fixture(scope="module")
def tables_by_actor_count(ray_local):
    return {k: run_federated(load_config(overrides=[*DIGITS_8_CLIENTS, f"client.num_actors={k}"]), progress=None)
            for k in (1, 2, 4)}


def test_same_seed_gives_the_same_round_table_for_1_2_and_4_actors(tables_by_actor_count):
    one = tables_by_actor_count[1].drop(columns=PACKING)
    sampled = one["clients_sampled"].to_numpy()

    assert (one["clients_failed"] == 0).all()
    assert ((0 < sampled) & (sampled < 8)).any()  # Poisson cohorts: some clients sit out, others share actors
    for k in (2, 4):
        other = tables_by_actor_count[k].drop(columns=PACKING)
        # float32 partial sums grouped by actor: equal up to summation order
        pd.testing.assert_frame_equal(one, other, check_exact=False, rtol=1e-4, atol=1e-6)


def test_the_actor_counts_really_differed(tables_by_actor_count):
    assert [int(t["client.num_actors"].iloc[0]) for t in tables_by_actor_count.values()] == [1, 2, 4]
    assert np.isfinite(tables_by_actor_count[4]["eps_record_max"]).all()
