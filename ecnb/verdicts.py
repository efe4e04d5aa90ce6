"""The verdicts, in one place: how deep a method's forgetting goes, what gives it away, and what it cost.

Every verdict reads a method against `retrain` (the model that never saw D_f), on the same forget set, and
has three parts (docs/study.md, "Verdicts"):

- **depth**: *keeps the class* when its `forget_train` accuracy is more than `FORGET_TOL` above
  `retrain`'s; otherwise the accuracy is forgotten and the attacks decide. *Superficial* when the class
  comes back: the **relearning gap** (the largest difference, over the steps of the attack's grid,
  between the method's relearning accuracy and `retrain`'s at the same step) or the **few-shot gap** (the
  best few-shot probe over every tap minus `retrain`'s best) is at least `SUPERFICIAL_GAP`. *Erased* when
  both gaps are at most `ERASED_TOL`. *Partial* otherwise (and whenever an attack figure is missing, as
  for random-sample forgetting, which has no forgotten class to recover).
- **tells**, ways a model is told apart from one that never saw D_f even when no attack brings the class
  back: the *output tell* (`output_ks_to_retrain` on D_f of at least `OUTPUT_TELL`: its answers on the
  forgotten images are distributed unlike `retrain`'s) and the *over-resistance tell* (its relearning
  accuracy at least `RESISTANCE_TELL` below `retrain`'s at some step: it resists relearning far more than
  a model that never saw the class).
- **cost**: *keeps retain* when its `test_retain` accuracy is within `RETAIN_TOL` of `original`'s,
  otherwise *hurts retain*, with the drop.

A method **succeeds** when it is erased, keeps retain and shows no tell. Mean intermediate CKA to the
original stands beside the verdicts as supporting evidence, never as one: CKA cannot tell a class that
was removed from one that was moved, and `disagreements` names the methods where the two differ.

A *cell* is one forget set and one seed of one data set. The study's claims (`claims`, `variant_claims`)
are read over the cells of one data set; a cell that failed, or lacks a method a claim needs, counts as a
cell where the claim does not hold.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .results import REFERENCES, method_order, summarize

FORGET_TOL = 0.05
RETAIN_TOL = 0.03
SUPERFICIAL_GAP = 0.3
ERASED_TOL = 0.1
OUTPUT_TELL = 0.5
RESISTANCE_TELL = 0.3
# Thresholds are compared with a margin for float rounding: 0.7 - 0.4 is 0.29999999999999993 in binary.
EPS = 1e-9

# The evidence (`evidence`), per method.
FORGET = "forget_train acc"
RETAIN = "test_retain acc"
TEST_FORGET = "test_forget acc"
CKA = "mean intermediate CKA to original (forget_train)"
FEWSHOT = "best few-shot probe, any tap (test_forget)"
FULL_PROBE = "best full-data probe, any tap (test_forget)"
OUTPUT_KS = "output KS to retrain (forget_train)"
ENTROPY = "output entropy (forget_train)"
MIA = "MIA efficacy (forget_train)"
WEIGHTS = "weight distance to original"
N_TEST_FORGET = "test_forget images"
RELEARN = "relearn@"  # prefix of one column per step of the attack's grid: relearn@0, relearn@5, ...

# What `judge` adds.
RELEARN_GAP = "relearning gap"
RELEARN_GAP_STEP = "relearning gap at step"
RESISTANCE = "lowest relearn difference"
FEWSHOT_GAP = "few-shot gap"
RETAIN_DROP = "retain drop"
DEPTH, COST, TELLS, VERDICT, SUCCEEDS = "depth", "cost", "tells", "verdict", "succeeds"

KEEPS, SUPERFICIAL, PARTIAL, ERASED = "keeps the class", "superficial", "partial", "erased"
DEPTHS = (KEEPS, SUPERFICIAL, PARTIAL, ERASED)  # from worst to best
KEEPS_RETAIN, HURTS_RETAIN = "keeps retain", "hurts retain"
OUTPUT_TELL_NAME, RESISTANCE_TELL_NAME = "output tell", "over-resistance tell"
REFERENCE = "reference"


def relearn_columns(table: pd.DataFrame) -> list[str]:
    """The relearning curve's columns of an evidence table, in step order."""
    return sorted((c for c in table.columns if c.startswith(RELEARN)), key=lambda c: int(c[len(RELEARN):]))


