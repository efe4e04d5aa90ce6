"""The verdicts of STUDY.md section 7 on hand-made results: every figure below is computed by hand."""
from __future__ import annotations

import pandas as pd
import pytest

from ecnb import verdicts
from ecnb.results import read_results, result_row, write_results
from ecnb.verdicts import CKA, FEWSHOT, RELEARN

TAPS = ["layer1", "layer2", "pool"]


def rows_of(method: str, forget: float, retain: float, ckas: tuple, fewshot: tuple, relearn: dict, seed: int = 0) -> list[dict]:
    rows = [result_row(seed, method, "accuracy", forget, split="forget_train"),
            result_row(seed, method, "accuracy", retain, split="test_retain")]
    rows += [result_row(seed, method, "cka_to_original", c, split="forget_train", layer=t) for t, c in zip(TAPS, ckas)]
    rows += [result_row(seed, method, "fewshot_probe_accuracy", p, split="test_forget", layer=t) for t, p in zip(TAPS, fewshot)]
    rows += [result_row(seed, method, "relearn_accuracy", v, split="test_forget", layer=f"step{s}") for s, v in relearn.items()]
    return rows


# (forget, retain, CKA per tap, few-shot probe per tap, relearn per step)
METHODS = {
    "original": (1.00, 0.99, (1.0, 1.0, 1.0), (0.90, 0.95, 0.99), {0: 1.0, 10: 1.0}),
    "retrain": (0.00, 0.98, (0.9, 0.5, 0.2), (0.40, 0.30, 0.20), {0: 0.0, 10: 0.05}),
    # forgets at the output; relearn 0.80 - 0.05 >= 0.3: superficial (CKA 0.65, below retrain's 0.7)
    "hider": (0.02, 0.97, (0.8, 0.5, 0.1), (0.45, 0.35, 0.9), {0: 0.0, 10: 0.80}),
    # forgets; relearn 0.10 (gap 0.05) and best intermediate probe 0.48 (gap 0.08): erased, with CKA above retrain's
    "eraser": (0.00, 0.98, (0.95, 0.6, 0.3), (0.48, 0.20, 0.99), {0: 0.0, 10: 0.10}),
    # forgets, but retain accuracy 0.90 < 0.99 - 0.03: hurts retain, whatever the attacks say
    "wreck": (0.00, 0.90, (0.5, 0.2, 0.1), (0.40, 0.30, 0.2), {0: 0.0, 10: 0.0}),
    # forget accuracy 0.30, more than 0.05 from retrain's 0: keeps the class
    "keeper": (0.30, 0.99, (1.0, 0.9, 0.8), (0.9, 0.9, 0.9), {0: 0.3, 10: 0.9}),
    # forgets; relearn gap 0.2 and probe gap 0.2: neither superficial nor erased
    "between": (0.00, 0.99, (0.9, 0.6, 0.3), (0.60, 0.3, 0.3), {0: 0.0, 10: 0.25}),
}


@pytest.fixture
def results(tmp_path) -> pd.DataFrame:
    write_results(tmp_path, [r for m, spec in METHODS.items() for r in rows_of(m, *spec)])
    return read_results(tmp_path)


def test_evidence_reads_the_intermediate_taps_and_the_reference_step(results):
    table = verdicts.evidence(results, reference_step=10)
    assert list(table.index) == list(METHODS)
    assert table.loc["hider", CKA] == pytest.approx(0.65), "mean over layer1 and layer2, never the last tap"
    assert table.loc["hider", FEWSHOT] == pytest.approx(0.45), "best over the intermediate taps: pool's 0.9 is left out"
    assert table.loc["hider", RELEARN] == pytest.approx(0.80)
    assert verdicts.evidence(results, reference_step=0).loc["keeper", RELEARN] == pytest.approx(0.3)


def test_each_verdict_on_a_hand_made_method(results):
    table = verdicts.judge(verdicts.evidence(results))
    assert table["verdict"].to_dict() == {
        "original": "reference", "retrain": "reference", "hider": "superficial", "eraser": "erased",
        "wreck": "hurts retain", "keeper": "keeps the class", "between": "forgets at the output",
    }
    assert bool(table.loc["between", "forgets at output"]) and not table.loc["wreck", "forgets at output"]


def test_superficial_by_the_probe_alone(results):
    table = verdicts.evidence(results)
    table.loc["between", FEWSHOT] = 0.40 + 0.3  # exactly the gap
    assert verdicts.judge(table).loc["between", "verdict"] == "superficial"


def test_missing_attacks_never_make_a_method_erased(results):
    no_attacks = results[~results["metric"].isin(["fewshot_probe_accuracy", "relearn_accuracy"])]
    table = verdicts.judge(verdicts.evidence(no_attacks))
    assert table.loc["eraser", "verdict"] == "forgets at the output"


def test_disagreements_name_where_cka_and_the_attacks_differ(results):
    odd = verdicts.disagreements(verdicts.judge(verdicts.evidence(results)))
    assert list(odd.index) == ["hider", "eraser"]
    assert "yet the attacks bring the class back" in odd.loc["hider", "what disagrees"]
    text = verdicts.describe(verdicts.judge(verdicts.evidence(results)))
    assert "**superficial**: `hider` (0.80 / 0.45 / 0.650)" in text and "`eraser`" in text
    assert text._repr_markdown_() == str(text)


