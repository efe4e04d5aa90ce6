"""Shared fixtures: the embedded digits and a briefly trained original/retrain pair, built once per session."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

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


# One tiny study, through the real command line, shared by the end-to-end and the browser tests: their test
# files form one xdist group (`--dist loadgroup`), so it is built once per test session.
SHARED = "tiny_study"
TINY_STUDY = ["--epochs", "2", "--methods", "ga", "scrub", "--train-per-class", "40", "--test-per-class", "20",
              "--relearn-steps", "0", "5", "10"]
TINY_SELECTION = ["--seeds", "0", "1", "--ablations", "ec[last]"]


def pytest_collection_modifyitems(items):
    """Every test file is its own xdist group (as `--dist loadfile` would make it), unless it joins another."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """`python -m ecnb study` (walkthrough) on tiny settings, seeds 0 and 1: the run directory and its printout."""
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("shared") / "study"
    cmd = [sys.executable, "-m", "ecnb", "study", *TINY_STUDY, *TINY_SELECTION, "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done.stdout


@pytest.fixture(scope="session")
def tiny_full_study(tiny_study, tmp_path_factory):
    """The shared tiny study's directory copied and run again with `--scope full`, seed 0: the run directory,
    its printout and the walkthrough's checkpoint times before the full run."""
    import shutil
    import subprocess
    import sys

    run_dir = Path(shutil.copytree(tiny_study[0], tmp_path_factory.mktemp("full") / "study"))
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "seed0" / "models").glob("*.pt")}
    cmd = [sys.executable, "-m", "ecnb", "study", *TINY_STUDY, "--seeds", "0", "--scope", "full", "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done.stdout, before
