"""Are the tells' thresholds far above what models that never saw the class show among themselves?

On each validation task (scripts/validation.py), `retrain` is trained again with other seeds (the same split,
another initialisation and order of the minibatches) and read against seed 0's `retrain` exactly as a method
is: the output KS distance and entropy on D_f (the output tell fires at 0.5) and the relearning curve under
seed 0's attacker (the over-resistance tell fires 0.3 below, the relearning gap counts from 0.3 above).

    python scripts/check_tells.py [--tasks 3] [--seeds 1 2]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from validation import make_task, validation_classes  # noqa: E402  (sets the environment first)

import pandas as pd  # noqa: E402

import ecnb  # noqa: E402
from ecnb.attacks import attack_set, relearn_accuracy  # noqa: E402
from ecnb.metrics import ks_distance, output_entropy, probabilities  # noqa: E402
from ecnb.verdicts import OUTPUT_TELL, RESISTANCE_TELL, SUPERFICIAL_GAP  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    ds = ecnb.load_dataset("digits")
    rows = []
    for cls in validation_classes(0, args.tasks):
        task = make_task(ds, cls, 0)
        attacks = attack_set(task.run, ds, task.split, 0)
        reference = task.references["retrain"]
        ref_top = probabilities(reference, task.data.forget_x).max(1).values.numpy()
        ref_curve = relearn_accuracy(reference, ds, task.split, attacks, task.run.config.attacks)
        for seed in [0, *args.seeds]:
            model = ecnb.train_reference(task.run, ds, task.split, "retrain", seed, "cpu")
            probs = probabilities(model, task.data.forget_x)
            curve = relearn_accuracy(model, ds, task.split, attacks, task.run.config.attacks)
            diffs = [curve[t] - ref_curve[t] for t in curve]
            rows.append({"class": cls, "retrain seed": seed, "output KS to seed 0": ks_distance(probs.max(1).values.numpy(), ref_top),
                         "entropy": output_entropy(probs), "largest relearn difference": max(diffs),
                         "lowest relearn difference": min(diffs),
                         **{f"relearn@{t}": v for t, v in curve.items()}})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    others = table[table["retrain seed"] != 0]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.round(3).to_string(index=False))
    print(f"\nretrains of other seeds against seed 0's, over {len(others)} pairs: output KS at most "
          f"{others['output KS to seed 0'].max():.3f} (the output tell fires at {OUTPUT_TELL}); relearning differences "
          f"from {others['lowest relearn difference'].min():+.3f} to {others['largest relearn difference'].max():+.3f} "
          f"(the over-resistance tell fires at -{RESISTANCE_TELL}, a superficial gap at +{SUPERFICIAL_GAP})")


if __name__ == "__main__":
    main()
