"""Local training of one client: DP-SGD with Opacus, or plain SGD for the baseline.

One :class:`LocalTrainer` is built per actor and reused for every client the actor
hosts: the model and its per-sample clipping engine (an Opacus ``GradSampleModule``
and ``DPOptimizer``, or :class:`actors.per_sample_clipping.PerSampleClipper`) are made
once; per client and round only the weights, the optimizer state and the random stream
change. Sampling is Poisson with rate q = batch_size / shard size, exactly what the
record-level accountant assumes (Abadi et al. 2016; Mironov et al. 2019).

Both engines compute the same step: sum_i clip_C(g_i) + N(0, (sigma C)^2 I), divided by
the expected batch size, then the SGD update; the noise is drawn parameter by parameter,
in model order, from the client's generator.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from actors.per_sample_clipping import PerSampleClipper
from privacy.config.experiment import GRAD_SAMPLE_MODES  # bookkeeping: ours; hooks, functorch, ew, ghost: Opacus's


def load_flat_(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Copy a flat vector into parameters, in place (the parameters never alias ``flat``)."""
    offset = 0
    with torch.no_grad():
        for p in params:
            k = p.numel()
            p.copy_(flat[offset:offset + k].view_as(p))
            offset += k
    if offset != flat.numel():
        raise ValueError(f"weight vector has {flat.numel()} values, the model {offset}")


@dataclass(frozen=True)
class LocalSpec:
    dp: bool  # DP-SGD (True) or plain SGD (False)
    noise_multiplier: float  # sigma of DP-SGD
    max_grad_norm: float  # per-sample clip C
    lr: float  # local learning rate
    momentum: float  # local momentum, reset every round
    batch_size: int  # expected (Poisson) batch size
    local_epochs: float  # passes over the shard per round
    local_steps: int  # fixed steps per round (0: derived from local_epochs)
    grad_sample_mode: str = "bookkeeping"  # per-sample clipping engine, one of GRAD_SAMPLE_MODES

    def __post_init__(self) -> None:
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode = {self.grad_sample_mode!r}: must be one of "
                             f"{', '.join(GRAD_SAMPLE_MODES)}")

    def sample_rate(self, n: int) -> float:
        """Poisson sampling rate of a shard of ``n`` records."""
        return min(1.0, self.batch_size / n)

    def steps(self, n: int) -> int:
        """Local steps per round for a shard of ``n`` records."""
        if self.local_steps:
            return self.local_steps
        return max(1, int(round(self.local_epochs * n / self.batch_size)))


@dataclass(frozen=True)
class LocalResult:
    delta: torch.Tensor  # flat parameter change (local - global), on the trainer's device
    train_loss: float  # mean loss over the round's batches


class RoundDeadline(RuntimeError):
    """A client's local training ran past its share of the round's time budget."""


