"""Choose the `quick` profile's unlearning hyperparameters on validation tasks, never on the study's own numbers.

A validation task (scripts/validation.py) forgets one of the validation classes, never a reported one;
`--tasks` of them are drawn in a seeded order, each with its own `original` and `retrain` (trained once in
the task's run directory and reused), and every method of `ecnb.unlearn` runs over a small grid. A
setting is scored, averaged over the tasks, by
- forget accuracy on the task's forget set D_f (its training images of the task's class: unlearning
  acts on memorised training images, which are harder to forget than held-out ones, so held-out images
  of the forgotten class are a weak proxy; they are also few, 14 per class here);
- retain accuracy on the validation split's images of the task's kept classes;
- mean intermediate-layer CKA to the original on the task's D_f.
Per method it picks the setting whose forget accuracy is closest to `retrain`'s while retain accuracy
stays within 0.03 of `original`'s. Ties go to the least intervention: fewer steps, then the smaller
learning rate, and only then the higher retain accuracy (inside the tolerance, retain accuracies differ
by one or two of the ~250 validation images, too little to prefer a longer or harsher run). A method
with no setting inside the tolerance gets the one that costs the least retain accuracy. It prints the
tables and the chosen values for `HPARAMS["quick"]`.

Erase at the Core's settings (`ecnb.ec.EC_HPARAMS`) are chosen the same way, `ec`'s and each plug-in
`B+ec`'s EC term (with B's settings as they stand in `HPARAMS`, so choose the baselines first), except
that the first tie is broken by the representation: the lowest mean intermediate-layer CKA to the
original, the quantity EC exists to lower.

    python scripts/tune_quick.py [--seed 0] [--tasks 2] [--threads 1] [--methods ec ga+ec ...]

One thread by default: on a shared two-core machine several OpenMP threads per process slow training
down by an order of magnitude, and a fixed thread count keeps the run reproducible.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from validation import make_task, scores, validation_classes  # noqa: E402  (sets the environment first)

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import ecnb  # noqa: E402
from ecnb.features import extract_features  # noqa: E402
from ecnb.metrics import layer_cka  # noqa: E402
from ecnb.methods import hparams, run_method  # noqa: E402
from ecnb.unlearn import UnlearningError  # noqa: E402

RETAIN_TOLERANCE = 0.03

# A few values per method around its reference setting (docs/study.md, "Methods"), scaled to ~1,300 images.
GRIDS: dict[str, dict[str, list]] = {
    "ft": {"lr": [0.01, 0.03, 0.1], "epochs": [5, 10]},
    "ga": {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "epochs": [3, 5, 10]},
    "rl": {"lr": [3e-3, 5e-3, 0.01, 0.03], "epochs": [2, 3, 5]},
    "neggrad_plus": {"lr": [0.01, 0.03], "epochs": [3, 5], "beta": [0.9, 0.99, 0.999]},
    "l1_sparse": {"lr": [0.01, 0.03, 0.1], "epochs": [10], "alpha": [5e-4, 1e-3, 2e-3]},
    "salun": {"lr": [3e-3, 0.01, 0.03, 0.1], "epochs": [3, 5]},
    "scrub": {"lr": [1e-3, 5e-3, 0.01], "epochs_msteps": [(3, 2), (5, 3)]},
    "bad_teacher": {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "epochs": [1, 3]},  # Adam, as its code
    "cu": {"lr": [1e-3, 0.01, 0.03], "epochs": [4, 12, 20]},
    # The tamper-resistant baselines (Adam, as their code): the reference's noise 0.02 and distance weight 1.0
    # among the grid's values, learning rate and epochs scaled to the data.
    "weight_distortion": {"alpha": [0.01, 0.02, 0.05], "lr": [1e-4, 3e-4, 1e-3], "epochs": [5, 10]},
    "weight_dist_reg": {"dist_alpha": [0.3, 1.0, 3.0], "dist_lr": [1e-4, 3e-4, 1e-3], "dist_epochs": [5, 10]},
    "ec": {"ec_weights": [1.0, 2.0, 4.0], "ec_nl_weight": [0.0, 1.0]},
}
# Each plug-in B+ec keeps B's chosen settings and gets its own EC term: every point or layer1-layer3 only
# (a baseline that already scrambles layer4 may be better left alone there), at three layer weights.
BASELINES = [m for m in GRIDS if m != "ec"]
GRIDS.update({f"{b}+ec": {"ec_points": ["all", "layer1,layer2,layer3"], "ec_weights": [1.0, 2.0, 4.0]}
              for b in BASELINES})


def representation_tie_break(method: str) -> bool:
    """EC and its plug-ins exist to lower the intermediate CKA, so their ties go to the lowest."""
    return method == "ec" or method.endswith("+ec")


def settings(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid; `epochs_msteps` pairs set SCRUB's epochs and max-epochs together."""
    out = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        if "epochs_msteps" in setting:
            setting["epochs"], setting["msteps"] = setting.pop("epochs_msteps")
        out.append(setting)
    return out


