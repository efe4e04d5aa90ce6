"""Shared fixtures: the embedded digits and a briefly trained original/retrain pair, built once per session."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch

os.environ.setdefault("ECNB_OFFLINE", "1")
# One OpenMP thread here and in every notebook kernel the tests start (they inherit the environment):
# tiny models gain nothing from more, and on two cores several spinning thread pools slow everything down.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Jobs in this process (`ecnb.workers`): the test files already run in parallel, one per core, and the
# worker path is tested on its own (test_workers.py), where its results are compared with this one.
os.environ.setdefault("ECNB_WORKERS", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".numba_cache"))
torch.set_num_threads(1)  # tiny models: one thread is as fast and does not fight other processes

import ecnb  # noqa: E402
from ecnb.config import StudyConfig  # noqa: E402


@pytest.fixture(scope="session")
def digits() -> ecnb.Dataset:
    return ecnb.load_dataset("digits")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, digits):
    """A tiny study on digits (class 3 forgotten, 8 epochs): run, split, splits, original, retrain."""
    config = StudyConfig.from_options(epochs=8, run_dir=str(tmp_path_factory.mktemp("run")))
    run = ecnb.Run.open(config)
    split = ecnb.forget_split(run, digits, 0)
    models = {m: ecnb.train_reference(run, digits, split, m, 0, "cpu") for m in ("original", "retrain")}
    return dataclasses.make_dataclass("Trained", ["run", "ds", "split", "splits", "original", "retrain"])(
        run, digits, split, ecnb.split_tensors(digits, split), models["original"], models["retrain"]
    )
