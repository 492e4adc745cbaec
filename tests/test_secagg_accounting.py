"""Secure aggregation's accounting outside Ray: calibration of z for a target epsilon, the Skellam ledger
(what it books, the budget stop, checkpoints) and what a sweep refuses under it."""

import pytest

from orchestrator.resolve import count_parameters, resolve_config
from orchestrator.sweep_config import load_sweep_config
from privacy.config.experiment import ConfigError, load_config
from privacy.mechanisms.distributed_dp import from_experiment
from privacy.accountants.skellam import epsilon, skellam_event

BASE = ["secagg.enabled=true", "server.clip=0.5", "data.num_clients=20", "server.clients_per_round=10",
        "server.rounds=20", "client.dp=false", "run.noise_seed=1"]


def resolved(*extra):
    return resolve_config(load_config(overrides=BASE + list(extra)), capacity=(2.0, 0.0)).config


@pytest.mark.parametrize("target", [1.0, 3.0])
def test_the_calibrated_z_meets_the_target_under_the_skellam_accounting(target):
    cfg = resolved(f"server.target_epsilon={target}")
    from actors.model_inputs import load_from_config

    mech = from_experiment(cfg, dim=count_parameters(cfg.model.name, load_from_config(cfg.data)))
    planned = mech.planned_event(sample_rate=10 / 20)
    spent = epsilon([planned[:4] + (cfg.server.rounds,)], delta=cfg.server.delta)
    assert target - 0.05 < spent <= target
    gaussian_z = resolve_config(load_config(overrides=[o for o in BASE if "secagg" not in o] +
                                            [f"server.target_epsilon={target}"]), capacity=(2.0, 0.0))
    assert cfg.server.noise_multiplier > gaussian_z.config.server.noise_multiplier  # looser bound: more noise


def ledgers(cfg):
    """The ledgers the secure mechanism sets up for 20 clients."""
    return from_experiment(cfg, dim=64).ledgers(cfg, sample_rates=[0.1] * 20, steps=[1] * 20)


def test_the_ledger_books_the_skellam_events_and_reports_their_epsilon():
    cfg = resolved("server.noise_multiplier=1.0")
    book = ledgers(cfg)
    events = [skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=0.5), skellam_event(mu=3e6, l1=3e5, l2=2e3,
                                                                                    sample_rate=0.5)]
    assert book.eps_client() == 0.0  # nothing released yet
    for e in events:
        book.book({"client": {0: e}})
    book.book({})  # a round that released nothing books nothing
    assert book.eps_client() == pytest.approx(epsilon(events, delta=cfg.server.delta), rel=1e-12)
    assert book.guarantees["client"].accountant.describe()["kind"] == "skellam"  # no Gaussian accounting here
    restored = ledgers(cfg)
    restored.load_state_dict(book.state_dict())
    assert restored.eps_client() == book.eps_client()


def test_the_budget_stop_plans_a_full_round_of_the_skellam_mechanism():
    cfg = resolved("server.target_epsilon=2.0")
    book = ledgers(cfg)
    event = skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=0.5)
    book.guarantees["client"].plan([event])
    rounds = 0
    while not book.budget_exceeded_next_round():
        book.book({"client": {0: event}})
        rounds += 1
    assert epsilon([event] * rounds, delta=cfg.server.delta) <= 2.0 < epsilon([event] * (rounds + 1),
                                                                                 delta=cfg.server.delta)


def test_a_sweep_keeps_one_trust_model_and_no_private_selection_under_it(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('[sweep.grid]\n"secagg.enabled" = [false, true]\n"server.noise_multiplier" = [1.0]\n'
                    '[server]\nclip = 0.5\n')
    with pytest.raises(ConfigError, match="one trust model"):
        load_sweep_config(toml, [])
    toml.write_text('[sweep]\nselection = "poisson"\n[sweep.grid]\n"server.noise_multiplier" = [1.0, 2.0]\n'
                    '[server]\nclip = 0.5\n[secagg]\nenabled = true\n')
    with pytest.raises(ConfigError, match="private selection"):
        load_sweep_config(toml, [])


def test_the_public_sees_mu_and_the_server_the_survivors_shares_own_included():
    import numpy as np

    from privacy.mechanisms.distributed_dp import DistributedDPConfig, DistributedSkellamMechanism
    from privacy.accountants.skellam import epsilon_unsampled

    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=10),
                                       dim=64, noise_seed=0)
    for cohort, survivors in ((10, 10), (12, 7), (8, 1)):
        released = mech.release(np.zeros(64, dtype=np.uint64), survivors=survivors, cohort=cohort, round_idx=0)
        assert released.noise.variance_present == mech.mu  # the server tops up what drop-outs took away
        assert mech.event(released, sample_rate=0.1)[0] == mech.mu
        assert mech.server_event(released)[0] == pytest.approx(survivors * mech.mu / cohort)  # own share counts
    lone = mech.server_event(mech.release(np.zeros(64, dtype=np.uint64), survivors=1, cohort=8, round_idx=0))
    assert epsilon_unsampled([lone], delta=1e-5) < float("inf")  # its own secret share still protects it


