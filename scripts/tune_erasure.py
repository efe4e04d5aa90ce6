"""Erasure on the validation tasks (issue 16): which EC variant's model do the recovery attacks find as
empty as `retrain`'s, and at what settings?

The validation tasks of scripts/tune_quick.py (classes the study does not forget, drawn with a seeded
generator: currently 4 and 1), each with its own `original` and `retrain`, and the attacker of the quick
profile (`ecnb.config.PROFILES`, chosen by scripts/tune_attacks.py before any method was judged). For every
method and setting of the grid it prints, averaged over the tasks:

- `forget` / `retain`: accuracy on the task's D_f and on the validation split's images of the kept classes
  (the verdicts' "forgets at the output": forget within 0.05 of `retrain`, retain within 0.03 of `original`);
- the few-shot probe per tap and its best intermediate value (`probe`), and the relearning attack per
  step (`relearn@N`), each read against `retrain`'s (`probe_gap`, `relearn_gap`, the verdicts' 0.1);
- mean intermediate CKA to the original on D_f (the paper's measure, beside them).

A setting *erases* on a task when it forgets at the output and both gaps are at most 0.1 there. Among
the settings of a method, the one that erases on the most tasks wins, then the smallest attack distance
(`size`: |probe gap| + |relearn gap|, `ecnb.verdicts.attack_distance`, averaged over the tasks), then the
higher retain accuracy. Nothing here reads the study's reported class.

    python scripts/tune_erasure.py [--seed 0] [--tasks 2] [--methods ec ec+proto ...] [--grid]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("ECNB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import ecnb  # noqa: E402
from ecnb.attacks import draw_attack_set, fewshot_probe, relearn_curve  # noqa: E402
from ecnb.config import PROFILES, StudyConfig  # noqa: E402
from ecnb.features import extract_features  # noqa: E402
from ecnb.unlearn import hparams, run_method  # noqa: E402
from ecnb.verdicts import ERASED_TOL, FORGET_TOL, RETAIN_TOL  # noqa: E402
from tune_quick import intermediate_cka, make_task, scores, settings, validation_classes  # noqa: E402

# The settings tried per method (every combination); a method not listed runs at its defaults.
GRIDS: dict[str, dict[str, list]] = {
    "ec+proto": {"ec_relabel_weight": [0.3, 1.0, 3.0], "ec_weights": [4.0, 8.0]},
}
# The plug-ins' own budget (epochs of the EC term alone after B's, at `ec_lr`), one value for every plug-in
# of a family: `--methods` all of a family's plug-ins with `--grid`, then read the table per `ec_epochs`.
BUDGETS = [0, 5]
GRIDS.update({ecnb.ec.plugin_name(b, v): {"ec_epochs": BUDGETS} for v in ["ec", *ecnb.ec.variant_names()]
              for b in ecnb.ec.baselines()})


def attack_figures(model: torch.nn.Module, ds: ecnb.Dataset, task, drawn, attacks) -> dict[str, float]:
    """The two attacks of the quick profile on one model of one task: probe per tap, relearn per step."""
    train = extract_features(model, ds.x_train, global_pool=True)
    test_x, test_y = ecnb.split_tensors(ds, task.split)["test_forget"]
    test = extract_features(model, test_x, global_pool=True)
    y_train = ds.y_train.numpy()
    out = {}
    for tap in model.taps:
        out[f"probe:{tap}"] = float(np.mean([
            fewshot_probe(train[tap][np.concatenate([f, r])], y_train[np.concatenate([f, r])], test[tap],
                          test_y.numpy(), attacks.probe_c)
            for f, r in zip(drawn.forget, drawn.retain)]))
    out["probe"] = max(out[f"probe:{tap}"] for tap in model.taps[:-1])
    idx = torch.as_tensor(np.concatenate([drawn.forget[0], drawn.retain[0]]))
    curve = relearn_curve(model, ds.x_train[idx], ds.y_train[idx], test_x, test_y, attacks.relearn_lr,
                          attacks.relearn_momentum, attacks.relearn_steps)
    out.update({f"relearn@{t}": v for t, v in curve.items()})
    return out


def measure(model: torch.nn.Module, ds: ecnb.Dataset, task, drawn, attacks) -> dict[str, float]:
    return {**scores(model, task.sets), "cka": intermediate_cka(model, task.original, task.sets["forget"][0]),
            **attack_figures(model, ds, task, drawn, attacks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["ec"])
    parser.add_argument("--grid", action="store_true", help="try every setting of GRIDS, not the defaults alone")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every method, key=value (Python literals)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: eval(v) for k, v in (s.split("=", 1) for s in args.set)}  # noqa: S307 (a developer's script)
    ds = ecnb.load_dataset("digits")
    attacks = PROFILES["quick"]["attacks"]
    classes = validation_classes(ds.num_classes, StudyConfig.from_options().forget_classes, args.seed, args.tasks)
    rows, tasks = [], []
    for cls in classes:
        task = make_task(ds, cls, args.seed, "cpu")
        drawn = draw_attack_set(ds.y_train, task.split, attacks, args.seed)
        for name, model in (("original", task.original), ("retrain", task.retrain)):
            rows.append({"method": name, "setting": "", "class": cls, **measure(model, ds, task, drawn, attacks)})
        tasks.append((task, drawn))
    for method in args.methods:
        grid = settings(GRIDS[method]) if args.grid and method in GRIDS else [{}]
        for setting in grid:
            setting = {**overrides, **setting}
            hp = hparams(method, "quick", args.seed, **setting)
            for task, drawn in tasks:
                model, stats = run_method(method, task.original, task.data, hp)
                rows.append({"method": method, "setting": str(setting), "class": task.cls,
                             "seconds": round(stats.wall_time, 1), **measure(model, ds, task, drawn, attacks)})
                print(method, setting, task.cls, {k: round(v, 3) for k, v in rows[-1].items() if isinstance(v, float)},
                      flush=True)
    per_task = pd.DataFrame(rows)
    ref = per_task[per_task["method"] == "retrain"].set_index("class")
    orig = per_task[per_task["method"] == "original"].set_index("class")
    step = f"relearn@{attacks.reference_step}"
    per_task["probe_gap"] = per_task["probe"] - per_task["class"].map(ref["probe"])
    per_task["relearn_gap"] = per_task[step] - per_task["class"].map(ref[step])
    at_output = ((per_task["forget"] - per_task["class"].map(ref["forget"])).abs() <= FORGET_TOL) & (
        per_task["retain"] >= per_task["class"].map(orig["retain"]) - RETAIN_TOL)
    per_task["erased"] = at_output & (per_task["probe_gap"].abs() <= ERASED_TOL) & (per_task["relearn_gap"].abs() <= ERASED_TOL)
    per_task["size"] = per_task["probe_gap"].abs() + per_task["relearn_gap"].abs()  # ecnb.verdicts.attack_distance
    columns = ["forget", "retain", "cka", *[c for c in per_task if c.startswith("probe:")], "probe",
               *[c for c in per_task if c.startswith("relearn@")], "probe_gap", "relearn_gap", "erased", "size"]
    table = per_task.groupby(["method", "setting"], sort=False)[columns].mean().reset_index()
    with pd.option_context("display.width", 250, "display.max_rows", None, "display.max_columns", None,
                           "display.max_colwidth", 60):
        print(per_task.drop(columns=["erased"]).round(3).to_string(index=False))
        print(f"\nmean over the tasks (forget classes {classes}); erased = fraction of tasks:")
        print(table.round(3).to_string(index=False))
        chosen = (table[~table["method"].isin(["original", "retrain"])]
                  .sort_values(["erased", "size", "retain"], ascending=[False, True, False])
                  .groupby("method", sort=False).head(1))
        budget = per_task[per_task["setting"].str.contains("ec_epochs")].assign(
            ec_epochs=lambda d: d["setting"].map(lambda v: eval(v)["ec_epochs"]),  # noqa: S307
            admissible=lambda d: d["retain"] >= d["class"].map(orig["retain"]) - RETAIN_TOL,
            distance=lambda d: d["probe_gap"].abs() + d["relearn_gap"].abs())
        if len(budget):
            print("\nper plug-in budget, mean over the plug-ins and tasks run:")
            print(budget.groupby("ec_epochs")[["retain", "admissible", "cka", "probe_gap", "relearn_gap", "distance",
                                               "erased"]].mean().round(3).to_string())
        print("\nchosen per method:")
        print(chosen[["method", "setting", "forget", "retain", "probe_gap", "relearn_gap", "size", "erased"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
