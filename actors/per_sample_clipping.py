"""Exact per-sample clipped gradient sums in one backward pass ("book-keeping").

DP-SGD needs, per step, sum_i clip_C(g_i) with g_i the gradient of sample i's loss
(Abadi et al. 2016). Opacus materialises every g_i (``hooks``), or runs a second
backward with re-weighted losses (``ghost``). For the layers of our models both are
avoidable: one forward pass keeps each layer's input a, one backward pass returns each
layer's output gradient b (weight gradients are not computed), and then

- ``Linear`` (2-D input): ||g_i||^2 = ||b_i||^2 (||a_i||^2 + 1[bias]) exactly (Goodfellow 2015,
  "Efficient per-example gradient computations"); the clipped sum is one matmul
  (c * b)^T a, the cost of the ordinary weight gradient;
- ``Conv2d`` (groups = 1): the per-sample weight gradients, k*k batched matmuls of b with
  shifted views of a (no im2col);
- ``GroupNorm`` (inputs (N, C, *)): per-sample gradients of scale and shift from the
  normalised input, summed over the positions.

With c_i = min(1, C / (||g_i|| + 1e-6)) (Opacus's factor) the clipped sum is computed
from the kept tensors: Book-Keeping of Bu, Wang, Zha, Karypis 2023 ("Differentially
Private Optimization on Large Model at Small Cost", ICML). The result equals Opacus's
``hooks`` mode up to float rounding (tests/test_per_sample_clipping.py compares both and a
per-sample loop).

Refused, with :class:`UnsupportedLayerError` at construction (use an Opacus
``grad_sample_mode``, or change the model):
- layers that mix the samples of a batch, with or without parameters: BatchNorm (any
  dimension, SyncBatchNorm: batch statistics make every output, and so every "per-sample"
  gradient, depend on the whole batch, so clipping bounds nobody's contribution) and
  InstanceNorm with ``track_running_stats`` (its running statistics are a batch average);
- a subclass of a supported layer: its own ``forward`` may compute something other than
  the formulas above, so only the exact classes are accepted;
- parameters anywhere else, grouped or string-padded convolutions, weights used twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv2d, nn.GroupNorm)  # exact classes: a subclass is refused
# Layers whose output for one sample depends on the other samples of the batch.
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)  # BatchNorm1d/2d/3d, SyncBatchNorm and their lazy forms
_INSTANCE_NORMS = (nn.modules.instancenorm._InstanceNorm,)  # mixes samples only with track_running_stats


class UnsupportedLayerError(ValueError):
    """The model has trainable parameters outside the layers this engine handles."""


@dataclass
class _Kept:
    inp: torch.Tensor  # layer input (detached)
    out: torch.Tensor  # layer output, part of the autograd graph
    versions: tuple[int, int]  # in-place edits after the forward would make both stale


@dataclass(frozen=True)
class ClippedSum:
    grads: list[torch.Tensor]  # sum_i c_i g_i, one tensor per trainable parameter, in model order
    norms: torch.Tensor  # ||g_i|| before clipping, one per sample
    loss_sum: float  # sum of the per-sample losses


class PerSampleClipper:
    """Computes sum_i clip_C(grad of loss_i) for a model made of ``Linear``, ``Conv2d`` and
    ``GroupNorm`` layers (exactly those classes) plus parameter-free modules that treat each
    sample on its own. Raises :class:`UnsupportedLayerError` at construction for anything else
    it can detect (module docstring), including every BatchNorm."""

    def __init__(self, model: nn.Module, *, max_grad_norm: float):
        if not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm = {max_grad_norm}: must be > 0")
        self.model, self.max_grad_norm = model, float(max_grad_norm)
        self.params = [p for p in model.parameters() if p.requires_grad]
        for name, m in model.named_modules():
            _refuse_sample_mixing(name, m)
        self.layers = [m for m in model.modules() if isinstance(m, SUPPORTED) and _trainable(m)]
        for m in self.layers:
            if type(m) not in SUPPORTED:
                base = next(c.__name__ for c in SUPPORTED if isinstance(m, c))
                raise UnsupportedLayerError(
                    f"{type(m).__name__} subclasses nn.{base}: its forward may differ from nn.{base}'s, so its "
                    f"per-sample gradients cannot be assumed; use nn.{base} itself, or an Opacus grad_sample_mode")
        covered = {id(p) for m in self.layers for p in _trainable(m)}
        stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
        if stray:
            raise UnsupportedLayerError(f"parameters {stray} are outside Linear/Conv2d/GroupNorm layers; "
                                        "use an Opacus grad_sample_mode (hooks, functorch, ew, ghost)")
        for m in self.layers:
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or isinstance(m.padding, str)):
                raise UnsupportedLayerError(f"{m}: grouped or string-padded convolutions are not handled; "
                                            "use an Opacus grad_sample_mode")
        self._kept: dict[nn.Module, _Kept] = {}
        self._armed = False  # keep tensors only during clipped_sum's own forward pass
        for m in self.layers:
            m.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not self._armed:
            return
        if module in self._kept:
            raise UnsupportedLayerError(f"{module} ran twice in one forward pass (shared weights)")
        x = inputs[0]
        self._kept[module] = _Kept(x.detach(), output, (x._version, output._version))

    def clipped_sum(self, x: torch.Tensor, y: torch.Tensor) -> ClippedSum:
        """Forward, one backward, per-sample norms and the clipped gradient sum for cross-entropy on (x, y)."""
        if x.shape[0] == 0:  # an empty Poisson batch: nothing to clip, the sum is zero
            return ClippedSum([torch.zeros_like(p) for p in self.params], x.new_zeros(0), 0.0)
        self._kept.clear()
        self._armed = True
        try:
            loss = F.cross_entropy(self.model(x), y, reduction="sum")
            self._armed = False
            kept = [self._kept[m] for m in self.layers]
            for m, k in zip(self.layers, kept):
                if (k.inp._version, k.out._version) != k.versions:
                    raise UnsupportedLayerError(f"{m}: its input or output was modified in place after it ran")
            outs = torch.autograd.grad(loss, [k.out for k in kept], allow_unused=True)
        finally:
            self._armed = False
            self._kept.clear()
        n = x.shape[0]
        sq = torch.zeros(n, dtype=loss.dtype, device=x.device)
        parts = []
        for m, k, b in zip(self.layers, kept, outs):
            if b is None:  # the layer's output did not reach the loss
                b = torch.zeros_like(k.out)
            part = _per_sample(m, k.inp, b)
            sq += part.sq_norms
            parts.append(part)
        norms = sq.sqrt()
        factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # Opacus's per-sample clip factor
        by_param = {}
        for m, part in zip(self.layers, parts):
            by_param.update(part.clipped_sums(m, factor))
        return ClippedSum([by_param[p] for p in self.params], norms, float(loss.detach()))


def _refuse_sample_mixing(name: str, m: nn.Module) -> None:
    """Raise if ``m`` mixes the samples of a batch (see the module docstring), trainable or not."""
    mixes = isinstance(m, _BATCH_NORMS) or (isinstance(m, _INSTANCE_NORMS) and m.track_running_stats)
    if mixes:
        raise UnsupportedLayerError(
            f"{name or 'model'} ({type(m).__name__}) normalises with statistics of the whole batch: one sample's "
            "output, and so its gradient, depends on the others, and per-sample clipping bounds nobody's "
            "contribution; use GroupNorm (or InstanceNorm without track_running_stats) instead")


def _trainable(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in m.parameters(recurse=False) if p.requires_grad]


@dataclass
class _LinearPart:
    a: torch.Tensor  # (n, in)
    b: torch.Tensor  # (n, out)
    sq_norms: torch.Tensor

    def clipped_sums(self, m: nn.Linear, c: torch.Tensor) -> dict:
        cb = self.b * c[:, None]
        out = {}
        if m.weight.requires_grad:
            out[m.weight] = cb.t() @ self.a
        if m.bias is not None and m.bias.requires_grad:
            out[m.bias] = cb.sum(0)
        return out


@dataclass
class _SampledPart:
    """Layers whose per-sample gradients are small enough to keep: conv, group norm."""

    weight: torch.Tensor | None  # (n, *weight.shape)
    bias: torch.Tensor | None  # (n, *bias.shape)
    sq_norms: torch.Tensor

    def clipped_sums(self, m: nn.Module, c: torch.Tensor) -> dict:
        out = {}
        if self.weight is not None:
            out[m.weight] = torch.tensordot(c, self.weight, dims=1)
        if self.bias is not None:
            out[m.bias] = torch.tensordot(c, self.bias, dims=1)
        return out


def _per_sample(m: nn.Module, a: torch.Tensor, b: torch.Tensor):
    if isinstance(m, nn.Linear):
        if a.dim() != 2:
            raise UnsupportedLayerError(f"{m}: inputs of {a.dim()} dimensions; only (batch, features) is handled")
        w_on = m.weight.requires_grad
        has_bias = m.bias is not None and m.bias.requires_grad
        a_sq = (a * a).sum(1) if w_on else torch.zeros(len(a), dtype=a.dtype, device=a.device)
        sq = (b * b).sum(1) * (a_sq + (1.0 if has_bias else 0.0))
        return _LinearPart(a, b, sq)
    if isinstance(m, nn.Conv2d):
        if a.dim() != 4:
            raise UnsupportedLayerError(f"{m}: inputs of {a.dim()} dimensions; only (batch, C, H, W) is handled")
        weight = _conv2d_weight_samples(m, a, b) if m.weight.requires_grad else None
        bias = b.sum((2, 3)) if m.bias is not None and m.bias.requires_grad else None
    else:  # GroupNorm on (N, C, *): y = x_hat * w + b per channel, x_hat normalised within each sample's groups
        positions = tuple(range(2, a.dim()))  # () for (N, C) inputs
        x_hat = F.group_norm(a, m.num_groups, eps=m.eps)
        weight = _sum(b * x_hat, positions) if m.weight is not None and m.weight.requires_grad else None
        bias = _sum(b, positions) if m.bias is not None and m.bias.requires_grad else None
    sq = torch.zeros(len(a), dtype=b.dtype, device=b.device)
    for g in (weight, bias):
        if g is not None:
            sq = sq + g.reshape(len(g), -1).pow(2).sum(1)
    return _SampledPart(weight, bias, sq)


def _sum(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.sum(dims) if dims else t


def _conv2d_weight_samples(m: nn.Conv2d, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients (n, out, in, kh, kw) of a 2-D convolution with groups = 1:
    g_i[:, :, u, v] = b_i (out x P) @ shift_{u,v}(a_i) (P x in), over the k*k kernel offsets."""
    n, cout, ho, wo = b.shape
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = m.kernel_size, m.stride, m.dilation, m.padding
    if ph or pw:
        a = F.pad(a, (pw, pw, ph, ph), mode="constant" if m.padding_mode == "zeros" else m.padding_mode)
    bm = b.reshape(n, cout, ho * wo)
    shifted = torch.stack([a[:, :, u * dh: u * dh + sh * (ho - 1) + 1: sh, v * dw: v * dw + sw * (wo - 1) + 1: sw]
                           for u in range(kh) for v in range(kw)], dim=2)  # (n, in, kh*kw, ho, wo)
    g = torch.bmm(bm, shifted.reshape(n, -1, ho * wo).transpose(1, 2))  # (n, out, in*kh*kw)
    return g.view(n, cout, a.shape[1], kh, kw)
