"""The evaluation path shared by notebooks 02 and 03: cached unlearning and the summary table."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

import ecnb
from ecnb import evaluate, unlearn
from ecnb.results import read_results, result_row, write_results


def test_unlearned_models_are_cached_and_recomputed_when_settings_change(trained, monkeypatch):
    refs = {"original": trained.original}
    model, wall = evaluate.unlearn_or_load(trained.run, trained.ds, trained.split, "ga", 0, trained.original, "cpu")
    assert wall > 0 and trained.run.checkpoint_path("ga", 0).exists()

    def fail(*args, **kwargs):
        raise AssertionError("a cached method must not run again")

    monkeypatch.setattr(evaluate, "run_method", fail)
    again, wall_again = evaluate.unlearn_or_load(trained.run, trained.ds, trained.split, "ga", 0, trained.original, "cpu")
    assert wall_again == wall
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(AssertionError, match="must not run again"):
        evaluate.unlearn_or_load(trained.run, trained.ds, trained.split, "ga", 0, refs["original"], "cpu", epochs=1)


def test_models_measured_before_are_loaded_without_measuring_them_again(trained, tmp_path, monkeypatch):
    run = ecnb.Run.load(shutil.copytree(trained.run.root, tmp_path / "run"))
    refs = {"original": trained.original, "retrain": trained.retrain}
    evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    evaluate.run_references(run, trained.ds, trained.split, 0, refs)
    first = read_results(run.root)
    assert evaluate.measured(first, 0) == {"ga", "original", "retrain"}

    measuring = []
    monkeypatch.setattr(evaluate, "method_rows", lambda run, ds, split, method, *a, **k: measuring.append(method) or [])
    models = evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    evaluate.run_references(run, trained.ds, trained.split, 0, refs)
    assert measuring == [] and list(models) == ["ga"]
    pd.testing.assert_frame_equal(read_results(run.root), first)

    # a metric missing, or a checkpoint from other settings: measured again
    first[~((first["method"] == "ga") & (first["metric"] == "probe_accuracy"))].to_csv(run.root / "results.csv", index=False)
    evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    assert measuring == ["ga"]
    write_results(run.root, first[first["method"] == "ga"].to_dict("records"))
    monkeypatch.setitem(unlearn.HPARAMS["quick"], "ga", {**unlearn.HPARAMS["quick"]["ga"], "epochs": 1})
    evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    assert measuring == ["ga", "ga"]


def test_unlearn_data_is_the_forget_split(trained):
    data = evaluate.unlearn_data(trained.ds, trained.split)
    assert len(data.forget_y) == len(trained.split.forget_idx) and set(data.forget_y.tolist()) == {3}
    assert 3 not in data.retain_y.tolist() and data.num_classes == 10


def test_intermediate_summary_and_superficial_verdict(tmp_path):
    taps = ["layer1", "layer2", "pool"]
    rows = []
    for method, acc, ckas in (("original", 1.0, (1.0, 1.0, 1.0)), ("retrain", 0.0, (0.9, 0.5, 0.2)),
                              ("ga", 0.02, (0.95, 0.85, 0.1)), ("ec", 0.0, (0.7, 0.5, 0.1)), ("ft", 0.9, (1.0, 1.0, 1.0))):
        rows.append(result_row(0, method, "accuracy", acc, split="forget_train"))
        rows.append(result_row(0, method, "accuracy", 0.99, split="test_retain"))
        rows += [result_row(0, method, "cka_to_original", c, split="forget_train", layer=t) for t, c in zip(taps, ckas)]
    write_results(tmp_path, rows)
    table = evaluate.intermediate_summary(read_results(tmp_path), taps)
    assert list(table.index) == ["original", "retrain", "ga", "ec", "ft"]
    # the mean over the intermediate taps only (layer1, layer2), never the last
    assert table.loc["ga", "mean intermediate CKA to original (forget_train)"] == pytest.approx(0.9)
    assert table.loc["ec", "mean intermediate CKA to original (forget_train)"] == pytest.approx(0.6)
    assert evaluate.superficial_forgetting(table) == ["ga"]


def test_ec_checks_follow_study_section_7():
    """A hand-made summary: `wreck` lowers CKA by ruining retain accuracy and must not count against EC;
    `rl+ec` beats `rl`, `wreck+ec` does not beat `wreck`, and a missing plug-in is reported, not dropped."""
    cka = evaluate.CKA_COLUMN
    table = pd.DataFrame(
        {"forget_train acc": [1.0, 0.0, 0.01, 0.0, 0.0, 0.04, 0.0],
         "test_retain acc": [0.99, 0.99, 0.98, 0.80, 0.97, 0.98, 0.85],
         cka: [1.0, 0.85, 0.90, 0.60, 0.75, 0.80, 0.65]},
        index=["original", "retrain", "rl", "wreck", "ec", "rl+ec", "wreck+ec"],
    )
    checks = evaluate.ec_checks(table, ["rl", "wreck", "ga"])
    holds = checks["holds"].tolist()
    assert holds == [True, True, True, True, False, False]
    assert "(rl)" in checks.index[2], "only the baseline that keeps retain accuracy within 0.03 is compared"
    assert checks["target"].iloc[2] == "< 0.900"
    assert checks["target"].iloc[5] == "not measured: ga, ga+ec" and pd.isna(checks["value"].iloc[5])
    worse_retain = table.assign(**{"test_retain acc": [0.99, 0.99, 0.98, 0.80, 0.95, 0.98, 0.85]})
    assert not evaluate.ec_checks(worse_retain, ["rl"])["holds"].iloc[1], "0.95 is more than 0.03 below 0.99"
