"""The parts every unlearning method is made of: the data, a step, a phase, a hyperparameter rule, the
`Method` spec the driver runs, and `compose` (how EC plugs into a baseline). See `ecnb.unlearn`."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from ..config import ConfigError
from ..models import TappedNet

Split = Literal["forget", "retain"]
Batches = Literal["forget", "retain", "both"]


class UnlearningError(RuntimeError):
    """An unlearning run diverged (non-finite loss or weights); the message names method, epoch and step."""


# ----------------------------------------------------------------------------- data and steps


@dataclass
class UnlearnData:
    """What an unlearning method may see: D_f and D_r as tensors on `device`."""

    forget_x: torch.Tensor
    forget_y: torch.Tensor
    retain_x: torch.Tensor
    retain_y: torch.Tensor
    num_classes: int
    forget_classes: tuple[int, ...]
    device: torch.device

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        for name in ("forget_x", "forget_y", "retain_x", "retain_y"):
            setattr(self, name, getattr(self, name).to(self.device))
        if not len(self.forget_y) or not len(self.retain_y):
            raise ConfigError("unlearning needs a non-empty forget set and a non-empty retain set")

    @classmethod
    def from_splits(
        cls,
        splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        num_classes: int,
        forget_classes: tuple[int, ...],
        device: torch.device | str,
    ) -> "UnlearnData":
        """From `ecnb.split_tensors` output: its `forget_train` and `retain_train` splits."""
        (fx, fy), (rx, ry) = splits["forget_train"], splits["retain_train"]
        return cls(fx, fy, rx, ry, num_classes, tuple(forget_classes), torch.device(device))


@dataclass(frozen=True)
class Batch:
    """A minibatch; `idx` are its rows in the set it was drawn from (D_f, or the possibly subsampled
    D_r), to look up per-sample tables such as RL's labels."""

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor


@dataclass(frozen=True)
class Step:
    """Everything a loss may depend on in one optimisation step."""

    epoch: int
    phase: str
    index: int  # step within this phase of this epoch
    t: int  # step over the whole run, from 0
    total: int  # steps of the phases at the method's own learning rate (all of them, but a plug-in's EC epochs)
    forget: Batch | None
    retain: Batch | None
    hp: Mapping[str, Any]


Optimizer = Literal["sgd", "adam"]


@dataclass(frozen=True)
class Phase:
    """One pass over `over` per epoch; each step receives the minibatches named by `batches`, at the
    learning rate of hyperparameter `lr` (the method's own `lr` when None).

    `optimizer` None: the method's own optimizer, whose state (momentum, Adam's moments) runs on through
    all such phases. A kind ('sgd'): an optimizer of the phase's own, created with fresh state at the
    phase's first step and kept by every later step of a phase of the same name (a plug-in's EC epochs
    are the EC loss alone, on its own SGD, not the baseline's Adam or its momentum).

    `weight_decay` None: the method's `weight_decay`; a number: this phase's own, where the reference code runs
    a stage without the decay of the stage before it (weight_dist_reg's distance stage has none)."""

    name: str
    over: Split
    batches: Batches
    lr: str | None = None
    optimizer: Optimizer | None = None
    weight_decay: float | None = None


LossFn = Callable[[TappedNet, Any, Step], torch.Tensor]
SetupFn = Callable[[TappedNet, UnlearnData, Mapping[str, Any]], Any]
GradHook = Callable[[TappedNet, Any, Step], None]
PhaseFn = Callable[[int, Mapping[str, Any]], tuple[Phase, ...]]


def every_epoch(*phases: Phase) -> PhaseFn:
    """The same phases in every epoch (every method but SCRUB)."""
    return lambda epoch, hp: phases


def _no_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> None:
    return None


def _own_epochs(hp: Mapping[str, Any]) -> int:
    return hp["epochs"]


# ----------------------------------------------------------------------------- hyperparameter rules


@dataclass(frozen=True)
class Rule:
    """What values a hyperparameter may take; `check` raises a one-line ConfigError otherwise."""

    kind: type  # int or float
    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.high == math.inf:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{what} in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, method: str, key: str, value: Any) -> None:
        numeric = (int,) if self.kind is int else (int, float)
        ok = isinstance(value, numeric) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > self.low if self.low_open else value >= self.low)
        ok = ok and (value < self.high if self.high_open else value <= self.high)
        if not ok:
            raise ConfigError(f"{method}: hyperparameter {key}={value!r} is invalid; valid: {self.describe()}")


