"""Clipping of client updates, fixed and adaptive.

Pure tensor/float functions; the client actors and the server both call them.
"""

from __future__ import annotations

import math
import torch


def clip_by_l2_norm(delta: torch.Tensor, clip: float) -> tuple[torch.Tensor, float]:
    """Scale ``delta`` to L2 norm at most ``clip``: Delta * min(1, S / ||Delta||_2).

    ``clip = 0`` means no clipping. Returns the clipped tensor and the norm before clipping.
    This bounds each client's contribution to the sum by S: the L2 sensitivity of the
    sum under adding or removing one client (McMahan et al. 2018, "Learning Differentially
    Private Recurrent Language Models", Alg. 1).
    """
    norm = float(torch.linalg.vector_norm(delta))
    if clip > 0 and norm > clip:
        return delta * (clip / norm), norm
    return delta, norm


def adaptive_clip_update(clip: float, unclipped_fraction: float, *, target_quantile: float,
                         learning_rate: float) -> float:
    """S_{t+1} = S_t * exp(-eta * (b_t - gamma)), with b_t the (noised) fraction of clients whose
    delta norm was <= S_t (Andrew et al. 2021, eq. 2). Pure post-processing of a DP release."""
    return float(clip * math.exp(-learning_rate * (unclipped_fraction - target_quantile)))