def taps_of(results: pd.DataFrame) -> list[str]:
    """The model's taps in network order, as the CKA rows were written (`layer` of `cka_to_original`)."""
    return list(dict.fromkeys(results.loc[results["metric"] == "cka_to_original", "layer"]))


def evidence(results: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """Per method (rows, references first): the figures the verdicts read, for one seed (or the mean over
    the seeds present). "Intermediate" layers are all taps but the last; the probes read every tap."""
    df = results if seed is None else results[results["seed"] == seed]

    def whole(metric: str, split: str) -> pd.Series:
        rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] == "")]
        return rows.groupby("method", sort=False)["value"].mean()

    def per_layer(metric: str, split: str, how: str, layers: list[str] | None = None) -> pd.Series:
        rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] != "")]
        if layers is not None:
            rows = rows[rows["layer"].isin(layers)]
        per_seed = rows.groupby(["method", "seed"], sort=False)["value"].agg(how)
        return per_seed.groupby(level="method", sort=False).mean()

    relearn = df[(df["metric"] == "relearn_accuracy") & (df["split"] == "test_forget")]
    curve = relearn.groupby(["method", "layer"], sort=False)["value"].mean().unstack("layer")
    curve.columns = [RELEARN + c.removeprefix("step") for c in curve.columns]
    table = pd.DataFrame({
        FORGET: whole("accuracy", "forget_train"),
        RETAIN: whole("accuracy", "test_retain"),
        TEST_FORGET: whole("accuracy", "test_forget"),
        CKA: per_layer("cka_to_original", "forget_train", "mean", taps_of(df)[:-1]),
        FEWSHOT: per_layer("fewshot_probe_accuracy", "test_forget", "max"),
        FULL_PROBE: per_layer("probe_accuracy", "test_forget", "max"),
        OUTPUT_KS: whole("output_ks_to_retrain", "forget_train"),
        ENTROPY: whole("output_entropy", "forget_train"),
        MIA: whole("mia_efficacy", "forget_train"),
        WEIGHTS: df[(df["metric"] == "weight_distance") & (df["layer"] == "")].groupby("method", sort=False)["value"].mean(),
        N_TEST_FORGET: whole("split_size", "test_forget"),
    }).join(curve)
    table = table.reindex(method_order(df["method"]))
    return table[[*[c for c in table.columns if not c.startswith(RELEARN)], *relearn_columns(table)]]


