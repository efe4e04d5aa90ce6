"""Independent jobs of a study (training the two references, one method's unlearning and metrics, one
model's UMAP fits) spread over worker processes, one per CPU core, each with one thread: the calling
process is one of them, and the others are started for it.

Why one thread per process: a thread count changes the order of floating-point sums, so a study run
with 2 threads and one with 1 differ in the last bits and, through the attacks' thresholds, sometimes in
a verdict; and one-thread processes do not collapse on a busy machine as spinning thread pools do
(docs/benchmarks.md). It is not always faster: where two threads scale well, two one-thread workers
match one two-thread process at best (docs/benchmarks.md). Every job runs at
one thread whether it runs here or in a worker, so a study's numbers do not depend on how many workers
ran it: `ECNB_WORKERS=1` (everything in the calling process) writes the same results as the default.

The other workers are spawned (a fork of a process whose OpenMP pool has run can deadlock) and get, once per
`run_jobs` call, the objects the caller's jobs share (its run, data set, split, models), so a job in a worker works
on exactly what it would work on in the caller, even a data set the caller transformed. They outlive the call: the
next one in this process (the next stage of a notebook, or the next notebook, since a study runs them all in one
kernel) reuses them instead of paying their start again, about 4 s of imports each; they are let go after
`IDLE_RELEASE_S` without jobs, when the environment, working folder or import path they were started with has
changed, or at once when a call ends early (an error, an interrupt). A worker ends as soon as the process that
started it is gone, however that process ended.
"""
from __future__ import annotations

import collections
import concurrent.futures
import importlib
import multiprocessing
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

WORKERS_ENV = "ECNB_WORKERS"
# Set in a worker before anything imports tqdm: the workers' own progress bars would interleave on the
# caller's output; the caller shows one bar over the jobs instead.
_QUIET_ENV = {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# How long spawned workers wait for the next `run_jobs` call before they are let go (they hold the last call's
# objects: its data set and models).
IDLE_RELEASE_S = 120.0


def worker_count(device: torch.device | str, jobs: int) -> int:
    """How many processes run `jobs` jobs: `ECNB_WORKERS` if set, else one per CPU core available to this
    process; 1 on an accelerator (its jobs share one device, and its kernels are not thread-bound), and
    never more than the jobs."""
    if torch.device(device).type != "cpu":
        return 1
    requested = os.environ.get(WORKERS_ENV)
    if requested is not None:
        try:
            n = int(requested)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV}={requested!r} is not a whole number of worker processes") from None
        if n < 1:
            raise ValueError(f"{WORKERS_ENV}={requested!r}: at least one worker process is needed")
    else:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, jobs))


