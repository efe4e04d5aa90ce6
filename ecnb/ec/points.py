"""Where EC supervises (taps of the model, with layer weights) and what reads each point out: auxiliary
modules sized from the tap's shape, warmed up on the original's frozen features and then frozen."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError
from ..models import TappedNet
from ..train import autocast, batches
from ..unlearn import UnlearnData
from .params import POINT_KEYWORDS, WEIGHT_SCHEMES, _is_number, _point_names

# ----------------------------------------------------------------------------- supervision points


def supervision_points(spec: str | Sequence[str], taps: Sequence[str], method: str = "ec") -> tuple[str, ...]:
    """The taps named by `spec`, in network order; ConfigError naming an unknown tap and the valid ones."""
    names = _point_names(spec) or []
    if names == ["all"]:
        return tuple(taps)
    if names == ["last"]:
        return (taps[-1],)
    unknown = [n for n in names if n not in taps]
    if unknown:
        raise ConfigError(
            f"{method}: unknown supervision point {unknown[0]!r} in ec_points; valid taps: {', '.join(taps)} "
            f"(or {' / '.join(POINT_KEYWORDS)})"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"{method}: ec_points {names} repeats a tap")
    return tuple(t for t in taps if t in names)


def layer_weights(
    spec: float | str | Sequence[float], points: Sequence[str], taps: Sequence[str], method: str = "ec"
) -> tuple[float, ...]:
    """Per-point weights. A number w: the final point 1 and every intermediate point w (DSN uses w < 1
    because its companion losses only help the head; EC's default w = 4 up-weights them because erasing
    there is the point, chosen on the validation tasks, see EC_HPARAMS). `uniform`: 1 each. `depth`:
    (depth of the tap) / (number of taps), increasing to 1 at the final point. A list gives the weights
    explicitly, one per point in network order."""
    if spec == "uniform":
        return tuple(1.0 for _ in points)
    if spec == "depth":
        return tuple((taps.index(p) + 1) / len(taps) for p in points)
    if _is_number(spec):
        return tuple(1.0 if p == taps[-1] else float(spec) for p in points)
    if len(spec) != len(points):
        raise ConfigError(
            f"{method}: ec_weights gives {len(spec)} weight(s) for {len(points)} supervision point(s) "
            f"({', '.join(points)})"
        )
    return tuple(float(w) for w in spec)


# ----------------------------------------------------------------------------- auxiliary modules


class AuxHead(nn.Module):
    """An intermediate point's read-out: conv blocks to the last stage's width and size, global average
    pooling, then the pooled vector (the embedding) and a linear classifier's logits."""

    def __init__(self, in_channels: int, plan: Sequence[tuple[int, int, int]], num_classes: int):
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_channels
        for c_out, kernel, stride in plan:
            blocks += [nn.Conv2d(c, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c = c_out
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if h.ndim == 4:
            h = torch.flatten(F.adaptive_avg_pool2d(self.body(h), 1), 1)
        return h, self.classifier(h)


def aux_plan(shape: Sequence[int], last_shape: Sequence[int]) -> list[tuple[int, int, int]]:
    """(channels, kernel, stride) of each conv block taking a (C, H, W) tap to the last stage's (C', H', W').

    ceil(log2(H / H')) 3x3 stride-2 blocks that keep the tap's width C and widen to C' only in the last
    one. Halving before widening keeps the four modules of the small CNN at about a quarter of the
    backbone's multiply-adds (two thirds with widths growing block by block), so an EC step stays close
    to a fine-tuning step on the same images. A tap already at the last stage's size gets one 1x1 block
    to C', so its read-out is never the final point's pooled features again. Vector taps need none."""
    if len(shape) != 3:
        return []
    (c_in, h_in, _), (c_last, h_last, _) = shape, last_shape
    n = max(0, math.ceil(math.log2(h_in / h_last)))
    if n == 0:
        return [(c_last, 1, 1)]
    return [(c_in, 3, 2)] * (n - 1) + [(c_last, 3, 2)]


def build_aux(model: TappedNet, points: Sequence[str], example: torch.Tensor, num_classes: int, seed: int) -> nn.ModuleDict:
    """Auxiliary modules for the intermediate `points`, sized from one eval-mode pass over `example`.
    Initialised from `seed` without touching the global random state."""
    was_training = model.training
    with torch.no_grad():
        _, taps = model.eval().forward_taps(example)
    model.train(was_training)
    shapes = {name: tuple(t.shape[1:]) for name, t in taps.items()}
    last_conv = [s for s in shapes.values() if len(s) == 3][-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleDict({
            p: AuxHead(shapes[p][0], aux_plan(shapes[p], last_conv), num_classes)
            for p in points if p != model.taps[-1]
        })


def warm_up(model: TappedNet, aux: nn.ModuleDict, data: UnlearnData, hp: Mapping[str, Any]) -> None:
    """Fit the auxiliary modules to the *original's* frozen features by cross-entropy on D = D_f + D_r,
    then freeze them (eval mode, no gradients), so that during unlearning the EC loss can only be
    lowered by changing the backbone."""
    if len(aux) and hp["ec_aux_epochs"]:
        x = torch.cat([data.forget_x, data.retain_x])
        y = torch.cat([data.forget_y, data.retain_y])
        opt = torch.optim.Adam(aux.parameters(), lr=hp["ec_aux_lr"])
        gen = torch.Generator().manual_seed(hp["seed"])
        was_training = model.training
        model.eval()
        aux.train()
        for _ in range(hp["ec_aux_epochs"]):
            for idx in batches(len(y), hp["batch_size"], gen, data.device):
                with torch.no_grad(), autocast(data.device):
                    _, taps = model.forward_taps(x[idx])
                with autocast(data.device):
                    loss = sum(F.cross_entropy(head(taps[p])[1], y[idx]) for p, head in aux.items())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        model.train(was_training)
        aux.zero_grad(set_to_none=True)
    aux.eval().requires_grad_(False)
