"""Erasure on the validation tasks: which settings of an EC variant (or any method) does the study's verdict
call erased, with no tell and retain accuracy kept, and how near `retrain` do the attacks find it?

Every run is read as the study reads it (scripts/validation.py: `ecnb.evaluate.measure`, then
`ecnb.verdicts.judge` against the task's population of retrained models), with retain accuracy on the
validation split. Per
method and setting it prints, averaged over the tasks: forget and retain accuracy, the relearning and
few-shot gaps, the lowest relearning difference (over-resistance), the output KS distance and entropy on
D_f, mean intermediate CKA, the weight distance, the attack distance to the retrained models
(`ecnb.verdicts.attack_distance`), and the share of tasks on which it is erased, keeps retain, shows each
tell and succeeds. Among a method's settings the one that succeeds on the most tasks wins, then the one
erased on the most, then the smallest attack distance, then the smallest retain drop. Nothing here reads
a reported class.

    python scripts/tune_erasure.py [--profile quick] [--tasks 3] [--methods ec ec+soft ...] [--grid] [--set key=value ...]
                                   [--method-file F] [--workers 2] [--out runs/tuning/erasure.csv]

`--grid` tries every setting of `GRIDS[method]`; `--set` overrides every method's defaults (Python
literals); `--method-file` loads methods that are not in the package (scripts/ec_directions.py) in every worker.
The raw rows of every run go to `--out` and their per-image outcomes beside it (`<out>.outcomes/`), so a table can be
read again without running anything.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from validation import judge_task, make_task, measure, profile_dataset, validation_classes  # noqa: E402  (sets the environment first)

import pandas as pd  # noqa: E402

import ecnb  # noqa: E402
from ecnb.config import PROFILES  # noqa: E402
from ecnb.methods import hparams, run_method  # noqa: E402
from ecnb.outcomes import Outcomes, read_outcomes, write_outcomes  # noqa: E402
from ecnb.user_methods import use_method_files  # noqa: E402
from ecnb.unlearn import UnlearningError  # noqa: E402
from ecnb.verdicts import (  # noqa: E402
    CKA, DEPTH, ENTROPY, ERASED, FEWSHOT_GAP, FORGET, OUTPUT_DISTANCE, OUTPUT_TELL_NAME, RELEARN_GAP, RESISTANCE,
    RESISTANCE_TELL_NAME, RETAIN, RETAIN_DROP, SUCCEEDS, WEIGHTS, attack_distance, attack_distances, keeps_retain,
)
from ecnb.workers import run_jobs, shared  # noqa: E402

# The settings tried per method with --grid (every combination); a method not listed runs at its defaults.
# The tamper-resistant baselines, the anchors the variants are read against, are chosen the same way as the
# variants (their learning rates and epochs scaled to the data, their weights around the reference's).
GRIDS: dict[str, dict[str, list] | list[dict[str, list]]] = {
    "ec+soft[hard]": {"ec_relabel_weight": [0.3, 1.0, 3.0], "ec_weights": [2.0, 4.0]},
    # Directions beyond the hard relabel: soft targets (the original's distribution over the retained classes, at
    # a temperature), a retain-side anchor (distillation to the original on D_r), a push of the weights away
    # from the original's (as weight_dist_reg's), each alone and together, at the hard-target form's budget
    # (15 epochs, weights 2).
    # A list of grids is tried one after the other, each following up the one before (`--round N` runs the Nth).
    # Every round names each setting it departs from the variant's defaults in, so it runs the same today.
    "ec+soft": [{"ec_targets": ["soft"], "ec_relabel_weight": [3.0], "ec_target_temperature": [1.0, 2.0],
                 "ec_anchor_weight": [0.0, 1.0], "ec_distance_weight": [0.0, 1.0]},
                {"ec_targets": ["soft"], "ec_target_temperature": [2.0, 4.0], "ec_relabel_weight": [3.0, 10.0],
                 "ec_pull": ["target", "retain"]},
                {"ec_targets": ["soft"], "ec_target_temperature": [0.5, 1.0], "ec_relabel_weight": [10.0, 30.0],
                 "ec_pull": ["retain"], "ec_weights": [2.0, 8.0]},
                {"ec_targets": ["soft_relabel"], "ec_pull": ["target"], "ec_target_temperature": [0.5],
                 "ec_relabel_weight": [3.0, 10.0]},
                {"ec_targets": ["soft"], "ec_target_temperature": [0.5], "ec_relabel_weight": [20.0], "ec_pull": ["retain"]},
                {"ec_targets": ["soft_relabel"], "ec_pull": ["target"], "ec_target_temperature": [0.25, 0.35],
                 "ec_relabel_weight": [10.0]}],
    "weight_distortion": {"alpha": [0.01, 0.02, 0.05], "lr": [1e-4, 3e-4, 1e-3], "epochs": [5, 10]},
    "weight_dist_reg": {"dist_alpha": [0.3, 1.0, 3.0], "dist_lr": [1e-4, 3e-4, 1e-3], "dist_epochs": [5, 10]},
    # scripts/ec_directions.py (with --method-file): how sharply the relabel follows the targets' distance.
    "ec_soft_sim": {"sim_power": [1.0, 4.0]},
}
# The plug-ins' own budget for the EC term (epochs of it alone after B's, at `ec_lr`), one for every plug-in of a
# family: `--methods` all of a family's plug-ins with `--grid`, then read the table per setting.
BUDGETS = {"ec_epochs": [0, 5], "ec_lr": [0.003, 0.01]}
GRIDS.update({ecnb.ec.plugin_name(b, v): BUDGETS for v in ["ec", *ecnb.ec.variant_names()] for b in ecnb.ec.baselines()})

FIGURES = [FORGET, RETAIN, RETAIN_DROP, RELEARN_GAP, FEWSHOT_GAP, RESISTANCE, OUTPUT_DISTANCE, ENTROPY, CKA, WEIGHTS]


def settings(grid: dict[str, list] | list[dict[str, list]]) -> list[dict]:
    """Every combination of the grid(s), without repeats that only differ in a rate a zero budget never uses."""
    out = []
    grids = grid if isinstance(grid, list) else [grid]
    for setting in (dict(zip(g, values)) for g in grids for values in itertools.product(*g.values())):
        if setting.get("ec_epochs") == 0:
            setting.pop("ec_lr", None)
        if setting not in out:
            out.append(setting)
    return out


def _grids(grid: dict[str, list] | list[dict[str, list]], round_: int | None) -> dict | list[dict]:
    """The grid(s) of one round of a method's list, or all of them."""
    if round_ is None or not isinstance(grid, list):
        return grid
    return grid[round_ - 1]


