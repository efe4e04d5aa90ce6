"""The run's summary table and its reading in words: each method's verdict with the gaps it rests on, each
gap with its 95 % interval, and the null test of the retrained models."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..artifacts import Run
from ..results import is_reference, method_order
from .measured import CKA, FORGET, POPULATION_SIZE, RESOLUTION, RETAIN, TEST_FORGET, read_evidence
from .population import (FEWSHOT_CENTRE, FEWSHOT_GAP, OUTPUT_DISTANCE, RELEARN_CENTRE, RELEARN_GAP, RELEARN_GAP_STEP, RETAIN_DROP,
                         floor, high, low)
from .rules import (DEPTH, DEPTHS, ERASED_TOL, OUTPUT_TELL, OUTPUT_TELL_NAME, RESISTANCE_TELL, RESISTANCE_TELL_NAME,
                    RETAIN_TOL, SUCCEEDS, SUPERFICIAL_GAP, UNDECIDED, VERDICT, disagreements, judge, null_test)

# A notebook shows these tables whole: pandas cuts a cell at 50 characters by default, which left verdicts and the
# claims' lists of methods ending in "..." (in JupyterLab and in the report alike).
pd.set_option("display.max_colwidth", None)


def judge_run(run: Run, seed: int, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """The `judge` table of one seed of a run: `original`, its retrained population and `methods` (default:
    every method measured), each read against the population."""
    return judge(read_evidence(run, seed, methods))


def wilson_interval(p: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a proportion `p` measured on `n` samples: the range a
    reader needs to see before calling two accuracies on a few dozen test images different."""
    if not n or pd.isna(p) or pd.isna(n):
        return (np.nan, np.nan)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def with_interval(p: float, n: float) -> str:
    """`0.80 [0.66, 0.89]`: an accuracy on n test images with its Wilson 95 % interval."""
    if pd.isna(p):
        return ""
    lo, hi = wilson_interval(p, n)
    return f"{p:.2f}" if pd.isna(lo) else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def figure_text(row: pd.Series, figure: str, signed: bool = True) -> str:
    """`+0.95 [+0.85, +1.00]`: a figure of a `judge` row with its 95 % interval."""
    value, lo, hi = row[figure], row[low(figure)], row[high(figure)]
    if pd.isna(value):
        return "n/a"

    def fmt(v: float) -> str:  # a value that rounds to zero is printed as +0.00, never -0.00
        v = 0.0 if abs(v) < 0.005 else v
        return f"{v:+.2f}" if signed else f"{v:.2f}"

    return fmt(value) if pd.isna(lo) else f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


SUMMARY_COLUMNS = {
    FORGET: "forget_train accuracy", RETAIN: "test_retain accuracy", TEST_FORGET: "test_forget accuracy [95% CI]",
    RELEARN_GAP: "relearning gap [95% CI]: method vs retrained", FEWSHOT_GAP: "few-shot gap [95% CI]: method vs retrained",
    OUTPUT_DISTANCE: "output distance [95% CI]", CKA: "mean int. CKA",
}
SUCCEEDS_MARK = "✓"


def _relearn_text(row: pd.Series) -> str:
    """`+0.84 [+0.72, +0.94]: 0.87 vs 0.03 at step 20`: the gap, and the two values it was taken between."""
    text = figure_text(row, RELEARN_GAP)
    if pd.isna(row[RELEARN_GAP_STEP]):
        return text
    step = int(row[RELEARN_GAP_STEP])
    theirs = row[f"{RELEARN_CENTRE}{step}"]
    return f"{text}: {theirs + row[RELEARN_GAP]:.2f} vs {theirs:.2f} at step {step}"


def _fewshot_text(row: pd.Series) -> str:
    """`+0.16 [+0.07, +0.25]: 0.86 vs 0.70`: the gap, the method's best few-shot probe and the retrained models'."""
    text = figure_text(row, FEWSHOT_GAP)
    theirs = row[FEWSHOT_CENTRE]
    return text if pd.isna(row[FEWSHOT_GAP]) else f"{text}: {theirs + row[FEWSHOT_GAP]:.2f} vs {theirs:.2f}"


