from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

import ecnb
from ecnb import data
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


def _write_idx(path, array: np.ndarray) -> None:
    """An idx file by hand: two zero bytes, 0x08 (unsigned bytes), the number of dimensions, each size."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def debian_copy(tmp_path, monkeypatch):
    """A tiny Fashion-MNIST as Debian's package lays it out (four gzipped idx files), in a temporary folder."""
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (100, 28, 28)), rng.integers(0, 256, (30, 28, 28))
    _write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(100) % 10)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(30) % 10)
    monkeypatch.setitem(data.SYSTEM_DATA, "fashion_mnist", (folder, "dataset-fashion-mnist"))
    monkeypatch.setenv("ECNB_OFFLINE", "1")
    return folder, train_x, test_x


def test_fashion_mnist_is_read_offline_from_the_debian_package_folder(debian_copy, tmp_path):
    folder, train_x, test_x = debian_copy
    empty = tmp_path / "data"
    empty.mkdir()
    ds = load_dataset("fashion_mnist", root=empty)
    assert ds.input_shape == (1, 28, 28) and ds.classes[0] == "T-shirt/top" and ds.num_classes == 10
    assert len(ds.y_train) + len(ds.y_val) == 100 and len(ds.y_test) == 30
    raw = torch.from_numpy(test_x[:, None].astype(np.float32) / 255.0)
    standard = (ds.x_test - ds.x_test.mean()) / ds.x_test.std()  # an affine map of the pixels, whatever the statistics
    assert torch.allclose((raw - raw.mean()) / raw.std(), standard, atol=1e-4)
    assert not any(empty.iterdir()), "read in place, nothing copied into data/"


def test_per_class_caps_keep_a_seeded_balanced_subset(debian_copy, tmp_path):
    ds = load_dataset("fashion_mnist", root=tmp_path, train_per_class=5, test_per_class=2)
    assert (torch.bincount(ds.y_train) == 5).all() and (torch.bincount(ds.y_test) == 2).all()
    again = load_dataset("fashion_mnist", root=tmp_path, train_per_class=5, test_per_class=2)
    assert torch.equal(again.x_train, ds.x_train), "the same images every time"


def test_a_damaged_idx_file_is_named(debian_copy):
    folder = debian_copy[0]
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x1e" + b"\0" * 5))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is truncated or damaged"):
        load_dataset("fashion_mnist")


def test_offline_without_the_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(data.SYSTEM_DATA, "fashion_mnist", (tmp_path / "missing", "dataset-fashion-mnist"))
    monkeypatch.setenv("ECNB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"FashionMNIST/raw.*offline.*apt-get install dataset-fashion-mnist"):
        check_available("fashion_mnist", tmp_path)


@pytest.mark.skipif(data.offline_copy("fashion_mnist") is None and os.environ.get("CI") != "true",
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_the_real_debian_fashion_mnist_loads_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("ECNB_OFFLINE", "1")
    ds = load_dataset("fashion_mnist", root=tmp_path, train_per_class=600, test_per_class=100)
    assert ds.input_shape == (1, 28, 28) and len(ds.y_train) == 6000 and len(ds.y_test) == 1000
    assert len(ds.y_val) == 6000, "10% of the 60,000 training images"


def test_padding_centres_the_images_in_a_frame_of_background(debian_copy, tmp_path):
    ds = load_dataset("fashion_mnist", root=tmp_path)
    big = ds.padded(32)
    assert big.input_shape == (1, 32, 32) and torch.equal(big.y_test, ds.y_test)
    assert torch.equal(big.x_test[:, :, 2:30, 2:30], ds.x_test)
    black = ds.x_train.min()
    assert (big.x_train[:, :, :2] == black).all() and (big.x_train[:, :, :, 30:] == black).all()
    with pytest.raises(ValueError, match="cannot pad 28x28 images to 16x16"):
        ds.padded(16)


def test_a_report_names_the_data_set_and_its_classes():
    """Fashion-MNIST's classes have names; the report's title gives them beside the numbers (the digits' numbers are
    their names)."""
    from ecnb.config import StudyConfig
    from ecnb.study import study_title

    title = study_title(StudyConfig.from_options(dataset="fashion_mnist", forget_classes=[0, 4]))
    assert title.endswith(": Fashion-MNIST, smallcnn, forgetting classes 0 (T-shirt/top), 4 (Coat) (walkthrough)")
    assert study_title(StudyConfig.from_options()).endswith(": digits, smallcnn, forgetting class 3 (walkthrough)")
