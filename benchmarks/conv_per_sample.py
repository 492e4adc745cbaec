"""Per-sample convolution weight gradients: three exact ways, side by side, per layer of our CNNs.

The book-keeping engine needs, for every convolution, each sample's weight gradient
g_i = b_i (*) a_i (output gradient correlated with the input). This times, alternating,
on one thread and with the layer shapes of a real forward pass:

- ``shifted``: k*k strided views of the input stacked, one batched matmul (the engine's way);
- ``unfold``: im2col with ``F.unfold``, one batched matmul (Opacus's way);
- ``grouped``: one grouped convolution with the samples as groups (input channels as batch).

All three agree to float rounding (checked here). Used to choose the engine's method.

    python benchmarks/conv_per_sample.py [--batch 32,256] [--reps 20]
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the checkout on sys.path)
import torch
import torch.nn.functional as F
from torch import nn

from actors.models import build_model
from actors.per_sample_clipping import _conv2d_weight_samples


def unfold(m: nn.Conv2d, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n, cout, ho, wo = b.shape
    cols = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
    return torch.bmm(b.reshape(n, cout, ho * wo), cols.transpose(1, 2)).view(n, cout, a.shape[1], *m.kernel_size)


def grouped(m: nn.Conv2d, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n, cout, ho, wo = b.shape
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = m.kernel_size, m.stride, m.dilation, m.padding
    a = F.pad(a, (pw, pw, ph, ph))[:, :, :dh * (kh - 1) + sh * (ho - 1) + 1, :dw * (kw - 1) + sw * (wo - 1) + 1]
    g = F.conv2d(a.transpose(0, 1), b.reshape(n * cout, 1, ho, wo), stride=(dh, dw), dilation=(sh, sw), groups=n)
    return g.view(a.shape[1], n, cout, kh, kw).permute(1, 2, 0, 3, 4)


METHODS = {"shifted": _conv2d_weight_samples, "unfold": unfold, "grouped": grouped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", default="32,256")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--models", default="tanh_cnn,mnist_cnn")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows, out = [], []
    for name in args.models.split(","):
        model = build_model(name, in_channels=1, num_classes=10, image_size=28, seed=0)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        for batch in (int(b) for b in args.batch.split(",")):
            seen = {}
            hooks = [m.register_forward_hook(lambda mod, i, o: seen.__setitem__(mod, (i[0].detach(), o.detach())))
                     for m in convs]
            model(torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
            for h in hooks:
                h.remove()
            for layer, m in enumerate(convs):
                a, o = seen[m]
                b = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
                ref = _conv2d_weight_samples(m, a, b)
                times = {k: [] for k in METHODS}
                for _ in range(3):  # alternate the methods, several passes each
                    for k, f in METHODS.items():
                        torch.testing.assert_close(f(m, a, b), ref, rtol=1e-4, atol=1e-5)
                        t0 = time.perf_counter()
                        for _ in range(args.reps):
                            f(m, a, b)
                        times[k].append((time.perf_counter() - t0) / args.reps * 1e3)
                ms = {k: common.median(v) for k, v in times.items()}
                rows.append([name, batch, f"conv{layer + 1} {tuple(m.weight.shape)}", *(round(ms[k], 3) for k in METHODS),
                             round(ms["unfold"] / ms["shifted"], 2), round(ms["grouped"] / ms["shifted"], 2)])
                out.append({"model": name, "batch": batch, "layer": layer + 1, "ms": ms})
    table = common.markdown_table(["model", "batch", "layer", "shifted ms", "unfold ms", "grouped ms",
                                   "unfold / shifted", "grouped / shifted"], rows)
    print(table)
    print(f"wrote {common.write_results('conv_per_sample', {'machine': common.machine(), 'args': vars(args), 'rows': out}, table)}")


if __name__ == "__main__":
    main()
