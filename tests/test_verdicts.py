"""The verdicts (depth, tells, cost) and the claims on hand-made results: every figure below is computed by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from ecnb import verdicts
from ecnb.results import read_results, result_row, write_results
from ecnb.verdicts import CKA, FEWSHOT, FEWSHOT_GAP, RELEARN_GAP, RESISTANCE, RETAIN_DROP

TAPS = ["layer1", "layer2", "pool"]
STEPS = (0, 5, 10, 20, 50)


def rows_of(method: str, forget: float, retain: float, ckas: tuple, fewshot: tuple, relearn: tuple, ks: float = 0.1,
            seed: int = 0) -> list[dict]:
    rows = [result_row(seed, method, "accuracy", forget, split="forget_train"),
            result_row(seed, method, "accuracy", retain, split="test_retain"),
            result_row(seed, method, "split_size", 40, split="test_forget"),
            result_row(seed, method, "output_ks_to_retrain", ks, split="forget_train"),
            result_row(seed, method, "output_entropy", 1.0, split="forget_train")]
    rows += [result_row(seed, method, "cka_to_original", c, split="forget_train", layer=t) for t, c in zip(TAPS, ckas)]
    rows += [result_row(seed, method, "fewshot_probe_accuracy", p, split="test_forget", layer=t) for t, p in zip(TAPS, fewshot)]
    rows += [result_row(seed, method, "relearn_accuracy", v, split="test_forget", layer=f"step{s}")
             for s, v in zip(STEPS, relearn)]
    return rows


# (forget, retain, CKA per tap, few-shot probe per tap, relearn per step of STEPS[, output KS])
METHODS = {
    "original": (1.00, 0.99, (1.0, 1.0, 1.0), (0.90, 0.95, 0.99), (1.0, 1.0, 1.0, 1.0, 1.0), 0.9),
    "retrain": (0.00, 0.98, (0.9, 0.5, 0.2), (0.40, 0.30, 0.50), (0.0, 0.0, 0.0, 0.0, 0.9), 0.0),
    # 0.00 until step 10, then 0.80 at step 20 where retrain is still at 0: superficial (gap 0.80 at step 20)
    "late": (0.02, 0.97, (0.8, 0.5, 0.1), (0.45, 0.35, 0.55), (0.0, 0.0, 0.0, 0.80, 0.95)),
    # relearns like retrain, probes like it: erased; its outputs are near-uniform where retrain guesses (KS 0.9)
    "uniform": (0.00, 0.98, (0.95, 0.6, 0.3), (0.48, 0.20, 0.55), (0.0, 0.0, 0.05, 0.05, 0.85), 0.9),
    # erased by both gaps but resists relearning (0.40 below retrain at step 50); hurts retain by 0.09
    "stubborn": (0.00, 0.90, (0.5, 0.2, 0.1), (0.40, 0.30, 0.45), (0.0, 0.0, 0.0, 0.0, 0.50)),
    # forget accuracy 0.30, more than 0.05 above retrain's 0: keeps the class
    "keeper": (0.30, 0.99, (1.0, 0.9, 0.8), (0.9, 0.9, 0.9), (0.3, 0.9, 0.9, 0.9, 0.9)),
    # relearning gap 0.2 (step 20), few-shot gap 0.85 - 0.5 = 0.35 at `pool`, the penultimate tap: superficial
    "head": (0.00, 0.99, (0.9, 0.6, 0.3), (0.40, 0.3, 0.85), (0.0, 0.0, 0.1, 0.2, 0.9)),
    # both gaps 0.2: partial
    "between": (0.00, 0.99, (0.9, 0.6, 0.3), (0.70, 0.3, 0.3), (0.0, 0.0, 0.2, 0.2, 0.9)),
    # erased, keeps retain, no tell: succeeds
    "winner": (0.00, 0.985, (0.9, 0.5, 0.3), (0.45, 0.3, 0.4), (0.0, 0.05, 0.05, 0.1, 0.8), 0.3),
}


def write(tmp_path, spec: dict, seed: int = 0) -> None:
    write_results(tmp_path, [r for m, s in spec.items() for r in rows_of(m, *s[:5], *s[5:], seed=seed)])


@pytest.fixture
def table(tmp_path) -> pd.DataFrame:
    write(tmp_path, METHODS)
    return verdicts.judge(verdicts.evidence(read_results(tmp_path)))


def test_evidence_reads_every_tap_for_the_probe_and_the_whole_relearning_curve(tmp_path):
    write(tmp_path, METHODS)
    table = verdicts.evidence(read_results(tmp_path))
    assert list(table.index) == list(METHODS)
    assert table.loc["late", CKA] == pytest.approx(0.65), "CKA: mean over layer1 and layer2, never the last tap"
    assert table.loc["head", FEWSHOT] == pytest.approx(0.85), "the probe: best over every tap, pool included"
    assert verdicts.relearn_columns(table) == [f"relearn@{s}" for s in STEPS]
    assert table.loc["late", "relearn@20"] == pytest.approx(0.80)
    assert table.loc["original", verdicts.N_TEST_FORGET] == 40


def test_the_relearning_gap_is_the_largest_difference_to_retrain_over_the_grid(table):
    # late: 0 - 0, 0 - 0, 0 - 0, 0.80 - 0, 0.95 - 0.9: at step 10 alone it would look erased
    assert table.loc["late", RELEARN_GAP] == pytest.approx(0.80)
    assert table.loc["late", verdicts.RELEARN_GAP_STEP] == "20"
    assert table.loc["late", "depth"] == "superficial"
    assert table.loc["stubborn", RELEARN_GAP] == pytest.approx(0.0)
    assert table.loc["stubborn", RESISTANCE] == pytest.approx(-0.40)


def test_each_depth_on_a_hand_made_method(table):
    assert table["depth"].to_dict() == {
        "original": "reference", "retrain": "reference", "late": "superficial", "uniform": "erased",
        "stubborn": "erased", "keeper": "keeps the class", "head": "superficial", "between": "partial",
        "winner": "erased",
    }
    assert table.loc["head", FEWSHOT_GAP] == pytest.approx(0.35), "a head re-fitted at the penultimate tap is an attack"


def test_the_tells_and_the_cost(table):
    assert bool(table.loc["uniform", "output tell"]) and not table.loc["winner", "output tell"]
    assert bool(table.loc["stubborn", "over-resistance tell"]) and not table.loc["late", "over-resistance tell"]
    assert table.loc["stubborn", RETAIN_DROP] == pytest.approx(0.09)
    assert table.loc["stubborn", "cost"] == "hurts retain (-0.09)"
    assert table.loc["late", "cost"] == "keeps retain", "0.99 - 0.97 = 0.02, within 0.03"


def test_the_verdict_strings(table):
    assert table.loc["late", "verdict"] == "superficial, keeps retain"
    assert table.loc["uniform", "verdict"] == "erased, keeps retain; output tell"
    assert table.loc["stubborn", "verdict"] == "erased, hurts retain (-0.09); over-resistance tell"
    assert table.loc["keeper", "verdict"] == "keeps the class, keeps retain"
    assert table.loc["original", "verdict"] == "reference"
    assert table["succeeds"].to_dict() == {m: m == "winner" for m in METHODS}


def test_thresholds_hold_exactly_at_their_values(tmp_path):
    write(tmp_path, {**METHODS, "edge": (0.05, 0.96, (0.9, 0.5, 0.2), (0.70, 0.3, 0.3), (0.0, 0.0, 0.0, 0.0, 0.6), 0.5)})
    edge = verdicts.judge(verdicts.evidence(read_results(tmp_path))).loc["edge"]
    # forget 0.05 above retrain's is still forgotten; few-shot gap 0.70 - 0.50 = 0.2; KS 0.5 is a tell;
    # relearn 0.6 - 0.9 = -0.3 is over-resistance; retain 0.99 - 0.96 = 0.03 is kept
    assert edge["depth"] == "partial" and edge["cost"] == "keeps retain"
    assert edge["tells"] == "output tell, over-resistance tell"


def test_missing_attacks_never_make_a_method_erased(tmp_path):
    write(tmp_path, METHODS)
    results = read_results(tmp_path)
    no_attacks = results[~results["metric"].isin(["fewshot_probe_accuracy", "relearn_accuracy"])]
    table = verdicts.judge(verdicts.evidence(no_attacks))
    assert table.loc["winner", "depth"] == "partial" and table.loc["keeper", "depth"] == "keeps the class"


def test_disagreements_and_the_prose_come_from_the_table(table):
    odd = verdicts.disagreements(table)
    assert list(odd.index) == ["late", "uniform"], "winner's CKA 0.70 equals retrain's: no disagreement"
    assert "yet the attacks bring the class back" in odd.loc["late", "what disagrees"]
    text = verdicts.describe(table)
    assert "**superficial**: `late` (+0.80 / +0.05), `head` (+0.20 / +0.35)" in text
    assert "**output tell**" in text and "`uniform`" in text and "**Succeeds** (erased, keeps retain, no tell): `winner`." in text
    assert "`stubborn` (-0.09)" in text
    assert text._repr_markdown_() == str(text)


def test_wilson_interval_by_hand():
    # p = 0.5, n = 40, z = 1.96: centre 0.5, half-width 1.96/(1+0.096) * sqrt(0.25/40 + 1.96²/6400) = 0.1474
    lo, hi = verdicts.wilson_interval(0.5, 40)
    assert lo == pytest.approx(0.5 - 0.1474, abs=1e-3) and hi == pytest.approx(0.5 + 0.1474, abs=1e-3)
    lo, hi = verdicts.wilson_interval(0.0, 40)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / (40 + 3.8415), abs=1e-4), "0 of 40 is not certainly 0"
    assert verdicts.with_interval(0.0, 40) == "0.00 [0.00, 0.09]"


def _cell(tmp_path, name: str, **changes) -> pd.DataFrame:
    write(tmp_path / name, {**METHODS, **changes})
    return verdicts.judge(verdicts.evidence(read_results(tmp_path / name)))


def test_claims_count_a_failed_cell_as_one_where_nothing_holds(tmp_path):
    """late and head superficial in two cells of three: the claim holds; with a fourth cell that failed, 2 of 4
    is no longer a majority."""
    cells = {"a": _cell(tmp_path, "a"), "b": _cell(tmp_path, "b"), "c": _cell(tmp_path, "c", late=METHODS["winner"],
                                                                               head=METHODS["winner"])}
    first = verdicts.claims(cells, ["late", "head", "keeper"], ec="winner").iloc[0]
    assert first["holds"] and first["measured"] == "late, head"
    failed = verdicts.claims({**cells, "d": None}, ["late", "head", "keeper"], ec="winner")
    assert not failed.iloc[0]["holds"] and failed.iloc[0]["target"] == ">= 2 of 3 baselines, each in >= 3 of 4 cell(s)"
    row = failed.loc["winner forgets at the output and keeps retain accuracy"]
    assert row["measured"] == "3 of 4 cell(s)" and row["holds"]


def test_the_plugin_criterion_is_the_mean_over_cells_and_a_missing_pair_does_not_hold(tmp_path):
    cells = {
        "a": _cell(tmp_path, "a", **{"late+ec": METHODS["uniform"]}),  # CKA 0.775
        "b": _cell(tmp_path, "b", **{"late+ec": (0.0, 0.98, (0.55, 0.55, 0.1), (0.4, 0.3, 0.2), (0,) * 5)}),  # 0.55
    }
    checks = verdicts.claims(cells, ["late", "head"], ec="uniform")
    plugin = checks.loc["late+ec's mean intermediate CKA (mean over cells) is below late's"]
    assert plugin["measured"] == "0.662" and plugin["target"] == "< 0.650" and not plugin["holds"]
    missing = checks.loc["head+ec's mean intermediate CKA (mean over cells) is below head's"]
    assert not missing["holds"] and missing["measured"] == "missing"
    assert checks.loc["late+ec is erased (reported as measured)", "measured"] == "2 of 2 cell(s)"


def test_ec_must_beat_only_the_baselines_that_keep_retain_accuracy(tmp_path):
    cell = {"x": _cell(tmp_path, "x")}
    # "uniform" (CKA 0.775) as EC against stubborn (0.35, hurts retain: not counted) and late (0.65)
    assert not verdicts.claims(cell, ["stubborn", "late"], ec="uniform").iloc[2]["holds"]
    assert verdicts.claims(cell, ["stubborn", "keeper"], ec="uniform").iloc[2]["holds"], "below keeper's 0.95"


def test_attack_distances_read_both_sides_of_retrain(table):
    d = verdicts.attack_distances(table)
    assert d.loc["retrain"].tolist() == [0.0, 0.0]
    assert d.loc["late", "relearning"] == pytest.approx(0.80)
    assert d.loc["stubborn", "relearning"] == pytest.approx(0.40), "resisting by 0.40 is as far as relearning by 0.40"
    assert d.loc["stubborn", "few-shot"] == pytest.approx(0.05)
    assert verdicts.attack_distance(table)["stubborn"] == pytest.approx(0.45)


def test_variant_claims_read_success_the_anchors_the_cost_and_each_plugin(tmp_path):
    """`v` succeeds in 2 of 3 cells (winner's figures; uniform's in the third, output tell). Anchor `anc` at
    stubborn's figures: relearning distance 0.40, few-shot 0.05, retain drop 0.09."""
    cells = {name: _cell(tmp_path, name, v=METHODS["winner" if name != "c" else "uniform"], anc=METHODS["stubborn"],
                         **{"late+v": METHODS["winner"], "late+ec": METHODS["between"]}) for name in "abc"}
    checks = verdicts.variant_claims(cells, ["late", "keeper"], ["v"], anchors=["anc"])
    assert checks.loc["v succeeds (erased, keeps retain, no tell)", "measured"] == "2 of 3 cell(s)"
    assert checks.loc["v succeeds (erased, keeps retain, no tell)", "holds"]
    relearning = checks.loc["v is nearer retrain than anc on the relearning attack (mean distance over cells)"]
    # v: winner's largest |difference| 0.1 in two cells, uniform's 0.05 in one: 0.0833
    assert relearning["measured"] == "0.083" and relearning["target"] == "< 0.400" and relearning["holds"]
    fewshot = checks.loc["v is nearer retrain than anc on the few-shot attack (mean distance over cells)"]
    assert fewshot["measured"] == "0.050" and not fewshot["holds"], "winner's and uniform's 0.05 against anc's 0.05"
    cost = checks.loc["v costs no more retain accuracy than anc (mean drop over cells)"]
    assert cost["holds"] and cost["target"] == "<= 0.090"
    plugin = checks.loc["late+v is nearer retrain on the attacks than late (mean over cells)"]
    assert plugin["measured"] == "0.150" and plugin["target"] == "< 0.850" and plugin["holds"]
    missing = checks.loc["keeper+v is nearer retrain on the attacks than keeper (mean over cells)"]
    assert missing["measured"] == "missing" and not missing["holds"], "a plug-in that did not run does not hold"
    assert not checks.loc["keeper+v is nearer retrain on the attacks than keeper+ec (mean over cells)", "holds"]
    assert checks.loc["late+v keeps retain accuracy", "measured"] == "3 of 3 cell(s)"


