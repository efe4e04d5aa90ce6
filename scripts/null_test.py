"""The verdicts' null test on the validation tasks: does a model that never saw the class pass for one?

On each validation task (scripts/validation.py: a validation class and a seed, never a reported class) a
population of retrained models is trained and each is read, by the study's own verdicts, against the others:
it should come out *erased, keeps retain, no tell*. The share that does is the verdicts' false-alarm rate's
complement (the target is at least 90 %). The same tasks read methods whose relearning gap is large (by
default `ga`, `rl` and `ec`, at the study's hyperparameters) against the whole population: they should still
be called superficial. Retain accuracy is read on the validation split, as every tuning script does.

    python scripts/null_test.py [--profile quick] [--dataset D] [--train-per-class N] [--epochs E] [--classes 1 2 4 7 9]
                                [--seeds 0 1] [--population 5] [--methods ga rl ec] [--workers 2]
                                [--up-to 10 20 50] [--out runs/validation-tasks/null_test.csv]

Under another profile (`--profile fashion`: Fashion-MNIST) the classes default to its data set's validation classes
and the methods run at its settings; `--train-per-class` / `--epochs` try another training recipe for the
references (how much retrained models differ among themselves depends on it).

`--up-to` reads the same measurements again with the relearning attack scored only up to each step given (its
grid cut there): how far the attack runs is one of its settings, chosen here on the validation tasks, not on a
reported class. The whole table (every model's figures and verdict per task and cut) goes to `--out`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from validation import judge_task, make_task, measure, profile_dataset  # noqa: E402  (sets the environment first)

import pandas as pd  # noqa: E402

from ecnb.config import PROFILES, validation_classes  # noqa: E402
from ecnb.methods import hparams, run_method  # noqa: E402
from ecnb.outcomes import Outcomes  # noqa: E402
from ecnb.verdicts import (  # noqa: E402
    DEPTH, FEWSHOT_GAP, NULL_PASS, OUTPUT_DISTANCE, RELEARN_GAP, RESOLUTION, SUPERFICIAL, VERDICT, figure_text,
)
from ecnb.workers import run_jobs  # noqa: E402


def up_to(steps: tuple[int, ...], last: int, rows: list[dict], outcomes: dict[str, Outcomes]
          ) -> tuple[list[dict], dict[str, Outcomes]]:
    """The rows and outcomes of a relearning attack scored only up to step `last` of its grid `steps`: the same
    trajectories, read over a shorter grid (the steps before `last` are the same whatever comes after)."""
    kept = [i for i, t in enumerate(steps) if t <= last]
    names = {f"step{steps[i]}" for i in kept}
    rows = [r for r in rows if r["metric"] != "relearn_accuracy" or r["layer"] in names]
    cut = {m: dataclasses.replace(o, relearn=o.relearn[:, kept], steps=tuple(steps[i] for i in kept))
           for m, o in outcomes.items()}
    return rows, cut


def task_table(cls: int, seed: int, population: int, methods: list[str], profile: str = "quick",
               dataset: str | None = None, train_per_class: int | None = None, epochs: int | None = None,
               last_steps: tuple[int, ...] = ()) -> pd.DataFrame:
    """One task's `judge` table: its retrained models (each read against the others) and `methods`; with
    `last_steps`, one table per relearning grid cut at each of them (column `up to step`)."""
    task = make_task(cls, seed, population=population, profile=profile, dataset=dataset,
                     train_per_class=train_per_class, epochs=epochs)
    rows, outcomes = [], {}
    for method in methods:
        model, _ = run_method(method, task.references["original"], task.data, hparams(method, profile, seed))
        method_rows, outcomes[method] = measure(task, method, model)
        rows += method_rows
    steps = task.run.config.attacks.relearn_steps
    tables = []
    for last in last_steps or (steps[-1],):
        ref_rows, ref_outcomes = up_to(steps, last, task.reference_rows, task.reference_outcomes)
        cut = dataclasses.replace(task, reference_rows=ref_rows, reference_outcomes=ref_outcomes)
        tables.append(judge_task(cut, *up_to(steps, last, rows, outcomes)).assign(**{"up to step": last}))
    return pd.concat(tables).assign(**{"class": cls, "seed": seed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick", choices=list(PROFILES))
    parser.add_argument("--dataset", default=None, help="default: the profile's")
    parser.add_argument("--train-per-class", type=int, default=None,
                        help="training images per class (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="the references' epochs (default: the profile's)")
    parser.add_argument("--classes", type=int, nargs="+", help="default: the data set's validation classes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--population", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["ga", "rl", "ec"])
    parser.add_argument("--workers", type=int, default=2, help="tasks run side by side, one thread each")
    parser.add_argument("--up-to", type=int, nargs="+", default=[], metavar="STEP",
                        help="also read the relearning attack over its grid cut at each STEP (e.g. 10 20 50): the same "
                        "measurements, judged once per cut")
    parser.add_argument("--out", default="runs/validation-tasks/null_test.csv")
    args = parser.parse_args()
    args.classes = args.classes or list(validation_classes(profile_dataset(args.profile, args.dataset)))
    jobs = [(c, s, args.population, args.methods, args.profile, args.dataset, args.train_per_class, args.epochs,
             tuple(args.up_to)) for c in args.classes for s in args.seeds]
    tables = [t for _, t in run_jobs(task_table, jobs, args.workers)]
    table = pd.concat(tables).rename_axis("model").reset_index()
    table.to_csv(args.out, index=False)
    shown = ["class", "seed", "model", RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE, RESOLUTION, VERDICT]
    for last, part in table.groupby("up to step", sort=False):
        print(f"\n=== the relearning attack read up to step {last}")
        report(part, shown, args, len(jobs))


def report(table: pd.DataFrame, shown: list[str], args: argparse.Namespace, tasks: int) -> None:
    """One grid's table, the share of retrained models that pass their null read, and how the methods read."""
    members = table[table[NULL_PASS].notna()]
    methods = table[table["model"].isin(args.methods)]
    with pd.option_context("display.width", 250, "display.max_rows", None, "display.max_colwidth", 90):
        text = table.assign(**{g: [figure_text(r, g, signed=g != OUTPUT_DISTANCE) for _, r in table.iterrows()]
                               for g in (RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE)})
        print(text[text["model"] != "original"][shown].round(3).to_string(index=False))
    passed = int(members[NULL_PASS].astype(bool).sum())
    resolutions = table.groupby(["class", "seed"])[RESOLUTION].first()
    print(f"\nnull test: {passed} of {len(members)} retrained models ({passed / len(members):.0%}) read as erased, keeps "
          f"retain, no tell against the others, over {tasks} tasks (classes {args.classes}, seeds {args.seeds}, "
          f"{args.population} retrained models each); resolution {resolutions.min():.2f} to {resolutions.max():.2f} "
          f"(median {resolutions.median():.2f})")
    for method, part in methods.groupby("model", sort=False):
        superficial = int((part[DEPTH] == SUPERFICIAL).sum())
        large = part[part[RELEARN_GAP] >= 0.3]
        print(f"{method}: superficial in {superficial} of {len(part)} tasks; of the {len(large)} with a relearning gap "
              f">= 0.3, {int((large[DEPTH] == SUPERFICIAL).sum())} superficial; depths: "
              f"{part[DEPTH].value_counts().to_dict()}")

if __name__ == "__main__":
    main()
