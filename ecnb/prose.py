"""The notebooks' answers, written from the run's numbers: every sentence below is filled in from a results
table or a `judge` table, never written in advance, so an answer that the data do not support reads as
not holding."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from scipy.stats import spearmanr

from .verdicts import (
    CKA, DEPTH, ERASED, FEWSHOT, FEWSHOT_GAP, KEEPS, N_TEST_FORGET, OUTPUT_KS, RELEARN_GAP, RETAIN, RETAIN_DROP,
    SUCCEEDS, SUPERFICIAL, TEST_FORGET, VERDICT, WEIGHTS, Prose, attack_distances, keeps_retain, with_interval,
)


def methods_table(names: Sequence[str]) -> Prose:
    """A Markdown table of `names` with what each method does (its registry entry's summary)."""
    from .methods import get_method

    rows = "\n".join(f"| `{n}` | {get_method(n).summary} |" for n in names)
    return Prose(f"| method | what it does |\n|---|---|\n{rows}")


def _names(methods: Sequence[str]) -> str:
    return ", ".join(f"`{m}`" for m in methods) if methods else "none"


def references(table: pd.DataFrame) -> Prose:
    """Notebook 01's answer: what forgetting looks like at the output, `original` against `retrain`."""
    n = table.loc["original", N_TEST_FORGET]
    o, r = table.loc["original"], table.loc["retrain"]
    return Prose(
        f"`original` recognises the forgotten class's test images at **{with_interval(o[TEST_FORGET], n)}**; `retrain`, "
        f"which never saw it, at **{with_interval(r[TEST_FORGET], n)}** (Wilson 95% intervals, {int(n)} images). On the "
        f"retained classes they agree to within {abs(o[RETAIN] - r[RETAIN]):.3f} ({o[RETAIN]:.3f} against {r[RETAIN]:.3f}). "
        "That gap on the forgotten class, and no gap on the others, is what an unlearning method has to reach, "
        "starting from `original`.")


def superficial_answer(table: pd.DataFrame, baselines: Sequence[str]) -> Prose:
    """Notebook 02's answer: do baselines that forget at the output still hold the class?"""
    present = [b for b in baselines if b in table.index]
    forgot = [b for b in present if table.loc[b, DEPTH] != KEEPS]
    superficial = [b for b in forgot if table.loc[b, DEPTH] == SUPERFICIAL]
    erased = [b for b in forgot if table.loc[b, DEPTH] == ERASED]
    lines = [f"Of {len(present)} baselines, {len(forgot)} bring forget accuracy down to `retrain`'s level "
             f"({_names(forgot)})."]
    if superficial:
        gaps = ", ".join(f"`{b}` {table.loc[b, RELEARN_GAP]:+.2f} / {table.loc[b, FEWSHOT_GAP]:+.2f}" for b in superficial)
        lines.append(f"**{len(superficial)} of them are superficial**: an attacker with a few images brings the class "
                     f"back far beyond `retrain`'s level (relearning gap / few-shot gap: {gaps}).")
    if erased:
        lines.append(f"Erased on this run: {_names(erased)}.")
    holds = len(superficial) >= 2
    lines.append(f"The claim \"at least two baselines are superficial\" **{'holds' if holds else 'does not hold'}** on "
                 "this run (one forget class and one seed; a sweep reads it over several).")
    told = [b for b in forgot if table.loc[b, "output tell"]]
    if told:
        lines.append(f"Their outputs give some of them away without any attack: {_names(told)} answer a forgotten image "
                     f"unlike `retrain` does (output KS distance >= 0.5).")
    return Prose(" ".join(lines))


def basin_answer(table: pd.DataFrame, results: pd.DataFrame, method: str, others: Sequence[str]) -> Prose:
    """Notebook 02's weight-space answer: why `method`'s forgetting is undone so fast, read from the line from
    the original to it and from the weight distances of `others` (the baselines)."""
    rows = results[(results["metric"] == "interpolation_accuracy") & (results["split"] == "test_forget")]
    line = rows[rows["method"] == method].set_index("layer")["value"]
    if line.empty or method not in table.index:
        return Prose(f"`{method}` was not measured on this run.")
    start = line.get("t0.00", float("nan"))
    inside = [t for t, v in line.drop(index="t1.00", errors="ignore").items() if v >= start / 2]
    stays = bool(inside) and inside[-1] == "t0.75"
    kept = (f"keeps at least half of the original's accuracy on the forgotten class along the whole line up to "
            f"t = 0.75 ({line['t0.75']:.2f} there, against {start:.2f} at t = 0): its forgetting sits on the last "
            "stretch of the line, inside the original's basin, where a few fine-tuning steps can walk it back"
            if stays else
            f"loses the forgotten class before t = 0.75 ({line.get('t0.75', float('nan')):.2f} there, against "
            f"{start:.2f} at t = 0): on this run it left the original's basin well before the end of the line")
    d, d_retrain = table.loc[method, WEIGHTS], table.loc["retrain", WEIGHTS]
    points = table.loc[[m for m in others if m in table.index]].dropna(subset=[WEIGHTS, RELEARN_GAP])
    rho = spearmanr(points[WEIGHTS], points[RELEARN_GAP]).statistic if len(points) >= 3 else float("nan")
    if pd.isna(rho):  # fewer than three baselines, or one of the two figures the same for all of them
        across = (f"Over {len(points)} baseline(s) with these figures, no rank correlation between weight distance "
                  "and relearning gap can be read.")
    else:
        trend = ("methods that moved the weights further relearn *less* readily" if rho <= -0.5 else
                 "methods that moved the weights further relearn *more* readily" if rho >= 0.5 else
                 "how far a method moved the weights says little about how fast the class comes back")
        across = (f"Over the {len(points)} baselines, the rank correlation between weight distance and relearning "
                  f"gap is **{rho:+.2f}**: on this run {trend}.")
    return Prose(
        f"`{method}` moved the weights by **{d:.4f}** (RMS of the difference to the original; `retrain`, trained from "
        f"scratch, is **{d_retrain:.4f}** away) and {kept} (relearning gap {table.loc[method, RELEARN_GAP]:+.2f}). "
        + across)


def ec_answer(table: pd.DataFrame, baselines: Sequence[str], ablation: str = "ec[last]") -> Prose:
    """Notebook 03's answer about `ec` itself: does it forget, does it move the representation more than the
    baselines, is it erased, and does depth matter (against `ablation`, EC at the last point only)."""
    if "ec" not in table.index:
        return Prose("`ec` was not measured on this run.")
    ec = table.loc["ec"]
    useful = [b for b in baselines if b in table.index and keeps_retain(table)[b]]
    lowest = min(useful, key=lambda b: table.loc[b, CKA]) if useful else None
    below = lowest is not None and ec[CKA] < table.loc[lowest, CKA]
    parts = [f"`ec` is **{ec[VERDICT]}**: relearning gap {ec[RELEARN_GAP]:+.2f}, few-shot gap {ec[FEWSHOT_GAP]:+.2f}, "
             f"output KS {ec[OUTPUT_KS]:.2f}."]
    if lowest is not None:
        parts.append(f"Its mean intermediate CKA to the original, {ec[CKA]:.3f}, is "
                     f"{'below' if below else 'not below'} every baseline that keeps retain accuracy (the lowest, "
                     f"`{lowest}`, {table.loc[lowest, CKA]:.3f}; `retrain` {table.loc['retrain', CKA]:.3f}).")
    if ablation in table.index:
        a = table.loc[ablation]
        deeper = ec[CKA] < a[CKA]
        parts.append(f"**Does depth matter?** With supervision at the last point only, `{ablation}` reaches CKA "
                     f"{a[CKA]:.3f} against `ec`'s {ec[CKA]:.3f}: supervising every depth "
                     f"{'moves the intermediate layers further' if deeper else 'does not move them further'}. On the "
                     f"attacks it is {a[RELEARN_GAP]:+.2f} / {a[FEWSHOT_GAP]:+.2f} against `ec`'s "
                     f"{ec[RELEARN_GAP]:+.2f} / {ec[FEWSHOT_GAP]:+.2f} (relearning / few-shot gap), so depth "
                     f"{'brings the attacks nearer `retrain`' if _nearer(table, 'ec', ablation) else 'does not bring the attacks nearer `retrain`'}.")
    return Prose(" ".join(parts))


def _nearer(table: pd.DataFrame, a: str, b: str) -> bool:
    """Whether `a` is nearer `retrain` than `b` on the two attacks together."""
    d = attack_distances(table).sum(axis=1)
    return bool(d[a] < d[b])


def plugin_answer(table: pd.DataFrame, baselines: Sequence[str], variant: str = "ec") -> Prose:
    """Notebook 03's answer about the plug-ins B+`variant`: does each move its baseline's intermediate layers
    further from the original (CKA), and nearer `retrain` on the attacks, at what cost?"""
    pairs = [(b, f"{b}+{variant}") for b in baselines if {b, f"{b}+{variant}"} <= set(table.index)]
    if not pairs:
        return Prose(f"No plug-in of `{variant}` was measured on this run.")
    lower = [p for b, p in pairs if table.loc[p, CKA] < table.loc[b, CKA]]
    nearer = [p for b, p in pairs if _nearer(table, p, b)]
    costly = [p for _, p in pairs if not keeps_retain(table)[p]]
    return Prose(
        f"Of {len(pairs)} plug-ins `B+{variant}`, {len(lower)} lower their baseline's mean intermediate CKA "
        f"({_names(lower)}) and {len(nearer)} bring the attacks nearer `retrain` than their baseline "
        f"({_names(nearer)}); {len(costly)} cost more than 0.03 of retain accuracy ({_names(costly)}).")


def variant_answer(table: pd.DataFrame, variant: str, anchors: Sequence[str], ablations: Sequence[str]) -> Prose:
    """Notebook 03's answer beyond the paper: does `variant` succeed, is it nearer `retrain` than the
    tamper-resistant `anchors` at no greater cost, and which of its parts (`ablations`) does the work."""
    if variant not in table.index:
        return Prose(f"`{variant}` was not measured on this run.")
    v = table.loc[variant]
    d = attack_distances(table)
    parts = [f"`{variant}` is **{v[VERDICT]}**; it {'succeeds' if v[SUCCEEDS] else 'does not succeed'} on this run "
             f"(relearning distance to `retrain` {d.loc[variant, 'relearning']:.2f}, few-shot distance "
             f"{d.loc[variant, 'few-shot']:.2f}, output KS {v[OUTPUT_KS]:.2f}, retain drop {v[RETAIN_DROP]:+.3f})."]
    for anchor in (a for a in anchors if a in table.index):
        better = [k for k in ("relearning", "few-shot") if d.loc[variant, k] < d.loc[anchor, k]]
        cheaper = v[RETAIN_DROP] <= table.loc[anchor, RETAIN_DROP] + 1e-9
        parts.append(f"Against `{anchor}` ({table.loc[anchor, VERDICT]}): nearer `retrain` on "
                     f"{' and '.join(better) if better else 'neither attack'}, at "
                     f"{'no greater' if cheaper else 'a greater'} retain cost.")
    measured = [a for a in ablations if a in table.index]
    if measured:
        ranked = sorted([variant, *measured], key=lambda m: d.loc[m].sum())
        parts.append("**Which part does the work?** Nearest `retrain` on the two attacks together: "
                     + ", then ".join(f"`{m}` ({d.loc[m].sum():.2f})" for m in ranked) + ".")
    return Prose(" ".join(parts))


def representation_answer(results: pd.DataFrame, table: pd.DataFrame, taps: Sequence[str]) -> Prose:
    """Notebook 04's answer: what the layers show, read from the run's CKA and few-shot probe."""
    rows = results[(results["metric"] == "cka_to_original") & (results["split"] == "forget_train")]
    by = rows.pivot_table(index="method", columns="layer", values="value")
    first, deepest = taps[0], taps[-2]
    methods = [m for m in by.index if m not in ("original", "retrain")]
    if "retrain" not in by.index or not methods:
        return Prose("This run has no unlearned method to compare with `retrain`.")
    lo, hi = by.loc[methods, deepest].min(), by.loc[methods, deepest].max()
    return Prose(
        f"At `{first}` every model stays close to the original (CKA to it: `retrain` {by.loc['retrain', first]:.2f}, "
        f"the methods {by.loc[methods, first].min():.2f}-{by.loc[methods, first].max():.2f}): early features hardly "
        f"depend on one class. At `{deepest}`, the last intermediate layer, the methods spread from {lo:.2f} to "
        f"{hi:.2f} and `retrain` sits at {by.loc['retrain', deepest]:.2f}. `retrain`'s best few-shot probe reads the "
        f"forgotten class at {table.loc['retrain', FEWSHOT]:.2f}: even a model that never saw the class groups its "
        "images together from a few examples, so a red cluster in `retrain`'s panels is expected. What gives a "
        "hidden class away is how much *more* an attacker recovers than from `retrain` (notebooks 02 and 03), "
        "not whether the class forms a cluster.")


def claims_answer(claims: pd.DataFrame) -> Prose:
    """Notebook 05's answer: which claims hold over the cells, per data set."""
    lines = []
    for dataset, part in claims.groupby("dataset", sort=False):
        held = part[part["holds"].astype(bool)]
        failed = int(part["failed"].iloc[0]) if "failed" in part else 0
        lines.append(f"**{dataset}** ({int(part['cells'].iloc[0])} cells{f', {failed} failed' if failed else ''}): "
                     f"{len(held)} of {len(part)} claims hold.")
        for claim in ("at least two baselines are superficial in a majority of the cells",):
            if claim in set(part["claim"]):
                r = part.set_index("claim").loc[claim]
                lines.append(f"- Superficial forgetting {'is shown' if r['holds'] else 'is not shown'}: "
                             f"superficial in a majority of the cells: {r['measured']}.")
        succeeds = part[part["claim"].str.endswith("succeeds (erased, keeps retain, no tell)")]
        for _, r in succeeds.iterrows():
            lines.append(f"- {r['claim'].split(' succeeds')[0]} succeeds in {r['measured']} "
                         f"({'a majority' if r['holds'] else 'not a majority'}).")
    return Prose("\n".join(lines))