@contextmanager
def one_thread() -> Iterator[None]:
    """torch and the BLAS libraries at one thread for the duration (then as they were)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


_SHARED: Any = None
_SHARED_CALL: str | None = None  # in a spawned worker: the `run_jobs` call whose objects `_SHARED` holds


def shared() -> Any:
    """The objects the jobs of the running `run_jobs` share: its `shared` argument, in a worker and here."""
    return _SHARED


class _NeedsObjects(Exception):
    """Raised in a spawned worker given a job of a call whose objects it has not received yet."""


def _exit_with(parent: int, interval: float = 0.5) -> None:
    """Poll until the process that started this worker is gone, then end this one at once. A killed parent
    (a notebook kernel stopped by Ctrl-C, a sweep's cancelled cell) takes no worker pool down with it: its
    workers would otherwise run their jobs to the end, writing checkpoints and features nobody waits for."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _start_worker(parent: int) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="ecnb-parent-watch").start()
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _in_worker(call: str, objects: tuple[Any] | None, job: Callable[..., Any], args: tuple) -> Any:
    """`job(*args)` in a spawned worker, with `shared()` returning the objects of `call`: those sent with this job
    (a 1-tuple), or those kept from an earlier job of the same call."""
    global _SHARED, _SHARED_CALL
    if call != _SHARED_CALL:
        if objects is None:
            raise _NeedsObjects(call)
        _SHARED, _SHARED_CALL = objects[0], call
    return job(*args)


# Set by torch itself on its first optimiser (in the caller's first job): not a change a worker needs to see.
_SET_BY_TORCH = ("TORCHINDUCTOR_CACHE_DIR",)


def _origin() -> tuple:
    """What a worker spawned now would inherit, as far as reusing one started earlier is concerned: the starting
    process, its environment (with `_QUIET_ENV`), working folder (a run directory may be a relative path) and import
    path."""
    environment = {k: v for k, v in {**os.environ, **_QUIET_ENV}.items() if k not in _SET_BY_TORCH}
    return os.getpid(), environment, os.getcwd(), tuple(sys.path)


class _Pool:
    """Spawned worker processes kept between `run_jobs` calls of this process, with what decides whether a call may
    reuse them: how many, and what they inherited (`_origin`)."""

    def __init__(self, size: int) -> None:
        self.origin = _origin()
        with _worker_environment():
            self.executor = concurrent.futures.ProcessPoolExecutor(
                size, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(os.getpid(),))
            # every process now, in this environment: a spawn pool would otherwise start each one on a later submit,
            # in whatever environment the caller has then
            self.executor._launch_processes()
        self.size = size
        self.timer: threading.Timer | None = None

    def fits(self, size: int) -> bool:
        """Whether a call of `size` spawned processes may use these: at least as many (a call keeps at most `size`
        of them busy), started by this process with the environment, folder and import path it would start new
        ones with."""
        return self.size >= size and self.origin == _origin()

    def close(self, wait: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.executor.shutdown(wait=wait, cancel_futures=True)


_IDLE: _Pool | None = None  # the workers between calls
_IDLE_LOCK = threading.Lock()


def _take_idle() -> _Pool | None:
    """The idle workers, if any, taken out of idleness (their timer stopped)."""
    global _IDLE
    with _IDLE_LOCK:
        pool, _IDLE = _IDLE, None
    if pool is not None and pool.timer is not None:
        pool.timer.cancel()
    return pool


def _take_pool(size: int) -> _Pool:
    """The idle workers if they fit a call of `size` spawned processes, else `size` new ones (the idle ones let go)."""
    pool = _take_idle()
    if pool is not None:
        if pool.fits(size) and not getattr(pool.executor, "_broken", False):  # a worker that died idle breaks it
            return pool
        pool.close(wait=False)
    return _Pool(size)


def _keep_pool(pool: _Pool) -> None:
    """`pool` idle until the next call takes it or `IDLE_RELEASE_S` pass."""
    global _IDLE
    with _IDLE_LOCK:
        previous, _IDLE = _IDLE, pool
        pool.timer = threading.Timer(IDLE_RELEASE_S, _release_idle, args=(pool,))
        pool.timer.daemon = True
        pool.timer.start()
    if previous is not None:
        previous.close(wait=False)


def _release_idle(pool: _Pool) -> None:
    global _IDLE
    with _IDLE_LOCK:
        if _IDLE is not pool:
            return
        _IDLE = None
    pool.close(wait=False)


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)


def prestart(modules: Sequence[str] = (), device: torch.device | str = "cpu") -> None:
    """Start the spawned workers of the next `run_jobs` call now, importing `modules`, so that their start-up (about
    4 s) happens beside the caller's own (a notebook kernel's imports) instead of beside its first job."""
    spawned = worker_count(device, sys.maxsize) - 1  # as many as a call with jobs enough for every core
    if spawned < 1:
        return
    pool = _take_pool(spawned)
    for _ in range(spawned):
        pool.executor.submit(_import, tuple(modules))
    _keep_pool(pool)


def release_workers() -> None:
    """Let the idle spawned workers go now (a caller done with jobs for a while; the tests)."""
    pool = _take_idle()
    if pool is not None:
        pool.close(wait=True)


def run_jobs(
    job: Callable[..., Any], args: Sequence[tuple], workers: int, objects: Any = None,
    start_order: Sequence[int] | None = None,
) -> Iterator[tuple[int, Any]]:
    """`job(*a)` for each `a` in `args`, yielded as (index, result) in the order of `args`; `shared()`
    returns `objects` while a job runs.

    `workers` processes do the jobs: this one and `workers - 1` spawned ones, each spawned process given its
    own copy of `objects`. This process takes jobs too, so it works while the others start (a spawned
    process spends about 4 s importing torch and scikit-learn, once: it is kept for the next call) and a study of
    cached models starts none.
    Each result is yielded as soon as it and every earlier one are done, so a caller writing them keeps the
    same order (and the same file) whatever finished first. A job's exception is raised here, when its turn
    comes. `job` must be a module-level function (spawned processes receive it by name), and a script that
    gets here needs the `if __name__ == "__main__":` guard.

    `start_order` (indices of `args`) is the order in which the processes take the jobs: longest first keeps
    every one busy to the end instead of leaving one long job alone at the tail. It changes neither what is
    yielded nor its order; with one worker the jobs run in the order of `args`, as they are needed.
    """
    if start_order is not None and sorted(start_order) != list(range(len(args))):
        raise ValueError(f"start_order must name each of the {len(args)} jobs once: {list(start_order)}")
    if workers <= 1 or len(args) <= 1:
        with _here(objects):
            for i, a in enumerate(args):
                yield i, job(*a)
        return
    # this process takes the first job (the longest, in a longest-first order): the others start seconds later
    order = list(range(len(args)) if start_order is None else start_order)
    spawned = min(workers, len(args)) - 1
    queue = collections.deque([order[0], *order[1 + spawned:]])
    done: dict[int, tuple[bool, Any]] = {}  # index -> (succeeded, result or exception)
    changed = threading.Condition()

    def take() -> int | None:
        with changed:
            return queue.popleft() if queue else None

    def finish(i: int, outcome: tuple[bool, Any]) -> None:
        with changed:
            done[i] = outcome
            changed.notify_all()

    def submit(i: int, with_objects: bool) -> concurrent.futures.Future:
        return pool.executor.submit(_in_worker, call, (objects,) if with_objects else None, job, args[i])

    def feed(first: tuple[int, concurrent.futures.Future]) -> None:
        """One spawned process's share: its first job, then the next job not yet taken, until none is left. A job
        that cannot be submitted (its process died and broke the pool) fails like one that raised."""
        i, future = first
        while i is not None:
            try:
                try:
                    result = (future or submit(i, False)).result()
                except _NeedsObjects:
                    result = submit(i, True).result()
                finish(i, (True, result))
            except BaseException as e:  # raised in the caller when its turn comes
                finish(i, (False, e))
            i, future = take(), None

    # the spawned processes (kept from an earlier call where they fit) start on their first jobs now, each sent the
    # objects with it; a process that takes a later job before it has them asks for them (`_NeedsObjects`)
    pool = _take_pool(spawned)
    call = uuid.uuid4().hex
    try:
        firsts = [(i, submit(i, True)) for i in order[1 : 1 + spawned]]
    except BaseException:  # a worker that died since the pool was taken
        pool.close(wait=False)
        raise
    feeders = [threading.Thread(target=feed, args=(first,), daemon=True, name=f"ecnb-feed-{w}")
               for w, first in enumerate(firsts)]
    for feeder in feeders:
        feeder.start()
    completed = False
    try:
        with _here(objects):
            for k in range(len(args)):
                while k not in done:
                    i = take()
                    if i is None:
                        with changed:
                            changed.wait_for(lambda: k in done)
                        continue
                    try:
                        finish(i, (True, job(*args[i])))
                    except Exception as e:
                        finish(i, (False, e))
                succeeded, result = done.pop(k)
                if not succeeded:
                    raise result
                yield k, result
        completed = True
    finally:
        with changed:
            queue.clear()
        for feeder in feeders:
            feeder.join()
        if completed:
            _keep_pool(pool)
        else:
            pool.close(wait=True)


@contextmanager
def _here(objects: Any) -> Iterator[None]:
    """Jobs in this process: at one thread, with `shared()` returning `objects`."""
    global _SHARED
    before, _SHARED = _SHARED, objects
    try:
        with one_thread():
            yield
    finally:
        _SHARED = before


@contextmanager
def _worker_environment() -> Iterator[None]:
    """`_QUIET_ENV` in this process's environment for the duration (then as it was): what a spawned worker
    must have before its first import."""
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
