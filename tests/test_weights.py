"""The weight-space view: distance to the original and the straight line between the two models."""
from __future__ import annotations

import copy

import pytest
import torch

from ecnb import weights
from ecnb.metrics import accuracy
from ecnb.train import predict


def test_weight_distance_is_the_rms_of_the_parameter_difference_per_block(trained):
    model = copy.deepcopy(trained.original)
    with torch.no_grad():
        model.head.weight.add_(0.5)  # only the head moves, by 0.5 in every entry
    d = weights.weight_distance(model, trained.original)
    n_head = model.head.weight.numel()
    n_all = sum(p.numel() for p in model.parameters())
    assert d["head"] == pytest.approx(0.5 * (n_head / (n_head + model.head.bias.numel())) ** 0.5)
    assert d[""] == pytest.approx((0.25 * n_head / n_all) ** 0.5)
    assert [k for k in d if k] == [*model.stages, "head"] and d["layer1"] == 0.0
    assert weights.weight_distance(trained.original, trained.original)[""] == 0.0


def test_the_interpolation_endpoints_are_the_original_and_the_method_itself(trained):
    sets = {"test_forget": trained.splits["test_forget"], "test_retain": trained.splits["test_retain"]}
    curve = weights.interpolation_accuracy(trained.original, trained.retrain, sets)
    for name, (x, y) in sets.items():
        assert curve[name, 0.0] == accuracy(predict(trained.original, x), y)
        assert curve[name, 1.0] == accuracy(predict(trained.retrain, x), y)
    assert set(curve) == {(s, t) for s in sets for t in weights.INTERPOLATION_TS}


def test_interpolation_mixes_batchnorm_statistics_and_keeps_the_methods_counters(trained):
    mid = weights.interpolate(trained.original, trained.retrain, 0.5)
    a, b, m = (net.state_dict() for net in (trained.original, trained.retrain, mid))
    key = "stages.layer2.1.running_var"
    assert torch.allclose(m[key], (a[key] + b[key]) / 2)
    counter = "stages.layer2.1.num_batches_tracked"
    assert m[counter] == b[counter]
    with pytest.raises(ValueError, match="must be in"):
        weights.interpolate(trained.original, trained.retrain, 1.5)


def test_weight_rows_name_their_blocks_and_steps(trained):
    rows = weights.weight_rows(trained.retrain, trained.original, trained.splits, "retrain", 0)
    distance = [r["layer"] for r in rows if r["metric"] == "weight_distance"]
    assert distance == ["", "layer1", "layer2", "layer3", "layer4", "head"]
    interp = [(r["split"], r["layer"]) for r in rows if r["metric"] == "interpolation_accuracy"]
    assert ("test_forget", "t0.50") in interp and len(interp) == 10


def test_known_ends_of_the_line_are_not_run_again(trained, monkeypatch):
    """The measurement passes the two models' own accuracies for t = 0 and t = 1; only the inner points are run."""
    sets = {"test_forget": trained.splits["test_forget"]}
    run_at = []
    real = weights.interpolate
    monkeypatch.setattr(weights, "interpolate", lambda a, b, t: run_at.append(t) or real(a, b, t))
    known = {("test_forget", 0.0): 0.123, ("test_forget", 1.0): 0.456}
    out = weights.interpolation_accuracy(trained.original, trained.retrain, sets, known=known)
    assert run_at == [0.25, 0.5, 0.75]
    assert out["test_forget", 0.0] == 0.123 and out["test_forget", 1.0] == 0.456
