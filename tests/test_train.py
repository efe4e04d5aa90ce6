"""Training, checkpoints, atomic writes and cache reuse."""
from __future__ import annotations

import os

import pytest
import torch

import ecnb
from ecnb import train
from ecnb.artifacts import ArtifactError, atomic_write, load_checkpoint, save_checkpoint
from ecnb.config import ConfigError, StudyConfig, TrainRecipe
from ecnb.features import cached_features, features_path
from ecnb.models import build_model


def test_training_lowers_the_loss(digits):
    torch.manual_seed(0)
    model = build_model("smallcnn", 1, 10)
    history = train.fit(model, digits.x_train[:256], digits.y_train[:256], TrainRecipe(4, 64, 0.05), 0, "cpu")
    assert len(history) == 4 and history[-1] < 0.5 * history[0]


def test_same_seed_same_model(digits):
    recipe = TrainRecipe(1, 64, 0.05)
    states = []
    for _ in range(2):
        train.seed_everything(3)
        model = build_model("smallcnn", 1, 10)
        train.fit(model, digits.x_train[:128], digits.y_train[:128], recipe, 3, "cpu")
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_augment_keeps_shape_and_content():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = train.augment(x, gen, pad=2)
    assert out.shape == x.shape
    assert torch.equal(train.augment(x, torch.Generator().manual_seed(0), pad=0).sort(-1).values, x.sort(-1).values)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"], "no temporary file may be left behind"


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = build_model("smallcnn", 1, 10)
    path = save_checkpoint(tmp_path / "m.pt", model, {"method": "original", "wall_time": 1.5})
    ckpt = load_checkpoint(path)
    assert ckpt["meta"]["method"] == "original"
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in model.state_dict().items())
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"m\.pt is corrupted or truncated.*--force"):
        load_checkpoint(path)


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    import argparse  # any class outside torch's allow-list stands for arbitrary code

    torch.save({"state_dict": {}, "meta": argparse.Namespace(x=1)}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")


def test_second_run_reuses_checkpoints(trained, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("fit must not run when a checkpoint exists")

    monkeypatch.setattr(train, "fit", fail)
    model = ecnb.train_reference(trained.run, trained.ds, trained.split, "original", 0, "cpu")
    for k, v in trained.original.state_dict().items():
        assert torch.equal(model.state_dict()[k].cpu(), v.cpu())


def test_reference_models_learn_what_they_saw(trained):
    accs = {r["split"]: r["value"] for r in ecnb.metrics.accuracy_rows(ecnb.metrics.model_outputs(trained.original, trained.splits), trained.splits, "original", 0)
            if r["metric"] == "accuracy"}
    assert accs["retain_train"] > 0.9 and accs["forget_train"] > 0.9
    accs = {r["split"]: r["value"] for r in ecnb.metrics.accuracy_rows(ecnb.metrics.model_outputs(trained.retrain, trained.splits), trained.splits, "retrain", 0)
            if r["metric"] == "accuracy"}
    assert accs["retain_train"] > 0.9 and accs["forget_train"] < 0.1


def test_the_retrained_population_differs_only_in_its_seed(trained):
    """`retrain#1` trains on the same D_r with another seed (study seed + 1000): other weights, no forgotten class."""
    assert train.member_seed("retrain#2", 3) == 2003 and train.member_seed("retrain", 3) == 3
    assert train.member_seed("original", 3) == 3
    member = ecnb.train_reference(trained.run, trained.ds, trained.split, "retrain#1", 0, "cpu")
    assert not torch.equal(member.head.weight, trained.retrain.head.weight)
    accs = {r["split"]: r["value"] for r in ecnb.metrics.accuracy_rows(ecnb.metrics.model_outputs(member, trained.splits), trained.splits, "retrain#1", 0)
            if r["metric"] == "accuracy"}
    assert accs["retain_train"] > 0.9 and accs["forget_train"] < 0.1
    with pytest.raises(ValueError, match="reference method must be 'original', 'retrain' or 'retrain#<j>'"):
        ecnb.train_reference(trained.run, trained.ds, trained.split, "retrain#x", 0, "cpu")


def test_run_dir_of_another_configuration_is_not_reused(tmp_path):
    ecnb.Run.open(StudyConfig.from_options(epochs=3, run_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"different configuration \(train.epochs: 3 -> 4\).*--force"):
        ecnb.Run.open(StudyConfig.from_options(epochs=4, run_dir=str(tmp_path)))
    run = ecnb.Run.open(StudyConfig.from_options(epochs=4, run_dir=str(tmp_path)), force=True)
    assert run.config.train.epochs == 4


def test_reopening_merges_seeds(tmp_path):
    ecnb.Run.open(StudyConfig.from_options(seeds=[0, 1], run_dir=str(tmp_path)))
    ecnb.Run.open(StudyConfig.from_options(seeds=[2], run_dir=str(tmp_path)))
    assert ecnb.Run.load(tmp_path).config.seeds == (0, 1, 2)


def test_a_retrained_reference_drops_the_features_of_its_previous_weights(tmp_path, digits):
    run = ecnb.Run.open(StudyConfig.from_options(epochs=1, run_dir=str(tmp_path)))
    split = ecnb.forget_split(run, digits, 0)
    first = ecnb.train_reference(run, digits, split, "retrain", 0, "cpu")
    x = digits.x_train[:16]
    cached_features(run, "retrain", 0, "forget_train", first, x)
    path = run.checkpoint_path("retrain", 0)
    ckpt = load_checkpoint(path)
    torch.save({"state_dict": ckpt["state_dict"], "meta": {**ckpt["meta"], "cache_key": "another configuration"}}, path)
    ecnb.train_reference(run, digits, split, "retrain", 0, "cpu")
    assert not features_path(run, "retrain", 0, "forget_train").exists()