def summary(judged: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """The run's summary from its `judge` tables per seed: per model the figures its verdict rests on, then the
    verdict. One seed: each gap with its 95 % interval (against the retrained population) and the relearning
    gap's step; several: mean ± std over the seeds, and how many seeds gave each verdict."""
    if not judged:
        return pd.DataFrame()
    order = method_order([m for t in judged.values() for m in t.index])
    table = pd.DataFrame(index=order)
    if len(judged) == 1:
        (t,) = judged.values()
        t = t.reindex(order)
        n = t.loc["original", "test_forget images"]
        table[SUMMARY_COLUMNS[FORGET]] = [_fmt(v) for v in t[FORGET]]
        table[SUMMARY_COLUMNS[RETAIN]] = [_fmt(v) for v in t[RETAIN]]
        table[SUMMARY_COLUMNS[TEST_FORGET]] = [with_interval(v, n) for v in t[TEST_FORGET]]
        table[SUMMARY_COLUMNS[RELEARN_GAP]] = [_relearn_text(r) for _, r in t.iterrows()]
        table[SUMMARY_COLUMNS[FEWSHOT_GAP]] = [_fewshot_text(r) for _, r in t.iterrows()]
        table[SUMMARY_COLUMNS[OUTPUT_DISTANCE]] = [figure_text(r, OUTPUT_DISTANCE, signed=False) for _, r in t.iterrows()]
        table[SUMMARY_COLUMNS[CKA]] = [_fmt(v) for v in t[CKA]]
        table[VERDICT] = t[VERDICT].fillna("")
        table[SUCCEEDS] = [SUCCEEDS_MARK if bool(s) else "" for s in t[SUCCEEDS].fillna(False)]
        return table
    stacked = pd.concat(judged)
    for column, name in SUMMARY_COLUMNS.items():
        stats = stacked[column].astype(float).groupby(level=1, sort=False).agg(["mean", "std"])
        table[name] = [_fmt(r["mean"], r["std"]) for _, r in stats.reindex(order).iterrows()]
    table[VERDICT] = verdict_summary(judged).reindex(order).fillna("")
    table[SUCCEEDS] = [f"{k}/{len(judged)}" if k else "" for k in
                       stacked[SUCCEEDS].astype(bool).groupby(level=1, sort=False).sum().reindex(order).fillna(0).astype(int)]
    return table


def summary_key(judged: Mapping[int, pd.DataFrame]) -> str:
    """What the summary's columns mean, and the null test and resolution of each seed: printed under the
    table and shown in the report."""
    lines = ["Gaps are taken against the mean of the retrained models (the population); [95% CI] resamples the test "
             "images and the attacker's draws, and a gap counts only beyond the population's own spread (each retrained "
             "model against the others). relearning gap: the largest difference to the "
             "population's relearning curve (@ the step); few-shot gap: the best layer's few-shot probe minus the "
             f"population's; output distance: KS distance of the answers on D_f to the population's. Depth: "
             f"superficial when a gap is decidedly >= {SUPERFICIAL_GAP}, erased when both are <= {ERASED_TOL} or within "
             "the population's own spread, undecided when an interval spans a cut. Tells: output distance >= "
             f"{OUTPUT_TELL}; relearning >= {RESISTANCE_TELL} below the population ('?': undecided). Cost: test_retain "
             f"accuracy more than {RETAIN_TOL} below original's; in 'hurts retain (-0.20)' the figure is test_retain "
             "accuracy minus original's. mean int. CKA: the mean CKA to original over the intermediate layers, on "
             "D_f's images (1: unchanged). null read: a retrained model read as a method against the others (it "
             "should read erased, keeps retain, no tell). (resolution r): the cell's resolution, below. succeeds: "
             "erased, keeps retain, no tell."]
    for seed, t in judged.items():
        passed, read = null_test(t)
        size = int(t[POPULATION_SIZE].iloc[0]) if POPULATION_SIZE in t else 0
        null = (f"null test: {passed} of {read} retrained models read as erased, keeps retain, no tell" if read
                else "null test: needs at least two retrained models")
        lines.append(f"seed {seed}: {size} retrained models; {null}; resolution (smallest attack gap this cell can "
                     f"tell from the population's own spread): {_fmt(t[RESOLUTION].iloc[0], digits=2)}")
    return "\n".join(lines)


def verdicts_by_seed(judged: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """method x seed table of verdict lines (each seed is its own cell)."""
    order = method_order([m for t in judged.values() for m in t.index])
    return pd.DataFrame({seed: t[VERDICT] for seed, t in judged.items()}).reindex(order)


def verdict_summary(judged: Mapping[int, pd.DataFrame]) -> pd.Series:
    """One line per method: its verdict, or with several seeds how many seeds gave each verdict (the
    resolution left out, so that equal verdicts count together)."""
    by_seed = verdicts_by_seed(judged).apply(lambda col: col.str.replace(r" \(resolution [0-9.]+\)$", "", regex=True))

    def line(row: pd.Series) -> str:
        counts = row.dropna().value_counts()
        if len(counts) == 1:
            return counts.index[0]
        return "; ".join(f"{v} ({n}/{int(counts.sum())})" for v, n in counts.items())

    return by_seed.apply(line, axis=1).rename(VERDICT)


def _fmt(value: float, std: float | None = None, digits: int = 3) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.{digits}f}" if std is None or pd.isna(std) else f"{value:.{digits}f} ± {std:.{digits}f}"


class Prose(str):
    """A paragraph of Markdown that a notebook renders as text (and a terminal prints as is)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def describe(table: pd.DataFrame) -> Prose:
    """What this run shows, in words, from a `judge` table: the population the verdicts are read against and
    its null test, each depth with its methods and the two gaps (with their intervals) that decided it, then
    the tells, the cost and where CKA and the attacks disagree."""
    methods = [m for m in table.index if not is_reference(m)]
    passed, read = null_test(table)
    size = int(table[POPULATION_SIZE].iloc[0])
    lines = [f"Every verdict is read against **{size} retrained models** (models that never saw the class): their "
             f"best few-shot probe averages **{table[FEWSHOT_CENTRE].iloc[0]:.2f}**. "
             + (f"Read against each other, **{passed} of {read}** come out *erased, keeps retain, no tell* (the null "
                "test: how often the verdicts would accuse a model that never saw the class). " if read else "")
             + f"A gap this cell can tell from their own spread is at least **{table[RESOLUTION].iloc[0]:.2f}** "
             "(its resolution)."]
    for depth in reversed(DEPTHS):
        chosen = [m for m in methods if table.loc[m, DEPTH] == depth]
        if chosen:
            figures = ", ".join(f"`{m}` ({figure_text(table.loc[m], RELEARN_GAP)} / {figure_text(table.loc[m], FEWSHOT_GAP)})"
                                for m in chosen)
            lines.append(f"- **{depth}**: {figures}")
    lines.append("\n(relearning gap / few-shot gap against the retrained models, with 95% intervals: superficial "
                 f"when one is decidedly {SUPERFICIAL_GAP} or more; erased when both are at most {ERASED_TOL} or no "
                 f"larger than the retrained models' own spread; {UNDECIDED} when an interval spans a cut)")
    for tell, what in ((OUTPUT_TELL_NAME, f"output distance decidedly >= {OUTPUT_TELL}: answers on D_f unlike the "
                        "retrained models'"), (RESISTANCE_TELL_NAME, f"decidedly {RESISTANCE_TELL} or more below the "
                                               "retrained models' relearning curve at some step")):
        told = [f"`{m}`" for m in methods if table.loc[m, tell] is True]
        unsure = [f"`{m}`" for m in methods if table.loc[m, tell] is None]
        if told or unsure:
            lines.append(f"\n**{tell}** ({what}): {', '.join(told) or 'none'}"
                         + (f"; undecided for {', '.join(unsure)}" if unsure else "") + ".")
    hurt = [f"`{m}` (-{table.loc[m, RETAIN_DROP]:.2f})" for m in methods if table.loc[m, "cost"].startswith("hurts")]
    unsure = [f"`{m}`" for m in methods if table.loc[m, "cost"].startswith("retain cost undecided")]
    lines.append(f"\n**Hurts retain accuracy** (decidedly more than {max(RETAIN_TOL, table[floor(RETAIN_DROP)].iloc[0]):.2f} "
                 f"below `original`): {', '.join(hurt) or 'none'}" + (f"; undecided for {', '.join(unsure)}" if unsure else "")
                 + ".")
    winners = [f"`{m}`" for m in methods if table.loc[m, SUCCEEDS]]
    lines.append(f"\n**Succeeds** (erased, keeps retain, no tell): {', '.join(winners)}." if winners else
                 "\nNo method succeeds (erased, keeps retain, no tell, each decided) on this run.")
    odd = disagreements(table)
    if len(odd):
        lines.append("\nCKA and the attacks disagree on: " + "; ".join(
            f"`{m}` ({r['what disagrees']})" for m, r in odd.iterrows()) + ".")
    else:
        lines.append("\nCKA and the attacks tell the same story for every method here.")
    return Prose("\n".join(lines))

