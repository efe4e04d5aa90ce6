"""Choose a data set's training recipe (training images per class, the small CNN's width, epochs) for `original`.

What a recipe costs and what it buys, read on the validation split only (10 % of the training images, held out
before any cap; never the test images a study reports): the accuracy of `original` over all classes and on each
validation class, the training loss per epoch (are the last epochs idle?), and the CPU time of one training at
one thread, as a worker of the study trains. Each recipe trains from the same seed; `--seeds` adds more, and
the table gives the mean and, across seeds, the range.

    python scripts/tune_recipe.py --dataset fashion_mnist [--per-class 300 600 1000 0] [--widths 16 32]
                                  [--epochs 15 30] [--seeds 0] [--workers 2]
                                  [--out runs/tuning/recipe-fashion_mnist.csv]

`--per-class 0` is the whole training split. Every row goes to `--out` (CSV) as it finishes, so an interrupted run
keeps what it measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("ECNB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from ecnb.config import PROFILES, validation_classes  # noqa: E402
from ecnb.data import load_dataset  # noqa: E402
from ecnb.models import smallcnn  # noqa: E402
from ecnb.train import fit, predict  # noqa: E402


def train_one(dataset: str, per_class: int, width: int, epochs: int, seed: int) -> dict:
    """Train `original` under one recipe at one thread; its validation accuracies, losses and CPU time."""
    torch.set_num_threads(1)
    ds = load_dataset(dataset, train_per_class=per_class or None)
    recipe = dataclasses.replace(PROFILES["quick"]["train"], epochs=epochs)
    torch.manual_seed(seed)
    model = smallcnn(ds.input_shape[0], ds.num_classes, width=width)
    start = time.process_time()
    losses = fit(model, ds.x_train, ds.y_train, recipe, seed, "cpu")
    cpu = time.process_time() - start
    pred = predict(model, ds.x_val).argmax(1)
    row = {"dataset": dataset, "per_class": per_class or int(torch.bincount(ds.y_train).max()), "width": width,
           "epochs": epochs, "seed": seed, "train_images": len(ds.y_train), "cpu_s": round(cpu, 1),
           "val_accuracy": float((pred == ds.y_val).float().mean()),
           "loss_last": losses[-1], "loss_at_two_thirds": losses[(2 * len(losses)) // 3 - 1]}
    for c in validation_classes(dataset):
        row[f"val_class{c}"] = float((pred[ds.y_val == c] == c).float().mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--per-class", type=int, nargs="+", default=[300, 600, 1000, 0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--epochs", type=int, nargs="+", default=[15, 30])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or f"runs/tuning/recipe-{args.dataset}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(args.dataset, n, w, e, s) for n in args.per_class for w in args.widths for e in args.epochs
            for s in args.seeds]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(train_one, *job): job for job in jobs}
        for done in as_completed(futures):
            rows.append(done.result())
            pd.DataFrame(rows).to_csv(out, index=False)
            r = rows[-1]
            print(f"{r['per_class']:>5}/class width {r['width']:>2} {r['epochs']:>2} epochs seed {r['seed']}: "
                  f"val {r['val_accuracy']:.3f}, {r['cpu_s']:.0f} CPU-s", flush=True)
    table = pd.DataFrame(rows).groupby(["per_class", "width", "epochs"]).agg(
        val_accuracy=("val_accuracy", "mean"), val_min=("val_accuracy", "min"), val_max=("val_accuracy", "max"),
        cpu_s=("cpu_s", "mean"), loss_last=("loss_last", "mean"), loss_at_two_thirds=("loss_at_two_thirds", "mean"))
    print(table.round(4).to_string())
    print(f"rows: {out}")


if __name__ == "__main__":
    main()
