"""The server's learning-rate schedule and momentum against torch's own optimiser and scheduler."""

import math

import pytest
import torch

from privacy.config.experiment import ConfigError, load_config
from actors.server_optimizer import server_learning_rate, server_step


def test_cosine_schedule_matches_torch_cosine_annealing():
    rounds, lr = 7, 0.8
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=rounds, eta_min=0.0)
    for t in range(rounds):
        assert server_learning_rate(lr, "cosine", t, rounds) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    assert server_learning_rate(lr, "constant", 5, rounds) == lr
    assert server_learning_rate(lr, "cosine", 0, rounds) == lr
    assert 0 < server_learning_rate(lr, "cosine", rounds - 1, rounds) < 0.05 * lr


def test_momentum_equals_torch_sgd_on_the_negated_delta():
    """FedAvgM: v = beta v + Delta, w += eta v -- torch's SGD with momentum (no dampening) on gradient -Delta."""
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(50, generator=gen)
    deltas = [torch.randn(50, generator=gen) for _ in range(6)]
    lrs = [server_learning_rate(1.5, "cosine", t, 6) for t in range(6)]

    w, v = w0.clone(), None
    for d, lr in zip(deltas, lrs):
        w, v = server_step(w, d, v, lr=lr, momentum=0.9)

    p = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([p], lr=1.0, momentum=0.9)
    for d, lr in zip(deltas, lrs):
        opt.param_groups[0]["lr"] = lr
        p.grad = -d
        opt.step()
    torch.testing.assert_close(w, p.detach(), rtol=1e-6, atol=1e-6)


def test_without_momentum_the_step_is_plain_fedavg():
    w, d = torch.ones(3), torch.tensor([1.0, -2.0, 0.5])
    new, v = server_step(w, d, None, lr=0.5, momentum=0.0)
    assert v is None
    torch.testing.assert_close(new, torch.tensor([1.5, 0.0, 1.25]))


@pytest.mark.parametrize("override", ["server.momentum=1.0", "server.momentum=-0.1", "server.momentum=nan",
                                      "server.lr_schedule=linear"])
def test_bad_server_optimiser_values_name_the_key(override):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert override.split("=")[0] in str(err.value)


def test_schedule_and_momentum_are_config_columns():
    cfg = load_config(overrides=["server.momentum=0.9", "server.lr_schedule=cosine"])
    assert cfg.server.momentum == 0.9 and cfg.server.lr_schedule == "cosine"
    assert math.isclose(server_learning_rate(cfg.server.lr, cfg.server.lr_schedule, 0, cfg.server.rounds), 1.0)
