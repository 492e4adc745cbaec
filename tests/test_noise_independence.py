"""No two runs or trials share their noise: two releases that differ only in the noise multiplier must
not let anyone solve for the clipped sum they share (GUIDE section 3, honesty rules)."""

import numpy as np
import torch

from orchestrator.resolve import resolve_config
from orchestrator.run_secrets import BASE_NOISE_SEED, public
from orchestrator.sweep import param_space, sweep_seeds, trial_config
from orchestrator.sweep_config import SweepConfig
from privacy.mechanisms.client_level import CentralGaussianMechanism
from privacy.config.experiment import load_config, to_dict

DIGITS = ["data.dataset=digits", "data.num_clients=10", "server.clients_per_round=10", "server.clip=1.0"]
DIM, M = 20_000, 10


def solved_sum(cfg_a, cfg_b, true_sum: torch.Tensor) -> torch.Tensor:
    """The attack on two trials: avg_i = (sum + z_i S N_i) / m; if N_a = N_b, then
    sum = m (z_b avg_a - z_a avg_b) / (z_b - z_a) exactly."""
    avgs = []
    for cfg in (cfg_a, cfg_b):
        mech = CentralGaussianMechanism(cfg.server, noise_seed=cfg.run.noise_seed)
        avgs.append(mech.add_noise(true_sum, unclipped=0, reported=M, round_idx=0).average)
    za, zb = cfg_a.server.noise_multiplier, cfg_b.server.noise_multiplier
    return M * (zb * avgs[0] - za * avgs[1]) / (zb - za)


def clipped_sum() -> torch.Tensor:
    """A sum of M deltas clipped to S = 1: norm at most M."""
    x = torch.randn(DIM, generator=torch.Generator().manual_seed(0))
    return x * (M / float(x.norm()))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.numpy(), b.numpy())[0, 1])


def two_trials(noise_seed=None, seeds=None, trial_ids=("a1", "b2"), grid=(0.8, 1.6)):
    """Two trials' resolved configs as the sweep builds them: public parameters, the secrets apart."""
    base = load_config(overrides=DIGITS + ([f"run.noise_seed={noise_seed}"] if noise_seed is not None else []))
    seeds = seeds or sweep_seeds(base)
    sweep = SweepConfig(grid={"server.noise_multiplier": list(grid)}, baseline=False)
    params = [{"base": to_dict(public(base)), "point": {"index": i % len(grid), "set": sweep.points()[i % len(grid)]}}
              for i in range(len(trial_ids))]
    return [resolve_config(trial_config(p, seeds, t), capacity=(2.0, 0.0)).config for p, t in zip(params, trial_ids)]


def test_shared_noise_would_give_the_clipped_sum_away():
    cfg = resolve_config(load_config(overrides=DIGITS + ["run.noise_seed=5"]), capacity=(2.0, 0.0)).config
    true_sum = clipped_sum()

    leaked = solved_sum(cfg.replace(server={"noise_multiplier": 0.8}), cfg.replace(server={"noise_multiplier": 1.6}),
                        true_sum)

    assert correlation(leaked, true_sum) > 0.999  # what a sweep released before noise seeds were per trial


def test_two_trials_of_a_sweep_draw_independent_noise():
    a, b = two_trials()
    true_sum = clipped_sum()

    solved = solved_sum(a, b, true_sum)

    assert a.run.noise_seed != b.run.noise_seed
    assert a.run.seed == b.run.seed  # the split and the initial model stay shared
    assert abs(correlation(solved, true_sum)) < 0.1  # the "solved sum" is noise: uncorrelated with the truth


def test_a_given_noise_seed_gives_each_trial_its_own_reproducible_seed():
    first, again = two_trials(noise_seed=3), two_trials(noise_seed=3)

    assert first[0].run.noise_seed != first[1].run.noise_seed
    assert [c.run.noise_seed for c in first] == [c.run.noise_seed for c in again]
    assert 3 not in {c.run.noise_seed for c in first}


def test_without_a_given_seed_every_trial_of_one_point_has_its_own_seed_and_keeps_it_when_retried():
    seeds = {BASE_NOISE_SEED: 12345}
    same_point = two_trials(seeds=seeds, trial_ids=("a1", "b2"), grid=(0.8,))  # num_samples = 2 of one point
    retried = two_trials(seeds=seeds, trial_ids=("a1", "b2"), grid=(0.8,))

    assert same_point[0].run.noise_seed != same_point[1].run.noise_seed
    assert [c.run.noise_seed for c in same_point] == [c.run.noise_seed for c in retried]
    other_sweep = two_trials(seeds={BASE_NOISE_SEED: 12346}, trial_ids=("a1", "b2"), grid=(0.8,))
    assert {c.run.noise_seed for c in other_sweep}.isdisjoint({c.run.noise_seed for c in same_point})


def test_the_parameters_tune_writes_hold_no_seed():
    base = load_config(overrides=DIGITS + ["run.noise_seed=3"])
    space = param_space(base, SweepConfig(grid={"server.noise_multiplier": [0.8]}, baseline=False))

    assert space["base"]["run"]["noise_seed"] is None
    assert trial_config({"base": space["base"], "point": {"index": 0, "set": {}}}).run.noise_seed is None
