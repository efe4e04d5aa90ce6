"""Choose a CPU profile's unlearning hyperparameters on validation tasks, never on the study's own numbers.

A validation task (scripts/validation.py) forgets one of its data set's validation classes, never a reported one;
`--tasks` of them are drawn in a seeded order per seed, each with its own `original` and `retrain` (trained once
in the task's run directory and reused), and every method of `ecnb.unlearn` runs over a small grid. A setting is
read on each task by
- forget accuracy on the task's forget set D_f (its training images of the task's class: unlearning
  acts on memorised training images, which are harder to forget than held-out ones, so held-out images
  of the forgotten class are a weak proxy; on the digits they are also few, 14 per class);
- retain accuracy on the validation split's images of the task's kept classes;
- mean intermediate-layer CKA to the original on the task's D_f.
Per method it picks the setting whose forget accuracy is closest to `retrain`'s while retain accuracy
stays within 0.03 of `original`'s, both read on the setting's worst task (`--rank worst`, the default: the
largest distance to `retrain`'s forget accuracy and the largest retain drop over the tasks and seeds) or averaged
over them (`--rank mean`, the rule the quick profile's settings were chosen by, on two digits tasks). Ties go to
the least intervention: fewer steps, then the smaller learning rate, and only then the higher retain accuracy
(inside the tolerance, retain accuracies differ by one or two of the ~250 digits validation images, too little to
prefer a longer or harsher run). A method with no setting inside the tolerance gets the one that costs the least
retain accuracy. It prints the tables and the chosen values for `HPARAMS[profile]`.

Erase at the Core's settings (`ecnb.ec.EC_HPARAMS`) are chosen the same way, `ec`'s and each plug-in
`B+ec`'s EC term (with B's settings as they stand in `HPARAMS`, so choose the baselines first), except
that the first tie is broken by the representation: the lowest mean intermediate-layer CKA to the
original, the quantity EC exists to lower.

    python scripts/tune_quick.py [--profile quick] [--seeds 0] [--tasks 2] [--rank worst] [--workers 1]
                                 [--methods ec ga+ec ...] [--grids full|around] [--out runs/tuning/quick-<profile>.csv]

Each worker runs one method's grid on one task at a time, at one thread: on a shared two-core machine several
OpenMP threads per process slow training down by an order of magnitude, and a fixed thread count keeps the run
reproducible. Every run's row goes to `--out` as its job finishes.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from validation import make_task, profile_dataset, scores, validation_classes  # noqa: E402  (sets the environment first)

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from ecnb.config import PROFILES  # noqa: E402
from ecnb.features import extract_features  # noqa: E402
from ecnb.metrics import layer_cka  # noqa: E402
from ecnb.methods import hparams, run_method  # noqa: E402
from ecnb.unlearn import UnlearningError  # noqa: E402
from ecnb.workers import run_jobs  # noqa: E402

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


# `--grids around`: a profile whose data differ from the digits' searches what matters most around the quick
# profile's choice (its learning rate a third, once and three times; its epochs halved and as they are), every other
# knob kept. SCRUB halves its max epochs with its epochs; weight_dist_reg's distance stage is the one searched; a
# plug-in B+ec keeps its GRIDS entry (B's settings are the profile's, its EC term's points and weights are searched).
AROUND = {"lr": (1 / 3, 1.0, 3.0), "epochs": (0.5, 1.0)}
AROUND_KEYS = {"weight_dist_reg": ("dist_lr", "dist_epochs")}


def around(method: str) -> dict[str, list]:
    """The `--grids around` grid of `method`: learning rate x epochs around the quick profile's values."""
    hp = hparams(method, "quick")
    lr_key, epochs_key = AROUND_KEYS.get(method, ("lr", "epochs"))
    lrs = [float(f"{hp[lr_key] * f:.2g}") for f in AROUND["lr"]]
    epochs = sorted({max(1, round(hp[epochs_key] * f)) for f in AROUND["epochs"]})
    if method == "scrub":
        return {"lr": lrs, "epochs_msteps": [(e, min(hp["msteps"], max(1, round(hp["msteps"] * e / hp["epochs"]))))
                                             for e in epochs]}
    return {lr_key: lrs, epochs_key: epochs}


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


