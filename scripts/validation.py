"""Validation tasks: the forget classes every hyperparameter of a CPU profile (quick: the digits; fashion:
Fashion-MNIST) is chosen on, and one way to read a model on them.

A validation task forgets one of its data set's validation classes (`ecnb.config.VALIDATION_CLASSES`: on digits
1, 2, 4, 7 or 9, on Fashion-MNIST 1, 2, 5, 7 or 9), never a reported class (digits 3, 5 or 8; Fashion-MNIST 0,
4 or 8), drawn in a seeded order. Each task has its own run directory under `TASK_DIR`
with its own `original`, population of retrained models, forget split and attacker, trained and drawn once
and reused by every tuning script.

`measure` reads a model exactly as a study does (`ecnb.evaluate.measure`: the same metrics, the same
attacks, the same images, the same per-image outcomes), and `judge_task` gives it the study's own verdict
against the task's population (`ecnb.verdicts.judge`). One difference, on purpose: retain accuracy (the
verdicts' cost) is read on the validation split's images of the kept classes, not on the test split the
study reports, so no choice is made on a reported figure.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

os.environ.setdefault("ECNB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import ecnb  # noqa: E402
from ecnb.config import PROFILES, StudyConfig  # noqa: E402
from ecnb.config import validation_classes as classes_of  # noqa: E402
from ecnb.evaluate import measure as measure_model  # noqa: E402
from ecnb.features import remove_cached  # noqa: E402
from ecnb.metrics import accuracy  # noqa: E402
from ecnb.outcomes import Outcomes  # noqa: E402
from ecnb.results import population_names  # noqa: E402
from ecnb.unlearn import UnlearnData  # noqa: E402
from ecnb.verdicts import RETAIN, evidence, judge  # noqa: E402

# The tasks' run directories: their `original` and retrained models are trained once and reused by every later run.
TASK_DIR = "runs/validation-tasks"
POPULATION = 3  # retrained models per task (as the walkthrough's)


def validation_classes(seed: int, k: int, dataset: str = "digits") -> list[int]:
    """`k` of `dataset`'s validation classes in a seeded random order (drawn, not hand-picked; seed 0 gives 4, 1, 7,
    9, 2 on digits)."""
    order = torch.randperm(10, generator=torch.Generator().manual_seed(seed)).tolist()
    return [c for c in order if c in classes_of(dataset)][:k]


@dataclass
class Task:
    """One validation task: forget class `cls`, its run, references (`original` and the retrained population),
    unlearning data, scoring sets, and the references' rows and outcomes."""

    cls: int
    seed: int
    run: ecnb.Run
    ds: ecnb.Dataset
    split: ecnb.ForgetSplit
    references: dict[str, torch.nn.Module]
    data: UnlearnData
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "forget": D_f; "retain": validation images kept
    reference_rows: list[dict]
    reference_outcomes: dict[str, Outcomes]

    @property
    def profile(self) -> str:
        return self.run.config.profile

    @property
    def population(self) -> list[str]:
        return [m for m in self.references if m != "original"]


def profile_dataset(profile: str, dataset: str | None = None) -> str:
    """`dataset`, or the profile's own where none is given."""
    return dataset or PROFILES[profile]["dataset"]


def recipe_name(profile: str = "quick", dataset: str | None = None, train_per_class: int | None = None,
                epochs: int | None = None) -> str:
    """What sets a task's references apart from the quick profile's digits: the profile, a data set other than the
    profile's, and a recipe other than the profile's (`fashion`, `fashion-30ep`, `fashion_mnist-300pc`; "" for the
    quick profile's own)."""
    parts = [profile] if profile != "quick" else []
    if profile_dataset(profile, dataset) != PROFILES[profile]["dataset"]:
        parts.append(dataset)
    parts += [f"{v}{unit}" for v, unit in ((train_per_class, "pc"), (epochs, "ep")) if v is not None]
    return "-".join(parts)


def task_dir(cls: int, profile: str = "quick", dataset: str | None = None, train_per_class: int | None = None,
             epochs: int | None = None) -> str:
    """A task's run directory: `TASK_DIR`/forget<cls> for the quick profile's digits, else named by what differs
    (`TASK_DIR`/fashion-forget5), so tasks of other profiles or recipes never share models."""
    name = recipe_name(profile, dataset, train_per_class, epochs)
    return f"{TASK_DIR}/{name + '-' if name else ''}forget{cls}"


