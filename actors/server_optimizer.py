"""How the server applies the noisy average delta: learning-rate schedule and momentum.

Both act on the released (noised) aggregate only, so they are post-processing: they
change no epsilon. With ``server.momentum = beta > 0`` the server runs FedAvgM (Hsu, Qi &
Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated
Visual Classification"), the server optimiser of DP-FedAvg in McMahan et al. 2018:

    v_t = beta * v_{t-1} + Delta_t,    w_{t+1} = w_t + eta_t * v_t.

``server.lr_schedule = "cosine"`` decays eta_t from ``server.lr`` towards 0 over the run
(Loshchilov & Hutter 2017, "SGDR", without restarts): under DP the late rounds then
average the noise instead of taking full steps of it.
"""

from __future__ import annotations

import math

import torch

from privacy.config.experiment import LR_SCHEDULES


def server_learning_rate(lr: float, schedule: str, round_idx: int, rounds: int) -> float:
    """eta_t for round ``round_idx`` (0-based) of ``rounds``: constant, or lr * (1 + cos(pi t / T)) / 2."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * round_idx / rounds))
    raise ValueError(f"unknown server learning-rate schedule {schedule!r}; choose from {LR_SCHEDULES}")


def server_step(weights: torch.Tensor, delta: torch.Tensor, velocity: torch.Tensor | None, *, lr: float,
                momentum: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One server update: returns (new weights, new velocity). Without momentum the velocity stays None
    and the step is ``w + lr * delta`` (plain FedAvg with a server learning rate)."""
    if momentum == 0.0:
        return weights + lr * delta, None
    v = delta.clone() if velocity is None else velocity * momentum + delta
    return weights + lr * v, v