@dataclass(frozen=True)
class ChoiceRule(Rule):
    """One of a fixed set of names."""

    kind: type = str
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        return " or ".join(map(repr, self.choices))

    def check(self, method: str, key: str, value: Any) -> None:
        if value not in self.choices:
            raise ConfigError(f"{method}: hyperparameter {key}={value!r} is invalid; valid: {self.describe()}")


FRACTION = Rule(float, 0.0, 1.0, low_open=True)
POSITIVE = Rule(float, 0.0, low_open=True)
NONNEGATIVE = Rule(float, 0.0)

# Hyperparameters every method takes (the driver's).
COMMON: dict[str, Rule] = {
    "epochs": Rule(int, 1),
    "lr": POSITIVE,
    "momentum": Rule(float, 0.0, 1.0, high_open=True),
    "weight_decay": NONNEGATIVE,
    "batch_size": Rule(int, 1),  # retain minibatch size
    "forget_batch_size": Rule(int, 1),
    "retain_fraction": FRACTION,  # share of D_r the method may use (a seeded subset; Bad Teacher uses 0.3)
    "seed": Rule(int, 0),
}


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """A method as data for the shared driver; see the module docstring."""

    name: str
    loss: LossFn
    phases: PhaseFn
    setup: SetupFn = _no_setup
    grad_hook: GradHook | None = None
    params: Mapping[str, Rule] = field(default_factory=dict)  # its hyperparameters beyond COMMON
    # Its own optimiser, the reference code's (Adam takes `momentum` as its beta1), or a function of the
    # hyperparameters where a profile chooses it (weight_dist_reg's safeguard: SGD as `scrub`, Adam as the reference).
    optimizer: Optimizer | Callable[[Mapping[str, Any]], Optimizer] = "sgd"
    epochs: Callable[[Mapping[str, Any]], int] = _own_epochs  # how many epochs a run has
    summary: str = ""  # what it does, in one line (the notebooks' table of methods)
    # Bumped when a change to a built-in method's code changes the models it makes (its hyperparameters unchanged):
    # its checkpoints, and the sweep cells that ran it, made before are made again.
    revision: int = 0

    def optimizer_for(self, hp: Mapping[str, Any]) -> Optimizer:
        """The kind of the method's own optimizer under hyperparameters `hp`."""
        return self.optimizer(hp) if callable(self.optimizer) else self.optimizer


# ----------------------------------------------------------------------------- composition


@dataclass
class ComposedState:
    """State of a composed method: the base's, and the added term's."""

    base: Any
    extra: Any


def compose(
    base: Method,
    name: str,
    term: LossFn,
    setup: SetupFn = _no_setup,
    params: Mapping[str, Rule] | None = None,
) -> Method:
    """`base`'s loss plus `term`, over the base's phases and steps, each step given both minibatches.

    The term's setup reads the model before the base's does: a base whose setup changes the model (weight
    distortion adds noise to it) would otherwise hand the term (EC's teacher, targets and warmed heads) a model
    that is no longer the original."""

    def loss(model: TappedNet, state: ComposedState, step: Step) -> torch.Tensor:
        return base.loss(model, state.base, step) + term(model, state.extra, step)

    def both_setups(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> ComposedState:
        extra = setup(model, data, hp)
        return ComposedState(base.setup(model, data, hp), extra)

    def phases(epoch: int, hp: Mapping[str, Any]) -> tuple[Phase, ...]:
        return tuple(replace(p, batches="both") for p in base.phases(epoch, hp))

    def hook(model: TappedNet, state: ComposedState, step: Step) -> None:
        base.grad_hook(model, state.base, step)

    return Method(name, loss, phases, both_setups, hook if base.grad_hook else None, {**base.params, **(params or {})},
                  base.optimizer, base.epochs, base.summary, base.revision + COMPOSE_REVISION)


# `compose`'s own revision: 1 since the term's setup reads the model before the base's setup changes it.
COMPOSE_REVISION = 1
