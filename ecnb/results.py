"""`results.csv`: one tidy row per measured value, `seed,method,metric,layer,split,value`.

Rows are keyed by everything but the value, so writing a row again (a re-run, a resumed study)
replaces it instead of duplicating it. Writes hold a file lock and replace the file atomically.
"""
from __future__ import annotations

import fcntl
import io
import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .files import ArtifactError, atomic_write

COLUMNS = ["seed", "method", "metric", "layer", "split", "value"]
KEY = COLUMNS[:-1]
REFERENCES = ("original", "retrain")
# The population of retrained models (docs/study.md, "Verdicts"): `retrain`, the run's own, and `retrain#1` ...
# `retrain#<K-1>`, trained the same way on the same D_r from other initialisations and minibatch orders.
MEMBER_PREFIX = "retrain#"


def population_names(size: int) -> list[str]:
    """The names of a population of `size` retrained models, the run's own `retrain` first."""
    return ["retrain", *(f"{MEMBER_PREFIX}{j}" for j in range(1, size))]


def is_member(method: str) -> bool:
    """Whether `method` is one of the population of retrained models (`retrain` included)."""
    return method == "retrain" or (method.startswith(MEMBER_PREFIX) and method[len(MEMBER_PREFIX):].isdigit())


def is_reference(method: str) -> bool:
    """Whether `method` is a yardstick (`original` or a retrained model), not an unlearning method."""
    return method == "original" or is_member(method)


def result_row(seed: int, method: str, metric: str, value: float, split: str = "", layer: str = "") -> dict:
    """One tidy row; `layer` is empty for whole-model metrics, `split` for split-free ones (wall time)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{method}/{metric}/{split}/{layer}: value {value} is not finite")
    return {"seed": int(seed), "method": method, "metric": metric, "layer": layer, "split": split, "value": value}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_results(run_dir: str | Path, rows: Iterable[dict]) -> pd.DataFrame:
    """Upsert `rows` into `run_dir/results.csv`; rows keep the order they were first written in
    (writers give layers in network order). Returns the whole table."""
    new = pd.DataFrame(list(rows), columns=COLUMNS)

    def upsert(old: pd.DataFrame) -> pd.DataFrame:
        table = pd.concat([old, new], ignore_index=True)
        last = table.drop_duplicates(KEY, keep="last").set_index(KEY)["value"]
        table = table.drop_duplicates(KEY, keep="first").drop(columns="value")
        return table.join(last, on=KEY)[COLUMNS].reset_index(drop=True)

    return _update(run_dir, upsert)


def remove_results(run_dir: str | Path, seed: int, method: str) -> pd.DataFrame:
    """Drop every row of `method` for `seed` (a method that now fails must not keep an earlier run's
    metrics). Returns the whole table."""
    return _update(run_dir, lambda old: old[(old["seed"] != seed) | (old["method"] != method)].reset_index(drop=True))


def drop_metrics(run_dir: str | Path, metrics: Iterable[str]) -> pd.DataFrame:
    """Drop every row of `metrics` (measured under settings that changed). Returns the whole table."""
    metrics = list(metrics)
    if not (Path(run_dir) / "results.csv").exists():
        return read_results(run_dir)
    return _update(run_dir, lambda old: old[~old["metric"].isin(metrics)].reset_index(drop=True))


def _update(run_dir: str | Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """Read, `change` and atomically rewrite `results.csv` under its lock, so concurrent writers never lose rows."""
    path = Path(run_dir) / "results.csv"
    with _locked(path):
        table = change(read_results(run_dir))
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))
    return table


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """The results table (empty, with the right columns, when nothing was written yet).

    A file that is not a complete table of our own (cut short, foreign columns, values that are not
    finite numbers, repeated rows) raises ArtifactError naming it: every write ends with a newline and
    is atomic, so anything else was damaged after it was written.
    """
    path = Path(run_dir) / "results.csv"
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in COLUMNS})
    try:
        text = path.read_text()
        if not text.endswith("\n"):
            raise ValueError("it does not end with a complete row")
        df = pd.read_csv(io.StringIO(text), dtype={"method": str, "metric": str, "layer": str, "split": str},
                         keep_default_na=False)
        if list(df.columns) != COLUMNS:
            raise ValueError(f"columns {list(df.columns)} instead of {COLUMNS}")
        df["seed"] = df["seed"].astype(int)
        df["value"] = df["value"].astype(float)
        if not np.isfinite(df["value"]).all() or df.duplicated(KEY).any():
            raise ValueError("non-finite values or repeated rows")
    except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors too
        raise ArtifactError(f"results file {path} is corrupted ({e}); rerun with --force to recompute it") from e
    return df


def method_order(methods: Iterable[str]) -> list[str]:
    """`original` and `retrain` first (the yardsticks), then the rest of the population in order, then the
    methods in first-seen order."""
    seen = list(dict.fromkeys(methods))
    members = sorted((m for m in seen if is_member(m) and m != "retrain"), key=lambda m: int(m[len(MEMBER_PREFIX):]))
    return [m for m in REFERENCES if m in seen] + members + [m for m in seen if not is_reference(m)]


def summarize(df: pd.DataFrame, seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """Whole-model metrics as a method x (metric, split) table of 'mean ± std' over seeds.

    The standard deviation is shown only when there is more than one seed.
    """
    if seeds is not None:
        df = df[df["seed"].isin(list(seeds))]
    whole = df[df["layer"] == ""]
    if whole.empty:
        return pd.DataFrame()
    column = whole["metric"] + whole["split"].map(lambda s: f" [{s}]" if s else "")
    stats = whole.assign(column=column).groupby(["method", "column"], sort=False)["value"].agg(["mean", "std", "count"])

    def fmt(r: pd.Series) -> str:
        return f"{r['mean']:.3f}" if r["count"] < 2 else f"{r['mean']:.3f} ± {r['std']:.3f}"

    table = stats.apply(fmt, axis=1).unstack("column").rename_axis(index=None, columns=None)
    order = method_order(whole["method"])
    columns = list(dict.fromkeys(column))
    return table.loc[order, columns].fillna("")
