"""Classifiers that expose named feature taps in network order.

Every model is a `TappedNet`: a stem, an ordered set of stages, global pooling and a linear head. The
taps are the stages' outputs followed by the pooled penultimate features, so the metrics (CKA, probes)
and Erase at the Core's supervision points speak the same layer names for every architecture.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn as nn

from .config import ConfigError


class TappedNet(nn.Module):
    """stem -> stages (each a tap) -> global average pool (tap `pool`) -> linear head."""

    def __init__(self, stem: nn.Module, stages: "OrderedDict[str, nn.Module]", head: nn.Linear):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleDict(stages)
        self.head = head
        self.arch: tuple[str, int, int] | None = None  # (name, in_channels, num_classes), set by build_model

    @property
    def taps(self) -> list[str]:
        """Feature taps from input to output; all but the last are the intermediate layers."""
        return [*self.stages.keys(), "pool"]

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, "OrderedDict[str, torch.Tensor]"]:
        """Logits and every tap's activation, in one pass (gradients flow through all of them)."""
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.stem(x)
        for name, stage in self.stages.items():
            h = stage(h)
            feats[name] = h
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)
        feats["pool"] = pooled
        return self.head(pooled), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_taps(x)[0]


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def smallcnn(in_channels: int, num_classes: int, width: int = 16) -> TappedNet:
    """Four stages of two 3x3 conv-BN-ReLU each, width doubling and resolution halving per stage.

    Sized for the embedded 16x16 digits: it trains in seconds on a CPU, and has enough depth for
    intermediate layers to differ from the head.
    """
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    c = in_channels
    for i in range(4):
        c_out = width * 2**i
        stages[f"layer{i + 1}"] = nn.Sequential(
            *_conv_bn_relu(c, c_out, stride=1 if i == 0 else 2), *_conv_bn_relu(c_out, c_out)
        )
        c = c_out
    return TappedNet(nn.Identity(), stages, nn.Linear(c, num_classes))


def resnet18(in_channels: int, num_classes: int) -> TappedNet:
    """torchvision's ResNet-18 in its CIFAR form: 3x3 stride-1 stem and no max-pool."""
    import torchvision

    net = torchvision.models.resnet18(num_classes=num_classes)
    stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), net.bn1, net.relu)
    stages = OrderedDict((name, getattr(net, name)) for name in ("layer1", "layer2", "layer3", "layer4"))
    return TappedNet(stem, stages, net.fc)


MODELS: dict[str, Callable[[int, int], TappedNet]] = {"smallcnn": smallcnn, "resnet18": resnet18}


def build_model(name: str, in_channels: int, num_classes: int) -> TappedNet:
    """A fresh model from the registry, initialised the architecture's own way (torchvision's ResNet-18
    draws its convolutions from Kaiming-normal, not PyTorch's default); it remembers how it was built
    (`arch`), so a fresh copy of the same architecture can be built again (Bad Teacher's random teacher)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    model = MODELS[name](in_channels, num_classes)
    model.arch = (name, in_channels, num_classes)
    return model


def eval_batch_size(device: torch.device) -> int:
    """Images per forward pass when a model only reads: on the CPU a layer's activations of 256 images of 28x28
    stay in cache, where 1,024 do not (the small CNN reads 1,000 Fashion-MNIST images in 0.21 s at 256 and 0.35 s at
    1,024, one thread); an accelerator wants large batches."""
    return 256 if device.type == "cpu" else 1024
