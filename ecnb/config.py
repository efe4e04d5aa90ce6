"""The study's configuration: profiles, validation of everything a user can set, device choice.

Every value a user can give (study options, notebook parameters injected by papermill) passes through
`StudyConfig.validate`, so bad input stops before any work with one line that names the value and
what would be valid.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

DATASET_CLASSES = {
    "digits": 10,
    "cifar10": 10,
    "cifar100": 100,
    "mnist": 10,
    "fashion_mnist": 10,
    "svhn": 10,
}
MODEL_NAMES = ("smallcnn", "resnet18")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the value and what is valid."""


@dataclass(frozen=True)
class TrainRecipe:
    """How `original` and `retrain` are trained (the same recipe for both)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = False


# Hyperparameters per profile, in one place. `quick` is tuned for the embedded digits on a laptop CPU;
# `paper` follows the SalUn / SCRUB reference recipe for CIFAR with ResNet-18 on a GPU.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "dataset": "digits",
        "model": "smallcnn",
        "train": TrainRecipe(epochs=30, batch_size=64, lr=0.05),
    },
    "paper": {
        "dataset": "cifar10",
        "model": "resnet18",
        "train": TrainRecipe(epochs=182, batch_size=256, lr=0.1, augment=True),
    },
}


@dataclass(frozen=True)
class StudyConfig:
    """The resolved configuration of one study; `config.json` in the run directory holds it."""

    profile: str = "quick"
    dataset: str = "digits"
    model: str = "smallcnn"
    forget_classes: tuple[int, ...] = (3,)
    forget_fraction: float | None = None
    seeds: tuple[int, ...] = (0,)
    train: TrainRecipe = field(default_factory=lambda: PROFILES["quick"]["train"])
    device: str = "auto"
    run_dir: str = "runs/quick-digits-forget3"

    @classmethod
    def from_options(
        cls,
        profile: str = "quick",
        dataset: str | None = None,
        model: str | None = None,
        forget_classes: list[int] | tuple[int, ...] | int | None = None,
        forget_fraction: float | None = None,
        seeds: list[int] | tuple[int, ...] | int | None = None,
        epochs: int | None = None,
        device: str = "auto",
        run_dir: str | None = None,
    ) -> "StudyConfig":
        """Fill unset options from the profile, validate everything, and name the run directory."""
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
        defaults = PROFILES[profile]
        dataset = dataset or defaults["dataset"]
        model = model or defaults["model"]
        if forget_fraction is not None and forget_classes is not None:
            raise ConfigError("give either forget classes or a forget fraction, not both")
        if forget_fraction is None and forget_classes is None:
            forget_classes = (3,)
        classes = _as_int_tuple(forget_classes, "forget class") if forget_fraction is None else ()
        seed_tuple = _as_int_tuple(0 if seeds is None else seeds, "seed")
        train = defaults["train"]
        if epochs is not None:
            _check_int(epochs, "epochs", minimum=1)
            train = dataclasses.replace(train, epochs=int(epochs))
        if run_dir is None:
            what = f"forget{'-'.join(map(str, classes))}" if classes else f"random{forget_fraction}"
            run_dir = f"runs/{profile}-{dataset}-{what}"
        config = cls(profile, dataset, model, classes, forget_fraction, seed_tuple, train, device, str(run_dir))
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ConfigError on the first bad value."""
        if self.dataset not in DATASET_CLASSES:
            raise ConfigError(f"unknown dataset {self.dataset!r}; valid: {', '.join(DATASET_CLASSES)}")
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"unknown model {self.model!r}; valid: {', '.join(MODEL_NAMES)}")
        n_classes = DATASET_CLASSES[self.dataset]
        if self.forget_fraction is None:
            if not self.forget_classes:
                raise ConfigError("the forget set is empty: give at least one forget class or a fraction")
            for c in self.forget_classes:
                if not 0 <= c < n_classes:
                    raise ConfigError(
                        f"forget class {c} is out of range for {self.dataset}; valid: 0-{n_classes - 1}"
                    )
            if len(set(self.forget_classes)) != len(self.forget_classes):
                raise ConfigError(f"forget classes {list(self.forget_classes)} repeat a class")
            if len(self.forget_classes) >= n_classes:
                raise ConfigError(f"forgetting all {n_classes} classes leaves nothing to retain")
        else:
            f = self.forget_fraction
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise ConfigError(f"forget fraction {f!r} must be a number strictly between 0 and 1")
        if not self.seeds:
            raise ConfigError("give at least one seed")
        for s in self.seeds:
            check_seed(s)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {list(self.seeds)} repeat a seed")
        _check_int(self.train.epochs, "epochs", minimum=1)
        resolve_device(self.device)

    @property
    def scenario(self) -> str:
        return "class" if self.forget_fraction is None else "random"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyConfig":
        d = dict(d)
        d["train"] = TrainRecipe(**d["train"])
        d["forget_classes"] = tuple(d["forget_classes"])
        d["seeds"] = tuple(d["seeds"])
        config = cls(**d)
        config.validate()
        return config

    def cache_key(self) -> str:
        """What the models depend on; the device and run directory do not change the study."""
        d = self.to_dict()
        for k in ("device", "run_dir", "seeds"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def check_writable(self) -> None:
        """Fail before any work if the run directory cannot be created or written."""
        path = Path(self.run_dir).absolute()
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"run directory {self.run_dir!r} cannot be created: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(f"run directory {self.run_dir!r} is not writable (no write permission on {probe})")


def check_seed(seed: Any) -> None:
    """Seeds name directories (`seed<k>`) and seed every generator: a non-negative integer only."""
    _check_int(seed, "seed", minimum=0)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} {value!r} must be an integer >= {minimum}")


def _as_int_tuple(values: Any, name: str) -> tuple[int, ...]:
    items = values if isinstance(values, (list, tuple)) else [values]
    out = []
    for v in items:
        if isinstance(v, str) and v.lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name} {v!r} must be an integer")
        out.append(v)
    return tuple(out)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without one is an error."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but this machine has no CUDA GPU; valid here: auto, cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)
