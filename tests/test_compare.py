"""What `python -m ecnb compare` counts as a change, on hand-made rows of a judge table: a verdict's categories, and a
figure only when its two intervals (or, for an accuracy, its two Wilson intervals) are apart. Two real runs are
compared in tests/test_reliability.py (one configuration twice; one hyperparameter changed) and a sweep in
tests/test_sweep.py."""
from __future__ import annotations

import pandas as pd
import pytest

from ecnb.cli import main
from ecnb import compare as compare_module
from ecnb.compare import Cell, config_changes, figure_changes, verdict
from ecnb.verdicts import COST, DEPTH, FORGET, RELEARN_GAP, RETAIN, TELLS, TEST_FORGET, high, low
from ecnb.verdicts.population import FIGURES

SIZES = {"forget_train": 129, "test_retain": 357, "test_forget": 40}


def row(gap: tuple[float, float, float] = (0.8, 0.7, 0.9), forget: float = 0.0, cost: str = "hurts retain (-0.04)",
        depth: str = "superficial", tells: str = "") -> pd.Series:
    """A judge row: the relearning gap (value, low, high), every other figure 0 in [-0.05, 0.05], accuracies."""
    values = {DEPTH: depth, COST: cost, TELLS: tells, FORGET: forget, RETAIN: 0.95, TEST_FORGET: forget}
    for figure in FIGURES:
        values[figure], values[low(figure)], values[high(figure)] = gap if figure == RELEARN_GAP else (0.0, -0.05, 0.05)
    return pd.Series(values)


def test_a_verdict_is_its_depth_cost_and_tells_not_its_numbers():
    assert verdict(row(cost="hurts retain (-0.04)"), "ga") == verdict(row(cost="hurts retain (-0.07)"), "ga")
    assert verdict(row(), "ga") == "superficial, hurts retain"
    assert verdict(row(cost="keeps retain", tells="output tell?"), "ga") == "superficial, keeps retain; output tell?"
    assert verdict(row(cost="retain cost undecided (-0.02 [-0.03, -0.00])"), "ga") == "superficial, retain cost undecided"
    assert verdict(row(depth="erased", cost="keeps retain"), "retrain#2") == "null read: erased, keeps retain"
    assert verdict(row(), "original") == "reference"


def test_a_figure_counts_only_when_its_intervals_are_apart():
    assert figure_changes(row(), row(), SIZES, SIZES) == []
    assert figure_changes(row(), row(gap=(0.72, 0.6, 0.85)), SIZES, SIZES) == [], "it moved inside the noise"
    assert figure_changes(row(), row(gap=(0.2, 0.1, 0.3)), SIZES, SIZES) == [
        "relearning gap: +0.80 [+0.70, +0.90] -> +0.20 [+0.10, +0.30]"]
    # Wilson 95% on 40 images: 0/40 is [0.00, 0.09], 3/40 is [0.03, 0.20]: they overlap; 20/40 is [0.35, 0.65]
    assert figure_changes(row(), row(forget=3 / 40), {**SIZES, "forget_train": 40}, {**SIZES, "forget_train": 40}) == []
    moved = figure_changes(row(), row(forget=0.5), {**SIZES, "forget_train": 40}, {**SIZES, "forget_train": 40})
    assert moved == ["forget_train accuracy: 0.00 [0.00, 0.09] -> 0.50 [0.35, 0.65]",
                     "test_forget accuracy: 0.00 [0.00, 0.09] -> 0.50 [0.35, 0.65]"]
    # zero-width intervals that differ in the third decimal (a population mean of 0.003 where nothing relearns) print
    # the same figure: no move; 0.02 apart is one
    assert figure_changes(row(gap=(0.0, 0.0, 0.0)), row(gap=(0.003, 0.003, 0.003)), SIZES, SIZES) == []
    assert figure_changes(row(gap=(0.0, 0.0, 0.0)), row(gap=(0.02, 0.02, 0.02)), SIZES, SIZES) == [
        "relearning gap: +0.00 [+0.00, +0.00] -> +0.02 [+0.02, +0.02]"]
    unmeasured = row(gap=(float("nan"),) * 3)
    assert figure_changes(row(), unmeasured, SIZES, SIZES) == [], "a figure not measured is not a change"


def test_configuration_changes_are_named_by_their_keys():
    sha_a, sha_b = "a" * 64, "b" * 64
    a = {"run_dir": "runs/a", "overrides": {}, "method_files": {"/x/mine.py": sha_a}, "train": {"epochs": 30}}
    b = {"run_dir": "runs/b", "overrides": {"ga": {"lr": 0.001}}, "method_files": {"/x/mine.py": sha_b},
         "train": {"epochs": 30}}
    assert config_changes(a, b) == ["method_files./x/mine.py: aaaaaaaaaaaa... -> bbbbbbbbbbbb...",
                                    "overrides.ga.lr: - -> 0.001"]
    assert config_changes(a, dict(a, run_dir="elsewhere")) == [], "where a run is does not matter"


@pytest.mark.parametrize("what", ["no config.json", "no outcomes"])
def test_a_directory_that_is_not_a_measured_run_is_bad_input(what, tmp_path, capsys):
    run_dir = tmp_path / "run"
    if what == "no outcomes":
        from ecnb.artifacts import Run
        from ecnb.config import StudyConfig

        Run.open(StudyConfig.from_options(run_dir=str(run_dir)))
    assert main(["compare", str(run_dir), str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecnb: error: ") and len(err.strip().splitlines()) == 1
    assert ("has no config.json" if what == "no config.json" else "has no per-image outcomes") in err


def test_a_claim_that_flips_is_named_with_what_it_needs_on_both_sides(monkeypatch):
    """Exercise 5 of the lab: a slower `ga` moves the layers less, so "ga+ec's CKA is below ga's" starts to hold; the
    line shows both sides' figure and target, and a claim that holds in both runs is not named."""
    claim, other = "ga+ec's mean intermediate CKA (mean over cells) is below ga's", "ec forgets at the output"
    tables = {"A": pd.DataFrame({"measured": ["0.791", "6 of 6 cell(s)"], "target": ["< 0.783", ">= 4"],
                                 "holds": [False, True]}, index=[claim, other]),
              "B": pd.DataFrame({"measured": ["0.791", "6 of 6 cell(s)"], "target": ["< 0.908", ">= 4"],
                                 "holds": [True, True]}, index=[claim, other])}
    cells = {side: {"cell": Cell(pd.DataFrame(index=["ga"]), "digits", {}, {})} for side in tables}
    monkeypatch.setattr(compare_module, "_claims", lambda t, shared: tables["A" if t["cell"] is cells["A"]["cell"].table
                                                                             else "B"])
    assert compare_module.claim_changes(cells["A"], cells["B"]) == [
        f"{claim} (digits): does not hold -> holds (0.791, needs < 0.783 -> 0.791, needs < 0.908)"]