class LocalSGD:
    """``torch.optim.SGD`` (no weight decay, dampening or Nesterov) for the engines that need no Optimizer
    subclass: the same float operations in the same order, so the same weights bit for bit
    (tests/test_local_sgd.py), without the ~2 s of ``torch._dynamo`` that ``torch.optim.Optimizer``
    imports in every actor process at start-up."""

    def __init__(self, params: list[torch.Tensor], *, lr: float, momentum: float = 0.0):
        self.params, self.lr, self.momentum = params, float(lr), float(momentum)
        self.state: dict[int, torch.Tensor] = {}  # momentum buffers; cleared per client

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            d_p = p.grad
            if self.momentum != 0:
                buf = self.state.get(i)
                if buf is None:
                    buf = self.state[i] = torch.clone(d_p).detach()
                else:
                    buf.mul_(self.momentum).add_(d_p)
                d_p = buf
            p.add_(d_p, alpha=-self.lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


class LocalTrainer:
    """Holds one model (and, with DP, its Opacus wrappers) and trains it for any client."""

    def __init__(self, model: nn.Module, spec: LocalSpec, device: torch.device | str = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.loss_fn = nn.CrossEntropyLoss()
        self.clipper: PerSampleClipper | None = None
        if spec.dp and spec.grad_sample_mode == "bookkeeping":
            self.module = self.model
            self.clipper = PerSampleClipper(self.model, max_grad_norm=spec.max_grad_norm)
            self.optimizer = LocalSGD(self.params, lr=spec.lr, momentum=spec.momentum)
        elif spec.dp:
            from opacus.grad_sample.utils import wrap_model
            from opacus.optimizers import get_optimizer_class

            ghost = spec.grad_sample_mode == "ghost"
            extra = {"max_grad_norm": spec.max_grad_norm, "use_ghost_clipping": True} if ghost else {}
            self.module = wrap_model(self.model, spec.grad_sample_mode, True, loss_reduction="mean", **extra)
            base = torch.optim.SGD(self.params, lr=spec.lr, momentum=spec.momentum)
            opt_cls = get_optimizer_class(clipping="flat", distributed=False, grad_sample_mode=spec.grad_sample_mode)
            self.optimizer = opt_cls(base, noise_multiplier=spec.noise_multiplier, max_grad_norm=spec.max_grad_norm,
                                     expected_batch_size=spec.batch_size, loss_reduction="mean")
            if ghost:  # ghost clipping: per-sample norms without per-sample gradients, then a second backward
                from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

                self.loss_fn = DPLossFastGradientClipping(self.module, self.optimizer, nn.CrossEntropyLoss(), "mean")
        else:
            self.module = self.model
            self.optimizer = LocalSGD(self.params, lr=spec.lr, momentum=spec.momentum)

    def weights(self) -> torch.Tensor:
        return parameters_to_vector(self.params).detach()

    def train(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, *,
              stop_at: float = math.inf) -> LocalResult:
        """Start from ``weights`` and run the spec's local steps on (x, y); all randomness
        (batch sampling, DP noise) comes from ``generator``. Past ``stop_at`` (``time.monotonic()``)
        the client stops with :class:`RoundDeadline` and releases nothing."""
        start = weights.to(self.device)
        load_flat_(self.params, start)
        self.optimizer.state.clear()  # momentum does not leak from one client to the next
        n = len(y)
        steps, rate = self.spec.steps(n), self.spec.sample_rate(n)
        self.module.train()
        total_loss, seen = 0.0, 0
        batches = self._poisson_batches if self.spec.dp else self._shuffled_batches
        if self.spec.dp and self.clipper is None:
            self.optimizer.generator = generator  # Opacus's DP noise from the client's own stream
        step = self._bookkeeping_step if self.clipper is not None else self._autograd_step
        for idx in batches(n, steps, rate, generator):
            if time.monotonic() > stop_at:
                raise RoundDeadline(f"stopped after {seen} records: past its share of server.round_timeout")
            xb, yb = x[idx].to(self.device, non_blocking=True), y[idx].to(self.device, non_blocking=True)
            loss_sum = step(xb, yb, generator)
            if len(idx):
                total_loss += loss_sum
                seen += len(idx)
        self.optimizer.zero_grad(set_to_none=True)
        delta = self.weights() - start
        return LocalResult(delta, total_loss / seen if seen else math.nan)

    def clipped_gradient_sum(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                             generator: torch.Generator, *, stop_at: float = math.inf) -> torch.Tensor:
        """sum_i clip_C(grad_i) at ``weights`` over one Poisson sample (rate q) of (x, y) drawn from ``generator``,
        flat, on the CPU: one silo's part of a DP-SGD step on the union of the silos (secure FedSGD), with no
        noise and no update. A record whose own gradient is not finite is left out (a choice made on that record
        alone, inside the sensitivity) rather than failing the silo, whose drop-out would depend on one record."""
        if self.clipper is None:
            raise ValueError("a clipped gradient sum needs client.dp with grad_sample_mode = \"bookkeeping\"")
        load_flat_(self.params, weights.to(self.device))
        self.module.train()
        n = len(y)
        idx = next(self._poisson_batches(n, 1, self.spec.sample_rate(n), generator))
        if time.monotonic() > stop_at:
            raise RoundDeadline("past its share of server.round_timeout")
        xb, yb = x[idx].to(self.device), y[idx].to(self.device)
        clipped = self.clipper.clipped_sum(xb, yb)
        if not all(bool(torch.isfinite(g).all()) for g in clipped.grads):
            keep = torch.isfinite(clipped.norms)
            clipped = self.clipper.clipped_sum(xb[keep], yb[keep])
        return torch.cat([g.reshape(-1) for g in clipped.grads]).cpu()

    def _autograd_step(self, xb: torch.Tensor, yb: torch.Tensor, generator: torch.Generator) -> float:
        """One step through ``loss.backward()``: plain SGD, or an Opacus DPOptimizer. Returns the batch's loss sum."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.module(xb), yb)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()) * len(yb)

    def _bookkeeping_step(self, xb: torch.Tensor, yb: torch.Tensor, generator: torch.Generator) -> float:
        """One DP-SGD step with the book-keeping engine; noise as Opacus draws it (``_generate_noise``,
        non-secure mode), but on the generator's device, so that a GPU run keeps the CPU stream."""
        spec = self.spec
        clipped = self.clipper.clipped_sum(xb, yb)
        std = spec.noise_multiplier * spec.max_grad_norm
        for p, g in zip(self.params, clipped.grads):
            if std > 0:  # (noise + sum) in place: no extra parameter-sized temporaries per step
                g = torch.normal(0.0, std, size=g.shape, generator=generator, device=generator.device,
                                 dtype=g.dtype).to(g.device).add_(g)
            p.grad = g.div_(spec.batch_size)  # the expected batch size: Opacus's loss_reduction = "mean"
        self.optimizer.step()
        return clipped.loss_sum

    @staticmethod
    def _poisson_batches(n: int, steps: int, rate: float, gen: torch.Generator):
        """Each record joins each batch independently with probability ``rate`` (batches may be empty)."""
        for _ in range(steps):
            yield torch.nonzero(torch.rand(n, generator=gen) < rate).squeeze(1)

    def _shuffled_batches(self, n: int, steps: int, rate: float, gen: torch.Generator):
        """Non-private baseline: consecutive minibatches of a fresh permutation per pass."""
        b = self.spec.batch_size
        perm, pos = torch.randperm(n, generator=gen), 0
        for _ in range(steps):
            if pos >= n:
                perm, pos = torch.randperm(n, generator=gen), 0
            yield perm[pos:pos + b]
            pos += b
