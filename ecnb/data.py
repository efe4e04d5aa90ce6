"""Data sets as in-memory tensors, and the forget split.

Everything is held as normalised float tensors (N, C, H, W): the embedded digits and even CIFAR fit in
memory, and on a GPU whole small data sets live on the device so training never waits on a loader.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from .artifacts import Run, load_json, save_json
from .config import DATASET_CLASSES, ConfigError

DATA_ROOT = Path(__file__).resolve().parent.parent / "data"
SPLIT_SEED = 0  # the train/val/test split is fixed across study seeds, so seeds vary only the models
VAL_FRACTION = 0.1  # held out of the training data for choosing method hyperparameters

# name -> (torchvision class, folder it creates under data/, host it downloads from)
_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "www.cs.toronto.edu"),
    "cifar100": ("CIFAR100", "cifar-100-python", "www.cs.toronto.edu"),
    "mnist": ("MNIST", "MNIST/raw", "ossci-datasets.s3.amazonaws.com"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", "fashion-mnist.s3-website.eu-central-1.amazonaws.com"),
    "svhn": ("SVHN", "train_32x32.mat", "ufldl.stanford.edu"),
}


class DataError(ConfigError):
    """A data set cannot be had (offline and not in data/)."""


@dataclass
class Dataset:
    """Normalised image tensors for train/val/test, with class names."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> "Dataset":
        """A copy with every tensor on `device` (whole small data sets live on the GPU)."""
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Dataset(name=self.name, classes=self.classes, **moved)


def load_dataset(name: str, root: str | Path = DATA_ROOT) -> Dataset:
    """Load `name`: the embedded digits, or a torchvision data set cached in (or downloaded to) `root`."""
    if name not in DATASET_CLASSES:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_CLASSES)}")
    if name == "digits":
        x, y, classes = _digits()
        x_trval, x_test, y_trval, y_test = train_test_split(
            x, y, test_size=397, stratify=y, random_state=SPLIT_SEED
        )
    else:
        (x_trval, y_trval), (x_test, y_test), classes = _torchvision(name, Path(root))
    x_train, x_val, y_train, y_val = train_test_split(
        x_trval, y_trval, test_size=VAL_FRACTION, stratify=y_trval, random_state=SPLIT_SEED
    )
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-8

    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return Dataset(
        name, prep(x_train), labels(y_train), prep(x_val), labels(y_val), prep(x_test), labels(y_test), classes
    )


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 8x8 digits, upsampled to 16x16 so a four-stage CNN has room to downsample."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return x.numpy(), bunch.target.astype(np.int64), [str(c) for c in range(10)]


def is_online(host: str, timeout: float = 3.0) -> bool:
    """True when `host` answers on HTTPS; `ECNB_OFFLINE=1` forces offline (tests, air-gapped use)."""
    if os.environ.get("ECNB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_available(name: str, root: str | Path = DATA_ROOT) -> None:
    """Fail at once, before any work, when `name` is neither in `root` nor downloadable."""
    if name == "digits":
        return
    _, folder, host = _TORCHVISION[name]
    if (Path(root) / folder).exists() or is_online(host):
        return
    raise DataError(
        f"dataset {name!r} is not in {Path(root) / folder} and this machine is offline: "
        f"download it on a machine with internet (python -m ecnb download {name}) and copy "
        f"{folder.split('/')[0]} into {root}/, or use the embedded dataset 'digits'"
    )


def _torchvision(name: str, root: Path) -> tuple[tuple, tuple, list[str]]:
    import torchvision

    check_available(name, root)
    cls_name, _, _ = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    root.mkdir(parents=True, exist_ok=True)
    if name == "svhn":
        parts = [cls(str(root), split=s, download=True) for s in ("train", "test")]
        arrays = [(p.data.astype(np.float32) / 255.0, np.asarray(p.labels)) for p in parts]
        classes = [str(c) for c in range(10)]
    else:
        parts = [cls(str(root), train=t, download=True) for t in (True, False)]
        arrays = [(_as_nchw(p.data), np.asarray(p.targets)) for p in parts]
        classes = list(parts[0].classes)
    return arrays[0], arrays[1], classes


def _as_nchw(data: np.ndarray | torch.Tensor) -> np.ndarray:
    a = np.asarray(data, dtype=np.float32) / 255.0
    return a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)