def test_against_the_server_each_client_composes_the_rounds_it_joined_unsampled():
    from privacy.accountants.skellam import epsilon_unsampled

    cfg = resolved("server.noise_multiplier=1.0")
    book = ledgers(cfg)
    against = book.guarantees["client_server"]
    full, short = (skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=1.0),
                   skellam_event(mu=2.5e6, l1=3e5, l2=2e3, sample_rate=1.0))  # a round with drop-outs: less noise

    book.book({"client_server": {0: full, 3: full}})
    book.book({"client_server": {0: short}})

    assert against.epsilon(0) == pytest.approx(epsilon_unsampled([full, short], delta=book.delta_client), rel=1e-9)
    assert against.epsilon(3) == pytest.approx(epsilon_unsampled([full], delta=book.delta_client), rel=1e-9)
    assert against.epsilon(1) == 0.0  # never joined: nothing spent
    assert book.eps_client_server_max() == against.epsilon(0)
    restored = ledgers(cfg)
    restored.load_state_dict(book.state_dict())
    assert restored.eps_client_server_max() == pytest.approx(book.eps_client_server_max(), rel=1e-12)


def test_a_round_whose_survivors_would_pass_the_server_target_is_not_released_and_the_run_stops():
    from privacy.accountants.skellam import epsilon_unsampled

    cfg = resolved("server.noise_multiplier=1.0", "secagg.server_target_epsilon=5.0")
    book = ledgers(cfg)
    planned = skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=1.0)
    book.guarantees["client_server"].plan([planned] * 20)
    rounds = 0
    while not book.budget_exceeded_next_round():
        assert not book.blocked({"client_server": {0: planned, 1: planned}})
        book.book({"client_server": {0: planned, 1: planned}})
        rounds += 1
    assert epsilon_unsampled([planned] * rounds, delta=book.delta_client) <= 5.0
    assert "against the server" in book.budget_exceeded_next_round()

    fresh = ledgers(cfg)  # client 2 one round short of where the first ledger stopped
    fresh.guarantees["client_server"].plan([planned] * 20)
    for _ in range(rounds - 1):
        fresh.book({"client_server": {2: planned}})
    thin = skellam_event(mu=4e5, l1=3e5, l2=2e3, sample_rate=1.0)  # a short cohort: a tenth of the noise
    assert not fresh.blocked({"client_server": {2: planned}}) and not fresh.budget_exceeded_next_round()
    assert "nothing released" in fresh.blocked({"client_server": {2: thin, 5: thin}})
    assert "nothing released" in fresh.budget_exceeded_next_round()  # and the run stops there


def test_a_sweep_composes_both_client_level_guarantees_across_trials():
    """eps_sweep_client composes every trial's public events; eps_sweep_client_server each client's unsampled events
    of every trial, the worst client counting."""
    import math

    import pandas as pd

    from orchestrator.sweep_release import sweep_epsilons
    from privacy.accountants.skellam import epsilon_unsampled

    cfg = resolved("server.noise_multiplier=1.0")
    public = skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=0.5)
    full, short = (skellam_event(mu=4e6, l1=3e5, l2=2e3, sample_rate=1.0),
                   skellam_event(mu=2e6, l1=3e5, l2=2e3, sample_rate=1.0))
    ledgers = {}
    for t, public_rounds, server_events in (("t0", 3, {0: [full] * 3, 1: [full]}), ("t1", 4, {1: [short] * 4})):
        book = from_experiment(cfg, dim=64).ledgers(cfg, sample_rates=[0.1] * 20, steps=[1] * 20)
        for _ in range(public_rounds):
            book.book({"client": {0: public}})
        for k, events in server_events.items():
            for e in events:
                book.book({"client_server": {k: e}})
        ledgers[t] = book.state_dict()["guarantees"]
    delta = cfg.server.delta
    trials = pd.DataFrame({"trial_id": ["t0", "t1"], "status": ["TERMINATED"] * 2,
                           "eps_client": [epsilon([public] * 3, delta=delta), epsilon([public] * 4, delta=delta)],
                           "delta_client": [delta] * 2, "eps_record_max": [math.inf] * 2, "delta_record": [1e-5] * 2})

    release = sweep_epsilons(trials, ledgers)

    assert release["eps_sweep_client"] == pytest.approx(epsilon([public] * 7, delta=delta), rel=1e-9)
    worst = max(epsilon_unsampled([full] * 3, delta=delta), epsilon_unsampled([full] + [short] * 4, delta=delta))
    assert release["eps_sweep_client_server"] == pytest.approx(worst, rel=1e-9)
