"""The frontier sweep through the real Ray Tune path."""

import json
import math
import stat

import pandas as pd
import pytest

from privacy.config.experiment import ConfigError
from orchestrator.run_secrets import BASE_NOISE_SEED, SECRETS_FILE, read_secrets
from orchestrator.sweep import run_sweep, trial_bundles, trial_noise_seed
from orchestrator.sweep_config import SweepConfig, apply_point, load_sweep_config
from tests.conftest import DIGITS_SWEEP_BASE
from tests.secret_scan import files_holding

SMALL = DIGITS_SWEEP_BASE + """[server]
rounds = 2
clients_per_round = 4
clip = 2.0
[run]
checkpoint_every = 1
[sweep]
name = "small"
max_concurrent_trials = 2
baseline = true
[sweep.grid]
"client.target_epsilon" = [3.0, 8.0]
"server.noise_multiplier" = [0.0, 0.05]
"""


def test_grid_points_and_baseline():
    sweep = SweepConfig(grid={"client.noise_multiplier": [1, 2], "server.clip": [0.5, 1.0]}, baseline=True)

    points = sweep.points()

    assert len(points) == 5
    assert points[-1]["client.dp"] is False


def test_baseline_set_overrides_the_baseline_trial_only(tmp_path):
    cfg_file = tmp_path / "s.toml"
    cfg_file.write_text(SMALL.replace("[sweep.grid]", '[sweep.baseline_set]\n"client.lr" = 0.05\n[sweep.grid]'))
    cfg, sweep = load_sweep_config(cfg_file, [])

    trials = [apply_point(cfg, p) for p in sweep.points()]

    assert [t.client.lr for t in trials] == [0.5, 0.5, 0.5, 0.5, 0.05]
    assert not trials[-1].client.dp
    with pytest.raises(ConfigError, match="client.lr"):  # validated like any trial, before anything runs
        load_sweep_config(cfg_file, ["sweep.baseline_set={\"client.lr\"=-1.0}"])
    with pytest.raises(ConfigError, match="sweep.baseline_set.lr"):
        SweepConfig(baseline_set={"lr": 0.1})


