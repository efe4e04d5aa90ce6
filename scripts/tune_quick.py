"""Choose the `quick` profile's unlearning hyperparameters on the validation split (never the test set).

Trains `original` and `retrain` on the embedded digits (default recipe, a temporary run directory),
then runs every method of `ecnb.unlearn` over a small grid. The validation images of the forgotten
classes play `test_forget`, the others `test_retain`. For each method it picks the setting whose
validation forget accuracy is closest to `retrain`'s while its validation retain accuracy stays within
0.03 of `original`'s (ties: higher retain accuracy, then fewer steps, then the smaller learning rate),
and prints the table and the chosen values for `HPARAMS["quick"]`.

Erase at the Core's settings (`ecnb.ec.EC_HPARAMS`) are chosen the same way, except that the first tie
is broken by the representation: the lowest mean intermediate-layer CKA to the original on the
validation images of the forgotten classes, the quantity EC exists to lower.

    python scripts/tune_quick.py [--seed 0] [--threads 1] [--methods ec l1_sparse+ec ...]

One thread by default: on a shared two-core machine several OpenMP threads per process slow training
down by an order of magnitude, and a fixed thread count keeps the run reproducible.
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile

os.environ.setdefault("ECNB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import ecnb  # noqa: E402
from ecnb.config import StudyConfig  # noqa: E402
from ecnb.features import extract_features  # noqa: E402
from ecnb.metrics import layer_cka  # noqa: E402
from ecnb.metrics import accuracy  # noqa: E402
from ecnb.unlearn import UnlearnData, UnlearningError, hparams, run_method  # noqa: E402

RETAIN_TOLERANCE = 0.03

# A few values per method around its reference setting (STUDY.md section 4), scaled to ~1,300 images.
GRIDS: dict[str, dict[str, list]] = {
    "ft": {"lr": [0.01, 0.03, 0.1], "epochs": [5, 10]},
    "ga": {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "epochs": [3, 5, 10]},
    "rl": {"lr": [3e-3, 5e-3, 0.01, 0.03], "epochs": [2, 3, 5]},
    "neggrad_plus": {"lr": [0.01, 0.03], "epochs": [3, 5], "beta": [0.9, 0.99, 0.999]},
    "l1_sparse": {"lr": [0.01, 0.03, 0.1], "epochs": [10], "alpha": [5e-4, 1e-3, 2e-3]},
    "salun": {"lr": [3e-3, 0.01, 0.03], "epochs": [3, 5]},
    "scrub": {"lr": [1e-3, 5e-3, 0.01], "epochs_msteps": [(3, 2), (5, 3)]},
    "bad_teacher": {"lr": [3e-3, 0.01, 0.03], "epochs": [1, 3]},
    "cu": {"lr": [1e-3, 0.01, 0.03], "epochs": [4, 12, 20]},
    "ec": {"ec_weights": [1.0, 2.0, 4.0], "ec_nl_weight": [0.0, 1.0]},
    "l1_sparse+ec": {"ec_points": ["all", "layer1,layer2,layer3"], "ec_weights": [2.0, 4.0]},
}
REPRESENTATION_TIE_BREAK = ("ec", "l1_sparse+ec")


def settings(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid; `epochs_msteps` pairs set SCRUB's epochs and max-epochs together."""
    out = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        if "epochs_msteps" in setting:
            setting["epochs"], setting["msteps"] = setting.pop("epochs_msteps")
        out.append(setting)
    return out


def validation_splits(ds: ecnb.Dataset, forget_classes: tuple[int, ...]) -> dict[str, tuple]:
    forgotten = torch.isin(ds.y_val, torch.as_tensor(forget_classes))
    return {
        "val_forget": (ds.x_val[forgotten], ds.y_val[forgotten]),
        "val_retain": (ds.x_val[~forgotten], ds.y_val[~forgotten]),
    }


def scores(model: torch.nn.Module, val: dict[str, tuple]) -> dict[str, float]:
    return {name: accuracy(ecnb.predict(model, x), y) for name, (x, y) in val.items()}


def intermediate_cka(model: torch.nn.Module, original: torch.nn.Module, x: torch.Tensor) -> float:
    """Mean CKA to the original over the intermediate taps, on the images `x`."""
    feats = [extract_features(m, x) for m in (model, original)]
    return sum(layer_cka(*feats, original.taps[:-1]).values()) / (len(original.taps) - 1)


def choose(table: pd.DataFrame, target_forget: float, min_retain: float) -> pd.DataFrame:
    """Per method, the admissible row closest to the target (see the module docstring)."""
    ok = table[table["val_retain"] >= min_retain].assign(gap=lambda d: (d["val_forget"] - target_forget).abs())
    ok = ok.assign(cka_rank=ok["val_cka"].where(ok["method"].isin(REPRESENTATION_TIE_BREAK), 0.0))
    ranked = ok.sort_values(["gap", "cka_rank", "val_retain", "steps", "lr"], ascending=[True, True, False, True, True])
    best = ranked.groupby("method", sort=False).head(1).set_index("method")
    return best.reindex([m for m in GRIDS if m in best.index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = ecnb.load_dataset("digits")
    device = ecnb.resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        config = StudyConfig.from_options(run_dir=tmp, seeds=args.seed, device=args.device)
        run = ecnb.Run.open(config)
        split = ecnb.forget_split(run, ds, args.seed)
        original, retrain = (ecnb.train_reference(run, ds, split, m, args.seed, device) for m in ("original", "retrain"))
    data = UnlearnData.from_splits(ecnb.split_tensors(ds, split), ds.num_classes, config.forget_classes, device)
    val = validation_splits(ds, config.forget_classes)
    reference = {"original": scores(original, val), "retrain": scores(retrain, val)}
    print("references:", {m: {k: round(v, 3) for k, v in s.items()} for m, s in reference.items()})

    rows = []
    for method in args.methods:
        for setting in settings(GRIDS[method]):
            hp = hparams(method, "quick", args.seed, **setting)
            try:
                model, stats = run_method(method, original, data, hp)
            except UnlearningError as e:
                print(f"{method} {setting}: {e}")
                continue
            rows.append({"method": method, "setting": setting, "lr": hp["lr"], **scores(model, val),
                         "val_cka": intermediate_cka(model, original, val["val_forget"][0]),
                         "steps": stats.steps, "wall_time": round(stats.wall_time, 2)})
    table = pd.DataFrame(rows)
    chosen = choose(table, reference["retrain"]["val_forget"], reference["original"]["val_retain"] - RETAIN_TOLERANCE)
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_colwidth", 80):
        print(table.drop(columns="lr").round(3).to_string(index=False))
        print("\nchosen (val_forget closest to retrain's, val_retain within", RETAIN_TOLERANCE, "of original's):")
        print(chosen.drop(columns=["lr", "gap", "cka_rank"]).round(3).to_string())
    print("\nfor HPARAMS['quick']:")
    for method, row in chosen.iterrows():
        figures = f"val forget {row['val_forget']:.3f}, val retain {row['val_retain']:.3f}, val CKA {row['val_cka']:.3f}"
        print(f"    {method!r}: {row['setting']}  # {figures}")
    missing = [m for m in args.methods if m not in chosen.index]
    if missing:
        print("no admissible setting (retain accuracy dropped too far) for:", ", ".join(missing))
    print(f"\ntotal unlearning time {table['wall_time'].sum():.1f} s over {len(table)} runs")


if __name__ == "__main__":
    main()