def _job(method: str, setting: dict, t: int, label: str,
         method_files: list[str]) -> tuple[tuple[list[dict], Outcomes], float] | str:
    """One method and setting on task `t` (of the shared tasks): its rows, outcomes and wall time, or why it
    diverged."""
    use_method_files(method_files)
    task = shared()[t]
    hp = hparams(method, task.profile, task.seed, **setting)
    try:
        model, stats = run_method(method, task.references["original"], task.data, hp)
    except UnlearningError as e:
        return str(e)
    return measure(task, label, model), stats.wall_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick", choices=list(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["ec"])
    parser.add_argument("--grid", action="store_true", help="try every setting of GRIDS, not the defaults alone")
    parser.add_argument("--round", type=int, help="with --grid, only the Nth (from 1) of a method's list of grids")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every method, key=value (Python literals)")
    parser.add_argument("--method-file", action="append", default=[], help="a method file to load (repeatable)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one thread each")
    parser.add_argument("--out", default="runs/tuning/erasure.csv", help="where the raw rows of every run go")
    parser.add_argument("--read", help="judge the raw rows of an earlier run (its --out) instead of running anything")
    args = parser.parse_args()
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    use_method_files(args.method_file)
    dataset = profile_dataset(args.profile)
    tasks = [make_task(cls, args.seed, profile=args.profile)
             for cls in validation_classes(args.seed, args.tasks, dataset)]
    if args.read:
        judged = read_back(args.read, tasks)
    else:
        judged = run_all(args, overrides, tasks)
    report(pd.DataFrame(judged), tasks)


def judge_run(task, label: str, rows: list[dict], outcomes: Outcomes, method: str, setting: str, seconds: float) -> dict:
    """One run's figures, read against its task's retrained models by the study's own verdicts."""
    table = judge_task(task, rows, {label: outcomes})
    distances = attack_distances(table)
    r = table.loc[label]
    return {"method": method, "setting": setting, "class": task.cls, "seconds": seconds,
            **{c: r[c] for c in FIGURES}, "distance": attack_distance(table).loc[label, "both"],
            "relearning distance": distances.loc[label, "relearning"], "few-shot distance": distances.loc[label, "few-shot"],
            "erased": r[DEPTH] == ERASED, "keeps retain": bool(keeps_retain(table)[label]),
            "output tell": r[OUTPUT_TELL_NAME] is not False, "over-resistance": r[RESISTANCE_TELL_NAME] is not False,
            "succeeds": bool(r[SUCCEEDS]), "verdict": r["verdict"]}


