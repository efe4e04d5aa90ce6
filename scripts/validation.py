"""Validation tasks: the forget classes every hyperparameter of the quick profile is chosen on, and one way
to read a model on them.

A validation task forgets one of `ecnb.config.VALIDATION_CLASSES` (on digits 1, 2, 4, 7 or 9), never a
reported class (3, 5 or 8), drawn in a seeded order. Each task has its own run directory under `TASK_DIR`
with its own `original`, `retrain`, forget split and attacker, trained and drawn once and reused by every
tuning script.

`measure` reads a model exactly as a study does (`ecnb.evaluate.method_rows`: the same metrics, the same
attacks, the same images), and `judge_task` gives it the study's own verdict (`ecnb.verdicts.judge`). One
difference, on purpose: retain accuracy (the verdicts' cost) is read on the validation split's images of
the kept classes, not on the test split the study reports, so no choice is made on a reported figure.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("ECNB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import ecnb  # noqa: E402
from ecnb.config import VALIDATION_CLASSES, StudyConfig  # noqa: E402
from ecnb.evaluate import method_rows  # noqa: E402
from ecnb.features import remove_cached  # noqa: E402
from ecnb.metrics import accuracy  # noqa: E402
from ecnb.unlearn import UnlearnData  # noqa: E402
from ecnb.verdicts import RETAIN, evidence, judge  # noqa: E402

# The tasks' run directories: their `original` and `retrain` are trained once and reused by every later run.
TASK_DIR = "runs/validation-tasks"


def validation_classes(seed: int, k: int) -> list[int]:
    """`k` validation classes in a seeded random order (drawn, not hand-picked; seed 0 gives 4, 1, 7, 9, 2)."""
    order = torch.randperm(10, generator=torch.Generator().manual_seed(seed)).tolist()
    return [c for c in order if c in VALIDATION_CLASSES][:k]


@dataclass
class Task:
    """One validation task: forget class `cls`, its run, references, unlearning data and scoring sets."""

    cls: int
    seed: int
    run: ecnb.Run
    ds: ecnb.Dataset
    split: ecnb.ForgetSplit
    references: dict[str, torch.nn.Module]
    data: UnlearnData
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "forget": D_f; "retain": validation images kept
    reference_rows: list[dict]


def make_task(ds: ecnb.Dataset, cls: int, seed: int, device: str = "cpu") -> Task:
    if cls not in VALIDATION_CLASSES:
        raise ValueError(f"class {cls} is not a validation class {VALIDATION_CLASSES}: nothing is tuned on it")
    config = StudyConfig.from_options(run_dir=f"{TASK_DIR}/forget{cls}", forget_classes=cls, seeds=seed, device=device)
    run = ecnb.Run.open(config)
    split = ecnb.forget_split(run, ds, seed)
    dev = ecnb.resolve_device(device)
    references = {m: ecnb.train_reference(run, ds, split, m, seed, dev) for m in ("original", "retrain")}
    data = UnlearnData.from_splits(ecnb.split_tensors(ds, split), ds.num_classes, (cls,), dev)
    kept = ds.y_val != cls
    sets = {"forget": (data.forget_x, data.forget_y), "retain": (ds.x_val[kept], ds.y_val[kept])}
    task = Task(cls, seed, run, ds, split, references, data, sets, [])
    task.reference_rows = [r for m, net in references.items() for r in method_rows(run, ds, split, m, net, seed, references)]
    return task


def scores(model: torch.nn.Module, sets: dict[str, tuple]) -> dict[str, float]:
    """Accuracy on each scoring set (D_f; the validation split's images of the kept classes)."""
    return {name: accuracy(ecnb.predict(model, x), y) for name, (x, y) in sets.items()}


def measure(task: Task, label: str, model: torch.nn.Module) -> list[dict]:
    """The study's rows for `model` on `task` under the method name `label` (a setting's own name, so
    settings never share cached features; the cache is removed afterwards), plus its retain accuracy on
    the validation split as the row `val_retain`."""
    rows = method_rows(task.run, task.ds, task.split, label, model, task.seed, task.references)
    remove_cached(task.run, label, task.seed)
    retain = scores(model, {"retain": task.sets["retain"]})["retain"]
    return rows + [{"seed": task.seed, "method": label, "metric": "val_retain", "layer": "", "split": "", "value": retain}]


def judge_task(task: Task, rows: list[dict]) -> pd.DataFrame:
    """The study's verdicts (`ecnb.verdicts.judge`) on the task's references and `rows` (from `measure`),
    with retain accuracy read on the validation split."""
    references = [*task.reference_rows]
    for name, net in task.references.items():
        references.append({"seed": task.seed, "method": name, "metric": "val_retain", "layer": "", "split": "",
                           "value": scores(net, {"retain": task.sets["retain"]})["retain"]})
    table = pd.DataFrame([*references, *rows])
    val = table[table["metric"] == "val_retain"].set_index("method")["value"]
    found = evidence(table[table["metric"] != "val_retain"], task.seed)
    found[RETAIN] = val.reindex(found.index)
    return judge(found)
