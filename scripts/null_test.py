"""The verdicts' null test on the validation tasks: does a model that never saw the class pass for one?

On each validation task (scripts/validation.py: a validation class and a seed, never a reported class) a
population of retrained models is trained and each is read, by the study's own verdicts, against the others:
it should come out *erased, keeps retain, no tell*. The share that does is the verdicts' false-alarm rate's
complement (the target is at least 90 %). The same tasks read methods whose relearning gap is large (by
default `ga`, `rl` and `ec`, at the study's hyperparameters) against the whole population: they should still
be called superficial. Retain accuracy is read on the validation split, as every tuning script does.

    python scripts/null_test.py [--dataset digits] [--train-per-class N] [--epochs E] [--classes 1 2 4 7 9]
                                [--seeds 0 1] [--population 5] [--methods ga rl ec] [--workers 2]
                                [--out runs/validation-tasks/null_test.csv]

On another data set (`--dataset fashion_mnist`) the classes default to its own validation classes, and
`--train-per-class` / `--epochs` try a training recipe for the references (how much retrained models differ
among themselves depends on it). Methods run at the quick profile's settings.

The whole table (every model's figures and verdict per task) goes to `--out`.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from validation import judge_task, make_task, measure  # noqa: E402  (sets the environment first)

import pandas as pd  # noqa: E402

import ecnb  # noqa: E402
from ecnb.config import validation_classes  # noqa: E402
from ecnb.methods import hparams, run_method  # noqa: E402
from ecnb.verdicts import (  # noqa: E402
    DEPTH, FEWSHOT_GAP, NULL_PASS, OUTPUT_DISTANCE, RELEARN_GAP, RESOLUTION, SUPERFICIAL, VERDICT, figure_text,
)
from ecnb.workers import run_jobs  # noqa: E402


def task_table(cls: int, seed: int, population: int, methods: list[str], dataset: str = "digits",
               train_per_class: int | None = None, epochs: int | None = None) -> pd.DataFrame:
    """One task's `judge` table: its retrained models (each read against the others) and `methods`."""
    ds = ecnb.load_dataset(dataset, train_per_class=train_per_class)
    task = make_task(ds, cls, seed, population=population, train_per_class=train_per_class, epochs=epochs)
    rows, outcomes = [], {}
    for method in methods:
        model, _ = run_method(method, task.references["original"], task.data, hparams(method, "quick", seed))
        method_rows, outcomes[method] = measure(task, method, model)
        rows += method_rows
    table = judge_task(task, rows, outcomes)
    return table.assign(**{"class": cls, "seed": seed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--train-per-class", type=int, default=None, help="training images per class (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="the references' epochs (default: the profile's)")
    parser.add_argument("--classes", type=int, nargs="+", help="default: the data set's validation classes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--population", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["ga", "rl", "ec"])
    parser.add_argument("--workers", type=int, default=2, help="tasks run side by side, one thread each")
    parser.add_argument("--out", default="runs/validation-tasks/null_test.csv")
    args = parser.parse_args()
    args.classes = args.classes or list(validation_classes(args.dataset))
    jobs = [(c, s, args.population, args.methods, args.dataset, args.train_per_class, args.epochs)
            for c in args.classes for s in args.seeds]
    tables = [t for _, t in run_jobs(task_table, jobs, args.workers)]
    table = pd.concat(tables).rename_axis("model").reset_index()
    table.to_csv(args.out, index=False)
    members = table[table[NULL_PASS].notna()]
    methods = table[table["model"].isin(args.methods)]
    shown = ["class", "seed", "model", RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE, RESOLUTION, VERDICT]
    with pd.option_context("display.width", 250, "display.max_rows", None, "display.max_colwidth", 90):
        text = table.assign(**{g: [figure_text(r, g, signed=g != OUTPUT_DISTANCE) for _, r in table.iterrows()]
                               for g in (RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE)})
        print(text[text["model"] != "original"][shown].round(3).to_string(index=False))
    passed = int(members[NULL_PASS].astype(bool).sum())
    print(f"\nnull test: {passed} of {len(members)} retrained models ({passed / len(members):.0%}) read as erased, keeps "
          f"retain, no tell against the others, over {len(jobs)} tasks (classes {args.classes}, seeds {args.seeds}, "
          f"{args.population} retrained models each)")
    for method, part in methods.groupby("model", sort=False):
        superficial = int((part[DEPTH] == SUPERFICIAL).sum())
        large = part[part[RELEARN_GAP] >= 0.3]
        print(f"{method}: superficial in {superficial} of {len(part)} tasks; of the {len(large)} with a relearning gap "
              f">= 0.3, {int((large[DEPTH] == SUPERFICIAL).sum())} superficial; depths: "
              f"{part[DEPTH].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
