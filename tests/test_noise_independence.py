"""No two runs or trials share their noise: two releases that differ only in the noise multiplier must
not let anyone solve for the clipped sum they share (GUIDE section 3, honesty rules)."""

import numpy as np
import torch

from orchestrator.resolve import resolve_config
from orchestrator.sweep import trial_config
from orchestrator.sweep_config import SweepConfig
from privacy.client_level import CentralGaussianMechanism
from privacy.config import load_config, to_dict

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


def two_trials(noise_seed=None):
    base = load_config(overrides=DIGITS + ([f"run.noise_seed={noise_seed}"] if noise_seed is not None else []))
    sweep = SweepConfig(grid={"server.noise_multiplier": [0.8, 1.6]}, baseline=False)
    params = [{"base": to_dict(base), "point": {"index": i, "set": p}} for i, p in enumerate(sweep.points())]
    return [resolve_config(trial_config(p), capacity=(2.0, 0.0)).config for p in params]


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
