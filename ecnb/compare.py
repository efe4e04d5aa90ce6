"""Two runs side by side, for a regression check: what changed that matters, beyond the noise the runs measure.

`python -m ecnb compare RUN_A RUN_B` reads two study run directories (or two sweep directories, cell by cell) and
reports, per cell (a seed of a run, a cell of a sweep) and model:

- a **verdict** that changed: its depth, its cost (keeps retain, hurts retain, undecided) and its tells. The
  numbers a verdict line carries (a cost's drop, the cell's resolution) are figures, read below;
- the **figures beyond noise**: each of the five figures a verdict reads (relearning gap, lowest relearn difference,
  few-shot gap, output distance, retain drop) whose two 95 % intervals do not overlap, and each accuracy (on
  `forget_train`, `test_retain`, `test_forget`) whose two Wilson 95 % intervals do not overlap (by more than
  `APART_BY`, half the last digit printed). A figure that moves
  inside its intervals moved by no more than the cell's few test images and attacker's draws can tell (floats
  differ from one machine to another; on one machine, two runs of one configuration are identical);
- a model measured in one run only (or that failed in one), a cell or seed in one only;
- a **claim** (docs/study.md, section 6) that holds in one run and not in the other, read per data set over the
  cells both runs have, over the package's own baselines that both measured;
- what differs in the configurations, a method file's or a checkpoint's content included (by its sha256).

The exit status gates a CI job: 1 when a verdict or a claim changed (or a model, cell or seed is in one run only),
0 otherwise; figures beyond noise are reported either way.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import ArtifactError, Run
from .ec import plugin_name, variant_names
from .methods import builtin_baselines
from .results import is_member, read_results
from .sweep import CELL_FILE
from .unlearn import TAMPER_RESISTANT
from .verdicts import (COST, DEPTH, FORGET, OUTPUT_DISTANCE, RETAIN, TELLS, TEST_FORGET, claims, figure_text, high,
                       judge_run, low, variant_claims, wilson_interval, with_interval)
from .verdicts.population import FIGURES

# The accuracies compared by their Wilson intervals, with the split whose images they count.
ACCURACIES = {FORGET: "forget_train", RETAIN: "test_retain", TEST_FORGET: "test_forget"}


@dataclass(frozen=True)
class Cell:
    """One cell of a run as the verdicts read it: its judge table, its data set and each split's number of images."""

    table: pd.DataFrame
    dataset: str
    sizes: Mapping[str, float]
    failures: Mapping[str, str]


@dataclass
class Comparison:
    """What changed between run A and run B, as lines of text under headings, and how much of it."""

    a: Path
    b: Path
    config: list[str] = field(default_factory=list)
    cells: dict[str, list[str]] = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)
    verdicts: int = 0  # verdicts that changed
    only: int = 0  # models, cells or seeds in one run only
    moved: int = 0  # models with a figure beyond noise
    models: int = 0  # models compared

    @property
    def changed(self) -> int:
        """What sets the exit status: verdicts and claims that changed, and what is in one run only."""
        return self.verdicts + len(self.claims) + self.only

    def report(self) -> str:
        lines = [f"A: {self.a}", f"B: {self.b}"]
        if self.config:
            lines += ["configuration:", *(f"  {line}" for line in self.config)]
        for cell, cell_lines in self.cells.items():
            if cell_lines:
                lines += [f"{cell}:", *(f"  {line}" for line in cell_lines)]
        if self.claims:
            lines += ["claims:", *(f"  {line}" for line in self.claims)]
        counts = [f"{self.verdicts} verdict(s) changed", f"{len(self.claims)} claim(s) changed"]
        counts += [f"{self.only} model(s) or cell(s) in one run only"] if self.only else []
        figures = f"figures of {self.moved} of {self.models} model(s) moved beyond their noise"
        lines.append(f"{', '.join(counts)}; {figures} (exit {1 if self.changed else 0})")
        return "\n".join(lines)


