"""Opacus-compatible CNNs (no BatchNorm: per-sample gradients need per-sample layers).

Every model here passes ``opacus.validators.ModuleValidator.validate(model, strict=True)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mnist_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """conv32-conv64-fc128: the CNN of PyTorch's MNIST example (28x28 inputs), dropout removed
    so that a client's update is a deterministic function of its seed."""
    side = (image_size - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(),
        nn.Linear(128, num_classes))


def digits_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 8) -> nn.Module:
    """A small CNN for 8x8 digits: conv16-GN-pool, conv32-GN-pool, fc."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * side * side, num_classes))


def cifar_cnn(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """Three conv-GroupNorm-ReLU-pool blocks (32, 64, 128 channels) and a linear head, for 32x32 RGB."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.ReLU(), nn.MaxPool2d(2)]

    side = image_size // 8
    return nn.Sequential(*block(in_channels, 32), *block(32, 64), *block(64, 128),
                         nn.Flatten(), nn.Linear(128 * side * side, num_classes))


def tanh_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """The tempered-sigmoid (tanh) CNN for DP-SGD on MNIST of Papernot et al. 2021 ("Tempered
    Sigmoid Activations for Deep Learning with Differential Privacy"), as used end to end by
    Tramer & Boneh 2021 ("Differentially Private Learning Needs Better Features")."""
    s1 = (image_size + 6 - 8) // 2 + 1 - 1  # conv 8x8 stride 2 pad 3, then maxpool 2 stride 1
    s2 = (s1 - 4) // 2 + 1 - 1  # conv 4x4 stride 2, then maxpool 2 stride 1
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 8, stride=2, padding=3), nn.Tanh(), nn.MaxPool2d(2, 1),
        nn.Conv2d(16, 32, 4, stride=2), nn.Tanh(), nn.MaxPool2d(2, 1),
        nn.Flatten(), nn.Linear(32 * s2 * s2, 32), nn.Tanh(), nn.Linear(32, num_classes))


def scatter_linear(in_channels: int = 81, num_classes: int = 10, image_size: int = 7) -> nn.Module:
    """ScatterNet + linear of Tramer & Boneh 2021: GroupNorm without parameters (27 groups, a
    per-record normalisation, so no privacy cost) over the scattering coefficients
    (actors/features.py), then one linear layer."""
    return nn.Sequential(
        nn.GroupNorm(math.gcd(in_channels, 27), in_channels, affine=False),
        nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))


MODELS = {"mnist_cnn": mnist_cnn, "digits_cnn": digits_cnn, "cifar_cnn": cifar_cnn, "tanh_cnn": tanh_cnn,
          "scatter_linear": scatter_linear}


def auto_model_name(image_size: int, features: str = "pixels") -> str:
    """The default model: scatter_linear on ScatterNet features; on pixels by image size, 8 -> digits_cnn,
    32 -> cifar_cnn, else tanh_cnn (measured on mnist5k under DP-SGD: 7x faster per round than mnist_cnn
    and more accurate)."""
    if features == "scatternet":
        return "scatter_linear"
    return {8: "digits_cnn", 32: "cifar_cnn"}.get(image_size, "tanh_cnn")


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int, seed: int) -> nn.Module:
    """A freshly initialised model; the initial weights are a function of ``seed`` alone."""
    if name not in MODELS:
        raise ValueError(f"model.name = {name!r}: must be one of {', '.join(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)
