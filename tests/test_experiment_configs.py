"""Every shipped experiment config loads, validates every trial, and says what it claims."""

from pathlib import Path

import pytest

from orchestrator.sweep_config import apply_point, load_sweep_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.toml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"frontier.toml", "mnist_silos.toml", "mnist_devices.toml",
                                        "breastmnist_hospitals.toml", "mnist_cluster.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_and_all_its_trials_validate(path):
    cfg, sweep = load_sweep_config(path, [])  # validates every trial's config, baseline included

    trials = [apply_point(cfg, p) for p in sweep.points()]

    assert trials and all(t.server.rounds >= 1 for t in trials)
    if sweep.baseline:
        assert not trials[-1].client.dp and trials[-1].server.noise_multiplier == 0


def test_silos_are_record_level_at_delta_1e5():
    cfg, sweep = load_sweep_config(CONFIGS[[p.name for p in CONFIGS].index("mnist_silos.toml")], [])
    assert cfg.data.dataset == "mnist" and cfg.data.num_clients == 10 and cfg.data.partition == "iid"
    assert cfg.client.dp and cfg.client.delta == 1e-5 and cfg.server.noise_multiplier == 0
    assert sweep.grid["client.target_epsilon"] == [0.5, 1.0, 2.0, 3.0, 8.0] and sweep.baseline


def test_devices_are_client_level():
    cfg, sweep = load_sweep_config(CONFIGS[[p.name for p in CONFIGS].index("mnist_devices.toml")], [])
    assert cfg.data.num_clients == 1000 and cfg.data.partition == "dirichlet" and cfg.data.alpha == 0.5
    assert not cfg.client.dp and cfg.server.adaptive_clip
    assert sweep.grid["server.target_epsilon"] == [1.0, 2.0, 4.0, 8.0] and sweep.baseline
