"""The weight-space view: how far a method moved the original's weights, and what lies on the straight line
between the two models.

Siddiqui et al. (2025, "From Dormant to Deleted: Tamper-Resistant Unlearning Through Weight-Space
Regularization") found that both predict how easily an unlearned classifier relearns what it forgot: a
model left close to the original, in the same low-loss basin, keeps the forgotten class along the whole
line from the original to itself and gets it back after a few fine-tuning steps.

- `weight_distance`: the root mean square of the difference between the model's parameters and the
  original's, over the whole model (`layer` empty) and per tap's block (the stem counts with the first
  stage; the classifier head is the block `head`). Parameters only: BatchNorm's running statistics are
  state, not weights.
- `interpolation_accuracy` (on `test_forget` and `test_retain`, `layer` = `t0.50` ...): the accuracy of
  the model whose floating-point state is (1 - t) x original + t x the method's, BatchNorm's running
  statistics included (as the reference code mixes state dicts), integer counters taken from the method,
  at each t of `INTERPOLATION_TS`. t = 0 is the original, t = 1 the method itself. Beyond 2,000 images
  `test_retain` is read on CKA's seeded sample (`ecnb.metrics.capped_sample`; the caller cuts it).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from .metrics import accuracy
from .models import TappedNet
from .results import result_row
from .train import predict

INTERPOLATION_TS = (0.0, 0.25, 0.5, 0.75, 1.0)
INTERPOLATION_SPLITS = ("test_forget", "test_retain")
HEAD = "head"


def blocks(model: TappedNet) -> dict[str, list[str]]:
    """Parameter names per block, in network order: each stage under its tap's name (the stem with the
    first), then the classifier under `head`."""
    out: dict[str, list[str]] = {}
    stages = list(model.stages)
    for name, _ in model.named_parameters():
        part = name.split(".")
        block = part[1] if part[0] == "stages" else stages[0] if part[0] == "stem" else HEAD
        out.setdefault(block, []).append(name)
    order = [*stages, HEAD]
    return {b: out[b] for b in order if b in out}


def weight_distance(model: TappedNet, original: TappedNet) -> dict[str, float]:
    """RMS of the parameter difference to `original`, over the whole model ('') and per block."""
    theirs = dict(original.named_parameters())
    diff = {name: (p.detach().double().cpu() - theirs[name].detach().double().cpu()).flatten()
            for name, p in model.named_parameters()}

    def rms(names: Sequence[str]) -> float:
        d = torch.cat([diff[n] for n in names])
        return float(d.pow(2).mean().sqrt())

    return {"": rms(list(diff)), **{block: rms(names) for block, names in blocks(model).items()}}


def interpolate(original: TappedNet, model: TappedNet, t: float) -> TappedNet:
    """A copy of `model` whose floating-point state is (1 - t) x `original`'s + t x `model`'s (parameters
    and BatchNorm statistics); integer state (BatchNorm's batch counters) is `model`'s."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"interpolation coefficient {t} must be in [0, 1]")
    start = original.state_dict()
    mixed = {k: torch.lerp(start[k].to(v.dtype), v, t) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    out = copy.deepcopy(model)
    out.load_state_dict(mixed)
    return out.eval()


def interpolation_accuracy(
    original: TappedNet, model: TappedNet, sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
    ts: Sequence[float] = INTERPOLATION_TS, known: Mapping[tuple[str, float], float] | None = None,
) -> dict[tuple[str, float], float]:
    """Accuracy on each non-empty set at each t of the line from `original` (t = 0) to `model` (t = 1). `known`
    holds accuracies already measured, by (set, t): the ends of the line are the two models themselves, so a
    caller that has their accuracies need not run them again."""
    known = known or {}
    out = {}
    for t in ts:
        todo = {name: xy for name, xy in sets.items() if len(xy[1]) and (name, t) not in known}
        mixed = interpolate(original, model, t) if todo else None
        for name, (x, y) in sets.items():
            if len(y):
                out[name, t] = known[name, t] if name not in todo else accuracy(predict(mixed, x), y)
    return out


def weight_rows(
    model: TappedNet, original: TappedNet, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int,
    known: Mapping[tuple[str, float], float] | None = None,
) -> list[dict]:
    """`weight_distance` (whole model, then per block) and `interpolation_accuracy` per split and t (`known`: the
    accuracies at the ends of the line, when the caller has them)."""
    rows = [result_row(seed, method, "weight_distance", v, layer=block)
            for block, v in weight_distance(model, original).items()]
    sets = {name: splits[name] for name in INTERPOLATION_SPLITS}
    for (name, t), v in interpolation_accuracy(original, model, sets, known=known).items():
        rows.append(result_row(seed, method, "interpolation_accuracy", v, split=name, layer=interpolation_layer(t)))
    return rows


def interpolation_layer(t: float) -> str:
    """The `layer` value of an interpolation row: t0.00, t0.25, ..."""
    return f"t{t:.2f}"
