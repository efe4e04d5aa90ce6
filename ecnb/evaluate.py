"""Turning models into result rows: unlearning with cached checkpoints, and every metric of STUDY.md
section 5 gathered per method, so notebooks 02 and 03 share one evaluation path.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .artifacts import Run, load_checkpoint, save_checkpoint
from .config import resolve_device
from .data import Dataset, ForgetSplit, split_tensors
from .metrics import accuracy_rows, cka_rows, mia_rows, probe_rows
from .models import TappedNet
from .results import REFERENCES, method_order, read_results, remove_results, result_row, write_results
from .train import model_from_state
from .unlearn import UnlearnData, UnlearningError, hparams, run_method

# Conv taps are pooled to at most this many positions per side before CKA (None: flattened whole).
# The quick profile's largest tap is 16x16x16; ResNet-18's layer1 on CIFAR would be 64k numbers per image.
MAX_SPATIAL = {"quick": None, "paper": 4}
CKA_SPLITS = ("forget_train", "test_retain", "test_forget")
CKA_COLUMN = "mean intermediate CKA to original (forget_train)"
METHOD_METRICS = {"accuracy", "mia_efficacy", "cka_to_original", "cka_to_retrain", "probe_accuracy", "wall_time"}


def unlearn_data(ds: Dataset, split: ForgetSplit) -> UnlearnData:
    """D_f and D_r of the run as the unlearning methods see them, on the data set's device."""
    s = split_tensors(ds, split)
    return UnlearnData(*s["forget_train"], *s["retain_train"], ds.num_classes, split.forget_classes, ds.x_train.device)


def unlearn_or_load(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, seed: int, original: TappedNet,
    device: torch.device | str = "auto", **overrides: Any,
) -> tuple[TappedNet, float]:
    """Unlearn `method` from `original`, or load its checkpoint when one with the same settings exists.

    Returns the model and its wall time in seconds (measured when it was computed). A recomputed model
    drops its cached features, which belonged to the previous weights.
    """
    model, wall_time, _ = _unlearn_or_load(run, ds, split, method, seed, original, device, **overrides)
    return model, wall_time


def _unlearn_or_load(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, seed: int, original: TappedNet,
    device: torch.device | str = "auto", **overrides: Any,
) -> tuple[TappedNet, float, bool]:
    """`unlearn_or_load`, and whether the model came from its checkpoint."""
    device = resolve_device(device) if isinstance(device, str) else device
    hp = hparams(method, run.config.profile, seed, **overrides)
    key = json.dumps({"config": run.config.cache_key(), "hparams": hp}, sort_keys=True, default=str)
    path = run.checkpoint_path(method, seed)
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt["meta"].get("key") == key:
            model = model_from_state(run.config, ds, ckpt["state_dict"], device)
            return model, float(ckpt["meta"]["wall_time"]), True
    for stale in (run.seed_dir(seed) / "features").glob(f"{method}__*.npz"):
        stale.unlink()
    model, stats = run_method(method, original, unlearn_data(ds, split), hp)
    save_checkpoint(path, model, {"key": key, "method": method, "seed": seed, "wall_time": stats.wall_time})
    return model, stats.wall_time, False


def measured(results: pd.DataFrame, seed: int) -> set[str]:
    """The methods of `seed` that `results` holds every metric of `method_rows` for. Their rows came
    from the same checkpoint and references (a run directory holds one configuration), so a notebook
    that loads such a model again need not measure it again."""
    rows = results[results["seed"] == seed]
    metrics = rows.groupby("method")["metric"].agg(set)
    return {m for m, have in metrics.items() if METHOD_METRICS <= have}


def reference_rows(
    run: Run, model: TappedNet, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int
) -> list[dict]:
    """`accuracy` on every split and the training `wall_time` (seconds, from the checkpoint) of a reference model."""
    meta = load_checkpoint(run.checkpoint_path(method, seed))["meta"]
    return accuracy_rows(model, splits, method, seed) + [result_row(seed, method, "wall_time", meta["wall_time"])]


def method_rows(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, model: TappedNet, seed: int,
    references: dict[str, TappedNet], wall_time: float | None = None,
) -> list[dict]:
    """Every metric of one model: accuracy per split, MIA efficacy, per-layer CKA to the original and to
    the retrained model, per-layer probe accuracy, and its wall time."""
    splits = split_tensors(ds, split)
    max_spatial = MAX_SPATIAL.get(run.config.profile)
    cka_splits = {name: splits[name] for name in CKA_SPLITS}
    rows = accuracy_rows(model, splits, method, seed) + mia_rows(model, splits, method, seed)
    rows += cka_rows(run, model, method, seed, references, cka_splits, max_spatial)
    rows += probe_rows(run, model, method, seed, ds, split, max_spatial)
    if wall_time is not None:
        rows.append(result_row(seed, method, "wall_time", wall_time))
    return rows


def run_methods(
    run: Run, ds: Dataset, split: ForgetSplit, methods: list[str], seed: int,
    references: dict[str, TappedNet], device: torch.device | str = "auto",
) -> dict[str, TappedNet]:
    """Unlearn (or load) each method from `references['original']`, measure it, and write its rows to
    `results.csv` as soon as it is done, so an interrupted run keeps every finished method.

    Every name is checked before any work. A method that diverges (UnlearningError) gets no metrics:
    one line says so, the seed's `failures.json` records why, rows of an earlier run of it are removed,
    and the other methods go on. A method loaded from its checkpoint whose rows are all there (notebook
    03 loads notebook 02's baselines) is not measured again. Returns the models that succeeded.
    """
    for method in methods:
        hparams(method, run.config.profile, seed)  # an unknown name stops here, before any work
    done = measured(read_results(run.root), seed)
    models = {}
    bar = tqdm(methods, desc="methods", unit="method")
    for method in bar:
        bar.set_postfix_str(method)
        try:
            model, wall_time, loaded = _unlearn_or_load(run, ds, split, method, seed, references["original"], device)
        except UnlearningError as e:
            run.record_failure(seed, method, str(e))
            remove_results(run.root, seed, method)
            bar.write(f"{method} failed and is left out of the results: {e}")
            continue
        if not (loaded and method in done):
            write_results(run.root, method_rows(run, ds, split, method, model, seed, references, wall_time))
        run.record_failure(seed, method, None)
        models[method] = model
    return models