def read_cells(path: str | Path) -> tuple[dict[str, Cell], dict[str, Any]]:
    """The cells of a run directory (one per seed) or of a sweep directory (each finished cell's run), judged, and the
    configuration of the first (a sweep's cells share theirs but for the forget set and seed)."""
    root = Path(path)
    if (root / "sweep.json").exists():
        names = json.loads((root / "sweep.json").read_text())["cells"]
        runs = {name: Run.load(root / "cells" / name) for name in names
                if (root / "cells" / name / CELL_FILE).exists()}
        places = {name: (run, run.config.seeds[0]) for name, run in runs.items()}
    else:
        run = Run.load(root)
        places = {f"seed {seed}": (run, seed) for seed in run.config.seeds}
    if not places:
        raise ArtifactError(f"{root} has no finished cell to compare")
    cells = {name: _cell(run, seed) for name, (run, seed) in places.items()}
    return cells, next(iter(places.values()))[0].config.to_dict()


def _cell(run: Run, seed: int) -> Cell:
    results = read_results(run.root)
    sizes = results[(results["seed"] == seed) & (results["method"] == "original") & (results["metric"] == "split_size")]
    return Cell(judge_run(run, seed), run.config.dataset, dict(zip(sizes["split"], sizes["value"])), run.failures(seed))


def compare(a: str | Path, b: str | Path) -> Comparison:
    """Compare the runs (or sweeps) at `a` and `b`; see the module's docstring for what counts."""
    (cells_a, config_a), (cells_b, config_b) = read_cells(a), read_cells(b)
    out = Comparison(Path(a), Path(b), config=config_changes(config_a, config_b))
    for name in dict.fromkeys([*cells_a, *cells_b]):
        if name not in cells_b or name not in cells_a:
            out.cells[name] = [f"only in {'A' if name in cells_a else 'B'}"]
            out.only += 1
            continue
        out.cells[name] = _cell_changes(cells_a[name], cells_b[name], out)
    common = [n for n in cells_a if n in cells_b]
    out.claims = claim_changes({n: cells_a[n] for n in common}, {n: cells_b[n] for n in common})
    return out


def verdict(row: pd.Series, method: str) -> str:
    """A verdict's categorical parts, the ones a regression check compares: depth, cost, tells; for a retrained model
    its null read, for `original` nothing (it is the reference)."""
    if method == "original":
        return "reference"
    cost = re.sub(r" \(.*\)$", "", row[COST])
    line = f"{row[DEPTH]}, {cost}" + (f"; {row[TELLS]}" if row[TELLS] else "")
    return f"null read: {line}" if is_member(method) else line


def _cell_changes(a: Cell, b: Cell, out: Comparison) -> list[str]:
    lines = []
    for method in dict.fromkeys([*a.table.index, *b.table.index]):
        if method not in a.table.index or method not in b.table.index:
            side, other = ("A", b) if method in a.table.index else ("B", a)
            failed = f"; failed in {'B' if side == 'A' else 'A'}: {other.failures[method]}" if method in other.failures else ""
            lines.append(f"{method}: only in {side}{failed}")
            out.only += 1
            continue
        ra, rb = a.table.loc[method], b.table.loc[method]
        out.models += 1
        said = []
        if verdict(ra, method) != verdict(rb, method):
            said.append(f"verdict: {verdict(ra, method)} -> {verdict(rb, method)}")
            out.verdicts += 1
        moved = figure_changes(ra, rb, a.sizes, b.sizes)
        out.moved += bool(moved)
        if said or moved:
            lines += [f"{method}", *(f"  {line}" for line in [*said, *moved])]
    return lines


