"""Every unlearning method in one registry: the baselines of `ecnb.unlearn` and the Erase at the Core family
(EC, its ablations, variants and plug-ins), which `ecnb.ec` adds to the same table when it is imported, and the
methods a user brings in method files (`ecnb.user_methods`). The baselines know nothing of EC; code that needs
the whole registry looks it up here.

This is also where a study's configuration meets the registry: the configuration (`ecnb.config`) only holds
names, values and files, and what they mean (is there such a method, is the value valid, can this forgetting
scenario run it) is read here, from both. Every function below that takes a configuration first loads its
method files in the calling process (`load_method_files`), so any process of a study, a notebook kernel or a
job worker, knows the methods the study was given."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import ec as _ec  # noqa: F401  (registers the EC family in METHODS and HPARAMS)
from .config import StudyConfig
from .ec import baselines, needs_forgotten_classes
from .unlearn import HPARAMS, METHODS, get_method, hparams, planned_steps, run_method, table_digest, unlearn, validate
from .user_methods import check_name, methods_of, source_digest, use_method_files

__all__ = ["HPARAMS", "METHODS", "brought_methods", "builtin_baselines", "check_config", "for_scenario", "get_method",
           "hparams", "load_method_files", "one_epoch_each", "planned_steps", "run_method", "source_digest",
           "study_hparams", "table_digest", "unlearn", "validate"]


def load_method_files(config: StudyConfig) -> None:
    """Register the methods of `config`'s method files in this process (each file once, again when it changed),
    and only theirs (`ecnb.user_methods.use_method_files`)."""
    use_method_files(config.method_files)


def brought_methods(config: StudyConfig) -> list[str]:
    """The methods `config`'s method files register, in the order of the files."""
    load_method_files(config)
    return [name for path in config.method_files for name in methods_of(path)]


def builtin_baselines() -> list[str]:
    """The package's own baselines: every registered method that is neither EC nor brought from a method file.
    The study's claims are read over them alone, so a method or model a user brings never changes a claim."""
    return [b for b in baselines() if source_digest(b) is None]


def revisions() -> dict[str, int]:
    """Every registered method whose code was revised (`Method.revision`), with its revision: what a finished
    sweep cell records beside the hyperparameters' digest."""
    return {name: method.revision for name, method in METHODS.items() if method.revision}


def one_epoch_each(methods: Sequence[str], profile: str = "quick") -> dict[str, dict[str, int]]:
    """Overrides that give every stage of each method one epoch (its `epochs`, EC's head warm-up, a plug-in's EC
    stage...): the shortest run of a method's whole code path, for checks of the path (the tests' small studies,
    `scripts/gpu_check.py --tiny`), never for figures anyone reads."""
    return {m: {k: 1 for k in hparams(m, profile, 0) if k.endswith("epochs")} for m in methods}


def study_hparams(config: StudyConfig, method: str, seed: int, **extra: Any) -> dict[str, Any]:
    """`method`'s hyperparameters in the study `config`: the profile's defaults with the study's `overrides` (and
    `extra` on top), validated."""
    load_method_files(config)
    return hparams(method, config.profile, seed, **{**config.overrides.get(method, {}), **extra})


def check_config(config: StudyConfig) -> None:
    """What the registry has to say about a study before any work: its method files load, every `--set` names a
    method and a hyperparameter it has, with a valid value, and every checkpoint's name is free."""
    load_method_files(config)
    for method in config.overrides:
        study_hparams(config, method, config.seeds[0])
    for name in config.checkpoints:
        check_name(name, "checkpoint")


def for_scenario(names: Sequence[str], config: StudyConfig) -> list[str]:
    """`names` without the methods that `config`'s forgetting scenario cannot run: under random-sample
    forgetting, those whose hyperparameters move each forget sample to another class (`needs_forgotten_classes`).
    A model unlearned elsewhere (`config.checkpoints`) is measured in either."""
    if config.scenario == "class":
        return list(names)
    return [n for n in names if n in config.checkpoints
            or not needs_forgotten_classes(study_hparams(config, n, config.seeds[0]))]