def run_references(
    run: Run, ds: Dataset, split: ForgetSplit, seed: int, references: dict[str, TappedNet]
) -> None:
    """The same metrics for `original` and `retrain`, the two yardsticks every method is read against
    (once: their checkpoints are the run's, so rows that are all there stay)."""
    done = measured(read_results(run.root), seed)
    for method, model in references.items():
        if method in done:
            continue
        wall_time = load_checkpoint(run.checkpoint_path(method, seed))["meta"]["wall_time"]
        write_results(run.root, method_rows(run, ds, split, method, model, seed, references, wall_time))


def intermediate_summary(results: pd.DataFrame, taps: list[str], seed: int | None = None) -> pd.DataFrame:
    """Per method: forget and retain accuracy next to the mean intermediate-layer CKA to the original on
    `forget_train` (all taps but the last) and the best intermediate probe accuracy on `test_forget`.

    This is the table in which superficial forgetting shows: output-level forgetting with intermediate
    representations still close to the original's.
    """
    df = results if seed is None else results[results["seed"] == seed]
    intermediate = taps[:-1]

    def pick(metric: str, split: str, layers: list[str] | None = None) -> pd.Series:
        rows = df[(df["metric"] == metric) & (df["split"] == split)]
        rows = rows[rows["layer"].isin(layers)] if layers else rows[rows["layer"] == ""]
        return rows.groupby("method", sort=False)["value"]

    table = pd.DataFrame({
        "forget_train acc": pick("accuracy", "forget_train").mean(),
        "test_retain acc": pick("accuracy", "test_retain").mean(),
        CKA_COLUMN: pick("cka_to_original", "forget_train", intermediate).mean(),
        "max intermediate probe acc (test_forget)": pick("probe_accuracy", "test_forget", intermediate).max(),
    })
    return table.reindex(method_order(df["method"]))


def superficial_forgetting(table: pd.DataFrame, max_forget_acc: float = 0.05, min_cka: float = 0.85) -> list[str]:
    """The methods that forget at the output (`forget_train` accuracy <= 0.05) while their intermediate
    layers stay close to the original's (mean CKA >= 0.85): STUDY.md section 7's definition."""
    cka = table[CKA_COLUMN]
    hit = (table["forget_train acc"] <= max_forget_acc) & (cka >= min_cka)
    return [m for m in table.index[hit] if m not in REFERENCES]


def ec_checks(
    table: pd.DataFrame, baselines: list[str], ec: str = "ec", forget_tol: float = 0.05, retain_tol: float = 0.03
) -> pd.DataFrame:
    """STUDY.md section 7's criteria for EC, each as a row with the measured value and whether it holds.

    `table` is `intermediate_summary`'s. The CKA comparison counts only baselines that keep
    `test_retain` accuracy within `retain_tol` of the original: wrecking the network also lowers CKA.
    A criterion about a method missing from `table` (it failed, or was not run) is reported as not
    holding, with the value NaN, rather than dropped.
    """
    t, cka, acc_f, acc_r = table, CKA_COLUMN, "forget_train acc", "test_retain acc"
    rows: list[tuple[str, float, str, bool]] = []

    def check(name: str, methods: list[str], value: Any, target: Any, holds: Any) -> None:
        if all(m in t.index for m in methods):
            rows.append((name, float(value()), target(), bool(holds())))
        else:
            rows.append((name, float("nan"), f"not measured: {', '.join(m for m in methods if m not in t.index)}", False))

    check(f"{ec}: forget_train acc within {forget_tol} of retrain", [ec, "retrain"],
          lambda: t.loc[ec, acc_f], lambda: f"{t.loc['retrain', acc_f]:.3f} ± {forget_tol}",
          lambda: abs(t.loc[ec, acc_f] - t.loc["retrain", acc_f]) <= forget_tol)
    check(f"{ec}: test_retain acc within {retain_tol} of original", [ec, "original"],
          lambda: t.loc[ec, acc_r], lambda: f">= {t.loc['original', acc_r] - retain_tol:.3f}",
          lambda: t.loc[ec, acc_r] >= t.loc["original", acc_r] - retain_tol)
    present = [b for b in baselines if b in t.index]
    useful = [b for b in present if "original" in t.index and t.loc[b, acc_r] >= t.loc["original", acc_r] - retain_tol]
    lowest = t.loc[useful, cka].min() if useful else float("inf")
    check(f"{ec}: mean intermediate CKA below every baseline that keeps retain accuracy ({', '.join(useful)})",
          [ec, "original"], lambda: t.loc[ec, cka], lambda: f"< {lowest:.3f}", lambda: t.loc[ec, cka] < lowest)
    for b in baselines:
        plugin = f"{b}+ec"
        check(f"{plugin}: mean intermediate CKA below {b}'s", [b, plugin], lambda: t.loc[plugin, cka],
              lambda: f"< {t.loc[b, cka]:.3f}", lambda: t.loc[plugin, cka] < t.loc[b, cka])
    return pd.DataFrame(rows, columns=["check", "value", "target", "holds"]).set_index("check")
