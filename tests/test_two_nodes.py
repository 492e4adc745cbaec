"""Two Ray nodes for real: a head and a second node joined with `ray start --address`, one CPU and
one custom resource each. A run with two one-CPU client actors must put one on each node; its round
table must equal the single-node (local default) run of the same seeds."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# 4 digits clients in 2 actors of 1 CPU: with 1 CPU per node the actors cannot share a node.
CONFIG = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "server.rounds=3",
          "client.num_actors=2", "client.num_cpus=1", "client.lr=0.5", "client.batch_size=32",
          "client.noise_multiplier=0.8", "server.clip=2.0", "server.noise_multiplier=0.05",
          "run.seed=0", "run.noise_seed=1"]

# The driver, in its own process: attaches to RAY_ADDRESS when set (run_federated -> ensure_ray), else
# starts the local default with 2 CPUs. On a cluster it then reads from Ray's state API (served by the
# head's dashboard; the local default has none) on which nodes the client actors ran.
DRIVER = """
import json, os, sys
from orchestrator.cluster import ensure_ray
from orchestrator.federation import run_federated
from privacy.config.experiment import load_config

overrides, out = json.loads(sys.argv[1]), sys.argv[2]
ensure_ray(num_cpus=None if os.environ.get("RAY_ADDRESS") else 2)
run_federated(load_config(overrides=overrides), progress=None).to_parquet(os.path.join(out, "rounds.parquet"))
if not os.environ.get("RAY_ADDRESS"):
    sys.exit(0)

from ray.util.state import list_actors, list_nodes
actors = list_actors(filters=[("class_name", "=", "ClientActor")], detail=True, limit=10000, raise_on_missing_output=False)
nodes = list_nodes(detail=True, raise_on_missing_output=False)
json.dump({"actor_nodes": [a.node_id for a in actors],
           "nodes": {n.node_id: n.resources_total for n in nodes}}, open(os.path.join(out, "placement.json"), "w"))
"""


def drive(out, env) -> tuple[pd.DataFrame, dict]:
    out.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(CONFIG), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    placement = out / "placement.json"
    return pd.read_parquet(out / "rounds.parquet"), json.loads(placement.read_text()) if placement.exists() else {}


def without_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c == "seconds" or c.endswith("_seconds")])


@pytest.fixture(scope="module")
def two_node_run(ray_cluster, tmp_path_factory):
    cluster = ray_cluster()
    cluster.start_head(num_cpus=1, resources={"node_a": 1})  # the dashboard: Ray's state API lives there
    cluster.add_node(num_cpus=1, resources={"node_b": 1})
    cluster.wait_for_nodes(2)
    try:
        return drive(tmp_path_factory.mktemp("two_nodes"), cluster.driver_env)
    finally:
        cluster.stop()  # frees the two CPUs for the single-node run


@pytest.fixture(scope="module")
def one_node_table(two_node_run, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    table, _ = drive(tmp_path_factory.mktemp("one_node"), env)
    return table


def test_client_actors_ran_on_both_nodes(two_node_run):
    table, placement = two_node_run
    custom = {node: [r for r in ("node_a", "node_b") if r in resources]
              for node, resources in placement["nodes"].items()}

    assert sorted(sum(custom.values(), [])) == ["node_a", "node_b"], placement["nodes"]
    assert len(placement["actor_nodes"]) == 2, placement
    assert {custom[node][0] for node in placement["actor_nodes"]} == {"node_a", "node_b"}
    assert (table["clients_failed"] == 0).all()


def test_two_nodes_give_the_single_node_table(two_node_run, one_node_table):
    two_nodes, _ = two_node_run

    pd.testing.assert_frame_equal(without_timing(two_nodes), without_timing(one_node_table))
