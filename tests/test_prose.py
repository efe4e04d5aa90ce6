"""The notebooks' generated answers state a direction only where the intervals separate the two figures. The
first cases are sentences an earlier version wrote about overlapping figures (the depth ablation, the plug-ins,
the variant against an anchor, the weight-space answer)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecnb import prose
from ecnb.verdicts import (CKA, FEWSHOT_GAP, N_TEST_FORGET, OUTPUT_DISTANCE, RELEARN_GAP, RESISTANCE, RETAIN_DROP,
                           WEIGHTS, high, low)


def figure(value: float, lo: float, hi: float, name: str) -> dict:
    return {name: value, low(name): lo, high(name): hi}


def judged(**rows: dict) -> pd.DataFrame:
    """A hand-made `judge` table; every figure defaults to 0 [0, 0]."""
    base = {"depth": "erased", "cost": "keeps retain", "tells": "", "succeeds": False, "verdict": "erased, keeps retain",
            CKA: 0.8, WEIGHTS: 0.01, N_TEST_FORGET: 40.0,
            **{k: v for f in (RELEARN_GAP, RESISTANCE, FEWSHOT_GAP, OUTPUT_DISTANCE, RETAIN_DROP)
               for k, v in figure(0.0, 0.0, 0.0, f).items()}}
    return pd.DataFrame({m: {**base, **r} for m, r in {"original": {}, "retrain": {}, **rows}.items()}).T


def test_depth_is_not_said_to_help_when_the_attacks_overlap():
    """`ec[last]` at +0.98 / +0.18 against `ec`'s +0.95 / +0.20: one test image of 40 on relearning, the few-shot
    gap the other way, every interval overlapping. The old answer said "depth brings the attacks nearer"."""
    table = judged(ec={**figure(0.95, 0.85, 1.0, RELEARN_GAP), **figure(0.20, 0.08, 0.32, FEWSHOT_GAP), CKA: 0.745},
                   **{"ec[last]": {**figure(0.98, 0.9, 1.0, RELEARN_GAP), **figure(0.18, 0.06, 0.30, FEWSHOT_GAP),
                                   CKA: 0.817}})
    text = str(prose.ec_answer(table, [], "ec[last]"))
    assert "relearning curve, relearning slower counting like relearning faster): cannot be told apart" in text
    assert "few-shot (|few-shot gap|): cannot be told apart" in text
    assert "nearer (" not in text
    assert "moves the intermediate layers further" in text, "CKA 0.745 against 0.817"


def test_plugins_are_read_attack_by_attack():
    """ga+ec and scrub+ec bring relearning nearer but the few-shot gap gets worse (0.14 -> 0.205, 0.07 -> 0.205):
    the old answer counted both as "nearer retrain"."""
    table = judged(
        ga={**figure(0.95, 0.88, 1.0, RELEARN_GAP), **figure(0.14, 0.12, 0.16, FEWSHOT_GAP)},
        scrub={**figure(0.875, 0.78, 0.95, RELEARN_GAP), **figure(0.07, 0.05, 0.09, FEWSHOT_GAP)},
        **{"ga+ec": {**figure(0.30, 0.2, 0.4, RELEARN_GAP), **figure(0.205, 0.19, 0.22, FEWSHOT_GAP)},
           "scrub+ec": {**figure(0.05, 0.0, 0.14, RELEARN_GAP), **figure(0.205, 0.19, 0.22, FEWSHOT_GAP)}})
    text = str(prose.plugin_answer(table, ["ga", "scrub"]))
    assert "On the relearning attack, 2 are decidedly nearer the retrained models than their baseline" in text
    assert "On the few-shot attack, 0 are decidedly nearer the retrained models than their baseline (none), 2 " \
           "decidedly further (`ga+ec`, `scrub+ec`)" in text


def test_the_variant_is_not_nearer_an_anchor_on_figures_within_each_others_intervals():
    """`ec+soft` "nearer retrain on few-shot" than `weight_dist_reg` on 0.015 against 0.030 (probes 0.81 [0.66,
    0.90] and 0.82 [0.68, 0.91])."""
    table = judged(**{"ec+soft": {**figure(-0.015, -0.16, 0.12, FEWSHOT_GAP), "verdict": "erased, hurts retain (-0.12)",
                                  **figure(0.12, 0.09, 0.15, RETAIN_DROP)},
                      "weight_dist_reg": {**figure(0.030, -0.12, 0.16, FEWSHOT_GAP), **figure(0.0, -0.01, 0.01, RETAIN_DROP)}})
    text = str(prose.variant_answer(table, "ec+soft", ["weight_dist_reg"], []))
    assert "few-shot (|few-shot gap|): cannot be told apart" in text and "`ec+soft` nearer" not in text
    assert "at a decidedly greater retain cost" in text


def test_the_weight_space_answer_compares_with_retrains_line_and_leaves_out_what_never_forgot():
    line = {"t0.00": 1.0, "t0.25": 0.95, "t0.50": 0.9, "t0.75": 0.8, "t1.00": 0.0}
    retrain_line = {"t0.00": 1.0, "t0.25": 0.9, "t0.50": 0.2, "t0.75": 0.0, "t1.00": 0.0}
    results = pd.DataFrame([{"seed": 0, "method": m, "metric": "interpolation_accuracy", "layer": t,
                             "split": "test_forget", "value": v}
                            for m, values in (("ga", line), ("retrain", retrain_line)) for t, v in values.items()])
    six = {m: {WEIGHTS: 0.001 * (i + 1), RELEARN_GAP: 0.9 - 0.1 * i} for i, m in enumerate(["ga", "rl", "a", "b", "c", "d"])}
    table = judged(**six, ft={WEIGHTS: 0.0001, RELEARN_GAP: 0.0, "depth": "not forgotten"})
    text = str(prose.basin_answer(table, results, "ga", [*six, "ft"]))
    assert "at t = 0.75 it still reads **0.80 [" in text and "the line to `retrain` reads **0.00 [" in text
    assert "Over the 6 baselines that forgot at the output" in text, "ft never forgot: left out"
    # six points in reverse order: 2 of the 720 orders are as extreme, p = 2/720
    assert "**-1.00** (Spearman, p = 0.00)" in text and "relearn *less* readily" in text
    three = str(prose.basin_answer(table, results, "ga", ["ga", "rl", "a"]))
    assert "(Spearman, p = 0.33)" in three and "too weak, with this few methods" in three, "3 in order: 2 of 6 orders"
    two = str(prose.basin_answer(table, results, "ga", ["ga", "rl", "ft"]))

    assert "no rank correlation between weight distance and relearning gap can be read" in two and "nan" not in two

    close = {"t0.00": 1.0, "t0.25": 0.9, "t0.50": 0.3, "t0.75": 0.05, "t1.00": 0.0}
    results = pd.concat([results[results["method"] == "retrain"],
                         results[results["method"] == "ga"].assign(value=list(close.values()))])
    text = str(prose.basin_answer(table, results, "ga", list(six)))
    assert "is not kept decidedly further than along the line to `retrain` at any t" in text


def places(**models: tuple[list[float], list[tuple[float, float, float]], str]) -> pd.DataFrame:
    """A hand-made `forget_places` table over layer1, layer2 and pool: per model, the share of its 40 forgotten images
    kept together at each layer, how much of their neighbourhood stays as in `original` (mean, low, high), and the
    retained class the others sit beside; the retained images keep 0.80 [0.78, 0.82] of theirs everywhere."""
    return pd.DataFrame([{"method": m, "layer": t, "k": 10, "together": v, "beside": beside,
                          "beside_share": round(1 - v, 2), "n": 40, "stay": stay[0], "stay_low": stay[1],
                          "stay_high": stay[2], "retained_stay": 0.8, "retained_stay_low": 0.78,
                          "retained_stay_high": 0.82}
                         for m, (values, stays, beside) in models.items()
                         for t, v, stay in zip(("layer1", "layer2", "pool"), values, stays)])


def probes(**values: list[float]) -> pd.DataFrame:
    rows = [{"seed": 0, "method": "original", "metric": "split_size", "layer": "", "split": "test_forget", "value": 40.0}]
    return pd.DataFrame(rows + [{"seed": 0, "method": m, "metric": "fewshot_probe_accuracy", "layer": t,
                                 "split": "test_forget", "value": v}
                                for m, vs in values.items() for t, v in zip(("layer1", "layer2", "pool"), vs)])


def test_notebook_04_names_where_each_method_keeps_the_class_and_the_layer_it_moves_from():
    same, moved, overlapping = (1.0, 1.0, 1.0), (0.3, 0.25, 0.35), (0.74, 0.68, 0.79)
    table = places(original=([1.0, 0.98, 0.95], [same] * 3, "5"),
                   retrain=([1.0, 0.9, 0.3], [overlapping, overlapping, moved], "5"),
                   ga=([1.0, 0.95, 0.9], [overlapping] * 3, "8"),
                   ft=([1.0, 0.5, 0.2], [overlapping, moved, moved], "5"),
                   ec=([0.98, 0.9, 0.85], [(0.8, 0.77, 0.83)] * 3, "8"))
    text = str(prose.representation_answer(table, probes(original=[0.4, 0.45, 0.5], retrain=[0.4, 0.5, 0.6],
                                                         ga=[0.4, 0.5, 0.55], ft=[0.4, 0.45, 0.5],
                                                         ec=[0.45, 0.89, 0.6]), ["layer1", "layer2", "pool"]))
    lines = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("- `")}
    assert list(lines) == ["retrain", "ga", "ft", "ec"], "every model but original, named"
    assert "moves the class first at **`layer2`** (and at `pool`): there 0.30 [0.25, 0.35]" in lines["ft"]
    assert "against 0.80 [0.78, 0.82] for the retained" in lines["ft"] and "beside class 5" in lines["ft"]
    assert "first at **`pool`**" in lines["retrain"] and "beside class 5" in lines["retrain"]
    assert "At no layer" in lines["ga"], "0.79 at most against 0.78 at least: the intervals overlap"
    assert "sits together (0.90 [0.77, 0.96]" in lines["ga"]
    assert "decidedly **better** than in `original` at `layer2` (0.89 against 0.45" in lines["ec"]
    assert "better" not in lines["ga"] and "worse" not in lines["ga"], "0.55 against 0.50: no direction"
    assert "At no layer" in lines["ec"], "a class kept as in original, however readable"


def test_rank_correlation_is_spearmans_with_an_exact_permutation_p_value():
    """Three points in order: rho = 1, and two of the six pairings are as extreme (|rho| = 1), so p = 1/3; with a
    tie, rho is the Pearson correlation of the mid-ranks, as in scipy's spearmanr; a constant series has none."""
    ordered = prose.rank_correlation(pd.Series([0.1, 0.5, 0.9]), pd.Series([3.0, 7.0, 8.0]))
    assert ordered.statistic == pytest.approx(1.0) and ordered.pvalue == pytest.approx(1 / 3)
    x, y = pd.Series([1.0, 2, 3, 4, 5]), pd.Series([2.0, 1, 4, 4, 5])
    ranks_y = [2, 1, 3.5, 3.5, 5]  # mid-ranks of the tie
    expected = np.corrcoef([1, 2, 3, 4, 5], ranks_y)[0, 1]
    assert prose.rank_correlation(x, y).statistic == pytest.approx(expected)
    assert pd.isna(prose.rank_correlation(x, pd.Series([2.0] * 5)).statistic)


