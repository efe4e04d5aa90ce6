"""The one driver loop every method runs in: minibatch streams, the update, divergence checks."""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from ..models import TappedNet
from ..progress import epoch_bar
from ..train import autocast, batches, prepare_model
from .core import Batch, Method, Optimizer, Phase, Step, UnlearnData, UnlearningError
from .defaults import get_method, validate

# ----------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class UnlearnStats:
    """What a run measured: wall time in seconds, the number of steps, the mean loss of each epoch."""

    method: str
    wall_time: float
    steps: int
    losses: list[float]


class _Stream:
    """Minibatches of one set, drawn on its device, reshuffled pass after pass."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator):
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator
        self.steps_per_pass = _steps_per_pass(len(y), batch_size)
        self._order: Iterator[torch.Tensor] = iter(())

    def new_pass(self) -> None:
        self._order = batches(len(self.y), self.batch_size, self.generator, self.y.device)

    def next(self) -> Batch:
        idx = next(self._order, None)
        if idx is None:
            self.new_pass()
            idx = next(self._order)
        return Batch(self.x[idx], self.y[idx], idx)


def _steps_per_pass(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def _retain_used(n_retain: int, hp: Mapping[str, Any]) -> int:
    """How many D_r images a method may use (`retain_fraction`, rounded up)."""
    return math.ceil(hp["retain_fraction"] * n_retain)


def _plan(method: Method, hp: Mapping[str, Any]) -> list[tuple[Phase, ...]]:
    """The phases of every epoch of a run, in order."""
    return [method.phases(epoch, hp) for epoch in range(method.epochs(hp))]


def _streams(data: UnlearnData, hp: Mapping[str, Any], generator: torch.Generator) -> dict[str, _Stream]:
    n_retain = len(data.retain_y)
    keep = torch.randperm(n_retain, generator=generator)[: _retain_used(n_retain, hp)]
    keep = keep.sort().values.to(data.device)
    return {
        "forget": _Stream(data.forget_x, data.forget_y, hp["forget_batch_size"], generator),
        "retain": _Stream(data.retain_x[keep], data.retain_y[keep], hp["batch_size"], generator),
    }


def planned_steps(name: str, n_forget: int, n_retain: int, config: Mapping[str, Any]) -> int:
    """How many optimisation steps `run_method(name, ...)` takes on a D_f and a D_r of these sizes (every
    phase, at every rate): what a scheduler needs to start the longest runs first."""
    method, hp = get_method(name), validate(name, config)
    per_pass = {"forget": _steps_per_pass(n_forget, hp["forget_batch_size"]),
                "retain": _steps_per_pass(_retain_used(n_retain, hp), hp["batch_size"])}
    return sum(per_pass[p.over] for phases in _plan(method, hp) for p in phases)


def _optimise(
    method: Method, model: TappedNet, state: Any, step: Step, opt: torch.optim.Optimizer, device: torch.device,
    decay: float,
) -> torch.Tensor:
    """One update: loss, backward, the method's gradient hook, weight decay `decay` added to the gradients, the
    optimiser's step (decay after the hook, as an optimiser's own weight decay acts after SalUn's mask)."""
    with autocast(device):
        loss = method.loss(model, state, step)
    _check_loss(method.name, loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if method.grad_hook is not None:
        method.grad_hook(model, state, step)
    if decay:
        for p in model.parameters():
            if p.grad is not None:
                p.grad.add_(p.detach(), alpha=decay)
    opt.step()
    return loss.detach().float()


def _check_loss(name: str, loss: Any) -> None:
    """A loss the update can use: one number that depends on the weights (a method a user brings may return
    anything). Checked without reading the value, so the device is not waited for."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        what = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise UnlearningError(f"unlearning method {name!r}: its loss must be a scalar tensor (one number per step), "
                              f"not {what}")
    if not loss.requires_grad:
        raise UnlearningError(f"unlearning method {name!r}: its loss does not depend on the model's weights (no gradient)")


def make_optimizer(kind: Optimizer, model: nn.Module, hp: Mapping[str, Any], lr: str = "lr") -> torch.optim.Optimizer:
    """SGD with momentum, or Adam with `momentum` as its first-moment decay (0.9 is Adam's own default),
    at the learning rate of hyperparameter `lr`; weight decay is added to the gradients by the driver, as
    both optimisers' own L2 decay would."""
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=hp[lr], betas=(hp["momentum"], 0.999))
    return torch.optim.SGD(model.parameters(), lr=hp[lr], momentum=hp["momentum"])


class _Optimizers:
    """The optimizers of one run: the method's own, and one per phase that asks for its own (`Phase`),
    each created with fresh state when it is first needed."""

    def __init__(self, method: Method, model: nn.Module, hp: Mapping[str, Any]):
        self.method, self.model, self.hp = method, model, hp
        self._made: dict[str | None, torch.optim.Optimizer] = {}

    def for_phase(self, phase: Phase) -> torch.optim.Optimizer:
        key = None if phase.optimizer is None else phase.name
        if key not in self._made:
            kind = self.method.optimizer_for(self.hp) if phase.optimizer is None else phase.optimizer
            self._made[key] = make_optimizer(kind, self.model, self.hp, phase.lr or "lr")
        opt = self._made[key]
        for group in opt.param_groups:
            group["lr"] = self.hp[phase.lr or "lr"]
        return opt


def run_method(
    name: str, model: TappedNet, data: UnlearnData, config: Mapping[str, Any]
) -> tuple[TappedNet, UnlearnStats]:
    """Run method `name` on a deep copy of `model`; returns the unlearned model (eval mode) and its stats."""
    method = get_method(name)
    hp = validate(name, config)
    student = prepare_model(copy.deepcopy(model), data.device)
    generator = torch.Generator().manual_seed(hp["seed"])
    streams = _streams(data, hp, generator)
    start = time.perf_counter()
    state = method.setup(student, data, hp)
    plan = _plan(method, hp)
    epochs = len(plan)
    # The method's own schedule (L1-sparse's decay reads t / total): phases at a rate of their own, such as a
    # plug-in's EC epochs after the base's, come after it and are not part of it.
    total = sum(streams[p.over].steps_per_pass for phases in plan for p in phases if p.lr is None)
    optimizers = _Optimizers(method, student, hp)
    student.train()
    losses: list[float] = []
    t = 0
    for epoch in epoch_bar(epochs, name):
        at = Step(epoch, "", 0, t, total, None, None, hp)  # where the epoch starts; its phases fill in the rest
        t, mean = _epoch(method, student, state, streams, plan[epoch], optimizers, at, epochs)
        losses.append(mean)
    stats = UnlearnStats(name, time.perf_counter() - start, t, losses)
    return student.eval(), stats


def _epoch(
    method: Method,
    model: TappedNet,
    state: Any,
    streams: dict[str, _Stream],
    phases: tuple[Phase, ...],
    optimizers: _Optimizers,
    at: Step,
    epochs: int,
) -> tuple[int, float]:
    """Run one epoch's phases from step `at.t`; returns the next step counter and the epoch's mean loss.

    Losses and the first non-finite step stay on the device; they are read once, at the end.
    """
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1.0, device=device)
    starts: list[tuple[int, Phase]] = []
    t = at.t
    for phase in phases:
        starts.append((t, phase))
        opt = optimizers.for_phase(phase)
        decay = at.hp["weight_decay"] if phase.weight_decay is None else phase.weight_decay
        stream = streams[phase.over]
        stream.new_pass()
        for index in range(stream.steps_per_pass):
            forget = streams["forget"].next() if phase.batches in ("forget", "both") else None
            retain = streams["retain"].next() if phase.batches in ("retain", "both") else None
            step = replace(at, phase=phase.name, index=index, t=t, forget=forget, retain=retain)
            loss = _optimise(method, model, state, step, opt, device, decay)
            loss_sum += loss
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), float(t), first_bad)
            t += 1
    weights_ok = torch.stack([p.isfinite().all() for p in model.parameters()]).all().float()
    mean, bad, ok = torch.stack([loss_sum / max(t - at.t, 1), first_bad, weights_ok]).tolist()
    if bad >= 0 or not ok:
        raise UnlearningError(_divergence(method.name, at, epochs, starts, int(bad)))
    return t, mean


def _divergence(name: str, at: Step, epochs: int, starts: list[tuple[int, Phase]], bad: int) -> str:
    where = f"epoch {at.epoch + 1}/{epochs}"
    phase = starts[-1][1]
    if bad >= 0:
        t0, phase = [(s, p) for s, p in starts if s <= bad][-1]
        where += f", step {bad - t0 + 1} of phase {phase.name!r} (step {bad + 1} of the run)"
        what = "the loss became non-finite"
    else:
        what = "the weights became non-finite"
    lr = phase.lr or "lr"
    return f"unlearning method {name!r} diverged: {what} at {where}; lower its learning rate ({lr}={at.hp[lr]})"


def unlearn(name: str, model: TappedNet, data: UnlearnData, config: Mapping[str, Any]) -> TappedNet:
    """Unlearn D_f from `model` (left unchanged) with method `name`; the unlearned copy, in eval mode."""
    return run_method(name, model, data, config)[0]