def run_all(args: argparse.Namespace, overrides: dict, tasks: list) -> list[dict]:
    """Every method and setting on every task, in worker processes; the raw rows go to `args.out`."""
    jobs, labels = [], {}
    for method in args.methods:
        for setting in (settings(_grids(GRIDS[method], args.round)) if args.grid and method in GRIDS else [{}]):
            setting = {**overrides, **setting}
            label = f"{method}#{len(labels)}"
            labels[label] = (method, str(setting))
            jobs += [(method, setting, t, label, args.method_file) for t in range(len(tasks))]
    raw, judged = [], []
    for i, outcome in run_jobs(_job, jobs, args.workers, tasks):
        method, setting, t, label, _ = jobs[i]
        if isinstance(outcome, str):
            print(f"{method} {setting} class {tasks[t].cls}: {outcome}", flush=True)
            continue
        (rows, outcomes), seconds = outcome
        write_outcomes(_outcomes_path(args.out, label, tasks[t].cls), outcomes)
        judged.append(judge_run(tasks[t], label, rows, outcomes, method, labels[label][1], seconds))
        raw += [{**row, "label": label, "setting": labels[label][1], "class": tasks[t].cls, "seconds": seconds}
                for row in rows]
        print(method, labels[label][1], tasks[t].cls, judged[-1]["verdict"],
              {k: round(float(v), 3) for k, v in judged[-1].items() if k in FIGURES or k == "distance"}, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(raw).to_csv(args.out, index=False)
    print(f"raw rows: {args.out}")
    return judged


def read_back(path: str, tasks: list) -> list[dict]:
    """The judged runs of an earlier run's raw rows (`--out`), without running anything."""
    raw = pd.read_csv(path, keep_default_na=False, dtype={"layer": str, "split": str})
    by_class = {t.cls: t for t in tasks}
    judged = []
    for (label, cls), part in raw.groupby(["label", "class"], sort=False):
        rows = part[["seed", "method", "metric", "layer", "split", "value"]].to_dict("records")
        method = label.split("#")[0]
        seconds = pd.to_numeric(part["seconds"], errors="coerce").iloc[0]
        outcomes = read_outcomes(_outcomes_path(path, label, cls))
        if outcomes is None:
            print(f"{label} class {cls}: no outcomes beside {path}; left out", flush=True)
            continue
        judged.append(judge_run(by_class[cls], label, rows, outcomes, method, part["setting"].iloc[0], seconds))
    return judged


def _outcomes_path(out: str, label: str, cls: int) -> Path:
    """Where a run's per-image outcomes go, beside the raw rows of `--out`."""
    return Path(f"{out}.outcomes") / f"{label}-forget{cls}.npz"


def report(per_task: pd.DataFrame, tasks: list) -> None:
    """The tables: per task, mean over the tasks per method and setting, the chosen setting per method, and for
    plug-ins the mean over a family's plug-ins per setting (the plug-ins' budget is one for a whole family)."""
    shares = ["erased", "keeps retain", "output tell", "over-resistance", "succeeds"]
    columns = [*FIGURES, "relearning distance", "few-shot distance", "distance", *shares, "seconds"]
    table = per_task.groupby(["method", "setting"], sort=False)[columns].mean().reset_index()
    print(f"{len(per_task)} runs on the tasks forgetting {[t.cls for t in tasks]}")
    chosen = (table.sort_values(["succeeds", "erased", "distance", RETAIN_DROP], ascending=[False, False, True, True])
              .groupby("method", sort=False).head(1))
    with pd.option_context("display.width", 250, "display.max_rows", None, "display.max_columns", None,
                           "display.max_colwidth", 60):
        print(per_task.drop(columns=shares).round(3).to_string(index=False))
        print("\nmean over the tasks; shares are fractions of the tasks:")
        print(table.round(3).to_string(index=False))
        print("\nchosen per method:")
        print(chosen[["method", "setting", RETAIN_DROP, RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE, "distance", *shares]]
              .round(3).to_string(index=False))
        family = per_task["method"].map(lambda m: m.split("+", 1)[1] if "+" in m and not m.startswith("ec") else None)
        plugins = per_task.assign(family=family).dropna(subset=["family"])
        if len(plugins):
            print("\nper plug-in family and setting, mean over its plug-ins and the tasks:")
            print(plugins.groupby(["family", "setting"], sort=False)[[RETAIN_DROP, "relearning distance",
                                                                      "few-shot distance", "distance", *shares]]
                  .mean().round(3).to_string())


if __name__ == "__main__":
    main()
