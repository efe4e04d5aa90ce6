"""The verdicts of STUDY.md section 7, in one place: is a method's forgetting superficial or real?

Every verdict compares a method with `retrain` (never with a fixed threshold), on the same forget set:

- *forgets at the output*: `forget_train` accuracy within `FORGET_TOL` of `retrain`'s, and
  `test_retain` accuracy within `RETAIN_TOL` of `original`'s (wrecking the network is not forgetting);
- *superficial*: forgets at the output, yet an attack brings the class back: the relearning attack's
  accuracy at the reference step, or the best intermediate few-shot probe, exceeds `retrain`'s by at
  least `SUPERFICIAL_GAP`;
- *erased*: forgets at the output, and both attacks are within `ERASED_TOL` of `retrain`.

Mean intermediate CKA to the original is reported beside them as supporting evidence, never as the
verdict: CKA cannot tell a class that was removed from one that was moved (section 8), and
`disagreements` lists the methods for which CKA and the attacks tell different stories.

A *cell* is one forget set (one run, one seed). The study's claims (`claims`) are read over cells:
superficial forgetting shows when at least two baselines are superficial in a majority of the cells;
EC's claims likewise, and the plug-in criterion on CKA averaged over the cells.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .results import REFERENCES, method_order, summarize

FORGET_TOL = 0.05
RETAIN_TOL = 0.03
SUPERFICIAL_GAP = 0.3
ERASED_TOL = 0.1
# Thresholds are compared with a margin for float rounding: 0.7 - 0.4 is 0.29999999999999993 in binary.
EPS = 1e-9

FORGET = "forget_train acc"
RETAIN = "test_retain acc"
CKA = "mean intermediate CKA to original (forget_train)"
FEWSHOT = "best intermediate few-shot probe (test_forget)"
RELEARN = "relearn acc at reference step (test_forget)"
FULL_PROBE = "best intermediate full-data probe (test_forget)"

# The verdicts, from worst to best.
KEEPS = "keeps the class"
HURTS = "hurts retain"
SUPERFICIAL = "superficial"
AT_OUTPUT = "forgets at the output"
ERASED = "erased"
REFERENCE = "reference"
VERDICTS = (KEEPS, HURTS, SUPERFICIAL, AT_OUTPUT, ERASED)


def taps_of(results: pd.DataFrame) -> list[str]:
    """The model's taps in network order, as the CKA rows were written (`layer` of `cka_to_original`)."""
    return list(dict.fromkeys(results.loc[results["metric"] == "cka_to_original", "layer"]))


def evidence(results: pd.DataFrame, seed: int | None = None, reference_step: int = 10) -> pd.DataFrame:
    """Per method (rows, references first): the figures the verdicts read, for one seed (or the mean over
    the seeds present). "Intermediate" layers are all taps but the last."""
    df = results if seed is None else results[results["seed"] == seed]
    intermediate = taps_of(df)[:-1]

    def pick(metric: str, split: str, layers: list[str] | None = None) -> pd.core.groupby.SeriesGroupBy:
        rows = df[(df["metric"] == metric) & (df["split"] == split)]
        rows = rows[rows["layer"].isin(layers)] if layers is not None else rows[rows["layer"] == ""]
        return rows.groupby(["method", "seed"], sort=False)["value"]

    def per_method(values: pd.Series) -> pd.Series:
        return values.groupby(level="method", sort=False).mean()

    table = pd.DataFrame({
        FORGET: per_method(pick("accuracy", "forget_train").mean()),
        RETAIN: per_method(pick("accuracy", "test_retain").mean()),
        CKA: per_method(pick("cka_to_original", "forget_train", intermediate).mean()),
        FEWSHOT: per_method(pick("fewshot_probe_accuracy", "test_forget", intermediate).max()),
        RELEARN: per_method(pick("relearn_accuracy", "test_forget", [f"step{reference_step}"]).mean()),
        FULL_PROBE: per_method(pick("probe_accuracy", "test_forget", intermediate).max()),
    })
    table = table.reindex(method_order(df["method"]))
    table.attrs["reference_step"] = reference_step
    return table