def choose(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, the admissible row closest to the target, or the least harmful row where none is
    admissible (see the module docstring); `admissible` says which. `table` holds a setting's `gap` (forget
    accuracy's distance to `retrain`'s) and `retain_drop` as ranked (worst task, or mean over tasks)."""
    admissible = table["retain_drop"] <= RETAIN_TOLERANCE
    table = table.assign(
        admissible=admissible,
        harm=table["retain_drop"].where(~admissible, 0.0),  # 0 for every admissible row, so they come first
        cka_rank=table["cka"].where(table["method"].map(representation_tie_break), 0.0),
    )
    ranked = table.sort_values(["harm", "gap", "cka_rank", "steps", "lr", "retain"],
                               ascending=[True, True, True, True, True, False])
    best = ranked.groupby("method", sort=False).head(1).set_index("method")
    return best.reindex([m for m in GRIDS if m in best.index])


_TASKS: dict[tuple, tuple] = {}  # per process: the tasks it has loaded, with their references' scores


def task_rows(cls: int, seed: int, profile: str, method: str, grid: list[dict], device: str) -> list[dict]:
    """Every setting of `grid` for `method` on the task that forgets `cls` (its references trained once, reused)."""
    torch.set_num_threads(1)  # several OpenMP threads per process on a shared 2-core machine slow training tenfold
    key = (cls, seed, profile, device)
    if key not in _TASKS:
        task = make_task(cls, seed, device, profile=profile, measured=False)
        _TASKS[key] = task, {m: scores(task.references[m], task.sets) for m in ("original", "retrain")}
    task, reference = _TASKS[key]
    rows = []
    for setting in grid:
        hp = hparams(method, profile, seed, **setting)
        row = {"method": method, "setting": str(setting), "class": cls, "seed": seed,
               "retrain_forget": reference["retrain"]["forget"], "original_retain": reference["original"]["retain"]}
        try:
            model, stats = run_method(method, task.references["original"], task.data, hp)
        except UnlearningError as e:
            print(f"{method} {setting} class {cls}: {e}", flush=True)
            rows.append({**row, "diverged": True})
            continue
        got = scores(model, task.sets)
        rows.append({**row, "diverged": False, "lr": hp["lr"], **got,
                     "retain_drop": reference["original"]["retain"] - got["retain"],
                     "cka": intermediate_cka(model, task.references["original"], task.sets["forget"][0]),
                     "steps": stats.steps, "wall_time": round(stats.wall_time, 2)})
    return rows


def rank(per_task: pd.DataFrame, how: str) -> pd.DataFrame:
    """One row per setting: forget and retain accuracy, `gap` and `retain_drop` on the worst task (`how` "worst")
    or averaged over the tasks ("mean"), mean CKA and steps. A setting that diverged on any task is left out."""
    diverged = per_task.groupby(["method", "setting"], sort=False)["diverged"].transform("any")
    ok = per_task[~diverged].assign(gap=lambda t: (t["forget"] - t["retrain_forget"]).abs())
    grouped = ok.groupby(["method", "setting"], sort=False)
    table = grouped[["lr", "forget", "retain", "cka", "steps"]].mean()
    if how == "worst":
        table["gap"], table["retain_drop"] = grouped["gap"].max(), grouped["retain_drop"].max()
    else:
        table["gap"], table["retain_drop"] = grouped["gap"].mean(), grouped["retain_drop"].mean()
    return table.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick", choices=list(PROFILES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", type=int, default=2, help="number of validation classes")
    parser.add_argument("--rank", choices=("worst", "mean"), default="worst",
                        help="read a setting on its worst task (default) or averaged over the tasks")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one thread each")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--grids", choices=("full", "around"), default="full",
                        help="full: GRIDS; around: learning rate x epochs around the quick profile's choice (AROUND)")
    parser.add_argument("--out", default=None, help="CSV of every run (default: runs/tuning/quick-<profile>.csv)")
    args = parser.parse_args()
    dataset = profile_dataset(args.profile)
    tasks = [(c, seed) for seed in args.seeds for c in validation_classes(seed, args.tasks, dataset)]
    grids = {m: around(m) if args.grids == "around" and "+" not in m else GRIDS[m] for m in args.methods}
    jobs = [(c, seed, args.profile, m, settings(grids[m]), args.device) for m in args.methods for c, seed in tasks]
    out = Path(args.out or f"runs/tuning/quick-{args.profile}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.time()
    for i, result in run_jobs(task_rows, jobs, args.workers):
        rows += result
        pd.DataFrame(rows).to_csv(out, index=False)  # nothing lost if the run stops
        c, seed, _, method, grid, _ = jobs[i]
        print(f"[{i + 1}/{len(jobs)}] {method} on class {c} seed {seed}: {len(grid)} settings "
              f"({time.time() - start:.0f} s so far)", flush=True)
    per_task = pd.DataFrame(rows)
    table = rank(per_task, args.rank)
    chosen = choose(table)
    shown = ["method", "setting", "class", "seed", "forget", "retain", "retain_drop", "cka", "steps"]
    with pd.option_context("display.width", 220, "display.max_rows", None, "display.max_colwidth", 80):
        print(per_task[~per_task["diverged"]][shown].round(3).to_string(index=False))
        print(f"\n{dataset}, tasks {tasks} (class, seed); gap and retain drop on the {args.rank} task:")
        print(table.drop(columns="lr").round(3).to_string(index=False))
        print(f"\nchosen (forget closest to retrain's, retain within {RETAIN_TOLERANCE} of original's, {args.rank} task):")
        print(chosen.drop(columns=["lr", "cka_rank", "harm"]).round(3).to_string())
    print(f"\nfor HPARAMS[{args.profile!r}]:")
    for method, row in chosen.iterrows():
        figures = (f"{args.rank} task: forget gap {row['gap']:.3f}, retain drop {row['retain_drop']:.3f}; "
                   f"mean CKA {row['cka']:.3f}")
        print(f"    {method!r}: {row['setting']}  # {figures}")
    harmful = chosen.index[~chosen["admissible"].astype(bool)].tolist()
    if harmful:
        print(f"no setting kept retain accuracy within {RETAIN_TOLERANCE}, least harmful taken for:", ", ".join(harmful))
    missing = [m for m in args.methods if m not in chosen.index]
    if missing:
        print("every setting diverged for:", ", ".join(missing))
    print(f"\ntotal unlearning time {per_task['wall_time'].sum():.1f} s over {len(per_task)} runs; rows: {out}")


if __name__ == "__main__":
    main()
