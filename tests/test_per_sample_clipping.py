"""The book-keeping engine computes exactly what DP-SGD defines: sum_i clip_C(g_i), then Opacus's step."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actors.data import load_dataset
from actors.local_training import LocalSpec, LocalTrainer
from actors.models import MODELS, build_model
from actors.per_sample_clipping import PerSampleClipper, UnsupportedLayerError
from tests.conftest import MODEL_SHAPES

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # Opacus hooks on input layers


def per_sample_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float):
    """The definition: each sample's gradient on its own, clipped with Opacus's factor, summed."""
    params = [p for p in model.parameters() if p.requires_grad]
    total, norms = [torch.zeros_like(p) for p in params], []
    for i in range(len(y)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params)
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for t, g in zip(total, grads):
            t += factor * g
        norms.append(norm)
    return total, torch.stack(norms)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_clipped_sum_equals_the_per_sample_definition(name):
    channels, size = MODEL_SHAPES[name]
    model = build_model(name, in_channels=channels, num_classes=10, image_size=size, seed=0).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(9, channels, size, size, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (9,), generator=gen)
    _, norms = per_sample_loop(model, x, y, clip=1e9)
    clip = float(norms.median())  # about half the samples are clipped, half are not
    expected, _ = per_sample_loop(model, x, y, clip=clip)

    got = PerSampleClipper(model, max_grad_norm=clip).clipped_sum(x, y)

    assert torch.allclose(got.norms, norms, rtol=1e-10)
    assert (norms > clip).any() and (norms < clip).any()
    for e, g in zip(expected, got.grads):
        assert torch.allclose(g, e, rtol=1e-9, atol=1e-12)


def test_convolution_with_stride_padding_and_dilation_matches_autograd():
    conv = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 11, 4)).double()
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(5, 2, 11, 9, generator=gen, dtype=torch.float64), torch.randint(0, 4, (5,), generator=gen)
    expected = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), list(model.parameters()))

    got = PerSampleClipper(model, max_grad_norm=1e12).clipped_sum(x, y)  # no sample clipped: the plain gradient

    for e, g in zip(expected, got.grads):
        assert torch.allclose(g, e, rtol=1e-10, atol=1e-12)


def test_empty_batch_gives_a_zero_sum():
    model = build_model("digits_cnn", in_channels=1, num_classes=10, image_size=8, seed=0)

    got = PerSampleClipper(model, max_grad_norm=1.0).clipped_sum(torch.zeros(0, 1, 8, 8),
                                                                 torch.zeros(0, dtype=torch.long))

    assert [g.shape for g in got.grads] == [p.shape for p in model.parameters()]
    assert all(float(g.abs().sum()) == 0 for g in got.grads) and got.norms.numel() == 0


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2)),
    nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2)),
])
def test_layers_it_cannot_handle_are_refused_at_construction(model):
    with pytest.raises(UnsupportedLayerError):
        PerSampleClipper(model, max_grad_norm=1.0)


class _DoubledLinear(nn.Linear):
    """A Linear whose own forward is not Linear's: the engine's Linear formulas would be wrong for it."""

    def forward(self, x):
        return 2 * super().forward(x)


class _ShiftedConv2d(nn.Conv2d):
    def forward(self, x):
        return super().forward(x + 1)


class _SquaredGroupNorm(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x) ** 2


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2)),
    nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, affine=False), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
    nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
    nn.Sequential(nn.BatchNorm3d(1, affine=False), nn.Flatten(), nn.Linear(8, 2)),
    nn.Sequential(nn.Conv2d(1, 2, 3), nn.SyncBatchNorm(2, affine=False), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
    nn.Sequential(nn.Conv2d(1, 2, 3), nn.InstanceNorm2d(2, track_running_stats=True), nn.Flatten(),
                  nn.Linear(2 * 6 * 6, 2)),
    nn.Sequential(nn.Flatten(), _DoubledLinear(64, 2)),
    nn.Sequential(_ShiftedConv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
    nn.Sequential(nn.Conv2d(1, 2, 3), _SquaredGroupNorm(1, 2), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)),
], ids=["bn1d-no-affine", "bn2d-no-affine", "bn2d-affine", "bn3d-no-affine", "syncbn-no-affine",
        "instancenorm-running-stats", "linear-subclass", "conv2d-subclass", "groupnorm-subclass"])
def test_layers_that_mix_samples_or_replace_a_forward_are_refused_at_construction(model):
    """Before: parameter-free batch norms were accepted (per-sample norms of a batch-mixed output mean
    nothing) and subclasses were treated as the plain layer."""
    with pytest.raises(UnsupportedLayerError, match="batch|subclasses|outside"):
        PerSampleClipper(model, max_grad_norm=1.0)


def test_a_frozen_batch_norm_is_refused_too():
    bn = nn.BatchNorm2d(2)
    bn.requires_grad_(False)  # no parameter to train, yet the batch statistics still mix the samples
    model = nn.Sequential(nn.Conv2d(1, 2, 3), bn, nn.Flatten(), nn.Linear(2 * 6 * 6, 2))

    with pytest.raises(UnsupportedLayerError, match="batch"):
        PerSampleClipper(model, max_grad_norm=1.0)


@pytest.mark.parametrize("model,shape", [
    (nn.Sequential(nn.GroupNorm(2, 4), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5, 3)), (7, 4, 5)),  # (N, C, L)
    (nn.Sequential(nn.GroupNorm(2, 4), nn.Tanh(), nn.Linear(4, 3)), (7, 4)),  # (N, C)
    (nn.Sequential(nn.Conv2d(2, 4, 3), nn.InstanceNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)), (7, 2, 6, 6)),
], ids=["groupnorm-3d", "groupnorm-2d", "instancenorm-no-running-stats"])
def test_per_sample_layers_on_other_input_ranks_match_the_definition(model, shape):
    """Before: GroupNorm on a 3-D input raised an IndexError. InstanceNorm without running statistics
    normalises each sample alone, so it stays accepted."""
    model = model.double()
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(*shape, generator=gen, dtype=torch.float64), torch.randint(0, 3, (shape[0],), generator=gen)
    _, norms = per_sample_loop(model, x, y, clip=1e9)
    clip = float(norms.median())
    expected, _ = per_sample_loop(model, x, y, clip=clip)

    got = PerSampleClipper(model, max_grad_norm=clip).clipped_sum(x, y)

    assert torch.allclose(got.norms, norms, rtol=1e-10)
    for e, g in zip(expected, got.grads):
        assert torch.allclose(g, e, rtol=1e-9, atol=1e-12)


def test_in_place_edit_of_a_kept_output_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 0])

    with pytest.raises(UnsupportedLayerError, match="in place"):
        PerSampleClipper(model, max_grad_norm=1.0).clipped_sum(x, y)


def _delta(name: str, mode: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    channels, size = MODEL_SHAPES[name]
    spec = LocalSpec(dp=True, noise_multiplier=0.7, max_grad_norm=0.5, lr=0.1, momentum=0.5, batch_size=16,
                     local_epochs=1.0, local_steps=steps, grad_sample_mode=mode)
    model = build_model(name, in_channels=channels, num_classes=10, image_size=size, seed=3)
    trainer = LocalTrainer(model, spec)
    return trainer.train(trainer.weights().clone(), x, y, torch.Generator().manual_seed(4)).delta


@pytest.mark.parametrize("name,dataset", [("digits_cnn", "digits"), ("mnist_cnn", "mnist5k"),
                                          ("tanh_cnn", "mnist5k")])
def test_local_dp_sgd_delta_equals_opacus_hooks_mode(name, dataset):
    """Same generator, same Poisson batches, same noise draws: the whole local update agrees with Opacus."""
    x, y = load_dataset(dataset).tensors("train")
    x, y = x[:200], y[:200]

    ours = _delta(name, "bookkeeping", x, y, steps=4)
    opacus = _delta(name, "hooks", x, y, steps=4)

    assert float(ours.norm()) > 0
    assert torch.allclose(ours, opacus, rtol=1e-4, atol=1e-6), float((ours - opacus).abs().max())


def test_local_dp_sgd_delta_equals_opacus_on_scatternet_features():
    """scatter_linear on real digits' ScatterNet features (parameter-free GroupNorm, then Linear)."""
    from actors.features import scatter_transform

    data = load_dataset("digits")
    x, y = data.tensors("train")
    x, y = scatter_transform(torch.nn.functional.pad(x[:200], (10, 10, 10, 10))), y[:200]  # 28x28 -> 81x7x7

    ours = _delta("scatter_linear", "bookkeeping", x, y, steps=4)
    opacus = _delta("scatter_linear", "hooks", x, y, steps=4)

    assert float(ours.norm()) > 0
    assert torch.allclose(ours, opacus, rtol=1e-4, atol=1e-6), float((ours - opacus).abs().max())


def test_engine_is_a_validated_config_key_defaulting_to_bookkeeping():
    from privacy.config.experiment import ConfigError, load_config

    assert load_config().client.grad_sample_mode == "bookkeeping"
    assert load_config(overrides=["client.grad_sample_mode=ghost"]).client.grad_sample_mode == "ghost"
    with pytest.raises(ConfigError, match="client.grad_sample_mode"):
        load_config(overrides=["client.grad_sample_mode=fast"])
