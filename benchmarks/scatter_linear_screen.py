"""Screen DP-SGD recipes for ScatterNet + linear over IID silos, in seconds, without Ray.

For a linear model the per-sample gradient of the cross-entropy is the outer product
(p_i - y_i) [x_i, 1], so its norm is ||p_i - y_i|| * sqrt(||x_i||^2 + 1) and the clipped
sum is one matrix product. This script runs the cross-silo protocol of
``experiments/configs/mnist_silos.toml`` in that closed form for all silos in one process:
per silo and step a Poisson batch (rate q = batch / shard size), per-sample clip C, noise
N(0, (sigma C)^2) on the sum, division by the expected batch, an SGD step; per round the
silos' deltas are averaged (every silo every round). sigma is calibrated with Opacus's
accountant to the target epsilon per silo, as fedfrontier does. It is a screen: the
figures to report come from ``fedfrontier sweep`` on the chosen recipe (docs/recipes.md).

    python benchmarks/scatter_linear_screen.py --data-root ../shared/data/MNIST --epsilon 3 --lr 8
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the checkout on sys.path)
import numpy as np
import torch
from opacus.accountants.utils import get_noise_multiplier

from actors.data import load_dataset
from actors.features import scatternet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data/MNIST")
    p.add_argument("--epsilon", type=float, default=3.0, help="per-silo record-level target (0: no noise)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--accountant", default="rdp", choices=("rdp", "prv"))
    p.add_argument("--silos", type=int, default=10)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=23, help="local steps per round (23 = one epoch at batch 256)")
    p.add_argument("--batch", type=int, default=256, help="expected Poisson batch per silo")
    p.add_argument("--lr", type=float, default=8.0)
    p.add_argument("--momentum", type=float, default=0.0, help="local momentum, reset every round")
    p.add_argument("--clip", type=float, default=0.1)
    p.add_argument("--groups", type=int, default=27, help="GroupNorm groups over the 81 channels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    data = scatternet(load_dataset("mnist", str(a.data_root)))
    norm = torch.nn.GroupNorm(a.groups, data.shape[0], affine=False)
    with torch.no_grad():
        x_train = norm(data.tensors("train")[0]).flatten(1)
        x_test = norm(data.tensors("test")[0]).flatten(1)
    x_train = torch.cat([x_train, torch.ones(len(x_train), 1)], 1)  # the bias as a constant feature
    x_test = torch.cat([x_test, torch.ones(len(x_test), 1)], 1)
    y_train, y_test = torch.from_numpy(data.y_train), torch.from_numpy(data.y_test)

    gen = torch.Generator().manual_seed(a.seed)
    silos = torch.randperm(len(y_train), generator=gen).chunk(a.silos)
    q = a.batch / min(len(s) for s in silos)
    steps = a.rounds * a.steps
    sigma = 0.0 if a.epsilon == 0 else get_noise_multiplier(
        target_epsilon=a.epsilon, target_delta=a.delta, sample_rate=q, steps=steps, accountant=a.accountant)
    print(f"q = {q:.4f}, {steps} steps per silo, sigma = {sigma:.3f}", flush=True)

    w = torch.zeros(int(data.num_classes), x_train.shape[1])
    start = time.perf_counter()
    for r in range(1, a.rounds + 1):
        deltas = []
        for idx in silos:
            xs, ys = x_train[idx], y_train[idx]
            local, velocity = w.clone(), torch.zeros_like(w)
            for _ in range(a.steps):
                take = torch.rand(len(idx), generator=gen) < q
                x, y = xs[take], ys[take]
                err = torch.softmax(x @ local.T, 1)
                err[torch.arange(len(y)), y] -= 1.0
                factor = (a.clip / (err.norm(dim=1) * x.norm(dim=1) + 1e-6)).clamp(max=1.0)
                g = (err * factor[:, None]).T @ x
                if sigma:
                    g += torch.randn(g.shape, generator=gen) * sigma * a.clip
                velocity = a.momentum * velocity + g / a.batch
                local -= a.lr * velocity
            deltas.append(local - w)
        w += torch.stack(deltas).mean(0)
        if r % 5 == 0 or r == a.rounds:
            acc = float(((x_test @ w.T).argmax(1) == y_test).float().mean())
            print(f"round {r:3d}  test accuracy {acc:.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"final test accuracy {np.round(acc, 4)} at epsilon {a.epsilon} (delta {a.delta}, {a.accountant})")


if __name__ == "__main__":
    main()
