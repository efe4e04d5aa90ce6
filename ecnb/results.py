"""`results.csv`: one tidy row per measured value, `seed,method,metric,layer,split,value`.

Rows are keyed by everything but the value, so writing a row again (a re-run, a resumed study)
replaces it instead of duplicating it. Writes hold a file lock and replace the file atomically.
"""
from __future__ import annotations

import fcntl
import io
import math
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from .artifacts import atomic_write

COLUMNS = ["seed", "method", "metric", "layer", "split", "value"]
KEY = COLUMNS[:-1]
REFERENCES = ("original", "retrain")


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
    path = Path(run_dir) / "results.csv"
    new = pd.DataFrame(list(rows), columns=COLUMNS)
    with _locked(path):
        old = read_results(run_dir)
        table = pd.concat([old, new], ignore_index=True)
        last = table.drop_duplicates(KEY, keep="last").set_index(KEY)["value"]
        table = table.drop_duplicates(KEY, keep="first").drop(columns="value")
        table = table.join(last, on=KEY)[COLUMNS].reset_index(drop=True)
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))
    return table


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """The results table (empty, with the right columns, when nothing was written yet)."""
    path = Path(run_dir) / "results.csv"
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in COLUMNS})
    df = pd.read_csv(path, dtype={"method": str, "metric": str, "layer": str, "split": str}, keep_default_na=False)
    df["seed"] = df["seed"].astype(int)
    df["value"] = df["value"].astype(float)
    return df[COLUMNS]


def method_order(methods: Iterable[str]) -> list[str]:
    """`original` and `retrain` first (the yardsticks), then the others in first-seen order."""
    seen = list(dict.fromkeys(methods))
    return [m for m in REFERENCES if m in seen] + [m for m in seen if m not in REFERENCES]


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