def test_bad_sweep_values_are_refused(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(SMALL.replace('"client.target_epsilon" = [3.0, 8.0]', '"client.target_epsilon" = [-1.0]'))

    with pytest.raises(ConfigError, match="client.target_epsilon"):
        load_sweep_config(cfg, [])
    with pytest.raises(ConfigError, match="sweep.colour"):
        load_sweep_config(None, ["sweep.colour=1"])
    with pytest.raises(ConfigError, match="low < high"):
        SweepConfig(loguniform={"client.lr": [1.0, 0.1]})


def test_trial_bundles_reserve_every_actor():
    cfg, _ = load_sweep_config(None, [])
    cfg = apply_point(cfg, {"client.num_actors": 3, "client.num_cpus": 0.5, "client.num_gpus": 0.25,
                            "server.num_cpus": 1.0})

    bundles = trial_bundles(cfg)

    assert bundles == [{}, {"CPU": 1.0}] + [{"CPU": 0.5, "GPU": 0.25}] * 3


@pytest.mark.slow
def test_two_by_two_grid_through_tune(ray_local, tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    cfg, sweep = load_sweep_config(path, [])

    trials, rounds = run_sweep(cfg, sweep, tmp_path / "out", progress=None)

    assert len(trials) == 5 and (trials["status"] == "TERMINATED").all()  # 2x2 grid + non-private baseline
    assert len(rounds) == 5 * 2 and set(rounds.groupby("trial_id")["round"].max()) == {2}
    for col in ("test_accuracy", "eps_record_max", "eps_client", "client.noise_multiplier", "trial_id"):
        assert col in trials.columns and col in rounds.columns
    private = trials[trials["client.dp"]]
    assert sorted(private["client.target_epsilon"]) == [3.0, 3.0, 8.0, 8.0]
    assert (private["eps_record_max"] <= private["client.target_epsilon"]).all()  # calibrated per trial
    assert trials.loc[~trials["client.dp"], "client.target_epsilon"].isna().all()
    assert (private.loc[private["server.noise_multiplier"] == 0, "eps_client"] == math.inf).all()
    assert (private.loc[private["server.noise_multiplier"] > 0, "eps_client"] < math.inf).all()
    out = tmp_path / "out"
    for name in ("trials.parquet", "rounds.parquet", "frontier.parquet"):
        assert len(pd.read_parquet(out / name)) > 0
    assert (out / "frontier.png").stat().st_size > 20_000
    release = json.loads((out / "sweep.json").read_text())["release"]
    eps = private["eps_record_max"]
    assert eps.max() < release["eps_sweep_record"] <= eps.sum()  # composed, never just the largest, nor K x eps
    noised = private[private["server.noise_multiplier"] > 0]["eps_client"]
    assert noised.max() < release["eps_sweep_client"] <= noised.sum()
    baseline = trials.loc[~trials["client.dp"], "trial_id"].iloc[0]
    assert f"{baseline} (record-level)" in release["not_covered"]
    frontier = pd.read_parquet(out / "frontier.parquet")
    assert (frontier["eps_sweep_record"] == release["eps_sweep_record"]).all()
    # the noise seeds -- the sweep's secret base and every trial's own -- are in secrets.json (0600) only:
    # not in a table, sweep.json, Tune's params/results/tuner state, a checkpoint or a TensorBoard file
    seeds = read_secrets(out)
    trial_seeds = [trial_noise_seed(seeds, 0, {}, t) for t in trials["trial_id"]]
    assert len(set(trial_seeds)) == 5
    assert stat.S_IMODE((out / SECRETS_FILE).stat().st_mode) == 0o600
    assert list((out / "tune").rglob("checkpoint.pt")) and list((out / "tune").rglob("params.json"))
    assert files_holding(out, [seeds[BASE_NOISE_SEED], *trial_seeds], skip=(SECRETS_FILE,)) == []


def test_tensorboard_gets_only_finite_values(monkeypatch):
    """epsilon = inf stays in the tables; TensorBoard (tensorboardX warns on inf) is not sent it."""
    from ray.tune.logger import TBXLoggerCallback

    from orchestrator.sweep import _finite_tensorboard_logger

    seen = []
    monkeypatch.setattr(TBXLoggerCallback, "log_trial_result", lambda self, i, trial, result: seen.append(result))

    _finite_tensorboard_logger().log_trial_result(1, None, {"eps_client": math.inf, "eps_record_max": 2.5,
                                                            "test_accuracy": 0.9, "round": 1})

    assert seen == [{"eps_record_max": 2.5, "test_accuracy": 0.9, "round": 1}]



@pytest.mark.slow
def test_a_sweep_runs_each_trials_server_in_the_trials_own_process(ray_local, tmp_path):
    """server.in_driver in a sweep: each trial's process is its federation's driver and hosts its server; the
    trials finish and report what the same trials with server actors report (same seeds)."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    over = ["sweep.baseline=false", "run.noise_seed=7"]
    tables = {}
    for in_driver in (False, True):
        cfg, sweep = load_sweep_config(path, over + [f"server.in_driver={str(in_driver).lower()}"])
        trials, _ = run_sweep(cfg, sweep, tmp_path / f"out-{in_driver}", progress=None)
        assert len(trials) == 4 and (trials["status"] == "TERMINATED").all()
        assert trials["server.in_driver"].eq(in_driver).all()
        tables[in_driver] = trials.sort_values(["client.target_epsilon", "server.noise_multiplier"]).reset_index()

    for col in ("test_accuracy", "eps_record_max", "eps_client"):
        assert tables[True][col].tolist() == tables[False][col].tolist()


@pytest.mark.slow
def test_overwrite_removes_nothing_when_a_check_fails(tmp_path):
    """`sweep --out DIR --overwrite` with bad data: exit 2, one line, and DIR's files still there."""
    import subprocess
    import sys

    out = tmp_path / "sweep"
    out.mkdir()
    (out / "keep.txt").write_text("the user's\n")

    result = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "--out", str(out), "--overwrite",
                             "--set", "data.dataset=mnist", "--set", f"data.root={tmp_path / 'missing'}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)

    assert result.returncode == 2 and "data.root" in result.stderr.strip().splitlines()[-1]
    assert (out / "keep.txt").read_text() == "the user's\n"


SECURE = DIGITS_SWEEP_BASE.replace("num_clients = 4", "num_clients = 6") + """dp = false
[server]
rounds = 3
clients_per_round = 3
sampling = "fixed"  # cohorts of 3 whatever the trial's fresh noise seed: every round reaches the threshold
clip = 1.0
delta = 1e-3
[secagg]
enabled = true
bits = 16
[audit]
canaries = 0
membership = false
[run]
checkpoint_every = 1
[sweep]
name = "secure"
max_concurrent_trials = 2
baseline = false
[sweep.grid]
"server.noise_multiplier" = [1.0, 2.0]
"""


def test_a_secure_aggregation_sweep_releases_both_client_level_guarantees(ray_local, tmp_path):
    """Through Tune: each trial reports eps_client (whoever sees the models) and eps_client_server_max (the
    server); the sweep composes each from the trials' checkpointed ledgers."""
    from orchestrator.resolve import resolve_config
    from privacy.mechanisms.distributed_dp import from_experiment
    from privacy.accountants.skellam import epsilon, epsilon_unsampled
    path = tmp_path / "secure.toml"
    path.write_text(SECURE)
    cfg, sweep = load_sweep_config(path, [])

    trials, rounds = run_sweep(cfg, sweep, tmp_path / "out", progress=None)

    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all()
    assert (trials["eps_client"] < trials["eps_client_server_max"]).all()  # no amplification against the server
    release = json.loads((tmp_path / "out" / "sweep.json").read_text())["release"]
    # every round of both trials released Sk(mu) to the public: the release is their 6 events composed
    plan = resolve_config(cfg.replace(server={"noise_multiplier": 1.0}), capacity=(1.0, 0.0))
    events = {z: from_experiment(plan.config.replace(server={"noise_multiplier": z}), dim=plan.num_params)
              for z in (1.0, 2.0)}
    public = [m.planned_event(sample_rate=0.5) for m in events.values() for _ in range(3)]
    assert release["eps_sweep_client"] == pytest.approx(epsilon(public, delta=plan.config.server.delta), rel=1e-9)
    # against the server: at least the worst trial's worst client, at most a client in all six rounds
    every_round = [m.planned_server_event() for m in events.values() for _ in range(3)]
    server = trials["eps_client_server_max"]
    assert server.max() <= release["eps_sweep_client_server"]
    assert release["eps_sweep_client_server"] <= epsilon_unsampled(every_round, delta=plan.config.server.delta)