def intermediate_cka(model: torch.nn.Module, original: torch.nn.Module, x: torch.Tensor) -> float:
    """Mean CKA to the original over the intermediate taps, on the images `x`."""
    feats = [extract_features(m, x) for m in (model, original)]
    return sum(layer_cka(*feats, original.taps[:-1]).values()) / (len(original.taps) - 1)


def choose(table: pd.DataFrame, target_forget: float) -> pd.DataFrame:
    """Per method, the admissible row closest to the target, or the least harmful row where none is
    admissible (see the module docstring); `admissible` says which."""
    admissible = table["retain_drop"] <= RETAIN_TOLERANCE
    table = table.assign(
        admissible=admissible,
        harm=table["retain_drop"].where(~admissible, 0.0),  # 0 for every admissible row, so they come first
        gap=(table["forget"] - target_forget).abs(),
        cka_rank=table["cka"].where(table["method"].map(representation_tie_break), 0.0),
    )
    ranked = table.sort_values(["harm", "gap", "cka_rank", "steps", "lr", "retain"],
                               ascending=[True, True, True, True, True, False])
    best = ranked.groupby("method", sort=False).head(1).set_index("method")
    return best.reindex([m for m in GRIDS if m in best.index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=2, help="number of validation classes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = ecnb.load_dataset("digits")
    classes = validation_classes(args.seed, args.tasks)
    tasks = [make_task(ds, c, args.seed, args.device) for c in classes]
    reference = {t.cls: {m: scores(net, t.sets) for m, net in t.references.items()} for t in tasks}
    for task in tasks:
        print(f"task: forget class {task.cls};", {m: {k: round(v, 3) for k, v in s.items()} for m, s in reference[task.cls].items()})

    rows = []
    for method in args.methods:
        for setting in settings(GRIDS[method]):
            hp = hparams(method, "quick", args.seed, **setting)
            for task in tasks:
                try:
                    model, stats = run_method(method, task.references["original"], task.data, hp)
                except UnlearningError as e:
                    print(f"{method} {setting} class {task.cls}: {e}")
                    rows.append({"method": method, "setting": str(setting), "class": task.cls, "diverged": True})
                    continue
                got = scores(model, task.sets)
                rows.append({"method": method, "setting": str(setting), "class": task.cls, "diverged": False,
                             "lr": hp["lr"], **got,
                             "retain_drop": reference[task.cls]["original"]["retain"] - got["retain"],
                             "cka": intermediate_cka(model, task.references["original"], task.sets["forget"][0]),
                             "steps": stats.steps, "wall_time": round(stats.wall_time, 2)})
    per_task = pd.DataFrame(rows)
    diverged_anywhere = per_task.groupby(["method", "setting"], sort=False)["diverged"].transform("any")
    table = (per_task[~diverged_anywhere]
             .groupby(["method", "setting"], sort=False)[["lr", "forget", "retain", "retain_drop", "cka", "steps"]]
             .mean().reset_index())
    target = sum(reference[t.cls]["retrain"]["forget"] for t in tasks) / len(tasks)
    chosen = choose(table, target)
    with pd.option_context("display.width", 220, "display.max_rows", None, "display.max_colwidth", 80):
        print(per_task.drop(columns=["lr", "diverged"]).round(3).to_string(index=False))
        print(f"\nmean over the tasks (forget classes {classes}):")
        print(table.drop(columns="lr").round(3).to_string(index=False))
        print(f"\nchosen (forget closest to retrain's, retain within {RETAIN_TOLERANCE} of original's):")
        print(chosen.drop(columns=["lr", "gap", "cka_rank", "harm"]).round(3).to_string())
    print("\nfor HPARAMS['quick']:")
    for method, row in chosen.iterrows():
        figures = f"forget {row['forget']:.3f}, retain {row['retain']:.3f}, CKA {row['cka']:.3f}"
        print(f"    {method!r}: {row['setting']}  # {figures}")
    harmful = chosen.index[~chosen["admissible"].astype(bool)].tolist()
    if harmful:
        print(f"no setting kept retain accuracy within {RETAIN_TOLERANCE}, least harmful taken for:", ", ".join(harmful))
    missing = [m for m in args.methods if m not in chosen.index]
    if missing:
        print("every setting diverged for:", ", ".join(missing))
    print(f"\ntotal unlearning time {per_task['wall_time'].sum():.1f} s over {len(per_task)} runs")


if __name__ == "__main__":
    main()
