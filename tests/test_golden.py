"""The round tables of two small configs are what the code gave before the layering change (tests/golden/).

The tables were written by the code as it stood before actors/ and orchestrator/ were rearranged over
the privacy/ package, on another machine; the same configs (with the noise seed equal to the run seed,
which is what the old code derived every noise stream from) must give the same tables: every epsilon,
count and config value exactly, the columns that come out of torch's float kernels within the tolerances
of tests/golden_tables.py (kernels differ across CPUs). On one machine the same seeds give the same table
bit for bit (the last test)."""

from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from actors.round_row import SECAGG_COLUMNS
from orchestrator.federation import TIMING_COLUMNS, run_federated
from orchestrator.resolve import resolve_config
from tests.golden_tables import assert_matches_golden
from privacy.config.secagg_section import SecAggSection
from privacy.config.experiment import load_config

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden"
# data.validation = 0: the golden tables predate the validation split (every training record a client's)
CONFIGS = {
    # record-level DP + client-level DP with adaptive clipping, canaries, membership, momentum, cosine
    "adaptive": ["data.dataset=digits", "data.validation=0", "data.num_clients=6", "server.clients_per_round=4", "server.rounds=5",
                 "client.num_actors=2", "client.num_cpus=0.5", "client.noise_multiplier=0.7", "client.lr=1.0",
                 "server.adaptive_clip=true", "server.noise_multiplier=0.2", "server.clip_count_std=1.0",
                 "audit.canaries=200", "server.momentum=0.5", "server.lr_schedule=cosine", "run.seed=3",
                 "run.noise_seed=3", "client.accountant=rdp", "server.accountant=rdp"],
    # a calibrated record-level target with a fixed server clip
    "fixed": ["data.dataset=digits", "data.validation=0", "data.num_clients=4", "server.clients_per_round=3", "server.rounds=5",
              "client.num_actors=1", "client.num_cpus=1", "client.target_epsilon=3.0", "client.lr=1.0",
              "server.clip=2.0", "server.noise_multiplier=0.05", "run.seed=5", "run.noise_seed=5",
              "client.accountant=rdp", "server.accountant=rdp"],
}
# the two secure-aggregation mechanisms, written before the mechanism object (one per trust model) replaced
# the config's mode checks: distributed Skellam at client level over a sparse masking graph with Poisson
# cohorts, and secure FedSGD at record level
SECURE_CONFIGS = {
    "secagg_client": ["data.dataset=digits", "data.num_clients=8", "server.clients_per_round=5", "server.rounds=3",
                      "client.num_actors=2", "client.num_cpus=0.5", "client.dp=false", "client.lr=0.5",
                      "server.clip=1.0", "server.noise_multiplier=0.5", "secagg.enabled=true", "secagg.bits=16",
                      "secagg.neighbours=4", "audit.canaries=0", "audit.membership=false", "run.seed=7",
                      "run.noise_seed=7"],
    "secagg_record": ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4",
                      "secagg.enabled=true", "secagg.level=record", "secagg.bits=24", "client.local_steps=1",
                      "server.rounds=4", "client.noise_multiplier=0.5", "client.max_grad_norm=0.5", "server.lr=2",
                      "client.batch_size=128", "client.num_actors=2", "client.num_cpus=0.5",
                      "audit.membership=false", "run.seed=3", "run.noise_seed=3"],
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_table_equals_the_golden_one(name, ray_local):
    golden = pd.read_parquet(GOLDEN / f"{name}.parquet")
    unset = [c for c in golden if golden[c].dtype == object and golden[c].isna().all()]
    golden[unset] = golden[unset].astype(float)  # unset config values: None then, NaN now (one type per column)

    cfg = load_config(overrides=CONFIGS[name])
    table = run_federated(cfg, progress=None)

    golden = golden.drop(columns=["run.noise_seed"], errors="ignore")  # a secret: in secrets.json, in no table
    assert set(golden.columns) <= set(table.columns)
    assert_matches_golden(table[list(golden.columns)], golden,
                          n_test=resolve_config(cfg, capacity=(2.0, 0.0)).n_test)
    secagg = set(SECAGG_COLUMNS) | {f"secagg.{f.name}" for f in fields(SecAggSection)}  # added since, unused here
    assert set(table.columns) - set(golden.columns) - set(TIMING_COLUMNS) == {
        "clients_retried", "stopped", "server.in_driver", "eps_client_server_max", "val_accuracy", "val_loss",
        "data.validation", "clients_skipped", "server.mechanism", "server.participation", "server.min_separation",
        "server.max_participations", "server.ftrl_bands"} | secagg


def test_the_same_seeds_give_the_same_table_bit_for_bit_on_one_machine(ray_local):
    cfg = load_config(overrides=CONFIGS["fixed"])

    first, second = (run_federated(cfg, progress=None).drop(columns=list(TIMING_COLUMNS), errors="ignore")
                     for _ in range(2))

    pd.testing.assert_frame_equal(first, second, check_exact=True)


@pytest.mark.parametrize("name", sorted(SECURE_CONFIGS))
def test_secure_round_table_equals_the_golden_one(name, ray_local):
    golden = pd.read_parquet(GOLDEN / f"{name}.parquet")
    cfg = load_config(overrides=SECURE_CONFIGS[name])

    table = run_federated(cfg, progress=None).drop(columns=list(TIMING_COLUMNS), errors="ignore")

    assert sorted(table.columns) == sorted(golden.columns)
    plan = resolve_config(cfg, capacity=(2.0, 0.0))
    assert_matches_golden(table[list(golden.columns)], golden, n_test=plan.n_test, n_validation=plan.n_validation)


def write_golden(name: str) -> Path:
    """Write tests/golden/<name>.parquet from the code as it stands (only when a change is meant to alter
    the tables: the point of a golden file is that a refactor does not)."""
    import ray
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        table = run_federated(load_config(overrides=SECURE_CONFIGS[name]), progress=None)
    finally:
        ray.shutdown()
    path = GOLDEN / f"{name}.parquet"
    table.drop(columns=list(TIMING_COLUMNS), errors="ignore").to_parquet(path)
    return path


if __name__ == "__main__":  # python -m tests.test_golden secagg_client secagg_record
    import sys
    for arg in sys.argv[1:]:
        print(write_golden(arg))


@pytest.mark.parametrize("name", sorted(SECURE_CONFIGS))
def test_a_secure_round_table_does_not_depend_on_how_clients_are_spread_over_actors(name, ray_local):
    """Under secure aggregation every client's ring vector comes from its own streams and the sum is exact in
    Z_2^b, so one actor per core (the secure configs' default) gives the table of one actor for all."""
    tables = [run_federated(load_config(overrides=SECURE_CONFIGS[name] + [f"client.num_actors={n}"]), progress=None)
              .drop(columns=[*TIMING_COLUMNS, "client.num_actors"], errors="ignore") for n in (1, 3)]

    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
