"""Jobs in worker processes: how many, in which order, and the same results as in one process."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_DATA_OPTIONS

import ecnb
from ecnb import evaluate, workers
from ecnb.artifacts import load_checkpoint
from ecnb.config import StudyConfig
from ecnb.embeddings import UmapSettings, draw_sample, embed_layers, run_models
from ecnb.methods import one_epoch_each


def test_worker_count_follows_the_environment_the_device_and_the_jobs(monkeypatch):
    monkeypatch.setenv(workers.WORKERS_ENV, "3")
    assert workers.worker_count("cpu", 10) == 3
    assert workers.worker_count(torch.device("cpu"), 2) == 2, "never more workers than jobs"
    assert workers.worker_count("cuda", 10) == 1, "jobs on one accelerator run in the calling process"
    assert workers.worker_count("cpu", 0) == 1
    monkeypatch.delenv(workers.WORKERS_ENV)
    assert workers.worker_count("cpu", 1000) == len(__import__("os").sched_getaffinity(0))
    for bad in ("two", "0"):
        monkeypatch.setenv(workers.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=workers.WORKERS_ENV):
            workers.worker_count("cpu", 4)


@pytest.mark.parametrize("n", [1, 2])
def test_jobs_come_back_in_order_and_a_failing_job_raises(n):
    assert list(workers.run_jobs(pow, [(2, 10), (3, 2), (5, 0)], n)) == [(0, 1024), (1, 9), (2, 1)]
    results = workers.run_jobs(int, [("7",), ("seven",)], n)
    assert next(results) == (0, 7)
    with pytest.raises(ValueError, match="seven"):
        next(results)


def _timed(path: str, i: int) -> int:
    """A job that takes a moment and notes when it started and ended (one line per job in a shared file)."""
    start = time.monotonic()
    time.sleep(0.3)
    with open(path, "a") as f:
        f.write(f"{i} {start} {time.monotonic()}\n")
    return i


def test_workers_take_the_jobs_in_the_start_order_and_results_keep_theirs(tmp_path):
    log = str(tmp_path / "times")
    args = [(log, i) for i in range(4)]
    assert list(workers.run_jobs(_timed, args, 2, start_order=[3, 2, 1, 0])) == [(i, i) for i in range(4)]
    times = {int(i): (float(start), float(end)) for i, start, end in (line.split() for line in open(log))}
    ended_before_job_0 = [i for i, (_, end) in times.items() if end <= times[0][0]]
    assert len(ended_before_job_0) >= 2, "two workers: the job started last waits for two others to end"
    with pytest.raises(ValueError, match="each of the 2 jobs once"):
        next(workers.run_jobs(_timed, args[:2], 2, start_order=[0, 0]))


def _pid_and_shared(i: int) -> tuple[int, object]:
    time.sleep(0.2)
    return __import__("os").getpid(), workers.shared()


def _quiet(i: int) -> tuple[int, str | None]:
    time.sleep(0.2)
    return __import__("os").getpid(), __import__("os").environ.get("TQDM_DISABLE")


def _spawned_pids(caller: int, results: list) -> set[int]:
    return {pid for _, (pid, _) in results} - {caller}


def test_spawned_workers_serve_the_next_call_with_its_own_objects_and_go_when_let_go(monkeypatch, tmp_path):
    """A second call finds the spawned process of the first, and its jobs see the second call's objects; a changed
    environment gets a new process; `release_workers` ends it; so does a pool left idle `IDLE_RELEASE_S`."""
    import os

    import psutil

    workers.release_workers()
    caller = os.getpid()
    first = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(4)], 2, "first"))
    second = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(4)], 2, "second"))
    assert {objects for _, (_, objects) in first} == {"first"} and {objects for _, (_, objects) in second} == {"second"}
    (spawned,) = _spawned_pids(caller, first)
    assert _spawned_pids(caller, second) == {spawned}, "the second call reuses the first one's spawned process"
    monkeypatch.setenv("ECNB_TEST_MARK", "1")
    third = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(2)], 2, "third"))
    (fresh,) = _spawned_pids(caller, third)
    assert fresh != spawned, "a process started in another environment is not reused"
    monkeypatch.chdir(tmp_path)
    elsewhere = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(2)], 2, "elsewhere"))
    assert _spawned_pids(caller, elsewhere).isdisjoint({fresh}), "nor one started in another working folder"
    (fresh,) = _spawned_pids(caller, elsewhere)
    workers.release_workers()
    assert not psutil.pid_exists(fresh) or psutil.Process(fresh).status() == psutil.STATUS_ZOMBIE
    monkeypatch.setattr(workers, "IDLE_RELEASE_S", 0.5)
    fourth = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(2)], 2, "fourth"))
    (idle,) = _spawned_pids(caller, fourth)
    time.sleep(3)
    assert not psutil.pid_exists(idle) or psutil.Process(idle).status() == psutil.STATUS_ZOMBIE


def test_spawned_workers_start_quiet_and_single_threaded_when_started_ahead_and_when_reused(monkeypatch):
    """Every spawned process inherits `_QUIET_ENV`, whether `prestart` started it or a call did, and in a reused pool;
    the caller's own environment is left as it was."""
    import os

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    workers.release_workers()
    monkeypatch.setenv(workers.WORKERS_ENV, "3")
    workers.prestart()
    for _ in range(2):
        results = list(workers.run_jobs(_quiet, [(i,) for i in range(6)], 3))
        spawned = {value for _, (pid, value) in results if pid != os.getpid()}
        assert spawned == {"1"}, "the spawned processes run with TQDM_DISABLE=1"
    assert "TQDM_DISABLE" not in os.environ
    workers.release_workers()


