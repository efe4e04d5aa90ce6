"""The notebooks' answers, written from the run's numbers: every sentence below is filled in from a results
table or a `judge` table, never written in advance, so an answer that the data do not support reads as
not holding."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import permutation_test, rankdata

from .verdicts import (
    CKA, DEPTH, ERASED, FEWSHOT_GAP, NOT_FORGOTTEN, N_TEST_FORGET, OUTPUT_DISTANCE, OUTPUT_TELL, RESOLUTION,
    OUTPUT_TELL_NAME, RELEARN_GAP, RETAIN, RETAIN_DROP, SUCCEEDS, SUPERFICIAL, TEST_FORGET, VERDICT, WEIGHTS, Prose,
    attack_distance, attack_distances, cost_undecided, figure_text, high, keeps_retain, low, nearer, wilson_interval,
    with_interval,
)


def methods_table(names: Sequence[str], checkpoints: Mapping[str, Mapping[str, str]] | None = None) -> Prose:
    """A Markdown table of `names` with what each method does (its registry entry's summary); a model unlearned
    elsewhere (one of the study's `checkpoints`) is named with its file."""
    from .methods import get_method

    def what(name: str) -> str:
        if name in (checkpoints or {}):
            brought = checkpoints[name]
            return (f"unlearned elsewhere, read from `{brought['path']}` (sha256 {brought['sha256'][:12]}...); nothing "
                    "runs here, so its wall time is unknown")
        return get_method(name).summary

    rows = "\n".join(f"| `{n}` | {what(n)} |" for n in names)
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
    forgot = [b for b in present if table.loc[b, DEPTH] != NOT_FORGOTTEN]
    superficial = [b for b in forgot if table.loc[b, DEPTH] == SUPERFICIAL]
    erased = [b for b in forgot if table.loc[b, DEPTH] == ERASED]
    lines = [f"Of {len(present)} baselines, {len(forgot)} bring forget accuracy down to `retrain`'s level "
             f"({_names(forgot)})."]
    if superficial:
        gaps = ", ".join(f"`{b}` {figure_text(table.loc[b], RELEARN_GAP)} / {figure_text(table.loc[b], FEWSHOT_GAP)}"
                         for b in superficial)
        lines.append(f"**{len(superficial)} of them are superficial**: an attacker with a few images brings the class "
                     "back decidedly beyond what the retrained models allow (relearning gap / few-shot gap with 95% "
                     f"intervals: {gaps}).")
    if erased:
        lines.append(f"Erased on this run (no gap beyond the retrained models' own spread): {_names(erased)}.")
    undecided = [b for b in forgot if table.loc[b, DEPTH] == "undecided"]
    if undecided:
        lines.append(f"This run cannot decide the depth of {_names(undecided)}: an interval spans a cut.")
    holds = len(superficial) >= 2
    lines.append(f"The claim \"at least two baselines are superficial\" **{'holds' if holds else 'does not hold'}** on "
                 "this run (one forget class and one seed; a sweep reads it over several).")
    told = [b for b in forgot if table.loc[b, OUTPUT_TELL_NAME] is True]
    if told:
        lines.append(f"Their outputs give some of them away without any attack: {_names(told)} answer a forgotten image "
                     f"unlike the retrained models do (output distance decidedly >= {OUTPUT_TELL}).")
    return Prose(" ".join(lines))


def _separated(a: float, b: float, n: float) -> int:
    """+1 when accuracy `a` is above `b` with their Wilson 95% intervals apart (on n images), -1 when below,
    0 when the intervals overlap: the only directions the prose states."""
    (a_lo, a_hi), (b_lo, b_hi) = wilson_interval(a, n), wilson_interval(b, n)
    return 1 if a_lo > b_hi else -1 if a_hi < b_lo else 0


def rank_correlation(x: pd.Series, y: pd.Series):
    """Spearman's rank correlation with a permutation p-value (two-sided; exact for up to 8 points, where the
    t approximation says p = 0 for three points in order, which chance gives one time in three). The statistic
    is the Pearson correlation of the ranks, computed for all resamples at once (scipy's `spearmanr` per
    resample takes 2 s for nine points); NaN where x or y is constant."""
    ry = rankdata(np.asarray(y, dtype=float))
    ry = ry - ry.mean()

    def rho(a: np.ndarray, axis: int = -1) -> np.ndarray:
        r = rankdata(a, axis=axis)
        r = r - r.mean(axis=axis, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (r * ry).sum(axis=axis) / (np.linalg.norm(r, axis=axis) * np.linalg.norm(ry))

    return permutation_test((np.asarray(x, dtype=float),), rho, permutation_type="pairings", n_resamples=9999,
                            vectorized=True, random_state=0)


def basin_answer(table: pd.DataFrame, results: pd.DataFrame, method: str, others: Sequence[str]) -> Prose:
    """Notebook 02's weight-space answer: why `method`'s forgetting is undone so fast, read from the line from
    the original to it (against the line from the original to `retrain`) and from the weight distances of
    `others` (the baselines that forgot at the output)."""
    rows = results[(results["metric"] == "interpolation_accuracy") & (results["split"] == "test_forget")]
    lines = {m: rows[rows["method"] == m].set_index("layer")["value"] for m in (method, "retrain")}
    if lines[method].empty or lines["retrain"].empty or method not in table.index:
        return Prose(f"`{method}` or `retrain` was not measured on this run.")
    n = table.loc["original", N_TEST_FORGET]
    inner = [t for t in lines[method].index if t not in ("t0.00", "t1.00")]
    above = [t for t in inner if _separated(lines[method][t], lines["retrain"][t], n) > 0]

    def at(m: str, t: str) -> str:
        return with_interval(lines[m][t], n)

    if above:
        t = above[-1]
        line = (f"Along the straight line from `original` (t = 0) to `{method}` (t = 1) the forgotten class is kept "
                f"further than along the line to `retrain`: at {t.replace('t', 't = ')} it still reads **{at(method, t)}** "
                f"where the line to `retrain` reads **{at('retrain', t)}** (Wilson 95% intervals apart). That is "
                f"consistent with `{method}` ending near the original in weight space, in a region where the "
                "original's answers, the forgotten class's included, still largely hold, which a few fine-tuning "
                "steps can walk back; the line shows accuracy, not the loss surface, so it is a reading of its "
                f"relearning gap ({figure_text(table.loc[method], RELEARN_GAP)}), not a proof of it.")
    else:
        t = inner[len(inner) // 2] if inner else "t1.00"
        line = (f"Along the straight line from `original` to `{method}` the forgotten class is not kept decidedly "
                f"further than along the line to `retrain` at any t (at {t.replace('t', 't = ')}: {at(method, t)} against "
                f"{at('retrain', t)}): on this run the line does not show `{method}` staying in the original's "
                "basin, so it does not explain its relearning gap.")
    forgot = [m for m in others if m in table.index and table.loc[m, DEPTH] != NOT_FORGOTTEN]
    points = table.loc[forgot].dropna(subset=[WEIGHTS, RELEARN_GAP])
    test = rank_correlation(points[WEIGHTS], points[RELEARN_GAP]) if len(points) >= 3 else None
    if test is None or pd.isna(test.statistic):  # too few methods, or one figure the same for all of them
        across = (f"Over {len(points)} baseline(s) that forgot at the output, no rank correlation between weight "
                  "distance and relearning gap can be read.")
    else:
        trend = ("methods that moved the weights further relearn *less* readily" if test.statistic < 0 else
                 "methods that moved the weights further relearn *more* readily")
        across = (f"Over the {len(points)} baselines that forgot at the output, the rank correlation between weight "
                  f"distance and relearning gap is **{test.statistic:+.2f}** (Spearman, p = {test.pvalue:.2f}): "
                  + (f"{trend}." if test.pvalue < 0.05 else "too weak, with this few methods, to say which way it goes."))
    d, d_retrain = table.loc[method, WEIGHTS], table.loc["retrain", WEIGHTS]
    return Prose(f"`{method}` moved the weights by **{d:.4f}** (RMS of the difference to the original; `retrain`, "
                 f"trained from scratch, is **{d_retrain:.4f}** away). {line} {across}")


def _attack_comparison(table: pd.DataFrame, a: str, b: str) -> str:
    """Which of `a` and `b` the attacks read as nearer the retrained models, attack by attack, stated only
    where the two distances' 95% intervals are apart: "nearer on relearning; cannot be told apart on few-shot"."""
    d = attack_distances(table)
    said = []
    for attack, distance in (("relearning", "the largest |difference| to the retrained models' relearning curve, "
                                            "relearning slower counting like relearning faster"),
                             ("few-shot", "|few-shot gap|")):
        verdict = nearer(d, attack, a, b)
        what = (f"`{a}` nearer" if verdict is True else f"`{b}` nearer" if verdict is False else "cannot be told apart")
        said.append(f"{attack} ({distance}): {what} ({d.loc[a, attack]:.2f} [{d.loc[a, attack + ' low']:.2f}, "
                    f"{d.loc[a, attack + ' high']:.2f}] against {d.loc[b, attack]:.2f} [{d.loc[b, attack + ' low']:.2f}, "
                    f"{d.loc[b, attack + ' high']:.2f}])")
    return "; ".join(said)


def ec_answer(table: pd.DataFrame, baselines: Sequence[str], ablation: str = "ec[last]") -> Prose:
    """Notebook 03's answer about `ec` itself: does it forget, does it move the representation more than the
    baselines, is it erased, and does depth matter (against `ablation`, EC at the last point only)."""
    if "ec" not in table.index:
        return Prose("`ec` was not measured on this run.")
    ec = table.loc["ec"]
    useful = [b for b in baselines if b in table.index and keeps_retain(table)[b]]
    lowest = min(useful, key=lambda b: table.loc[b, CKA]) if useful else None
    below = lowest is not None and ec[CKA] < table.loc[lowest, CKA]
    parts = [f"`ec` is **{ec[VERDICT]}**: relearning gap {figure_text(ec, RELEARN_GAP)}, few-shot gap "
             f"{figure_text(ec, FEWSHOT_GAP)}, output distance {figure_text(ec, OUTPUT_DISTANCE, signed=False)}."]
    if lowest is not None:
        parts.append(f"Its mean intermediate CKA to the original, {ec[CKA]:.3f}, is "
                     f"{'below' if below else 'not below'} every baseline that keeps retain accuracy (the lowest, "
                     f"`{lowest}`, {table.loc[lowest, CKA]:.3f}; `retrain` {table.loc['retrain', CKA]:.3f}).")
        unsure = [b for b in baselines if b in table.index and cost_undecided(table)[b] and table.loc[b, CKA] < ec[CKA]]
        if below and unsure:
            parts.append(f"But {_names(unsure)}, whose retain cost this run cannot decide, "
                         f"read{'s' if len(unsure) == 1 else ''} lower "
                         f"({', '.join(f'{table.loc[b, CKA]:.3f}' for b in unsure)}): the claim that EC has the "
                         "lowest CKA is *undecided* here.")
    if ablation in table.index:
        a = table.loc[ablation]
        deeper = ec[CKA] < a[CKA]
        parts.append(f"**Does depth matter?** With supervision at the last point only, `{ablation}` reaches CKA "
                     f"{a[CKA]:.3f} against `ec`'s {ec[CKA]:.3f}: supervising every depth "
                     f"{'moves the intermediate layers further' if deeper else 'does not move them further'}. "
                     "Distance to the retrained models on the attacks (95% intervals): "
                     f"{_attack_comparison(table, 'ec', ablation)}.")
    return Prose(" ".join(parts))


def plugin_answer(table: pd.DataFrame, baselines: Sequence[str], variant: str = "ec") -> Prose:
    """Notebook 03's answer about the plug-ins B+`variant`: does each move its baseline's intermediate layers
    further from the original (CKA), and nearer the retrained models on each attack (only where the
    intervals are apart), at what cost?"""
    pairs = [(b, f"{b}+{variant}") for b in baselines if {b, f"{b}+{variant}"} <= set(table.index)]
    if not pairs:
        return Prose(f"No plug-in of `{variant}` was measured on this run.")
    d = attack_distances(table)
    lower = [p for b, p in pairs if table.loc[p, CKA] < table.loc[b, CKA]]
    lines = [f"Of {len(pairs)} plug-ins `B+{variant}`, {len(lower)} lower their baseline's mean intermediate CKA "
             f"({_names(lower)})."]
    for attack in ("relearning", "few-shot"):
        reads = {p: nearer(d, attack, p, b) for b, p in pairs}
        closer = [p for p, r in reads.items() if r is True]
        further = [p for p, r in reads.items() if r is False]
        tied = [p for p, r in reads.items() if r is None]
        lines.append(f"On the {attack} attack, {len(closer)} are decidedly nearer the retrained models than their "
                     f"baseline ({_names(closer)}), {len(further)} decidedly further ({_names(further)}), and "
                     f"{len(tied)} cannot be told apart from it ({_names(tied)}).")
    costly = [p for _, p in pairs if table.loc[p, "cost"].startswith("hurts")]
    unsure = [p for _, p in pairs if table.loc[p, "cost"].startswith("retain cost undecided")]
    lines.append(f"{len(costly)} decidedly cost retain accuracy ({_names(costly)})"
                 + (f"; for {_names(unsure)} the cost is undecided." if unsure else "."))
    return Prose(" ".join(lines))


def variant_answer(table: pd.DataFrame, variant: str, anchors: Sequence[str], ablations: Sequence[str]) -> Prose:
    """Notebook 03's answer beyond the paper: does `variant` succeed, is it nearer the retrained models than
    the tamper-resistant `anchors` (only where the intervals are apart) at no greater cost, and which of its
    parts (`ablations`) does the work."""
    if variant not in table.index:
        return Prose(f"`{variant}` was not measured on this run.")
    v = table.loc[variant]
    parts = [f"`{variant}` is **{v[VERDICT]}**; it {'succeeds' if v[SUCCEEDS] else 'does not succeed'} on this run "
             f"(relearning gap {figure_text(v, RELEARN_GAP)}, few-shot gap {figure_text(v, FEWSHOT_GAP)}, output "
             f"distance {figure_text(v, OUTPUT_DISTANCE, signed=False)}, retain drop {figure_text(v, RETAIN_DROP)})."]
    for anchor in (a for a in anchors if a in table.index):
        costlier = table.loc[variant, low(RETAIN_DROP)] > table.loc[anchor, high(RETAIN_DROP)]
        cheaper = table.loc[variant, high(RETAIN_DROP)] < table.loc[anchor, low(RETAIN_DROP)]
        cost = ("a decidedly greater" if costlier else "a decidedly smaller" if cheaper else
                "a retain cost that cannot be told apart from its")
        parts.append(f"Against `{anchor}` ({table.loc[anchor, VERDICT]}): {_attack_comparison(table, variant, anchor)}; "
                     f"at {cost} retain cost.")
    measured = [a for a in ablations if a in table.index]
    if measured:
        both = attack_distance(table)
        ranked = sorted([variant, *measured], key=lambda m: both.loc[m, "both"])
        parts.append("**Which part does the work?** Distance to the retrained models on the two attacks together "
                     "(95% intervals; parts whose intervals overlap cannot be ranked): "
                     + ", ".join(f"`{m}` {both.loc[m, 'both']:.2f} [{both.loc[m, 'both low']:.2f}, "
                                 f"{both.loc[m, 'both high']:.2f}]" for m in ranked) + ".")
    return Prose(" ".join(parts))


def _place(row: pd.Series) -> str:
    """Where one model keeps the forgotten class at one layer, in words, with the share's Wilson interval."""
    share = with_interval(row["together"], row["n"])
    if row["together"] >= 0.5 or not row["beside"]:
        return f"together ({share} of its images have mostly their own class around them)"
    return (f"among the retained classes, mostly beside class {row['beside']} ({row['beside_share']:.2f} of its "
            f"images; only {share} have their own class around them)")


def _interval(row: pd.Series, figure: str) -> str:
    return f"{row[figure]:.2f} [{row[figure + '_low']:.2f}, {row[figure + '_high']:.2f}]"


def representation_answer(places: pd.DataFrame, results: pd.DataFrame, taps: Sequence[str]) -> Prose:
    """Notebook 04's answer, per method: where its forgotten class sits at the last layer, at which layer it first
    moves the class (its forgotten images' neighbourhoods change from `original`'s decidedly more than the retained
    images' do, the intervals apart), and where a few-shot probe reads the class decidedly better or worse than in
    `original` (Wilson intervals apart). `places` is `ecnb.embeddings.forget_places`' table."""
    if places.empty or "original" not in set(places["method"]) or not places["n"].any():
        return Prose("This run has no forgotten class to place, or no `original` to compare with.")
    at = places.set_index(["method", "layer"])
    layers = [t for t in taps if ("original", t) in at.index]
    last, k = layers[-1], int(places["k"].iloc[0])
    probes = results[(results["metric"] == "fewshot_probe_accuracy") & (results["split"] == "test_forget")]
    probe = probes.pivot_table(index="method", columns="layer", values="value")
    sizes = results.loc[(results["metric"] == "split_size") & (results["split"] == "test_forget"), "value"]
    n_test = float(sizes.iloc[0]) if len(sizes) else 0.0

    def line(method: str) -> str:
        rows = at.loc[method].reindex(layers)
        moved = [t for t in layers if rows.loc[t, "stay_high"] < rows.loc[t, "retained_stay_low"]]
        text = f"- `{method}`: at `{last}` the class sits {_place(at.loc[(method, last)])}. "
        if moved:
            r = rows.loc[moved[0]]
            text += (f"It moves the class first at **`{moved[0]}`**"
                     + (f" (and at {_names(moved[1:])})" if len(moved) > 1 else "")
                     + f": there {_interval(r, 'stay')} of a forgotten image's {k} nearest images are the ones it had "
                     f"in `original`, against {_interval(r, 'retained_stay')} for the retained classes' images.")
        else:
            text += ("At no layer do its forgotten images' neighbourhoods change decidedly more than the retained "
                     "images' do: relative to the other classes, the class stays where `original` keeps it.")
        if n_test and method in probe.index and "original" in probe.index:
            for word, sign in (("better", 1), ("worse", -1)):
                read = [t for t in taps if t in probe.columns
                        and _separated(probe.loc[method, t], probe.loc["original", t], n_test) == sign]
                if read:
                    t = read[0]
                    text += (f" A few-shot probe reads the class decidedly **{word}** than in `original` at "
                             f"{_names(read)} ({probe.loc[method, t]:.2f} against {probe.loc['original', t]:.2f} at `{t}`).")
        return text

    methods = [m for m in dict.fromkeys(places["method"]) if m != "original"]
    intro = (f"In `original` the forgotten class sits {_place(at.loc[('original', last)])} at `{last}`. Where each "
             f"model keeps it is read from each forgotten test image's {k} nearest images in the layer's features; "
             "it *moves* the class at a layer where the forgotten images' neighbourhoods change from `original`'s "
             "decidedly more than the retained images' do (95% intervals over the images apart; the retained images "
             "show what any change of the layer does):")
    closing = ("`retrain` never saw the class: where it keeps it is where features learned without it put it. A class "
               "a method keeps together, or makes *more* readable than `original` does, is one a linear read-out can "
               "find from a few images; how much more than in the retrained models is what the attacks of notebooks 02 "
               "and 03 measure.")
    return Prose("\n".join([intro, "", *map(line, methods), "", closing]))


def claims_answer(claims: pd.DataFrame) -> Prose:
    """Notebook 05's answer: which claims hold over the cells, per data set."""
    lines = []
    for dataset, part in claims.groupby("dataset", sort=False):
        held = part[part["holds"].astype(bool)]
        failed = int(part["failed"].iloc[0]) if "failed" in part else 0
        undecided = int((part["undecided"] > 0).sum()) if "undecided" in part else 0
        lines.append(f"**{dataset}** ({int(part['cells'].iloc[0])} cells{f', {failed} failed' if failed else ''}): "
                     f"{len(held)} of {len(part)} claims hold"
                     + (f"; {undecided} of them read a verdict that some cell could not decide (counted as not "
                        "holding there)." if undecided else "."))
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


def sweep_findings(tables: Mapping[str, pd.DataFrame]) -> Prose:
    """What a sweep found, per data set, in a few sentences (the README's opening findings, from the shipped
    sweep): the baselines that are superficial in a majority of the cells and those that never forget or are
    erased, what `ec` reproduces of the paper and whether it or a plug-in is erased, the tamper-resistant baselines,
    each variant with its retain cost, the null test and the smallest gap the cells resolve. Every count is read
    from the sweep's tables."""
    from .data import DATASET_TITLES, class_label
    from .ec import variant_names
    from .methods import builtin_baselines
    from .unlearn import TAMPER_RESISTANT

    verdicts, summary, claims, nulls = (tables[k] for k in ("verdicts", "summary", "claims", "null_tests"))
    paragraphs = []
    for dataset, part in verdicts.groupby("dataset", sort=False):
        cells = part[["forget_set", "seed"]].drop_duplicates()
        n, majority = len(cells), len(cells) // 2 + 1
        counts = summary[summary["dataset"] == dataset].set_index("method")
        said = claims[claims["dataset"] == dataset].set_index("claim")["measured"]
        base = [b for b in builtin_baselines() if b in counts.index]

        depths = {m: rows[DEPTH].value_counts() for m, rows in part.groupby("method", sort=False)}

        def most(depth: str) -> list[str]:
            return [b for b in base if b not in TAMPER_RESISTANT and depths[b].get(depth, 0) >= majority]

        def tally(method: str) -> str:
            """Every depth the method got, the most frequent first: 'erased in 4, superficial in 1 of the 6 cells'."""
            got = depths[method]
            if len(got) == 1:
                return f"{got.index[0]} in {'all' if n > 1 else 'the'} {n} cell{'s' * (n > 1)}"
            return ", ".join(f"{d} in {int(k)}" for d, k in got.items()) + f" of the {n} cells"

        def listed(names: list[str]) -> str:
            quoted = [f"`{m}`" for m in names]
            both = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
            return f"{both} {'is' if len(names) == 1 else 'are'}"

        classes = ", ".join(class_label(dataset, int(f)) if str(f).isdigit() else str(f)
                            for f in dict.fromkeys(cells["forget_set"]))
        seeds = ", ".join(str(s) for s in sorted(cells["seed"].unique()))
        title = DATASET_TITLES.get(dataset, dataset)
        superficial = [b for b in base if counts.loc[b, "superficial"] >= majority]
        lines = [f"**{title[:1].upper() + title[1:]}**, {n} cells (forget class{'es' * (cells['forget_set'].nunique() > 1)} "
                 f"{classes} × seed{'s' * (cells['seed'].nunique() > 1)} {seeds}): {len(superficial)} of the "
                 f"{len(base)} baselines {'is' if len(superficial) == 1 else 'are'} superficial in at least {majority} "
                 f"of the {n} cells ({_names(superficial)}): they forget at the output, but a few relearning steps "
                 "bring the class back."]
        kept, erased_base = most(NOT_FORGOTTEN), most(ERASED)
        if kept:
            lines.append(f"{listed(kept)} *not forgotten* in most cells (the class stays at the output).")
        for b in erased_base:
            lines.append(f"`{b}` is {tally(b)} and succeeds (erased, keeps retain, no tell) in "
                         f"{int(counts.loc[b, 'succeeds'])}.")
        if "ec" in counts.index:
            fine = said.get("ec forgets at the output and keeps retain accuracy", "?").replace("cell(s)", "cells")
            lowest = said.get("ec's mean intermediate CKA is below every baseline that does not decidedly hurt retain "
                              "accuracy", "?").replace(" cell(s)", "")
            told = int(part.loc[part["method"] == "ec", "tells"].fillna("").str.contains("output tell").sum())
            plugins = [m for m in counts.index if m.endswith("+ec")]
            erased = [f"`{p}` in {int(counts.loc[p, 'erased'])}" for p in plugins if counts.loc[p, "erased"]]
            which = (f"of its {len(plugins)} plug-ins `B+ec`" if len(plugins) > 2
                     else f"of the plug-in{'s' * (len(plugins) > 1)} this scope runs ({_names(plugins)})")
            lines.append(f"`ec` reproduces what the paper measures: it forgets at the output and keeps retain accuracy "
                         f"in {fine}, and its mean intermediate CKA is below every baseline that does not decidedly "
                         f"hurt retain accuracy in {lowest}. But it is not erased: {tally('ec')}, with the output tell "
                         f"in {'all' if told == n else told} of them; {which}, "
                         + (f"{len(erased)} {'is' if len(erased) == 1 else 'are'} erased in some cell ({', '.join(erased)})."
                            if erased else "none is erased in any cell."))
        anchors = [a for a in TAMPER_RESISTANT if a in counts.index]
        if anchors:
            lines.append("Of the tamper-resistant baselines, " + "; ".join(
                f"`{a}` is {tally(a)}" + (f" and succeeds in {int(counts.loc[a, 'succeeds'])}"
                                          if counts.loc[a, "erased"] else "") for a in anchors) + ".")
        for variant in (v for v in variant_names() if v in counts.index):
            rows = part[part["method"] == variant]
            hurts = rows[rows["cost"].str.startswith("hurts")][RETAIN_DROP]
            cost = ("" if hurts.empty else f"; it decidedly costs retain accuracy in {len(hurts)} cell"
                    f"{'s' * (len(hurts) > 1)} (" + (f"{hurts.min():.2f} to {hurts.max():.2f}" if len(hurts) > 1
                                                     else f"{hurts.iloc[0]:.2f}") + ")")
            lines.append(f"The variant `{variant}` is {tally(variant)}{cost}, and succeeds in "
                         f"{int(counts.loc[variant, 'succeeds'])}.")
        null = nulls[nulls["dataset"] == dataset]
        if not null.empty:
            lines.append(f"The verdicts check themselves: {int(null['null reads passed'].sum())} of "
                         f"{int(null['null reads'].sum())} retrained models, each read as a method against the others, "
                         "pass as erased, keeping retain accuracy, with no tell; the cells tell a gap of "
                         f"{null[RESOLUTION].min():.2f} to {null[RESOLUTION].max():.2f} from the retrained models' spread.")
        paragraphs.append(" ".join(lines))
    return Prose("\n\n".join(paragraphs))
