"""Shared fixtures (the embedded digits, a briefly trained original/retrain pair, the tiny studies, each built once
per test session) and how the test files are spread over the xdist workers."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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
import ecnb.methods  # noqa: E402
import ecnb.scopes  # noqa: E402
import ecnb.study  # noqa: E402
from ecnb.cli import main  # noqa: E402
from ecnb.config import StudyConfig  # noqa: E402
from ecnb.study import PLOTLY_MIME  # noqa: E402


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


def set_args(overrides: dict[str, dict]) -> list[str]:
    """`overrides` as the command line's `--set` options."""
    return ["--set", *(f"{m}.{k}={v}" for m, given in overrides.items() for k, v in given.items())]


# One tiny study, through the real command line, shared by the end-to-end and the browser tests (seed 0; a study
# over several seeds has a test of its own in test_study.py). Every method of its full scope runs one epoch per stage
# (`ecnb.methods.one_epoch_each`): the tests read what the study writes and draws, not how well a method forgets.
# The data of every small study run through the command line: 40 training and 20 test images per class, relearning
# scored up to its reference step.
# As StudyConfig.from_options takes them, and as the command line's options:
TINY_DATA_OPTIONS = {"train_per_class": 40, "test_per_class": 20, "relearn_steps": [0, 5, 10]}
TINY_DATA = ["--train-per-class", "40", "--test-per-class", "20", "--relearn-steps", "0", "5", "10"]
TINY_METHODS = ["ga", "scrub"]
TINY_OVERRIDES = ecnb.methods.one_epoch_each(ecnb.scopes.selection("full", TINY_METHODS).methods)
TINY_STUDY = ["--epochs", "2", "--methods", *TINY_METHODS, *TINY_DATA, *set_args(TINY_OVERRIDES)]
TINY_SELECTION = ["--seeds", "0", "--ablations", "ec[last]"]

# The order in which the test files go out to the xdist workers (`pytest -n auto`), each file whole to one
# worker: the longest first, so that the short files fill in at the end. Unlisted files follow in collection order.
LONGEST_FIRST = ["test_browser.py", "test_sweep.py", "test_study.py", "test_reliability.py", "test_bring_your_own.py",
                 "test_cluster.py", "test_gpu_check.py", "test_notebooks.py", "test_workers.py"]


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def pytest_collection_modifyitems(items):
    """The longest files first (a stable sort: each file's tests keep their order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(file_of(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown when it is not loaded
def pytest_xdist_make_scheduler(config, log):
    """Each file whole to one worker (its tests share module fixtures), in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return file_of(nodeid)

    config.option.loadscopereorder = False  # keep the longest-first order instead of the most tests first
    return FileScheduling(config, log)


def built_once(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """`build(folder)` run once per test session, by whichever worker asks first, then read by all: xdist gives
    every worker its own session fixtures, and the shared studies take minutes. The others wait on a lock; a
    failed build fails every test that needs it, with the same message, without being tried again."""
    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent  # the folder the workers of this session share
    folder, record = root / name, root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            try:
                result = {"error": None, **build(folder)}
            except Exception as e:  # recorded for the other workers, and failed below for all
                result = {"error": f"{type(e).__name__}: {e}"}
            record.write_text(json.dumps(result))
        result = json.loads(record.read_text())
    if result["error"]:
        pytest.fail(f"building the shared {name} failed: {result['error']}")
    return folder, result


NB01, NB02, NB03 = "01_train_original.ipynb", "02_superficial_forgetting.ipynb", "03_erase_at_the_core.ipynb"
# The worked example of a method a user brings (README, "Changing one thing"), and the name it registers.
EXAMPLE_METHOD = Path(__file__).resolve().parent.parent / "examples" / "ascent_with_retain.py"
EXAMPLE_NAME = "ascent_with_retain"


def cli(args: list[str], notebooks: tuple[str, ...] = (NB01,)) -> tuple[int, str]:
    """`main(args)` in this process with the study cut down to `notebooks`: its exit status and stderr."""
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        patch.setattr(ecnb.study, "notebook_paths", lambda: [ecnb.study.NOTEBOOKS_DIR / n for n in notebooks])
        code = main(args)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def registry_restored():
    """The method registry of this process as it was before the module loaded method files into it: an xdist worker
    runs other test files after this one, and some count the registered methods."""
    from ecnb import user_methods
    from ecnb.methods import HPARAMS, METHODS

    tables = (METHODS, *HPARAMS.values(), user_methods._LOADED, user_methods._SOURCE)
    saved = [dict(t) for t in tables]
    yield
    for table, kept in zip(tables, saved):
        table.clear()
        table.update(kept)


def plotly_figures(path: Path) -> list[dict]:
    """The plotly figures an executed notebook shows, in order."""
    nb = json.loads(path.read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    return [o["data"][PLOTLY_MIME] for o in outputs if PLOTLY_MIME in o.get("data", {})]


def study_command(run_dir: Path, *options: str) -> subprocess.CompletedProcess:
    """`python -m ecnb study` with `options` into `run_dir`."""
    return subprocess.run([sys.executable, "-m", "ecnb", "study", *options, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=900)


def printout(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, worker_id):
    """`python -m ecnb study` (walkthrough) on tiny settings, seed 0: the run directory and its printout."""
    folder, built = built_once(tmp_path_factory, worker_id, "tiny_study", lambda folder: {
        "printed": printout(study_command(folder / "study", *TINY_STUDY, *TINY_SELECTION))})
    return folder / "study", built["printed"]


@pytest.fixture(scope="session")
def tiny_full_study(tiny_study, tmp_path_factory, worker_id):
    """The shared tiny study's directory copied and run again with `--scope full`, seed 0: the run directory,
    its printout and the walkthrough's checkpoint times before the full run."""

    def build(folder: Path) -> dict:
        run_dir = Path(shutil.copytree(tiny_study[0], folder / "study"))
        before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "seed0" / "models").glob("*.pt")}
        return {"printed": printout(study_command(run_dir, *TINY_STUDY, "--seeds", "0", "--scope", "full")),
                "before": before}

    folder, built = built_once(tmp_path_factory, worker_id, "tiny_full_study", build)
    return folder / "study", built["printed"], built["before"]
