"""Resolving a config before Ray: calibration from a target epsilon uses the accountant that reports."""

import pytest

from privacy.accountants.accounting import epsilon
from privacy.config.experiment import load_config
from orchestrator.resolve import resolve_config
from privacy.accountants.calibration import worst_case_record_epsilon

DIGITS = ["data.dataset=digits", "data.num_clients=20", "server.clients_per_round=5", "server.rounds=40",
          "server.clip=1.0"]


def _calibrated_z(accountant: str, target: float) -> tuple[float, float]:
    cfg = load_config(overrides=DIGITS + [f"server.accountant={accountant}", f"server.target_epsilon={target}"])
    s = resolve_config(cfg, capacity=(2.0, 0.0)).config.server
    return s.noise_multiplier, s.delta


@pytest.mark.parametrize("accountant", ["rdp", "pld"])  # prv shares the code path; its bisection takes ~1 min
def test_client_level_calibration_meets_the_target_with_its_own_accountant(accountant):
    z, delta = _calibrated_z(accountant, 2.0)

    spent = epsilon([(z, 5 / 20, 40)], delta=delta, accountant=accountant)

    assert spent <= 2.0
    assert spent > 2.0 - 0.02


def test_tighter_accountants_calibrate_less_noise():
    z_rdp, _ = _calibrated_z("rdp", 2.0)
    z_pld, _ = _calibrated_z("pld", 2.0)

    assert z_pld < z_rdp  # PLD is tighter than RDP, so the same target needs less noise


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_record_level_calibration_uses_the_client_accountant(accountant):
    cfg = load_config(overrides=DIGITS + [f"client.accountant={accountant}", "client.target_epsilon=3.0"])

    plan = resolve_config(cfg, capacity=(2.0, 0.0))

    c = plan.config.client
    worst = worst_case_record_epsilon(noise_multiplier=c.noise_multiplier, sample_rates=plan.clients.sample_rate,
                                      steps_per_round=plan.clients.steps, rounds=plan.config.server.rounds,
                                      delta=c.delta, accountant=accountant)
    assert worst <= 3.0
    assert worst > 3.0 - 0.05


def test_every_resolve_draws_a_fresh_noise_seed_unless_one_is_given():
    cfg = load_config(overrides=DIGITS)

    seeds = {resolve_config(cfg, capacity=(2.0, 0.0)).config.run.noise_seed for _ in range(3)}
    given = resolve_config(cfg.replace(run={"noise_seed": 7}), capacity=(2.0, 0.0)).config.run.noise_seed

    assert len(seeds) == 3 and all(s >= 0 for s in seeds)
    assert given == 7


def test_default_accountants_are_the_tightest_upper_bound():
    cfg = load_config()
    default_run = [(1.0, 32 / 400, 20 * round(400 / 32))]  # sigma 1, batch 32 of 400 records, 20 rounds

    tight = epsilon(default_run, delta=1.1e-4, accountant=cfg.client.accountant)

    assert cfg.client.accountant == cfg.server.accountant == "pld"
    assert tight < 0.92 * epsilon(default_run, delta=1.1e-4, accountant="rdp")  # RDP over-states by 8-22 %
