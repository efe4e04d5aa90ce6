from __future__ import annotations

import pytest
import torch

from ecnb.config import ConfigError
from ecnb.models import build_model


@pytest.mark.parametrize(
    "name,shape,expected",
    [
        ("smallcnn", (1, 16, 16), {"layer1": (16, 16, 16), "layer2": (32, 8, 8), "layer3": (64, 4, 4),
                                   "layer4": (128, 2, 2), "pool": (128,)}),
        ("resnet18", (3, 32, 32), {"layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8),
                                   "layer4": (512, 4, 4), "pool": (512,)}),
    ],
)
def test_taps_names_order_and_shapes(name, shape, expected):
    torch.manual_seed(0)
    model = build_model(name, shape[0], 10).eval()
    assert model.taps == list(expected)
    x = torch.randn(2, *shape)
    logits, feats = model.forward_taps(x)
    assert list(feats) == model.taps
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == expected
    assert logits.shape == (2, 10)
    assert torch.allclose(model(x), logits)


def test_resnet18_is_the_cifar_variant():
    model = build_model("resnet18", 3, 100)
    stem_conv = model.stem[0]
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert model.head.out_features == 100


def test_unknown_model_is_refused():
    with pytest.raises(ConfigError, match="unknown model 'vgg'"):
        build_model("vgg", 3, 10)