def test_summary_shows_the_verdict_lines_gaps_and_intervals(tmp_path):
    write(tmp_path, METHODS)
    one = verdicts.summary(read_results(tmp_path), [0])
    assert one.loc["late", "verdict"] == "superficial, keeps retain"
    assert one.loc["late", "relearning gap"] == "0.800 (step 20)"
    assert one.loc["late", "relearn at its step [95% CI]"] == "0.80 [0.65, 0.90]"
    assert one.loc["original", "verdict"] == "reference"

    write(tmp_path, {**METHODS, "late": METHODS["winner"]}, seed=1)
    two = verdicts.summary(read_results(tmp_path), [0, 1])
    assert two.loc["winner", "verdict"] == "erased, keeps retain"
    assert two.loc["late", "verdict"] == "superficial, keeps retain (1/2); erased, keeps retain (1/2)"
    gap = (0.80 + 0.10) / 2, math.sqrt(2 * 0.35**2)
    assert two.loc["late", "relearning gap"] == f"{gap[0]:.3f} ± {gap[1]:.3f}"


def test_the_weight_space_answer_reads_the_line_and_needs_three_baselines_for_a_correlation():
    from ecnb import prose
    from ecnb.verdicts import WEIGHTS
    line = {"t0.00": 1.0, "t0.25": 0.9, "t0.50": 0.8, "t0.75": 0.6, "t1.00": 0.0}  # half of 1.0 kept up to t = 0.75
    results = pd.DataFrame([{"seed": 0, "method": "ga", "metric": "interpolation_accuracy", "layer": t,
                             "split": "test_forget", "value": v} for t, v in line.items()])
    table = pd.DataFrame({WEIGHTS: [0.01, 0.001, 0.002, 0.003], RELEARN_GAP: [0.0, 0.9, 0.6, 0.3]},
                         index=["retrain", "ga", "rl", "scrub"])
    three = str(prose.basin_answer(table, results, "ga", ["ga", "rl", "scrub"]))
    assert "inside the original's basin" in three and "0.60 there" in three
    assert "rank correlation between weight distance and relearning gap is **-1.00**" in three, "distance up, gap down"
    two = str(prose.basin_answer(table, results, "ga", ["ga", "rl"]))
    assert "no rank correlation between weight distance and relearning gap can be read" in two and "nan" not in two