def test_ec_is_not_said_to_have_the_lowest_cka_where_a_baseline_of_undecided_cost_reads_lower():
    """`ec` at 0.776 is below every baseline that keeps retain (`neggrad_plus` 0.801), but `l1_sparse`, whose retain
    cost the run could not decide, reads 0.763: the claims table says undecided, and so must the answer."""
    table = judged(ec={CKA: 0.776}, neggrad_plus={CKA: 0.801},
                   l1_sparse={CKA: 0.763, "cost": "retain cost undecided (-0.04 [-0.06, -0.02])"})
    text = str(prose.ec_answer(table, ["neggrad_plus", "l1_sparse"]))
    assert "is below every baseline that keeps retain accuracy (the lowest, `neggrad_plus`, 0.801" in text
    assert "But `l1_sparse`, whose retain cost this run cannot decide, reads lower (0.763)" in text
    assert "*undecided* here" in text
    clear = str(prose.ec_answer(judged(ec={CKA: 0.776}, neggrad_plus={CKA: 0.801}), ["neggrad_plus"]))
    assert "But" not in clear


def test_the_sweep_findings_count_what_the_tables_hold():
    """Two Fashion-MNIST cells made by hand: `ga` superficial in both, `rl` in one (not a majority of two), `ec`
    superficial then undecided with the output tell once, its plug-in erased once, the variant erased and hurting
    retain in one cell."""
    cells = [("0", 0), ("4", 0)]
    depth = {"ga": ["superficial", "superficial"], "rl": ["superficial", "erased"], "ec": ["superficial", "undecided"],
             "ga+ec": ["superficial", "erased"], "weight_dist_reg": ["erased", "erased"], "ec+soft": ["erased", "partial"]}
    cost = {"ec+soft": ["hurts retain (-0.21)", "keeps retain"]}
    drop = {"ec+soft": [0.21, 0.01]}
    tells = {"ec": ["output tell", ""]}
    verdicts = pd.DataFrame([{"dataset": "fashion_mnist", "forget_set": f, "seed": s, "method": m, "depth": d[i],
                              "cost": cost.get(m, ["keeps retain"] * 2)[i], "retain drop": drop.get(m, [0.0, 0.0])[i],
                              "tells": tells.get(m, ["", ""])[i]}
                             for m, d in depth.items() for i, (f, s) in enumerate(cells)])
    summary = verdicts.groupby(["dataset", "method"], sort=False).agg(
        superficial=("depth", lambda v: int((v == "superficial").sum())), erased=("depth", lambda v: int((v == "erased").sum())),
        undecided=("depth", lambda v: int((v == "undecided").sum()))).reset_index()
    summary["succeeds"] = summary["method"].map({"weight_dist_reg": 2}).fillna(0)
    claims = pd.DataFrame({"dataset": "fashion_mnist", "claim": [
        "ec forgets at the output and keeps retain accuracy",
        "ec's mean intermediate CKA is below every baseline that does not decidedly hurt retain accuracy"],
        "measured": ["2 of 2 cell(s)", "1 of 2 cell(s)"]})
    nulls = pd.DataFrame({"dataset": ["fashion_mnist"] * 2, "null reads passed": [5, 4], "null reads": [5, 5],
                          "resolution": [0.05, 0.08]})
    text = prose.sweep_findings({"verdicts": verdicts, "summary": summary, "claims": claims, "null_tests": nulls})
    assert text.startswith("**Fashion-MNIST**, 2 cells (forget classes 0 (T-shirt/top), 4 (Coat) × seed 0): "
                           "1 of the 3 baselines is superficial in at least 2 of the 2 cells (`ga`)")
    assert "keeps retain accuracy in 2 of 2 cells" in text
    assert "its mean intermediate CKA is below every baseline that does not decidedly hurt retain accuracy in 1 of 2." \
        in text
    assert "superficial in 1" in text and "undecided in 1 of the 2 cells, with the output tell in 1 of them; of the " \
        "plug-in this scope runs (`ga+ec`), 1 is erased in some cell (`ga+ec` in 1)" in text
    assert "`weight_dist_reg` is erased in all 2 cells and succeeds in 2" in text
    assert "The variant `ec+soft` is " in text and "; it decidedly costs retain accuracy in 1 cell (0.21), and " \
        "succeeds in 0." in text
    assert "*not forgotten*" not in text, "no baseline keeps the class in most cells"
    assert text.endswith("9 of 10 retrained models, each read as a method against the others, pass as erased, keeping "
                         "retain accuracy, with no tell; the cells tell a gap of 0.05 to 0.08 from the retrained models' "
                         "spread.")