def test_a_spawned_worker_without_the_objects_of_a_call_asks_for_them(monkeypatch):
    """With two spawned processes either may take a job before it has the call's objects: it asks, and is sent them."""
    monkeypatch.setattr(workers, "_SHARED_CALL", None)
    with pytest.raises(workers._NeedsObjects):
        workers._in_worker("a call", None, workers.shared, ())
    assert workers._in_worker("a call", ("its objects",), workers.shared, ()) == "its objects"
    assert workers._in_worker("a call", None, workers.shared, ()) == "its objects"
    monkeypatch.setattr(workers, "_SHARED", None)
    import os

    for name in ("one", "two"):
        results = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(8)], 3, name))
        assert {objects for _, (_, objects) in results} == {name}
    fewer = list(workers.run_jobs(_pid_and_shared, [(i,) for i in range(4)], 2, "fewer"))
    assert {objects for _, (_, objects) in fewer} == {"fewer"}
    assert _spawned_pids(os.getpid(), fewer) <= _spawned_pids(os.getpid(), results), "a call needing fewer reuses them"
    workers.release_workers()


def test_one_thread_is_restored_afterwards():
    before = torch.get_num_threads()
    with workers.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _study(root, monkeypatch, n: int) -> tuple[pd.DataFrame, dict, dict]:
    """References, two methods with their metrics, and every model's UMAP of every layer, with `n` workers,
    on a small slice of the digits, each method one epoch per stage."""
    monkeypatch.setenv(workers.WORKERS_ENV, str(n))
    config = StudyConfig.from_options(epochs=3, run_dir=str(root), **TINY_DATA_OPTIONS,
                                      overrides=one_epoch_each(["ga", "rl"]))
    run = ecnb.Run.open(config)
    ds = ecnb.run_dataset(run, "cpu")
    split = ecnb.forget_split(run, ds, 0)
    ecnb.attacks.attack_set(run, ds, split, 0)
    references = ecnb.train_references(run, ds, split, 0, "cpu")
    evaluate.run_methods(run, ds, split, ["ga", "rl"], 0, references, "cpu")
    models = run_models(run, ds, 0, "cpu")
    atlas = embed_layers(run, ds, split, 0, models, draw_sample(ds, split, 40, 12, 0), UmapSettings(n_neighbors=5))
    weights = {m: load_checkpoint(run.checkpoint_path(m, 0))["state_dict"] for m in models}
    return ecnb.read_results(run.root), weights, atlas.coords


def test_two_workers_write_what_one_process_writes(tmp_path, monkeypatch):
    """Every number but the wall times: the same weights, rows (in the same order) and embeddings."""
    one = _study(tmp_path / "one", monkeypatch, 1)
    two = _study(tmp_path / "two", monkeypatch, 2)
    timeless = [r[r["metric"] != "wall_time"].reset_index(drop=True) for r in (one[0], two[0])]
    assert set(timeless[0]["method"]) == {"original", "retrain", "retrain#1", "retrain#2", "ga", "rl"}
    pd.testing.assert_frame_equal(*timeless)
    assert one[1].keys() == two[1].keys()
    for m in one[1]:
        assert all(torch.equal(a, b) for a, b in zip(one[1][m].values(), two[1][m].values())), m
    for m in one[2]:
        for layer in one[2][m]:
            np.testing.assert_array_equal(one[2][m][layer], two[2][m][layer])
    shutil.rmtree(tmp_path)


def _dies_outside(caller: int, i: int) -> int:
    """Job 3 kills its process when that is not the caller's (a worker killed, or out of memory); job 0 takes the
    caller long enough for the spawned worker to start, die and take another job."""
    import os

    if i == 3 and os.getpid() != caller:
        os._exit(1)
    if i == 0:
        time.sleep(8)
    return i


def test_a_worker_that_dies_fails_its_jobs_instead_of_hanging():
    """The spawned worker's first job (3) kills it and breaks the pool; the job it takes next (1) can no longer be
    submitted: it fails when its turn comes instead of leaving the caller waiting for it forever."""
    import os
    from concurrent.futures.process import BrokenProcessPool

    results = workers.run_jobs(_dies_outside, [(os.getpid(), i) for i in range(4)], 2, start_order=[0, 3, 1, 2])
    assert next(results) == (0, 0)
    with pytest.raises(BrokenProcessPool):
        next(results)
