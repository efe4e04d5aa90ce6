"""The verdict of each method, from its figures against the population (`ecnb.verdicts.population`): how deep
its forgetting goes, what gives it away, what it cost, and whether the cell can tell at all.

A figure counts as evidence only where its interval stands clear of what models that never saw D_f show
among themselves (its *floor*). With `x` a figure, `[lo, hi]` its 95 % interval and `f` its floor:

**Depth**, from the two attack gaps (relearning, few-shot) and the cuts `ERASED_TOL` (0.1) and
`SUPERFICIAL_GAP` (0.3), each raised to the floor where the population's own spread is wider:

- a gap is *large* when `lo >= max(0.3, f)`: superficial-sized, and beyond the population;
- *small* when `hi <= max(0.1, f)`, or when it does not stand out from the population (`lo <= f`) and
  cannot be superficial (`hi < max(0.3, f)`): no more than models that never saw D_f show, to the
  cell's resolution;
- *mid* when `lo > max(0.1, f)` and `hi < max(0.3, f)`;
- otherwise its interval spans a cut: *undecided*.

*not forgotten* when the `forget_train` accuracy is more than `FORGET_TOL` above the population's mean
(and its largest); else *superficial* when a gap is large, *erased* when both are small, *partial* when
both are decided and one is mid, *undecided* otherwise (also when an attack was not measured).

**Tells and cost**, each one figure against one cut `c` raised to the floor (`c* = max(c, f)`): shown when
`lo >= c*`; absent when `hi < c*`, or when the figure does not stand out from the population (`lo <= f`: it
does not tell the model apart from those that never saw D_f); undecided otherwise. The output tell reads the
output distance (KS to the population's outputs on D_f) against `OUTPUT_TELL`; the over-resistance tell the
deepest dip of the relearning curve below the population's against `RESISTANCE_TELL`; the cost the retain
drop against `RETAIN_TOL`.

A method **succeeds** when it is erased, keeps retain and shows no tell, all three decided. Each retrained
model read against the others in the same way must come out so: the **null test**.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..results import is_member, is_reference
from .measured import CKA, FORGET, POPULATION_FORGET, POPULATION_FORGET_MAX, RESOLUTION
from .population import FEWSHOT_GAP, OUTPUT_DISTANCE, RELEARN_GAP, RESISTANCE, RETAIN_DROP, floor, high, low

FORGET_TOL = 0.05
RETAIN_TOL = 0.03
SUPERFICIAL_GAP = 0.3
ERASED_TOL = 0.1
OUTPUT_TELL = 0.5
# Raised from 0.3: on the validation tasks (digits 1, 2, 4, 7, 9, seeds 0 and 1, five retrained models each) a
# retrained model read against the others dips up to 0.33 below their relearning curve (scripts/null_test.py).
RESISTANCE_TELL = 0.4
# Thresholds are compared with a margin for float rounding: 0.7 - 0.4 is 0.29999999999999993 in binary.
EPS = 1e-9

DEPTH, COST, TELLS, VERDICT, SUCCEEDS = "depth", "cost", "tells", "verdict", "succeeds"
NOT_FORGOTTEN, SUPERFICIAL, PARTIAL, ERASED, UNDECIDED = "not forgotten", "superficial", "partial", "erased", "undecided"
DEPTHS = (NOT_FORGOTTEN, SUPERFICIAL, UNDECIDED, PARTIAL, ERASED)  # from worst to best
KEEPS_RETAIN, HURTS_RETAIN, COST_UNDECIDED = "keeps retain", "hurts retain", "retain cost undecided"
OUTPUT_TELL_NAME, RESISTANCE_TELL_NAME = "output tell", "over-resistance tell"
REFERENCE = "reference"
NULL_PASS = "null read passes"
# Each gap's reading: how it stands against the cuts.
LARGE, MID, SMALL = "large", "mid", "small"
SHOWN, ABSENT = True, False  # a tell's (or a cost's) decided states; None is undecided


def gap_level(value: float, lo: float, hi: float, floor_: float) -> str:
    """How one attack gap stands against the two cuts, its interval and the population's floor: `LARGE`,
    `MID`, `SMALL` or `UNDECIDED` (also for a gap that was not measured)."""
    if any(pd.isna(v) for v in (value, lo, hi)):
        return UNDECIDED
    erased_cut, superficial_cut = max(ERASED_TOL, floor_), max(SUPERFICIAL_GAP, floor_)
    if lo >= superficial_cut - EPS:
        return LARGE
    if hi <= erased_cut + EPS or (lo <= floor_ + EPS and hi < superficial_cut - EPS):
        return SMALL
    if lo > erased_cut + EPS and hi < superficial_cut - EPS:
        return MID
    return UNDECIDED


def beyond(lo: float, hi: float, cut: float, floor_: float) -> bool | None:
    """Whether a one-cut figure (a tell, a cost) decidedly reaches `cut` raised to its floor (True); decidedly
    falls short of it, or does not stand out from the population's own spread at all (False: it does not tell
    the model apart from one that never saw D_f); or stands out but its interval spans the cut (None)."""
    if pd.isna(lo) or pd.isna(hi):
        return None
    cut = max(cut, floor_)
    if lo >= cut - EPS:
        return True
    if hi < cut - EPS or lo <= floor_ + EPS:
        return False
    return None


def depth(row: pd.Series) -> str:
    """The depth of one method (a row of `ecnb.verdicts.evidence`'s table)."""
    forget_cut = max(FORGET_TOL, row[POPULATION_FORGET_MAX] - row[POPULATION_FORGET])
    if row[FORGET] - row[POPULATION_FORGET] > forget_cut + EPS:
        return NOT_FORGOTTEN
    levels = [gap_level(row[g], row[low(g)], row[high(g)], row[floor(g)]) for g in (RELEARN_GAP, FEWSHOT_GAP)]
    if LARGE in levels:
        return SUPERFICIAL
    if UNDECIDED in levels:
        return UNDECIDED
    return ERASED if levels == [SMALL, SMALL] else PARTIAL


def output_tell(row: pd.Series) -> bool | None:
    return beyond(row[low(OUTPUT_DISTANCE)], row[high(OUTPUT_DISTANCE)], OUTPUT_TELL, row[floor(OUTPUT_DISTANCE)])


def resistance_tell(row: pd.Series) -> bool | None:
    """The dip below the population's relearning curve, as a positive figure: -hi is its decided lower end."""
    return beyond(-row[high(RESISTANCE)], -row[low(RESISTANCE)], RESISTANCE_TELL, row[floor(RESISTANCE)])


def hurts_retain(row: pd.Series) -> bool | None:
    return beyond(row[low(RETAIN_DROP)], row[high(RETAIN_DROP)], RETAIN_TOL, row[floor(RETAIN_DROP)])


def cost(row: pd.Series) -> str:
    hurts = hurts_retain(row)
    if hurts is None:
        change = [0.0 if abs(v) < 0.005 else -v for v in (row[RETAIN_DROP], row[high(RETAIN_DROP)], row[low(RETAIN_DROP)])]
        return f"{COST_UNDECIDED} ({change[0]:+.2f} [{change[1]:+.2f}, {change[2]:+.2f}])"
    return f"{HURTS_RETAIN} (-{row[RETAIN_DROP]:.2f})" if hurts else KEEPS_RETAIN


def tells(row: pd.Series) -> str:
    """The tells shown, and those the cell cannot decide (marked `?`)."""
    parts = []
    for name, state in ((OUTPUT_TELL_NAME, output_tell(row)), (RESISTANCE_TELL_NAME, resistance_tell(row))):
        if state is None:
            parts.append(f"{name}?")
        elif state:
            parts.append(name)
    return ", ".join(parts)


def verdict_line(depth_: str, cost_: str, tells_: str, resolution: float | None = None) -> str:
    """`superficial, hurts retain (-0.04)` or `erased, keeps retain; output tell (resolution 0.21)`."""
    line = f"{depth_}, {cost_}" + (f"; {tells_}" if tells_ else "")
    return line + (f" (resolution {resolution:.2f})" if resolution is not None and not pd.isna(resolution) else "")


def judge(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (from `ecnb.verdicts.evidence`) with the three parts of each verdict, the verdict line, whether
    the method succeeds and, for the retrained models, whether their null read passes."""
    out = table.copy()
    rows = list(out.iterrows())
    out[DEPTH] = [depth(r) for _, r in rows]
    out[COST] = [cost(r) for _, r in rows]
    out[TELLS] = [tells(r) for _, r in rows]
    # True, False or None (undecided), kept as Python objects
    out[OUTPUT_TELL_NAME] = pd.Series([output_tell(r) for _, r in rows], index=out.index, dtype=object)
    out[RESISTANCE_TELL_NAME] = pd.Series([resistance_tell(r) for _, r in rows], index=out.index, dtype=object)
    out[SUCCEEDS] = (out[DEPTH] == ERASED) & (out[COST] == KEEPS_RETAIN) & (out[TELLS] == "")
    out[VERDICT] = [
        REFERENCE if m == "original" else
        f"{REFERENCE}; null read: {verdict_line(r[DEPTH], r[COST], r[TELLS])}" if is_member(m) else
        verdict_line(r[DEPTH], r[COST], r[TELLS], r[RESOLUTION]) for m, r in out.iterrows()]
    out[NULL_PASS] = [bool(s) if is_member(m) else np.nan for m, s in out[SUCCEEDS].items()]
    out.loc[[is_reference(m) for m in out.index], SUCCEEDS] = False
    return out


def null_test(table: pd.DataFrame) -> tuple[int, int]:
    """(how many retrained models pass their null read, how many were read) in a `judge` table."""
    reads = table[NULL_PASS].dropna()
    return int(reads.astype(bool).sum()), len(reads)


def keeps_retain(table: pd.DataFrame) -> pd.Series:
    """Which models of a `judge` table keep retain accuracy, decidedly (references included)."""
    return table[COST] == KEEPS_RETAIN


def cost_undecided(table: pd.DataFrame) -> pd.Series:
    """Which models of a `judge` table have a retain cost the cell cannot decide."""
    return table[COST].astype(str).str.startswith(COST_UNDECIDED)


def disagreements(table: pd.DataFrame) -> pd.DataFrame:
    """Methods whose accuracy is forgotten and for which CKA and the attacks disagree: mean intermediate CKA
    at or below `retrain`'s (by CKA alone, nothing left to find) yet superficial by the attacks, or CKA
    above `retrain`'s yet erased by the attacks. `table` is `judge`'s."""
    ref_cka = table.loc["retrain", CKA]
    rows = []
    for method, r in table[[not is_reference(m) for m in table.index]].iterrows():
        if r[DEPTH] == SUPERFICIAL and r[CKA] <= ref_cka:
            rows.append((method, r[CKA], ref_cka, "CKA at or below retrain's, yet the attacks bring the class back"))
        elif r[DEPTH] == ERASED and r[CKA] > ref_cka:
            rows.append((method, r[CKA], ref_cka, "CKA above retrain's, yet the attacks find no more than in retrain"))
    return pd.DataFrame(rows, columns=["method", CKA, "retrain's", "what disagrees"]).set_index("method")