def _cell(tmp_path, name: str, **changes) -> pd.DataFrame:
    spec = {**METHODS, **changes}
    write_results(tmp_path / name, [r for m, s in spec.items() for r in rows_of(m, *s)])
    return verdicts.judge(verdicts.evidence(read_results(tmp_path / name)))


def test_claims_are_read_over_cells(tmp_path):
    """Two baselines superficial in two of three cells: the claim holds; the plug-in criterion is the mean
    over the cells, so one cell where hider+ec is above hider does not decide it."""
    superficial = METHODS["hider"]
    cells = {
        "a": _cell(tmp_path, "a", eraser=superficial, **{"hider+ec": METHODS["eraser"]}),
        "b": _cell(tmp_path, "b", eraser=superficial, **{"hider+ec": (0.0, 0.98, (0.85, 0.55, 0.1), (0.4, 0.3, 0.2), {10: 0.8})}),
        "c": _cell(tmp_path, "c", **{"hider+ec": METHODS["eraser"]}),
    }
    checks = verdicts.claims(cells, ["hider", "eraser"], ec="eraser")
    first = checks.iloc[0]
    assert first["holds"] and first["measured"] == "hider, eraser"
    plugin = checks.loc["hider+ec's mean intermediate CKA (mean over cells) is below hider's"]
    # hider+ec: (0.775 + 0.70 + 0.775) / 3 = 0.75 against hider's 0.65 in every cell: does not hold
    assert plugin["measured"] == "0.750" and plugin["target"] == "< 0.650" and not plugin["holds"]
    missing = checks.loc["eraser+ec's mean intermediate CKA (mean over cells) is below eraser's"]
    assert not missing["holds"] and missing["measured"] == "nan"
    assert checks.loc["hider+ec is erased by the attacks (reported as measured)", "measured"] == "2 of 3 cell(s)"


def test_attack_distance_is_the_two_absolute_gaps_to_retrain(results):
    table = verdicts.judge(verdicts.evidence(results))
    distance = verdicts.attack_distance(table)
    assert distance["retrain"] == 0
    # hider: |0.80 - 0.05| + |0.45 - 0.40|; eraser: |0.10 - 0.05| + |0.48 - 0.40|
    assert distance["hider"] == pytest.approx(0.80) and distance["eraser"] == pytest.approx(0.13)
    # wreck reads *less* than retrain on both: |0.0 - 0.05| + |0.40 - 0.40|, a gap all the same
    assert distance["wreck"] == pytest.approx(0.05)


def test_variant_claims_read_erasure_and_each_plugin_against_its_baseline_and_b_plus_ec(tmp_path):
    """`v` (the variant) erased in 2 of 3 cells; hider+v at eraser's figures (distance 0.13) against
    hider's 0.80 and hider+ec's (between's figures: |0.25 - 0.05| + |0.60 - 0.40| = 0.40)."""
    cells = {name: _cell(tmp_path, name, v=METHODS["eraser" if name != "c" else "between"],
                         **{"hider+v": METHODS["eraser"], "hider+ec": METHODS["between"]}) for name in "abc"}
    checks = verdicts.variant_claims(cells, ["hider", "keeper"], ["v"])
    assert checks.loc["v is erased by the attacks", "measured"] == "2 of 3 cell(s)"
    assert checks.loc["v is erased by the attacks", "holds"]
    against_base = checks.loc["hider+v is nearer retrain on the attacks than hider (mean over cells)"]
    assert against_base["measured"] == "0.130" and against_base["target"] == "< 0.800" and against_base["holds"]
    assert checks.loc["hider+v is nearer retrain on the attacks than hider+ec (mean over cells)", "target"] == "< 0.400"
    missing = checks.loc["keeper+v is nearer retrain on the attacks than keeper (mean over cells)"]
    assert missing["measured"] == "nan" and not missing["holds"], "a plug-in that did not run does not hold"
    assert "keeper+v is nearer retrain on the attacks than keeper+ec (mean over cells)" not in checks.index


def test_ec_must_beat_only_the_baselines_that_keep_retain_accuracy(tmp_path):
    cell = _cell(tmp_path, "x")
    # "eraser" (CKA 0.775) as EC against baselines wreck (0.35, hurts retain: not counted) and hider (0.65)
    row = verdicts.claims({"x": cell}, ["wreck", "hider"], ec="eraser").iloc[2]
    assert not row["holds"], "0.775 is not below hider's 0.65; wreck's 0.35 does not count"
    row = verdicts.claims({"x": cell}, ["wreck", "keeper"], ec="eraser").iloc[2]
    assert row["holds"], "below keeper's 0.95"


def test_summary_shows_each_methods_verdict_and_counts_over_seeds(tmp_path):
    rows = [r for m, spec in METHODS.items() for r in rows_of(m, *spec)]
    rows += [r for m, spec in {**METHODS, "hider": METHODS["eraser"]}.items() for r in rows_of(m, *spec, seed=1)]
    write_results(tmp_path, rows)
    table = verdicts.summary(read_results(tmp_path), [0, 1], reference_step=10)
    assert table.loc["eraser", "verdict"] == "erased"
    assert table.loc["hider", "verdict"] == "superficial 1/2, erased 1/2"
    assert table.loc["hider", "relearn at step10"] == "0.450 ± 0.495"
    assert table.loc["original", "verdict"] == "reference"