@dataclass
class ForgetSplit:
    """Indices into the training set: D_f (forget) and D_r (retain); together exactly the training set."""

    forget_idx: np.ndarray
    retain_idx: np.ndarray
    forget_classes: tuple[int, ...]
    forget_fraction: float | None
    seed: int

    def check(self, n_train: int) -> None:
        """Disjoint, covering, non-empty: an unlearning study on a broken split means nothing."""
        f, r = set(self.forget_idx.tolist()), set(self.retain_idx.tolist())
        if len(f) != len(self.forget_idx) or len(r) != len(self.retain_idx):
            raise ValueError("forget split has repeated indices")
        if f & r:
            raise ValueError(f"forget and retain sets overlap in {len(f & r)} samples")
        if f | r != set(range(n_train)):
            raise ValueError(f"forget and retain sets do not cover the {n_train} training samples")
        if not f:
            raise ValueError("the forget set is empty")
        if not r:
            raise ValueError("the retain set is empty")

    def to_dict(self) -> dict:
        return {
            "forget_idx": self.forget_idx.tolist(),
            "retain_idx": self.retain_idx.tolist(),
            "forget_classes": list(self.forget_classes),
            "forget_fraction": self.forget_fraction,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ForgetSplit":
        return cls(
            np.asarray(d["forget_idx"], dtype=np.int64),
            np.asarray(d["retain_idx"], dtype=np.int64),
            tuple(d["forget_classes"]),
            d["forget_fraction"],
            int(d["seed"]),
        )


def make_forget_split(
    y_train: torch.Tensor | np.ndarray,
    forget_classes: tuple[int, ...] = (),
    forget_fraction: float | None = None,
    seed: int = 0,
) -> ForgetSplit:
    """Class-wise split (every sample of the given classes) or a seeded random fraction of all samples."""
    y = np.asarray(y_train.cpu() if isinstance(y_train, torch.Tensor) else y_train)
    n = len(y)
    if forget_fraction is None:
        mask = np.isin(y, list(forget_classes))
    else:
        rng = np.random.default_rng(seed)
        k = max(1, int(round(forget_fraction * n)))
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=k, replace=False)] = True
    split = ForgetSplit(
        np.flatnonzero(mask), np.flatnonzero(~mask), tuple(forget_classes), forget_fraction, seed
    )
    split.check(n)
    return split


SPLITS = ("forget_train", "retain_train", "test_retain", "test_forget")


def split_tensors(ds: Dataset, split: ForgetSplit) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The four evaluation splits of STUDY.md section 5, as (x, y) pairs on the data set's device.

    For random-sample forgetting every test image is a `test_retain` one and `test_forget` is empty.
    """
    fi = torch.as_tensor(split.forget_idx, device=ds.y_train.device)
    ri = torch.as_tensor(split.retain_idx, device=ds.y_train.device)
    forgotten = torch.isin(ds.y_test, torch.as_tensor(split.forget_classes, dtype=torch.long, device=ds.y_test.device))
    return {
        "forget_train": (ds.x_train[fi], ds.y_train[fi]),
        "retain_train": (ds.x_train[ri], ds.y_train[ri]),
        "test_retain": (ds.x_test[~forgotten], ds.y_test[~forgotten]),
        "test_forget": (ds.x_test[forgotten], ds.y_test[forgotten]),
    }



def forget_split(run: Run, ds: Dataset, seed: int) -> ForgetSplit:
    """The run's forget split for `seed`: loaded from `split.json`, or drawn and saved there."""
    path = run.seed_dir(seed) / "split.json"
    config = run.config
    if path.exists():
        split = ForgetSplit.from_dict(load_json(path))
        if split.forget_classes != config.forget_classes or split.forget_fraction != config.forget_fraction:
            raise ConfigError(f"{path} was drawn for another forget set; rerun with --force to redraw it")
    else:
        split = make_forget_split(ds.y_train, config.forget_classes, config.forget_fraction, seed)
        save_json(path, split.to_dict())
    split.check(len(ds.y_train))
    return split
