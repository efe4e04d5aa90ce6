"""Models a user brings: a checkpoint unlearned elsewhere, of the study's architecture (`--checkpoint NAME=PATH`;
notebook 01's `checkpoints`), measured exactly as a method is (every metric, both recovery attacks, the verdict
against the retrained models), in notebook 02 beside the baselines.

There is no unlearning to run, so its wall time is unknown: no `wall_time` row is written for it rather than a
made-up 0. The file is read with `weights_only=True` (no code is unpickled), as a state dict
(`torch.save(model.state_dict(), path)`) or an ecnb checkpoint (a dict holding one under `state_dict`), and
refused in one line, before any work, unless its names and shapes are those of the model the study builds: another
architecture, another number of classes or input channels, a file that is not a checkpoint. The study records its
sha256 in config.json and keys the model by it (`ecnb.evaluate`), so a new file under the same name is measured
again.

Which model it was unlearned from is the user's to choose; for its verdict to read as a method's does, start from the
run's own `original` (`<run>/seed<k>/models/original.pt`) and forget the run's forget set (README, "Changing one
thing").
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .config import DATASET_CLASSES, ConfigError, StudyConfig, file_digest
from .data import Dataset
from .models import TappedNet, build_model
from .train import model_from_state


def read_state(name: str, path: str) -> dict[str, torch.Tensor]:
    """The state dict in checkpoint file `path` (of the model called `name`), loaded with `weights_only=True`."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a file of another kind, a truncated one, or a pickled model object
        raise ConfigError(f"checkpoint {name} ({path}) cannot be read with weights_only=True ({type(e).__name__}): "
                          "save the model's state dict, torch.save(model.state_dict(), path)") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not loaded or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise ConfigError(f"checkpoint {name} ({path}) holds a {type(loaded).__name__}, not a state dict of tensors")
    return loaded


def check_state(name: str, path: str, state: Mapping[str, torch.Tensor], config: StudyConfig, in_channels: int) -> None:
    """Refuse a state dict whose names or shapes are not those of the study's model, naming the first difference."""
    expected = build_model(config.model, in_channels, DATASET_CLASSES[config.dataset]).state_dict()
    where = f"checkpoint {name} ({path})"
    missing, foreign = [k for k in expected if k not in state], [k for k in state if k not in expected]
    if missing or foreign:
        parts = [f"{len(missing)} of {config.model}'s tensors are missing (e.g. {missing[0]!r})" if missing else "",
                 f"{len(foreign)} are not {config.model}'s (e.g. {foreign[0]!r})" if foreign else ""]
        raise ConfigError(f"{where} is not a {config.model}, the study's model: {' and '.join(p for p in parts if p)}")
    for key, tensor in expected.items():
        shape = tuple(state[key].shape)
        if key == "head.weight" and shape[1:] == tuple(tensor.shape[1:]) and shape[0] != tensor.shape[0]:
            raise ConfigError(f"{where} has {shape[0]} classes; the study's {config.dataset} has {tensor.shape[0]}")
        if shape != tuple(tensor.shape):
            raise ConfigError(f"{where} does not fit the study's {config.model} for {config.dataset}: {key!r} has shape "
                              f"{shape}, not {tuple(tensor.shape)}")


def check_checkpoints(config: StudyConfig, in_channels: int) -> None:
    """Every checkpoint of `config` reads as a state dict of the study's model (a data set of `in_channels` input
    channels): the check a study makes before any work."""
    for name, brought in config.checkpoints.items():
        check_state(name, brought["path"], read_state(name, brought["path"]), config, in_channels)


def read_model(config: StudyConfig, ds: Dataset, name: str, device: torch.device) -> TappedNet:
    """The model `name` of `config.checkpoints`, checked, on `device` and in eval mode; its file must still be the
    one the study recorded (same sha256)."""
    path, digest = config.checkpoints[name]["path"], config.checkpoints[name]["sha256"]
    try:
        changed = file_digest(path) != digest
    except OSError as e:
        raise ConfigError(f"checkpoint {name} ({path}) cannot be read ({e.strerror or e})") from None
    if changed:
        raise ConfigError(f"checkpoint {name} ({path}) changed since the study began (its sha256 is not the one "
                          "config.json records): run the study again to measure the new file")
    state = read_state(name, path)
    check_state(name, path, state, config, ds.input_shape[0])
    return model_from_state(config, ds, state, device)
