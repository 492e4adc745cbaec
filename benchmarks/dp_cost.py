"""DP cost: one local DP-SGD step against one non-private SGD step, per model and per-sample engine.

For every model and every ``client.grad_sample_mode`` (plus the non-private step), a
``LocalTrainer`` -- the code the client actors run -- trains a shard for a fixed number
of steps at batch size 32 on one thread (a client actor's share). Rounds alternate over
all (model, mode) pairs; the figure is the median time per step, and the ratio is to the
non-private step of the same model measured in the same rounds. The ``noise`` row times
what every DP-SGD step adds whatever the engine: one Gaussian draw per parameter from a
seeded generator (Opacus's ``_generate_noise``); non-private + noise is the floor.

    python benchmarks/dp_cost.py [--reps 5] [--steps 20] [--threads 1] [--batch 32] [--models tanh_cnn]
"""

from __future__ import annotations

import argparse
import time
import warnings

import common  # noqa: F401  (puts the checkout on sys.path)
import torch

from actors.data import load_dataset
from actors.local_training import LocalSpec, LocalTrainer
from actors.models import build_model
from privacy.config.experiment import GRAD_SAMPLE_MODES

# model -> (data set it trains on, or None for synthetic tensors of the model's input shape)
MODELS = {"mnist_cnn": "mnist5k", "tanh_cnn": "mnist5k", "digits_cnn": "digits", "cifar_cnn": None}
CIFAR_SHAPE = (3, 32, 32)  # CIFAR-10 is not stored here: timing on N(0, 1) images of its shape


def shard(dataset: str | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if dataset is None:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(n, *CIFAR_SHAPE, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    x, y = load_dataset(dataset).tensors("train")
    return x[:n], y[:n]


def trainer(model: str, mode: str, shape: tuple[int, int, int], steps: int, batch: int) -> LocalTrainer:
    dp = mode != "none"
    spec = LocalSpec(dp=dp, noise_multiplier=1.0, max_grad_norm=1.0, lr=0.05, momentum=0.0, batch_size=batch,
                     local_epochs=1.0, local_steps=steps, grad_sample_mode=mode if dp else "bookkeeping")
    c, h, _ = shape
    return LocalTrainer(build_model(model, in_channels=c, num_classes=10, image_size=h, seed=0), spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="alternating rounds over all (model, mode) pairs")
    p.add_argument("--steps", type=int, default=20, help="local steps per timed call")
    p.add_argument("--batch", type=int, default=32, help="(expected) batch size")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a client actor's CPU share)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--name", default="dp_cost", help="result files: benchmarks/results/NAME.md and .json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Opacus's full-backward-hook notices

    modes = ["none", *GRAD_SAMPLE_MODES]
    n = 50 * args.batch  # shard size: sample rate 0.02
    cases, data, errors = {}, {}, {}
    for model in args.models.split(","):
        x, y = shard(MODELS[model], n)
        data[model] = (x, y)
        for mode in modes:
            try:
                t = trainer(model, mode, tuple(x.shape[1:]), args.steps, args.batch)
                w = t.weights().clone()
                t.train(w, x, y, torch.Generator().manual_seed(0))  # warm-up (allocator, lazy init)
                cases[(model, mode)] = (t, w)
            except Exception as exc:  # a mode that cannot handle a model is reported, not hidden
                errors[(model, mode)] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    times: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    sizes = {model: sum(p.numel() for p in cases[(model, "none")][0].params) for model in data}
    for rep in range(args.reps):
        for (model, mode), (t, w) in cases.items():
            x, y = data[model]
            t0 = time.perf_counter()
            t.train(w, x, y, torch.Generator().manual_seed(rep))
            times[(model, mode)].append((time.perf_counter() - t0) / args.steps)
        for model, size in sizes.items():
            gen = torch.Generator().manual_seed(rep)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                torch.normal(0.0, 1.0, size=(size,), generator=gen)
            times.setdefault((model, "noise"), []).append((time.perf_counter() - t0) / args.steps)
        print(f"round {rep + 1}/{args.reps} done", flush=True)

    rows, out = [], []
    for model in args.models.split(","):
        base = common.median(times[(model, "none")]) if (model, "none") in times else float("nan")
        for mode in [*modes, "noise"]:
            if (model, mode) in errors:
                rows.append([model, mode, "failed", "", errors[(model, mode)]])
                out.append({"model": model, "mode": mode, "error": errors[(model, mode)]})
                continue
            ms = common.median(times[(model, mode)]) * 1000
            note = f"{sizes[model]:,} parameters, no forward or backward" if mode == "noise" else ""
            rows.append([model, mode, round(ms, 2), round(ms / (base * 1000), 2), note])
            out.append({"model": model, "mode": mode, "ms_per_step": ms, "ratio_to_non_private": ms / (base * 1000),
                        "all_ms": [s * 1000 for s in times[(model, mode)]]})
    table = common.markdown_table(["model", "grad_sample_mode", "ms / step", "x non-private", "note"], rows)
    print(table)
    path = common.write_results(args.name, {"machine": common.machine(), "args": vars(args), "rows": out}, table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
