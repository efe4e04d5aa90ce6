"""The evaluation path shared by notebooks 02 and 03: cached unlearning and the summary table."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import ecnb
from ecnb import evaluate, metrics, unlearn
from ecnb.results import read_results, write_results


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


def test_a_method_whose_code_was_revised_is_unlearned_again(trained, tmp_path, monkeypatch):
    """A fix to a built-in method's code that leaves its hyperparameters alone (`Method.revision`) must not be
    answered from a checkpoint the old code made; methods not revised keep theirs."""
    run = ecnb.Run.load(shutil.copytree(trained.run.root, tmp_path / "run"))
    args = (run, trained.ds, trained.split)
    for method in ("ga", "rl"):
        evaluate._unlearn_or_load(*args, method, 0, trained.original, "cpu")
    revised = dataclasses.replace(unlearn.METHODS["ga"], revision=unlearn.METHODS["ga"].revision + 1)
    monkeypatch.setitem(unlearn.METHODS, "ga", revised)
    assert not evaluate._unlearn_or_load(*args, "ga", 0, trained.original, "cpu")[2], "made again"
    assert evaluate._unlearn_or_load(*args, "ga", 0, trained.original, "cpu")[2], "then kept under its new key"
    assert evaluate._unlearn_or_load(*args, "rl", 0, trained.original, "cpu")[2], "another method is not touched"
    assert unlearn.METHODS["weight_dist_reg"].revision >= 1 and unlearn.METHODS["weight_distortion+ec"].revision >= 1


def test_models_measured_before_are_loaded_without_measuring_them_again(trained, tmp_path, monkeypatch):
    run = ecnb.Run.load(shutil.copytree(trained.run.root, tmp_path / "run"))
    refs = {"original": trained.original, "retrain": trained.retrain}
    evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    evaluate.run_references(run, trained.ds, trained.split, 0, refs)
    first = read_results(run.root)
    assert evaluate.measured(run, first, 0) == {"ga", "original", "retrain"}
    assert all(run.outcomes_path(m, 0).exists() for m in ("ga", "original", "retrain")), "per-image outcomes kept"

    measuring = []
    monkeypatch.setattr(evaluate, "measure_and_save", lambda run, ds, split, method, *a, **k: measuring.append(method) or [])
    models = evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    evaluate.run_references(run, trained.ds, trained.split, 0, refs)
    assert measuring == [] and list(models) == ["ga"]
    pd.testing.assert_frame_equal(read_results(run.root), first)

    # a metric missing, its outcomes missing, or a checkpoint from other settings: measured again
    first[~((first["method"] == "ga") & (first["metric"] == "probe_accuracy"))].to_csv(run.root / "results.csv", index=False)
    evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    assert measuring == ["ga"]
    write_results(run.root, first[first["method"] == "ga"].to_dict("records"))
    run.outcomes_path("retrain", 0).unlink()
    evaluate.run_references(run, trained.ds, trained.split, 0, refs)
    assert measuring == ["ga", "retrain"]
    write_results(run.root, first[first["method"] == "ga"].to_dict("records"))
    monkeypatch.setitem(unlearn.HPARAMS["quick"], "ga", {**unlearn.HPARAMS["quick"]["ga"], "epochs": 1})
    evaluate.run_methods(run, trained.ds, trained.split, ["ga"], 0, refs, "cpu")
    assert measuring == ["ga", "retrain", "ga", "retrain"], "retrain's outcomes are still missing (measuring is stubbed)"


def test_unlearn_data_is_the_forget_split(trained):
    data = evaluate.unlearn_data(trained.ds, trained.split)
    assert len(data.forget_y) == len(trained.split.forget_idx) and set(data.forget_y.tolist()) == {3}
    assert 3 not in data.retain_y.tolist() and data.num_classes == 10


def test_a_capped_splits_answers_are_the_models_own_on_every_image(trained, tmp_path, monkeypatch):
    """Beyond CKA's cap, `test_retain`'s answers come from CKA's pass over the sample and one pass over the rest:
    every image's answer lands on its own row (the accuracy and the per-image outcomes are the model's)."""
    monkeypatch.setitem(metrics.CKA_MAX_IMAGES, "test_retain", 60)
    run = ecnb.Run.load(shutil.copytree(trained.run.root, tmp_path / "run"))
    refs = {"original": trained.original, "retrain": trained.retrain}
    model, wall = evaluate.unlearn_or_load(run, trained.ds, trained.split, "ga", 0, trained.original, "cpu")
    rows, outcomes = evaluate.measure(run, trained.ds, trained.split, "ga", model, 0, refs, wall)
    x, y = ecnb.split_tensors(trained.ds, trained.split)["test_retain"]
    right = (ecnb.predict(model, x).argmax(1) == y).numpy()
    assert len(y) > 60 and run.seed_dir(0).joinpath("features", "ga__test_retain@60.npz").exists()
    np.testing.assert_array_equal(outcomes.retain_correct, right)
    got = [r["value"] for r in rows if r["metric"] == "accuracy" and r["split"] == "test_retain"]
    assert got == [pytest.approx(right.mean())]
