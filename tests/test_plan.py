"""``fedfrontier plan``: the calibrated noise and every guarantee's epsilon, without training, equal to what the
ledgers of a run book for the same schedule. Ray-free (digits, seconds)."""

import json
import math
import subprocess
import sys

import pytest

from orchestrator.plan import plan_lines, privacy_plan
from orchestrator.resolve import resolve_config
from privacy.accountants.accounting import epsilon
from privacy.config.experiment import load_config
from privacy.mechanisms.distributed_dp import from_experiment
from privacy.accountants.skellam import epsilon_unsampled

SECURE = ["data.dataset=digits", "data.num_clients=20", "server.clients_per_round=10", "server.rounds=30",
          "client.dp=false", "secagg.enabled=true", "server.clip=0.5", "run.noise_seed=1"]


def test_a_secure_plan_meets_both_targets_and_equals_what_the_ledgers_book():
    cfg = load_config(overrides=SECURE + ["server.target_epsilon=2.0", "secagg.server_target_epsilon=8.0"])

    plan = privacy_plan(cfg)

    resolved = resolve_config(cfg, capacity=(1.0, 0.0)).config
    assert plan["noise_multiplier_server"] == resolved.server.noise_multiplier  # the run's own calibration
    assert plan["eps_client"] <= 2.0 and plan["eps_client_server_max"] <= 8.0
    assert min(2.0 - plan["eps_client"], 8.0 - plan["eps_client_server_max"]) < 0.05  # the binding one is tight
    mech = from_experiment(resolved, dim=plan["parameters"])
    book = mech.ledgers(resolved, sample_rates=[0.1] * 20, steps=[1] * 20)
    for _ in range(resolved.server.rounds):  # every round released; client 0 in every cohort of 10
        book.book({"client": {0: mech.planned_event(sample_rate=0.5)}, "client_server": {0: mech.planned_server_event()}})
    assert book.eps_client() == pytest.approx(plan["eps_client"], rel=1e-9)
    assert book.eps_client_server_max() == pytest.approx(plan["eps_client_server_max"], rel=1e-9)
    assert plan["eps_client_server_expected"] == pytest.approx(epsilon_unsampled(
        [mech.planned_server_event()[:4] + (15,)], delta=resolved.server.delta), rel=1e-9)  # q T = 15 rounds
    assert plan["noise_multiplier_effective"] == pytest.approx(math.sqrt(mech.mu) / mech.l2, rel=1e-6)


def test_a_trusted_plan_is_the_gaussian_accountants():
    cfg = load_config(overrides=["data.dataset=digits", "server.noise_multiplier=1.3", "server.clip=1.0",
                                 "client.noise_multiplier=1.1", "run.noise_seed=1"])

    plan = privacy_plan(cfg)

    c = resolve_config(cfg, capacity=(1.0, 0.0)).config
    q = c.server.clients_per_round / c.data.num_clients
    assert plan["eps_client"] == epsilon([(1.3, q, c.server.rounds)], delta=c.server.delta)
    assert "eps_client_server_max" not in plan and plan["trust_model"] == "trusted server"
    assert plan["eps_record_max"] > 0 and "record-level" in "\n".join(plan_lines(plan))


def test_the_cli_prints_lines_or_json(tmp_path):
    args = [sys.executable, "-m", "orchestrator.cli", "plan", *[a for o in SECURE for a in ("--set", o)],
            "--set", "server.noise_multiplier=2.0"]

    text = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    as_json = subprocess.run(args + ["--json"], capture_output=True, text=True, cwd=tmp_path, timeout=300)

    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    lines = text.stdout.strip().splitlines()
    assert any(line.startswith("client-level against the server:") for line in lines)
    plan = json.loads(as_json.stdout)
    assert plan["noise_multiplier_server"] == 2.0 and plan["secagg_accountant"] == "exact"
    assert f"eps <= {plan['eps_client']:.4g}" in text.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_dp_ftrl_plan_meets_its_target_and_names_its_schedule():
    cfg = load_config(overrides=["data.dataset=digits", "data.num_clients=20", "server.rounds=12",
                                 "server.mechanism=dp_ftrl", "server.participation=min_sep",
                                 "server.min_separation=4", "server.clients_per_round=5", "server.clip=1.0",
                                 "server.target_epsilon=3.0", "client.dp=false", "run.noise_seed=1"])

    plan = privacy_plan(cfg)

    assert 3.0 * (1 - 1e-6) <= plan["eps_client"] <= 3.0
    assert plan["sensitivity"] == pytest.approx(math.sqrt(3), rel=1e-9)  # 3 full columns of norm 1 each
    assert "4 groups" in plan["participation"] and plan["ftrl_bands"] == 4
    assert any(line.startswith("client-level (DP-FTRL, 4-banded)") for line in plan_lines(plan))


def test_an_adaptive_clip_is_planned_as_adaptive_not_as_clip_0():
    cfg = load_config(overrides=["data.dataset=digits", "server.noise_multiplier=1.0", "server.adaptive_clip=true",
                                 "server.initial_clip=0.3", "server.target_quantile=0.6", "server.clip_count_std=2.0",
                                 "client.dp=false", "run.noise_seed=1"])

    plan = privacy_plan(cfg)

    c = resolve_config(cfg, capacity=(1.0, 0.0)).config
    q = c.server.clients_per_round / c.data.num_clients
    assert plan["eps_client"] == epsilon([(1.0, q, c.server.rounds)], delta=c.server.delta)  # z covers the count too
    line = next(ln for ln in plan_lines(plan) if ln.startswith("client-level"))
    assert "clip adaptive from 0.3 (towards the 0.6 quantile" in line and "clip 0" not in line
    assert math.isnan(plan["clip_server"]) and plan["clip_server_initial"] == 0.3