def relearn_differences(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's relearning accuracy minus `retrain`'s, step by step (steps as columns)."""
    columns = relearn_columns(table)
    return table[columns] - table.loc["retrain", columns]


def judge(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (from `evidence`) with the gaps, the tells, the three parts of each verdict, the verdict line
    and whether the method succeeds, as columns."""
    if not set(REFERENCES) <= set(table.index):
        raise ValueError("the verdicts read every method against `original` and `retrain`: both must be measured")
    ref, orig = table.loc["retrain"], table.loc["original"]
    out = table.copy()
    diffs = relearn_differences(table)
    has_curve = diffs.notna().all(axis=1) & (diffs.shape[1] > 0)
    out[RELEARN_GAP] = diffs.max(axis=1).where(has_curve)
    out[RELEARN_GAP_STEP] = diffs.idxmax(axis=1).where(has_curve).str.removeprefix(RELEARN) if len(diffs.columns) else np.nan
    out[RESISTANCE] = diffs.min(axis=1).where(has_curve)
    out[FEWSHOT_GAP] = table[FEWSHOT] - ref[FEWSHOT]
    out[RETAIN_DROP] = orig[RETAIN] - table[RETAIN]
    out[OUTPUT_TELL_NAME] = table[OUTPUT_KS] >= OUTPUT_TELL - EPS
    out[RESISTANCE_TELL_NAME] = out[RESISTANCE] <= -RESISTANCE_TELL + EPS

    def depth(r: pd.Series) -> str:
        if r[FORGET] - ref[FORGET] > FORGET_TOL + EPS:
            return KEEPS
        gaps = (r[RELEARN_GAP], r[FEWSHOT_GAP])
        if any(g >= SUPERFICIAL_GAP - EPS for g in gaps if not pd.isna(g)):
            return SUPERFICIAL
        if not any(pd.isna(g) for g in gaps) and all(g <= ERASED_TOL + EPS for g in gaps):
            return ERASED
        return PARTIAL

    keeps = keeps_retain(out)

    def cost(m: str, r: pd.Series) -> str:
        return KEEPS_RETAIN if keeps[m] else f"{HURTS_RETAIN} (-{r[RETAIN_DROP]:.2f})"

    def tells(r: pd.Series) -> str:
        return ", ".join(name for name in (OUTPUT_TELL_NAME, RESISTANCE_TELL_NAME) if r[name])

    out[DEPTH] = [REFERENCE if m in REFERENCES else depth(r) for m, r in out.iterrows()]
    out[COST] = [REFERENCE if m in REFERENCES else cost(m, r) for m, r in out.iterrows()]
    out[TELLS] = [REFERENCE if m in REFERENCES else tells(r) for m, r in out.iterrows()]
    out[VERDICT] = [REFERENCE if m in REFERENCES else verdict_line(r[DEPTH], r[COST], r[TELLS])
                    for m, r in out.iterrows()]
    out[SUCCEEDS] = (out[DEPTH] == ERASED) & (out[COST] == KEEPS_RETAIN) & (out[TELLS] == "")
    return out


def verdict_line(depth: str, cost: str, tells: str) -> str:
    """`superficial, hurts retain (-0.04)` or `erased, keeps retain; output tell`."""
    return f"{depth}, {cost}" + (f"; {tells}" if tells else "")


def keeps_retain(table: pd.DataFrame) -> pd.Series:
    """Which methods of a `judge` table keep retain accuracy (references included)."""
    return table[RETAIN_DROP] <= RETAIN_TOL + EPS


def verdicts_by_seed(results: pd.DataFrame) -> pd.DataFrame:
    """method x seed table of verdict lines (each seed is its own cell)."""
    columns = {seed: judge(evidence(results, seed))[VERDICT] for seed in sorted(set(results["seed"]))}
    return pd.DataFrame(columns).reindex(method_order(results["method"]))


def verdict_summary(results: pd.DataFrame) -> pd.Series:
    """One line per method: its verdict, or with several seeds how many seeds gave each verdict."""
    by_seed = verdicts_by_seed(results)

    def line(row: pd.Series) -> str:
        counts = row.dropna().value_counts()
        if len(counts) == 1:
            return counts.index[0]
        return "; ".join(f"{v} ({n}/{int(counts.sum())})" for v, n in counts.items())

    return by_seed.apply(line, axis=1).rename(VERDICT)


def disagreements(table: pd.DataFrame) -> pd.DataFrame:
    """Methods whose accuracy is forgotten and for which CKA and the attacks disagree: mean intermediate CKA
    at or below `retrain`'s (by CKA alone, nothing left to find) yet superficial by the attacks, or CKA
    above `retrain`'s yet erased by the attacks. `table` is `judge`'s."""
    ref_cka = table.loc["retrain", CKA]
    rows = []
    for method, r in table.drop(index=[m for m in REFERENCES if m in table.index]).iterrows():
        if r[DEPTH] == SUPERFICIAL and r[CKA] <= ref_cka:
            rows.append((method, r[CKA], ref_cka, "CKA at or below retrain's, yet the attacks bring the class back"))
        elif r[DEPTH] == ERASED and r[CKA] > ref_cka:
            rows.append((method, r[CKA], ref_cka, "CKA above retrain's, yet the attacks find no more than in retrain"))
    return pd.DataFrame(rows, columns=["method", CKA, "retrain's", "what disagrees"]).set_index("method")


# ----------------------------------------------------------------------------- claims over cells

Cells = Mapping[str, "pd.DataFrame | None"]  # cell name -> `judge` table, None for a cell that failed


def _row(table: pd.DataFrame | None, method: str) -> pd.Series | None:
    return table.loc[method] if table is not None and method in table.index else None


def _count(cells: Cells, holds: Callable[[pd.DataFrame], bool]) -> int:
    return sum(bool(holds(t)) for t in cells.values() if t is not None)


def _majority(n: int) -> int:
    return n // 2 + 1


def claims(cells: Cells, baselines: Sequence[str], plugin_bases: Sequence[str] | None = None, ec: str = "ec") -> pd.DataFrame:
    """The study's claims over the cells of one data set, each a row with what was measured, the target and
    whether it holds: over `baselines`, and for the plug-ins of `plugin_bases` (default: every baseline). A
    failed cell (None) or a cell without a method a claim needs counts against it."""
    n = len(cells)
    majority = _majority(n)
    rows: list[tuple[str, str, str, bool]] = []

    def depth(t: pd.DataFrame | None, method: str) -> str | None:
        r = _row(t, method)
        return None if r is None else r[DEPTH]

    superficial = [b for b in baselines if _count(cells, lambda t, b=b: depth(t, b) == SUPERFICIAL) >= majority]
    rows.append(("at least two baselines are superficial in a majority of the cells",
                 ", ".join(superficial) or "none",
                 f">= 2 of {len(baselines)} baselines, each in >= {majority} of {n} cell(s)", len(superficial) >= 2))

    def forgets_and_keeps(t: pd.DataFrame) -> bool:
        r = _row(t, ec)
        return r is not None and r[DEPTH] != KEEPS and r[COST] == KEEPS_RETAIN

    k = _count(cells, forgets_and_keeps)
    rows.append((f"{ec} forgets at the output and keeps retain accuracy", f"{k} of {n} cell(s)", f">= {majority}",
                 k >= majority))

    def below_useful(t: pd.DataFrame) -> bool:
        useful = [b for b in baselines if b in t.index and keeps_retain(t)[b]]
        return ec in t.index and bool(useful) and bool(t.loc[ec, CKA] < t.loc[useful, CKA].min())

    k = _count(cells, below_useful)
    rows.append((f"{ec}'s mean intermediate CKA is below every baseline that keeps retain accuracy",
                 f"{k} of {n} cell(s)", f">= {majority}", k >= majority))

    plugin_bases = list(baselines if plugin_bases is None else plugin_bases)
    for b in plugin_bases:
        plugin = f"{b}+ec"
        pairs = [(t.loc[plugin, CKA], t.loc[b, CKA]) for t in cells.values()
                 if t is not None and {b, plugin} <= set(t.index)]
        complete = len(pairs) == n
        mean_plugin, mean_base = (float(np.mean([p[i] for p in pairs])) if complete else np.nan for i in (0, 1))
        rows.append((f"{plugin}'s mean intermediate CKA (mean over cells) is below {b}'s",
                     _number(mean_plugin), f"< {_number(mean_base)}", bool(complete and mean_plugin < mean_base)))

    for method in [ec, *(f"{b}+ec" for b in plugin_bases)]:
        k = _count(cells, lambda t, m=method: depth(t, m) == ERASED)
        rows.append((f"{method} is erased (reported as measured)", f"{k} of {n} cell(s)", f">= {majority}",
                     k >= majority))
    return pd.DataFrame(rows, columns=["claim", "measured", "target", "holds"]).set_index("claim")


def _number(value: float) -> str:
    return "missing" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def attack_distances(table: pd.DataFrame) -> pd.DataFrame:
    """How far each method of a `judge` table is from `retrain` on each attack, from either side: the
    relearning distance (the largest |difference| over the grid's steps, so resisting far more than
    `retrain` counts as much as relearning far faster) and the few-shot distance (|few-shot gap|)."""
    return pd.DataFrame({"relearning": relearn_differences(table).abs().max(axis=1, skipna=False),
                         "few-shot": table[FEWSHOT_GAP].abs()})


def attack_distance(table: pd.DataFrame) -> pd.Series:
    """The two distances of `attack_distances`, summed: 0 for `retrain`, at most 2 x ERASED_TOL for a
    method erased without the over-resistance tell."""
    return attack_distances(table).sum(axis=1, skipna=False)


def _mean_over_cells(cells: Cells, method: str, per_cell: Callable[[pd.DataFrame], pd.Series]) -> float:
    """The mean over the cells of `per_cell(table)[method]`; NaN when a cell failed or lacks the method."""
    values = []
    for t in cells.values():
        if t is None or method not in t.index:
            return np.nan
        values.append(per_cell(t)[method])
    return float(np.mean(values)) if values else np.nan


def variant_claims(cells: Cells, baselines: Sequence[str], variants: Sequence[str],
                   anchors: Sequence[str] = ()) -> pd.DataFrame:
    """The claims beyond the paper, for each EC variant over the cells of one data set: it succeeds in a
    majority of the cells; on each attack (mean distance to `retrain` over the cells, `attack_distances`)
    it is nearer `retrain` than each anchor (the tamper-resistant baselines) at no greater retain cost; and
    each plug-in B+variant is nearer `retrain` on the attacks (`attack_distance`) than B and than B+ec,
    and keeps retain accuracy in a majority of the cells. A comparison with a method missing from a cell
    does not hold."""
    n = len(cells)
    majority = _majority(n)
    rows: list[tuple[str, str, str, bool]] = []

    def nearer(claim: str, mine: float, theirs: float) -> None:
        rows.append((claim, _number(mine), f"< {_number(theirs)}", bool(mine < theirs)))

    for variant in variants:
        k = _count(cells, lambda t, v=variant: _row(t, v) is not None and bool(t.loc[v, SUCCEEDS]))
        rows.append((f"{variant} succeeds (erased, keeps retain, no tell)", f"{k} of {n} cell(s)", f">= {majority}",
                     k >= majority))
        for anchor in anchors:
            for attack in ("relearning", "few-shot"):
                mine, theirs = (_mean_over_cells(cells, m, lambda t, a=attack: attack_distances(t)[a])
                                for m in (variant, anchor))
                nearer(f"{variant} is nearer retrain than {anchor} on the {attack} attack (mean distance over cells)",
                       mine, theirs)
            mine, theirs = (_mean_over_cells(cells, m, lambda t: t[RETAIN_DROP]) for m in (variant, anchor))
            rows.append((f"{variant} costs no more retain accuracy than {anchor} (mean drop over cells)",
                         _number(mine), f"<= {_number(theirs)}", bool(mine <= theirs + EPS)))
        for b in baselines:
            plugin = f"{b}+{variant}"
            for other in (b, f"{b}+ec"):
                nearer(f"{plugin} is nearer retrain on the attacks than {other} (mean over cells)",
                       *(_mean_over_cells(cells, m, attack_distance) for m in (plugin, other)))
            k = _count(cells, lambda t, p=plugin: _row(t, p) is not None and bool(keeps_retain(t)[p]))
            rows.append((f"{plugin} keeps retain accuracy", f"{k} of {n} cell(s)", f">= {majority}", k >= majority))
    return pd.DataFrame(rows, columns=["claim", "measured", "target", "holds"]).set_index("claim")


# ----------------------------------------------------------------------------- the printed summary


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


SUMMARY_COLUMNS = {
    FORGET: "forget_train", RETAIN: "test_retain", TEST_FORGET: "test_forget [95% CI]",
    RELEARN_GAP: "relearning gap", "relearn at gap": "relearn at its step [95% CI]",
    FEWSHOT_GAP: "few-shot gap", FEWSHOT: "best few-shot [95% CI]", OUTPUT_KS: "output KS", ENTROPY: "entropy",
    MIA: "MIA", CKA: "mean int. CKA", WEIGHTS: "weight dist.",
}


def summary(results: pd.DataFrame, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """The run's summary: per method the figures the verdict rests on and the verdict line. One seed: each
    accuracy on `test_forget` with its Wilson 95 % interval; several: mean ± std over the seeds, and how
    many seeds gave each verdict. Without `original` and `retrain` measured, the whole-model metrics only."""
    if seeds is not None:
        results = results[results["seed"].isin(list(seeds))]
    if results.empty or not set(REFERENCES) <= set(results["method"]) or not taps_of(results):
        return summarize(results)
    judged = {s: judge(evidence(results, s)) for s in sorted(set(results["seed"]))}
    for t in judged.values():
        steps = t[RELEARN_GAP_STEP]
        t["relearn at gap"] = [t.loc[m, RELEARN + s] if isinstance(s, str) else np.nan for m, s in steps.items()]
    order = method_order(results["method"])
    table = pd.DataFrame(index=order)
    if len(judged) == 1:
        (t,) = judged.values()
        n = t.loc["original", N_TEST_FORGET]
        for column, name in SUMMARY_COLUMNS.items():
            if column in (TEST_FORGET, "relearn at gap", FEWSHOT):
                table[name] = [with_interval(v, n) for v in t[column].reindex(order)]
            else:
                table[name] = [_fmt(v) for v in t[column].reindex(order)]
        gap = SUMMARY_COLUMNS[RELEARN_GAP]
        table[gap] = [g if pd.isna(s) else f"{g} (step {s})" for g, s in zip(table[gap], t[RELEARN_GAP_STEP].reindex(order))]
    else:
        stacked = pd.concat(judged)
        for column, name in SUMMARY_COLUMNS.items():
            stats = stacked[column].astype(float).groupby(level=1, sort=False).agg(["mean", "std"])
            table[name] = [_fmt(r["mean"], r["std"]) for _, r in stats.reindex(order).iterrows()]
    table[VERDICT] = verdict_summary(results).reindex(order).fillna("")
    return table


def _fmt(value: float, std: float | None = None) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.3f}" if std is None or pd.isna(std) else f"{value:.3f} ± {std:.3f}"


# ----------------------------------------------------------------------------- prose


class Prose(str):
    """A paragraph of Markdown that a notebook renders as text (and a terminal prints as is)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def describe(table: pd.DataFrame) -> Prose:
    """What this run shows, in words, from a `judge` table: each depth with its methods and the two gaps that
    decided it, then the tells, the cost and where CKA and the attacks disagree."""
    ref = table.loc["retrain"]
    methods = [m for m in table.index if m not in REFERENCES]
    lines = [f"`retrain` (never saw the class) is the yardstick: best few-shot probe **{ref[FEWSHOT]:.2f}**, "
             f"mean intermediate CKA to the original **{ref[CKA]:.3f}**, mean output entropy on D_f "
             f"**{ref[ENTROPY]:.2f}**."]
    for depth in reversed(DEPTHS):
        chosen = [m for m in methods if table.loc[m, DEPTH] == depth]
        if chosen:
            figures = ", ".join(f"`{m}` ({_gap(table.loc[m, RELEARN_GAP])} / {_gap(table.loc[m, FEWSHOT_GAP])})"
                                for m in chosen)
            lines.append(f"- **{depth}**: {figures}")
    lines.append("\n(relearning gap / few-shot gap, each against `retrain`: superficial from "
                 f"{SUPERFICIAL_GAP}, erased up to {ERASED_TOL})")
    for tell, what in ((OUTPUT_TELL_NAME, f"output KS >= {OUTPUT_TELL}: answers on D_f unlike `retrain`'s"),
                       (RESISTANCE_TELL_NAME, f"{RESISTANCE_TELL} or more below `retrain`'s relearning curve at some step")):
        told = [f"`{m}`" for m in methods if table.loc[m, tell]]
        if told:
            lines.append(f"\n**{tell}** ({what}): {', '.join(told)}.")
    hurt = [f"`{m}` (-{table.loc[m, RETAIN_DROP]:.2f})" for m in methods if not keeps_retain(table)[m]]
    lines.append("\n**Hurts retain accuracy** (more than "
                 f"{RETAIN_TOL} below `original`): {', '.join(hurt)}." if hurt else
                 "\nEvery method keeps retain accuracy within "
                 f"{RETAIN_TOL} of `original`'s.")
    winners = [f"`{m}`" for m in methods if table.loc[m, SUCCEEDS]]
    lines.append(f"\n**Succeeds** (erased, keeps retain, no tell): {', '.join(winners)}." if winners else
                 "\nNo method succeeds (erased, keeps retain, no tell) on this run.")
    odd = disagreements(table)
    if len(odd):
        lines.append("\nCKA and the attacks disagree on: " + "; ".join(
            f"`{m}` ({r['what disagrees']})" for m, r in odd.iterrows()) + ".")
    else:
        lines.append("\nCKA and the attacks tell the same story for every method here.")
    return Prose("\n".join(lines))


def _gap(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.2f}"
