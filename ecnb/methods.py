"""Every unlearning method in one registry: the baselines of `ecnb.unlearn` and the Erase at the Core family
(EC, its ablations, variants and plug-ins), which `ecnb.ec` adds to the same table when it is imported. The
baselines know nothing of EC; code that needs the whole registry looks it up here.

This is also where a study's configuration meets the registry: the configuration (`ecnb.config`) only holds
names and values, and what they mean (is there such a method, is the value valid, can this forgetting
scenario run it) is read here, from both."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import ec as _ec  # noqa: F401  (registers the EC family in METHODS and HPARAMS)
from .config import StudyConfig
from .ec import needs_forgotten_classes
from .unlearn import HPARAMS, METHODS, get_method, hparams, planned_steps, run_method, table_digest, unlearn, validate

__all__ = ["HPARAMS", "METHODS", "check_config", "for_scenario", "get_method", "hparams", "planned_steps", "run_method",
           "study_hparams", "table_digest", "unlearn", "validate"]


def study_hparams(config: StudyConfig, method: str, seed: int, **extra: Any) -> dict[str, Any]:
    """`method`'s hyperparameters in the study `config`: the profile's defaults with the study's `overrides` (and
    `extra` on top), validated."""
    return hparams(method, config.profile, seed, **{**config.overrides.get(method, {}), **extra})


def check_config(config: StudyConfig) -> None:
    """What the registry has to say about a study before any work: every `--set` names a method and a
    hyperparameter it has, with a valid value."""
    for method in config.overrides:
        study_hparams(config, method, config.seeds[0])


def for_scenario(names: Sequence[str], config: StudyConfig) -> list[str]:
    """`names` without the methods that `config`'s forgetting scenario cannot run: under random-sample
    forgetting, those whose hyperparameters move each forget sample to another class (`needs_forgotten_classes`)."""
    if config.scenario == "class":
        return list(names)
    return [n for n in names if not needs_forgotten_classes(study_hparams(config, n, config.seeds[0]))]
