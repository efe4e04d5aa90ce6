"""The study's claims, read over the cells of one data set (a cell: one forget set and one seed).

A cell that failed, or lacks a method a claim needs, counts as a cell where the claim does not hold; so does
a cell where a verdict the claim needs is undecided, and every claim row says in how many cells that
happened (`undecided`). A comparison of two methods within a cell ("nearer the population", "costs no
more") holds only where their intervals separate them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .measured import CKA
from .population import FEWSHOT_GAP, RELEARN_GAP, RESISTANCE, RETAIN_DROP, high, low
from .rules import (COST, DEPTH, ERASED, NOT_FORGOTTEN, KEEPS_RETAIN, SUCCEEDS, SUPERFICIAL, TELLS,
                    UNDECIDED, cost_undecided)

Cells = Mapping[str, "pd.DataFrame | None"]  # cell name -> `judge` table, None for a cell that failed
COLUMNS = ["claim", "measured", "target", "holds", "undecided"]


def _row(table: pd.DataFrame | None, method: str) -> pd.Series | None:
    return table.loc[method] if table is not None and method in table.index else None


def _count(cells: Cells, holds: Callable[[pd.DataFrame], bool]) -> int:
    return sum(bool(holds(t)) for t in cells.values() if t is not None)


def _majority(n: int) -> int:
    return n // 2 + 1


def _depth_undecided(t: pd.DataFrame, method: str) -> bool:
    r = _row(t, method)
    return r is not None and r[DEPTH] == UNDECIDED


def _cost_undecided(t: pd.DataFrame | None, method: str) -> bool:
    return t is not None and method in t.index and bool(cost_undecided(t)[method])


def _verdict_undecided(t: pd.DataFrame, method: str) -> bool:
    """Any part of the verdict undecided: the depth, the cost or a tell."""
    r = _row(t, method)
    return r is not None and (r[DEPTH] == UNDECIDED or _cost_undecided(t, method) or "?" in r[TELLS])


def claims(cells: Cells, baselines: Sequence[str], plugin_bases: Sequence[str] | None = None, ec: str = "ec") -> pd.DataFrame:
    """The study's claims over the cells of one data set, each a row with what was measured, the target,
    whether it holds and in how many cells a verdict it needs was undecided: over `baselines`, and for the
    plug-ins of `plugin_bases` (default: every baseline)."""
    n = len(cells)
    majority = _majority(n)
    rows: list[tuple] = []

    def depth(t: pd.DataFrame | None, method: str) -> str | None:
        r = _row(t, method)
        return None if r is None else r[DEPTH]

    superficial = [b for b in baselines if _count(cells, lambda t, b=b: depth(t, b) == SUPERFICIAL) >= majority]
    rows.append(("at least two baselines are superficial in a majority of the cells", ", ".join(superficial) or "none",
                 f">= 2 of {len(baselines)} baselines, each in >= {majority} of {n} cell(s)", len(superficial) >= 2,
                 _count(cells, lambda t: any(_depth_undecided(t, b) for b in baselines))))

    def forgets_and_keeps(t: pd.DataFrame) -> bool:
        r = _row(t, ec)
        return r is not None and r[DEPTH] != NOT_FORGOTTEN and r[COST] == KEEPS_RETAIN

    k = _count(cells, forgets_and_keeps)
    rows.append((f"{ec} forgets at the output and keeps retain accuracy", f"{k} of {n} cell(s)", f">= {majority}",
                 k >= majority, _count(cells, lambda t: _cost_undecided(t, ec))))

    def below_useful(t: pd.DataFrame) -> bool:
        """Below every baseline that does not decidedly hurt retain accuracy (an undecided cost counts as kept:
        EC must beat it too)."""
        useful = [b for b in baselines if b in t.index and not t.loc[b, COST].startswith("hurts")]
        return ec in t.index and bool(useful) and bool(t.loc[ec, CKA] < t.loc[useful, CKA].min())

    k = _count(cells, below_useful)
    rows.append((f"{ec}'s mean intermediate CKA is below every baseline that does not decidedly hurt retain accuracy",
                 f"{k} of {n} cell(s)", f">= {majority}", k >= majority,
                 _count(cells, lambda t: any(_cost_undecided(t, b) for b in baselines))))

    plugin_bases = list(baselines if plugin_bases is None else plugin_bases)
    for b in plugin_bases:
        plugin = f"{b}+ec"
        pairs = [(t.loc[plugin, CKA], t.loc[b, CKA]) for t in cells.values()
                 if t is not None and {b, plugin} <= set(t.index)]
        complete = len(pairs) == n
        mean_plugin, mean_base = (float(np.mean([p[i] for p in pairs])) if complete else np.nan for i in (0, 1))
        rows.append((f"{plugin}'s mean intermediate CKA (mean over cells) is below {b}'s",
                     _number(mean_plugin), f"< {_number(mean_base)}", bool(complete and mean_plugin < mean_base), 0))

    for method in [ec, *(f"{b}+ec" for b in plugin_bases)]:
        k = _count(cells, lambda t, m=method: depth(t, m) == ERASED)
        rows.append((f"{method} is erased (reported as measured)", f"{k} of {n} cell(s)", f">= {majority}",
                     k >= majority, _count(cells, lambda t, m=method: _depth_undecided(t, m))))
    return pd.DataFrame(rows, columns=COLUMNS).set_index("claim")


def _number(value: float) -> str:
    return "missing" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def attack_distances(table: pd.DataFrame) -> pd.DataFrame:
    """How far each method of a `judge` table is from the population on each attack, from either side, with
    an interval: the relearning distance (the largest |difference| to the population's curve over the grid's
    steps, so resisting far more counts as much as relearning far faster) and the few-shot distance (|few-shot
    gap|). Columns `relearning`, `few-shot`, each with ` low` and ` high`."""
    def absolute(value: pd.Series, lo: pd.Series, hi: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
        a_lo = np.where(lo > 0, lo, np.where(hi < 0, -hi, 0.0))
        return value.abs(), pd.Series(a_lo, index=value.index), np.maximum(lo.abs(), hi.abs())

    gap, res = table[RELEARN_GAP], table[RESISTANCE]
    relearn = np.maximum(gap, -res)
    relearn_lo = np.maximum(table[low(RELEARN_GAP)], -table[high(RESISTANCE)]).clip(lower=0)
    relearn_hi = np.maximum(table[high(RELEARN_GAP)], -table[low(RESISTANCE)])
    few, few_lo, few_hi = absolute(table[FEWSHOT_GAP], table[low(FEWSHOT_GAP)], table[high(FEWSHOT_GAP)])
    return pd.DataFrame({"relearning": relearn, "relearning low": relearn_lo, "relearning high": relearn_hi,
                         "few-shot": few, "few-shot low": few_lo, "few-shot high": few_hi})


def attack_distance(table: pd.DataFrame) -> pd.DataFrame:
    """The two distances of `attack_distances` summed (0 for a model the attacks cannot tell from the
    population), with a conservative interval: the sum of the lower ends, the sum of the upper ends."""
    d = attack_distances(table)
    return pd.DataFrame({"both": d["relearning"] + d["few-shot"], "both low": d["relearning low"] + d["few-shot low"],
                         "both high": d["relearning high"] + d["few-shot high"]})


def nearer(distances: pd.DataFrame, column: str, mine: str, theirs: str) -> bool | None:
    """Whether `mine` is nearer the population than `theirs` on `column` of `attack_distances` or
    `attack_distance` (True), decidedly not (False: `theirs` is nearer), or the intervals overlap (None)."""
    if mine not in distances.index or theirs not in distances.index:
        return None
    if distances.loc[mine, f"{column} high"] < distances.loc[theirs, f"{column} low"]:
        return True
    if distances.loc[theirs, f"{column} high"] < distances.loc[mine, f"{column} low"]:
        return False
    return None


def variant_claims(cells: Cells, baselines: Sequence[str], variants: Sequence[str],
                   anchors: Sequence[str] = ()) -> pd.DataFrame:
    """The claims beyond the paper, for each EC variant over the cells of one data set: it succeeds in a
    majority of the cells; on each attack it is nearer the population than each anchor (the tamper-resistant
    baselines), the intervals apart, in a majority of the cells, and costs no more retain accuracy (its drop
    not decidedly above the anchor's) in a majority; and each plug-in B+variant is nearer the population on
    the two attacks together than B and than B+ec in a majority of the cells, and keeps retain accuracy in a
    majority. `undecided` counts the cells where the verdict or comparison a claim needs was undecided."""
    n = len(cells)
    majority = _majority(n)
    rows: list[tuple] = []

    def compare(claim: str, column: str, table_of: Callable[[pd.DataFrame], pd.DataFrame], mine: str, theirs: str) -> None:
        reads = [nearer(table_of(t), column, mine, theirs) if t is not None else False for t in cells.values()]
        k = sum(r is True for r in reads)
        rows.append((claim, f"{k} of {n} cell(s)", f">= {majority}", k >= majority, sum(r is None for r in reads)))

    for variant in variants:
        k = _count(cells, lambda t, v=variant: _row(t, v) is not None and bool(t.loc[v, SUCCEEDS]))
        rows.append((f"{variant} succeeds (erased, keeps retain, no tell)", f"{k} of {n} cell(s)", f">= {majority}",
                     k >= majority, _count(cells, lambda t, v=variant: _verdict_undecided(t, v))))
        for anchor in anchors:
            for attack in ("relearning", "few-shot"):
                compare(f"{variant} is nearer the retrained models than {anchor} on the {attack} attack",
                        attack, attack_distances, variant, anchor)
            costs = [_no_greater_cost(t, variant, anchor) if t is not None else False for t in cells.values()]
            k = sum(c is True for c in costs)
            rows.append((f"{variant} costs no more retain accuracy than {anchor}", f"{k} of {n} cell(s)",
                         f">= {majority}", k >= majority, 0))
        for b in baselines:
            plugin = f"{b}+{variant}"
            for other in (b, f"{b}+ec"):
                compare(f"{plugin} is nearer the retrained models on the attacks than {other}", "both",
                        attack_distance, plugin, other)
            k = _count(cells, lambda t, p=plugin: _row(t, p) is not None and t.loc[p, COST] == KEEPS_RETAIN)
            rows.append((f"{plugin} keeps retain accuracy", f"{k} of {n} cell(s)", f">= {majority}", k >= majority,
                         _count(cells, lambda t, p=plugin: _cost_undecided(t, p))))
    return pd.DataFrame(rows, columns=COLUMNS).set_index("claim")


def _no_greater_cost(table: pd.DataFrame, mine: str, theirs: str) -> bool:
    """`mine`'s retain drop is not decidedly above `theirs`' (its interval's lower end not above theirs' upper)."""
    if mine not in table.index or theirs not in table.index:
        return False
    return bool(table.loc[mine, low(RETAIN_DROP)] <= table.loc[theirs, high(RETAIN_DROP)])