def judge(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (from `evidence`) with the section 7 tests as columns and the `verdict` they give.

    Attack figures that are missing (random-sample forgetting has no forgotten class to recover) make a
    method neither superficial nor erased: it can at most forget at the output."""
    if not {"original", "retrain"} <= set(table.index):
        raise ValueError("the verdicts read every method against `original` and `retrain`: both must be measured")
    ref, orig = table.loc["retrain"], table.loc["original"]
    out = table.copy()
    forgets = (table[FORGET] - ref[FORGET]).abs() <= FORGET_TOL + EPS
    keeps_retain = table[RETAIN] >= orig[RETAIN] - RETAIN_TOL - EPS
    out["forgets at output"] = forgets & keeps_retain
    gaps = pd.DataFrame({k: table[k] - ref[k] for k in (RELEARN, FEWSHOT)})
    out["superficial"] = out["forgets at output"] & (gaps >= SUPERFICIAL_GAP - EPS).any(axis=1)
    out["erased"] = out["forgets at output"] & gaps.notna().all(axis=1) & (gaps.abs() <= ERASED_TOL + EPS).all(axis=1)

    def verdict(method: str) -> str:
        if method in REFERENCES:
            return REFERENCE
        r = out.loc[method]
        if not forgets[method]:
            return KEEPS
        if not keeps_retain[method]:
            return HURTS
        return SUPERFICIAL if r["superficial"] else ERASED if r["erased"] else AT_OUTPUT

    out["verdict"] = [verdict(m) for m in out.index]
    return out


def verdicts_by_seed(results: pd.DataFrame, reference_step: int = 10) -> pd.DataFrame:
    """method x seed table of verdicts (each seed is its own cell)."""
    columns = {seed: judge(evidence(results, seed, reference_step))["verdict"] for seed in sorted(set(results["seed"]))}
    return pd.DataFrame(columns).reindex(method_order(results["method"]))


def verdict_summary(results: pd.DataFrame, reference_step: int = 10) -> pd.Series:
    """One line per method: its verdict, or with several seeds how many seeds gave each verdict."""
    by_seed = verdicts_by_seed(results, reference_step)

    def line(row: pd.Series) -> str:
        counts = row.dropna().value_counts()
        if len(counts) == 1:
            return counts.index[0]
        return ", ".join(f"{v} {n}/{int(counts.sum())}" for v, n in counts.items())

    return by_seed.apply(line, axis=1).rename("verdict")


def disagreements(table: pd.DataFrame) -> pd.DataFrame:
    """Methods that forget at the output and for which CKA and the attacks disagree: mean intermediate CKA
    at or below `retrain`'s (by CKA alone, nothing left to find) yet superficial by the attacks, or CKA
    above `retrain`'s yet erased by the attacks. `table` is `judge`'s."""
    ref_cka = table.loc["retrain", CKA]
    rows = []
    for method, r in table.drop(index=[m for m in REFERENCES if m in table.index]).iterrows():
        if r["superficial"] and r[CKA] <= ref_cka:
            rows.append((method, r[CKA], ref_cka, "CKA at or below retrain's, yet the attacks bring the class back"))
        elif r["erased"] and r[CKA] > ref_cka:
            rows.append((method, r[CKA], ref_cka, "CKA above retrain's, yet the attacks find no more than in retrain"))
    return pd.DataFrame(rows, columns=["method", CKA, "retrain's", "what disagrees"]).set_index("method")


def claims(cells: Mapping[str, pd.DataFrame], baselines: list[str], ec: str = "ec") -> pd.DataFrame:
    """The study's claims (STUDY.md section 7) over `cells` (a name -> `judge` table per forget set), each a
    row with what was measured, the target and whether it holds. A claim about a method missing from a
    cell (it failed, or was not run) does not hold there."""
    n = len(cells)
    majority = n // 2 + 1
    rows: list[tuple[str, str, str, bool]] = []

    def verdict(table: pd.DataFrame, method: str) -> str | None:
        return table.loc[method, "verdict"] if method in table.index else None

    superficial = [b for b in baselines if sum(verdict(t, b) == SUPERFICIAL for t in cells.values()) >= majority]
    rows.append(("at least two baselines are superficial in a majority of the cells",
                 ", ".join(superficial) or "none", f">= 2 of {len(baselines)} baselines, each in >= {majority} of {n} cell(s)",
                 len(superficial) >= 2))

    forgets = sum(bool(t.loc[ec, "forgets at output"]) if ec in t.index else False for t in cells.values())
    rows.append((f"{ec} forgets at the output", f"{forgets} of {n} cell(s)", f">= {majority}", forgets >= majority))

    below = 0
    for t in cells.values():
        useful = [b for b in baselines if b in t.index and t.loc[b, RETAIN] >= t.loc["original", RETAIN] - RETAIN_TOL - EPS]
        below += ec in t.index and bool(useful) and bool(t.loc[ec, CKA] < t.loc[useful, CKA].min())
    rows.append((f"{ec}'s mean intermediate CKA is below every baseline that keeps retain accuracy",
                 f"{below} of {n} cell(s)", f">= {majority}", below >= majority))

    for b in baselines:
        plugin = f"{b}+ec"
        pairs = [(t.loc[plugin, CKA], t.loc[b, CKA]) for t in cells.values() if {b, plugin} <= set(t.index)]
        mean_plugin, mean_base = (np.mean([p[i] for p in pairs]) if len(pairs) == n else np.nan for i in (0, 1))
        rows.append((f"{plugin}'s mean intermediate CKA (mean over cells) is below {b}'s",
                     f"{mean_plugin:.3f}", f"< {mean_base:.3f}", bool(mean_plugin < mean_base)))

    for method in [ec, *(f"{b}+ec" for b in baselines)]:
        erased = sum(verdict(t, method) == ERASED for t in cells.values())
        rows.append((f"{method} is erased by the attacks (reported as measured)", f"{erased} of {n} cell(s)",
                     f">= {majority}", erased >= majority))
    return pd.DataFrame(rows, columns=["claim", "measured", "target", "holds"]).set_index("claim")


def attack_distance(table: pd.DataFrame) -> pd.Series:
    """How far each method of a `judge` table is from `retrain` on the two attacks: |relearn gap| + |best
    intermediate few-shot probe gap|. 0 is `retrain`'s own; an erased method is at most 2 x ERASED_TOL."""
    ref = table.loc["retrain"]
    return (table[RELEARN] - ref[RELEARN]).abs() + (table[FEWSHOT] - ref[FEWSHOT]).abs()


def variant_claims(cells: Mapping[str, pd.DataFrame], baselines: list[str], variants: Sequence[str]) -> pd.DataFrame:
    """Issue 16's goal for each EC variant over `cells` (name -> `judge` table), in `claims`' form: the
    variant is erased in a majority of the cells, and each plug-in B+variant is nearer `retrain` on the
    attacks (`attack_distance`, mean over the cells) than B, and than B+ec where it ran."""
    n = len(cells)
    majority = n // 2 + 1
    distances = pd.DataFrame({name: attack_distance(t) for name, t in cells.items()})  # method x cell

    def mean_distance(method: str) -> float:
        row = distances.loc[method] if method in distances.index else pd.Series([np.nan])
        return float(row.mean()) if row.notna().all() else np.nan

    rows = []
    for variant in variants:
        erased = sum(t.loc[variant, "verdict"] == ERASED for t in cells.values() if variant in t.index)
        rows.append((f"{variant} is erased by the attacks", f"{erased} of {n} cell(s)", f">= {majority}",
                     erased >= majority))
        for b in baselines:
            plugin = f"{b}+{variant}"
            for other in (b, f"{b}+ec"):
                mine, theirs = mean_distance(plugin), mean_distance(other)
                if not np.isnan(theirs):
                    rows.append((f"{plugin} is nearer retrain on the attacks than {other} (mean over cells)",
                                 f"{mine:.3f}", f"< {theirs:.3f}", bool(mine < theirs)))
    return pd.DataFrame(rows, columns=["claim", "measured", "target", "holds"]).set_index("claim")


def summary(
    results: pd.DataFrame, seeds: list[int] | tuple[int, ...] | None = None, reference_step: int = 10
) -> pd.DataFrame:
    """The run's summary table (`ecnb.results.summarize`, mean ± std over seeds) with the evidence the
    verdicts read and each method's verdict, when `original` and `retrain` are both measured."""
    if seeds is not None:
        results = results[results["seed"].isin(list(seeds))]
    table = summarize(results)
    if table.empty or not {"original", "retrain"} <= set(results["method"]) or not taps_of(results):
        return table
    step = reference_step
    short = {CKA: "mean int. CKA", FEWSHOT: "best int. few-shot probe", RELEARN: f"relearn at step{step}"}
    per_seed = pd.concat({s: evidence(results, s, step)[list(short)] for s in sorted(set(results["seed"]))})
    stats = per_seed.groupby(level=1, sort=False).agg(["mean", "std", "count"])
    for column, name in short.items():
        s = stats[column]
        table[name] = [
            "" if pd.isna(r["mean"]) else f"{r['mean']:.3f}" if r["count"] < 2 else f"{r['mean']:.3f} ± {r['std']:.3f}"
            for _, r in s.reindex(table.index).iterrows()
        ]
    table["verdict"] = verdict_summary(results, step).reindex(table.index).fillna("")
    return table



class Prose(str):
    """A paragraph of Markdown that a notebook renders as text (and a terminal prints as is)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def describe(table: pd.DataFrame) -> Prose:
    """What this run shows, in words, from a `judge` table: each verdict with its methods and the figures
    that decided it, against `retrain`'s, and where CKA and the attacks disagree."""
    ref = table.loc["retrain"]
    step = table.attrs.get("reference_step", 10)
    lines = [f"`retrain` (never saw the class): relearn accuracy at step {step} **{ref[RELEARN]:.2f}**, best "
             f"intermediate few-shot probe **{ref[FEWSHOT]:.2f}**, mean intermediate CKA to the original "
             f"**{ref[CKA]:.3f}**."]
    for verdict in reversed(VERDICTS):
        methods = [m for m in table.index if table.loc[m, "verdict"] == verdict]
        if methods:
            figures = ", ".join(f"`{m}` ({table.loc[m, RELEARN]:.2f} / {table.loc[m, FEWSHOT]:.2f} / "
                                f"{table.loc[m, CKA]:.3f})" for m in methods)
            lines.append(f"- **{verdict}**: {figures}")
    lines.append(f"\n(relearn at step {step} / best intermediate few-shot probe / mean intermediate CKA)")
    odd = disagreements(table)
    if len(odd):
        lines.append("\nCKA and the attacks disagree on: " + "; ".join(
            f"`{m}` ({r['what disagrees']})" for m, r in odd.iterrows()) + ".")
    else:
        lines.append("\nCKA and the attacks tell the same story for every method here.")
    return Prose("\n".join(lines))
