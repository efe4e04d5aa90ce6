from __future__ import annotations

import numpy as np
import pytest
import torch

import ecnb
from ecnb.data import DataError, ForgetSplit, check_available, load_dataset, make_forget_split


def test_digits_shapes_and_normalisation(digits):
    assert digits.input_shape == (1, 16, 16) and digits.num_classes == 10
    assert (len(digits.y_train), len(digits.y_val), len(digits.y_test)) == (1260, 140, 397)
    assert abs(digits.x_train.mean().item()) < 1e-4 and abs(digits.x_train.std().item() - 1) < 1e-2
    for y in (digits.y_train, digits.y_val, digits.y_test):
        assert set(y.tolist()) == set(range(10))


def test_train_val_test_split_is_fixed(digits):
    again = load_dataset("digits")
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)


def test_class_split_is_disjoint_complete_and_holds_exactly_the_class(digits):
    split = make_forget_split(digits.y_train, forget_classes=(3, 7))
    y = digits.y_train.numpy()
    assert set(y[split.forget_idx]) == {3, 7}
    assert not set(y[split.retain_idx]) & {3, 7}
    assert len(split.forget_idx) + len(split.retain_idx) == len(y)
    assert not set(split.forget_idx) & set(split.retain_idx)


def test_random_split_is_deterministic_per_seed(digits):
    a = make_forget_split(digits.y_train, forget_fraction=0.1, seed=1)
    b = make_forget_split(digits.y_train, forget_fraction=0.1, seed=1)
    c = make_forget_split(digits.y_train, forget_fraction=0.1, seed=2)
    assert np.array_equal(a.forget_idx, b.forget_idx)
    assert not np.array_equal(a.forget_idx, c.forget_idx)
    assert len(a.forget_idx) == round(0.1 * len(digits.y_train))


def test_split_check_catches_overlap_and_gaps():
    with pytest.raises(ValueError, match="overlap"):
        ForgetSplit(np.array([0, 1]), np.array([1, 2, 3]), (0,), None, 0).check(4)
    with pytest.raises(ValueError, match="do not cover"):
        ForgetSplit(np.array([0]), np.array([1, 2]), (0,), None, 0).check(4)
    with pytest.raises(ValueError, match="empty"):
        ForgetSplit(np.array([], dtype=int), np.array([0, 1]), (0,), None, 0).check(2)


def test_split_is_saved_and_reloaded(tmp_path, digits):
    run = ecnb.Run.open(ecnb.StudyConfig.from_options(run_dir=str(tmp_path)))
    first = ecnb.forget_split(run, digits, 0)
    assert (tmp_path / "seed0" / "split.json").exists()
    second = ecnb.forget_split(run, digits, 0)
    assert np.array_equal(first.forget_idx, second.forget_idx)


def test_split_tensors_for_class_and_random_forgetting(digits):
    splits = ecnb.split_tensors(digits, make_forget_split(digits.y_train, forget_classes=(3,)))
    assert set(splits["test_forget"][1].tolist()) == {3} and 3 not in splits["test_retain"][1].tolist()
    assert len(splits["test_forget"][1]) + len(splits["test_retain"][1]) == len(digits.y_test)
    rand = ecnb.split_tensors(digits, make_forget_split(digits.y_train, forget_fraction=0.2, seed=0))
    assert len(rand["test_forget"][1]) == 0 and len(rand["test_retain"][1]) == len(digits.y_test)


def test_offline_download_fails_at_once_naming_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ECNB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*offline"):
        load_dataset("cifar10", root=tmp_path)
    assert not any(tmp_path.iterdir()), "nothing may be written"


def test_a_dataset_already_in_data_is_used_offline(tmp_path, monkeypatch):
    """The real torchvision path: a CIFAR-10 folder in the cache is read without any network."""
    import pickle

    monkeypatch.setenv("ECNB_OFFLINE", "1")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    check_available("cifar10", tmp_path)
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args: True)  # the fake files have no real md5
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.input_shape == (3, 32, 32) and len(ds.y_test) == 20 and len(ds.y_train) + len(ds.y_val) == 100
