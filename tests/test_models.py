import pytest
import torch
from opacus.validators import ModuleValidator

from actors.models import MODELS, auto_model_name, build_model
from tests.conftest import MODEL_SHAPES


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_validates_under_opacus_and_runs(name):
    channels, size = MODEL_SHAPES[name]
    model = build_model(name, in_channels=channels, num_classes=10, image_size=size, seed=0)

    ModuleValidator.validate(model, strict=True)  # raises on BatchNorm or other unsupported layers
    out = model(torch.zeros(3, channels, size, size))

    assert out.shape == (3, 10)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_initial_weights_depend_on_the_seed_alone():
    a = build_model("digits_cnn", in_channels=1, num_classes=10, image_size=8, seed=1)
    torch.manual_seed(12345)  # the global RNG must not matter
    b = build_model("digits_cnn", in_channels=1, num_classes=10, image_size=8, seed=1)
    c = build_model("digits_cnn", in_channels=1, num_classes=10, image_size=8, seed=2)

    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_auto_model_matches_image_size():
    assert [auto_model_name(s) for s in (8, 28, 32)] == ["digits_cnn", "tanh_cnn", "cifar_cnn"]
    assert auto_model_name(7, "scatternet") == "scatter_linear"