def task_config(cls: int, seed: int, profile: str = "quick", dataset: str | None = None,
                train_per_class: int | None = None, epochs: int | None = None, device: str = "cpu",
                population: int = POPULATION) -> StudyConfig:
    """The study configuration of the task that forgets `cls` under `profile` (its data set, recipe and attacks,
    with the given ones in their place); a class that is not one of the data set's validation classes stops here."""
    dataset = profile_dataset(profile, dataset)
    if cls not in classes_of(dataset):
        raise ValueError(f"class {cls} is not a validation class of {dataset} {classes_of(dataset)}: nothing is "
                         "tuned on it")
    return StudyConfig.from_options(profile=profile, dataset=dataset, train_per_class=train_per_class, epochs=epochs,
                                    run_dir=task_dir(cls, profile, dataset, train_per_class, epochs),
                                    forget_classes=cls, seeds=seed, device=device, population=population)


def make_task(cls: int, seed: int, device: str = "cpu", population: int = POPULATION, profile: str = "quick",
              dataset: str | None = None, train_per_class: int | None = None, epochs: int | None = None,
              measured: bool = True) -> Task:
    """The task that forgets `cls` under `profile` (optionally another data set, training images per class or
    epochs for its references), its references trained once and, unless not `measured`, measured (the verdicts
    need their rows; accuracy-only tuning does not)."""
    config = task_config(cls, seed, profile, dataset, train_per_class, epochs, device, population)
    run = ecnb.Run.open(config)
    ds = ecnb.run_dataset(run)
    split = ecnb.forget_split(run, ds, seed)
    dev = ecnb.resolve_device(device)
    references = {m: ecnb.train_reference(run, ds, split, m, seed, dev) for m in ["original", *population_names(population)]}
    data = UnlearnData.from_splits(ecnb.split_tensors(ds, split), ds.num_classes, (cls,), dev)
    kept = ds.y_val != cls
    sets = {"forget": (data.forget_x, data.forget_y), "retain": (ds.x_val[kept], ds.y_val[kept])}
    task = Task(cls, seed, run, ds, split, references, data, sets, [], {})
    for name, net in references.items() if measured else ():
        rows, outcomes = measure(task, name, net, keep_cache=True)
        task.reference_rows += rows
        task.reference_outcomes[name] = outcomes
    return task


def scores(model: torch.nn.Module, sets: dict[str, tuple]) -> dict[str, float]:
    """Accuracy on each scoring set (D_f; the validation split's images of the kept classes)."""
    return {name: accuracy(ecnb.predict(model, x), y) for name, (x, y) in sets.items()}


def measure(task: Task, label: str, model: torch.nn.Module, keep_cache: bool = False) -> tuple[list[dict], Outcomes]:
    """The study's rows and outcomes for `model` on `task` under the method name `label` (a setting's own name,
    so settings never share cached features; the cache is removed afterwards unless `keep_cache`), with retain
    accuracy read on the validation split: the row `val_retain`, and the outcomes' per-image retain answers."""
    references = {m: task.references[m] for m in ("original", "retrain")}
    rows, outcomes = measure_model(task.run, task.ds, task.split, label, model, task.seed, references)
    if not keep_cache:
        remove_cached(task.run, label, task.seed)
    x, y = task.sets["retain"]
    correct = (ecnb.predict(model, x).argmax(1) == y.cpu()).numpy()
    val = {"seed": task.seed, "method": label, "metric": "val_retain", "layer": "", "split": "", "value": correct.mean()}
    return rows + [val], dataclasses.replace(outcomes, retain_correct=correct)


def judge_task(task: Task, rows: list[dict], outcomes: dict[str, Outcomes]) -> pd.DataFrame:
    """The study's verdicts (`ecnb.verdicts.judge`) on the task's references and `rows` with their `outcomes`
    (from `measure`), against the task's population, with retain accuracy read on the validation split."""
    table = pd.DataFrame([*task.reference_rows, *rows])
    val = table[table["metric"] == "val_retain"].set_index("method")["value"]
    found = evidence(table[table["metric"] != "val_retain"], task.seed, {**task.reference_outcomes, **outcomes},
                     task.population)
    found[RETAIN] = val.reindex(found.index)
    return judge(found)