def figure_changes(a: pd.Series, b: pd.Series, sizes_a: Mapping[str, float], sizes_b: Mapping[str, float]) -> list[str]:
    """The figures of one model that moved beyond noise from `a` to `b` (two rows of `judge` tables), as text."""
    lines = []
    for figure in FIGURES:
        if _apart((a[low(figure)], a[high(figure)]), (b[low(figure)], b[high(figure)])):
            signed = figure != OUTPUT_DISTANCE
            lines.append(f"{figure}: {figure_text(a, figure, signed)} -> {figure_text(b, figure, signed)}")
    for column, split in ACCURACIES.items():
        n_a, n_b = sizes_a.get(split), sizes_b.get(split)
        if n_a and n_b and _apart(wilson_interval(a[column], n_a), wilson_interval(b[column], n_b)):
            lines.append(f"{split} accuracy: {with_interval(a[column], n_a)} -> {with_interval(b[column], n_b)}")
    return lines


# How far apart two intervals must be to count: half a unit of the two decimals figures are read and printed at. A
# zero-width interval (every resample the same, e.g. a gap of 0 where nothing relearns) otherwise "moves" by the
# third decimal of the population's mean when the population changes: +0.00 [+0.00, +0.00] -> the same, printed.
APART_BY = 0.005


def _apart(one: tuple[float, float], other: tuple[float, float]) -> bool:
    """Two intervals that do not overlap, with `APART_BY` between them (an interval that was not measured overlaps
    everything)."""
    if any(pd.isna(v) for v in (*one, *other)):
        return False
    return one[1] + APART_BY < other[0] or other[1] + APART_BY < one[0]


def claim_changes(cells_a: Mapping[str, Cell], cells_b: Mapping[str, Cell]) -> list[str]:
    """The claims that hold in one run and not in the other, per data set, read over the same cells and methods."""
    lines = []
    for dataset in dict.fromkeys(c.dataset for c in cells_a.values()):
        names = [n for n, c in cells_a.items() if c.dataset == dataset]
        shared = set.intersection(*(set(cells_a[n].table.index) & set(cells_b[n].table.index) for n in names))
        read_a, read_b = (_claims({n: cells[n].table for n in names}, shared) for cells in (cells_a, cells_b))
        for claim in read_a.index:
            if bool(read_a.loc[claim, "holds"]) != bool(read_b.loc[claim, "holds"]):
                held = {True: "holds", False: "does not hold"}
                measured = [f"{r.loc[claim, 'measured']}, needs {r.loc[claim, 'target']}" for r in (read_a, read_b)]
                lines.append(f"{claim} ({dataset}): {held[bool(read_a.loc[claim, 'holds'])]} -> "
                             f"{held[bool(read_b.loc[claim, 'holds'])]} ({measured[0]} -> {measured[1]})")
    return lines


def _claims(tables: Mapping[str, pd.DataFrame], shared: set[str]) -> pd.DataFrame:
    """The study's claims over `tables` (cells), over the package's baselines, variants and plug-ins in `shared`."""
    tables = {n: t.loc[[m for m in t.index if m in shared]] for n, t in tables.items()}
    bases = [b for b in builtin_baselines() if b in shared]
    plugin_bases = [b for b in bases if plugin_name(b) in shared]
    variants = [v for v in variant_names() if v in shared]
    variant_bases = [b for b in bases if all(plugin_name(b, v) in shared for v in variants)]
    anchors = [a for a in TAMPER_RESISTANT if a in shared]
    return pd.concat([claims(tables, bases, plugin_bases), variant_claims(tables, variant_bases, variants, anchors)])


def config_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """`key: old -> new` for every setting that differs (nested keys joined by dots, a file's sha256 shortened), but
    where the runs are (`run_dir`)."""
    flat_a, flat_b = _flat(a), _flat(b)
    lines = []
    for key in dict.fromkeys([*flat_a, *flat_b]):
        if key != "run_dir" and flat_a.get(key, "-") != flat_b.get(key, "-"):
            lines.append(f"{key}: {_short(flat_a.get(key, '-'))} -> {_short(flat_b.get(key, '-'))}")
    return lines


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping):  # an empty one (no overrides) adds nothing
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    text = str(value)
    return f"{text[:12]}..." if re.fullmatch(r"[0-9a-f]{64}", text) else text
