"""Data sets as in-memory tensors, and the forget split.

Everything is held as normalised float tensors (N, C, H, W): the embedded digits and even CIFAR fit in
memory, and on a GPU whole small data sets live on the device so training never waits on a loader.
"""
from __future__ import annotations

import gzip
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


# Offline copies installed by a system package: name -> (folder, package). Debian's `dataset-fashion-mnist`
# installs the four original idx files of Fashion-MNIST here; they are read in place, never copied.
SYSTEM_DATA = {"fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist")}
IDX_FILES = {  # the original MNIST-family file names: (train images, train labels, test images, test labels)
    "fashion_mnist": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                      "t10k-labels-idx1-ubyte"),
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]

# How a report names each data set, and the class names known without loading it.
DATASET_TITLES = {"digits": "digits", "fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10",
                  "cifar100": "CIFAR-100", "svhn": "SVHN"}
KNOWN_CLASS_NAMES = {"fashion_mnist": FASHION_CLASSES}


def class_label(dataset: str, c: int) -> str:
    """Class `c` as a report names it: `0 (T-shirt/top)` where the class has a name of its own, `3` otherwise."""
    names = KNOWN_CLASS_NAMES.get(dataset)
    return f"{c} ({names[c]})" if names and 0 <= c < len(names) else str(c)


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

    def padded(self, size: int) -> "Dataset":
        """Every image centred in a `size` x `size` frame of each channel's darkest value (after
        normalisation black is not 0): Fashion-MNIST's 28x28 as the 32x32 the CIFAR-style ResNet-18 expects."""
        h, w = self.input_shape[1:]
        if h > size or w > size:
            raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
        top, left = (size - h) // 2, (size - w) // 2
        pad = (left, size - w - left, top, size - h - top)
        black = self.x_train.amin(dim=(0, 2, 3))  # the darkest normalised value of each channel

        def grow(x: torch.Tensor) -> torch.Tensor:
            out = F.pad(x, pad)
            mask = F.pad(torch.ones_like(x[:1, :1]), pad).bool()
            return torch.where(mask, out, black.view(1, -1, 1, 1).to(x))

        moved = {k: grow(v) for k, v in vars(self).items() if k.startswith("x_")}
        return Dataset(name=self.name, classes=self.classes, y_train=self.y_train, y_val=self.y_val,
                       y_test=self.y_test, **moved)

    def to(self, device: torch.device | str) -> "Dataset":
        """A copy with every tensor on `device` (whole small data sets live on the GPU)."""
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Dataset(name=self.name, classes=self.classes, **moved)


def load_dataset(
    name: str, root: str | Path = DATA_ROOT, train_per_class: int | None = None, test_per_class: int | None = None
) -> Dataset:
    """Load `name`: the embedded digits, a system package's offline copy, or a torchvision data set cached
    in (or downloaded to) `root`. `train_per_class` / `test_per_class` keep at most that many images of
    each class in the training / test split (seeded, the same for every study seed); normalisation is
    computed on the training split as kept."""
    if name not in DATASET_CLASSES:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_CLASSES)}")
    if name == "digits":
        x, y, classes = _digits()
        x_trval, x_test, y_trval, y_test = train_test_split(
            x, y, test_size=397, stratify=y, random_state=SPLIT_SEED
        )
    else:
        (x_trval, y_trval), (x_test, y_test), classes = _offline_or_torchvision(name, Path(root))
    x_train, x_val, y_train, y_val = train_test_split(
        x_trval, y_trval, test_size=VAL_FRACTION, stratify=y_trval, random_state=SPLIT_SEED
    )
    x_train, y_train = _cap_per_class(x_train, y_train, train_per_class)
    x_test, y_test = _cap_per_class(x_test, y_test, test_per_class)
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-8

    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return Dataset(
        name, prep(x_train), labels(y_train), prep(x_val), labels(y_val), prep(x_test), labels(y_test), classes
    )


def run_dataset(run: Run, device: torch.device | str = "cpu") -> Dataset:
    """The data set of a run as its configuration describes it (name and per-class caps), on `device`."""
    c = run.config
    return load_dataset(c.dataset, train_per_class=c.train_per_class, test_per_class=c.test_per_class).to(device)


def _cap_per_class(x: np.ndarray, y: np.ndarray, per_class: int | None) -> tuple[np.ndarray, np.ndarray]:
    """At most `per_class` samples of each class, drawn with the fixed split seed, in their original order."""
    if per_class is None:
        return x, y
    rng = np.random.default_rng(SPLIT_SEED)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))
    return x[keep], y[keep]


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


def offline_copy(name: str, root: str | Path = DATA_ROOT) -> Path | None:
    """A folder holding all of `name`'s idx files (plain or gzipped), read in place: the system package's,
    `<root>/fashion-mnist` (the same files copied by hand, e.g. to a machine without the package) or
    torchvision's own download folder. None when there is none (or `name` has no idx files)."""
    if name not in IDX_FILES:
        return None
    folders = [SYSTEM_DATA[name][0], Path(root) / SYSTEM_DATA[name][0].name, Path(root) / _TORCHVISION[name][1]]
    return next((f for f in folders if all(_idx_path(f, stem) for stem in IDX_FILES[name])), None)


def check_available(name: str, root: str | Path = DATA_ROOT) -> None:
    """Fail at once, before any work, when `name` is neither on disk nor downloadable."""
    if name == "digits" or offline_copy(name, root) is not None:
        return
    _, folder, host = _TORCHVISION[name]
    if (Path(root) / folder).exists() or is_online(host):
        return
    package = (f", or install Debian's package {SYSTEM_DATA[name][1]} (apt-get install {SYSTEM_DATA[name][1]}, "
               f"files under {SYSTEM_DATA[name][0]})") if name in SYSTEM_DATA else ""
    raise DataError(
        f"dataset {name!r} is not in {Path(root) / folder} and this machine is offline: "
        f"download it on a machine with internet (python -m ecnb download {name}) and copy "
        f"{folder.split('/')[0]} into {root}/{package}, or use the embedded dataset 'digits'"
    )


def _offline_or_torchvision(name: str, root: Path) -> tuple[tuple, tuple, list[str]]:
    """An offline copy of the idx files when there is one (read in place), else torchvision's."""
    folder = offline_copy(name, root)
    if folder is None:
        return _torchvision(name, root)
    images_train, labels_train, images_test, labels_test = (read_idx(_idx_path(folder, f)) for f in IDX_FILES[name])
    return (_as_nchw(images_train), labels_train), (_as_nchw(images_test), labels_test), list(FASHION_CLASSES)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (the MNIST family's format, gzipped or not): a big-endian header of two zero bytes,
    the element type, the number of dimensions and each dimension's size, then the data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in types:
        raise DataError(f"{path} is not an idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(types[data[2]])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise DataError(f"{path} is truncated or damaged: its header announces shape {shape}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


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
    """The four evaluation splits of docs/study.md, "Metrics", as (x, y) pairs on the data set's device.

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
