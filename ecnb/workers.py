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

The other workers are spawned (a fork of a process whose OpenMP pool has run can deadlock) and get, once each,
the objects the caller's jobs share (its run, data set, split, models), so a job in a worker works on
exactly what it would work on in the caller, even a data set the caller transformed. A worker ends as soon
as the process that started it is gone, however that process ended.
"""
from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

WORKERS_ENV = "ECNB_WORKERS"
# Set in a worker before anything imports tqdm: the workers' own progress bars would interleave on the
# caller's output; the caller shows one bar over the jobs instead.
_QUIET_ENV = {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


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


def shared() -> Any:
    """The objects the jobs of the running `run_jobs` share: its `shared` argument, in a worker and here."""
    return _SHARED


def _exit_with(parent: int, interval: float = 0.5) -> None:
    """Poll until the process that started this worker is gone, then end this one at once. A killed parent
    (a notebook kernel stopped by Ctrl-C, a sweep's cancelled cell) takes no worker pool down with it: its
    workers would otherwise run their jobs to the end, writing checkpoints and features nobody waits for."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _start_worker(objects: Any, parent: int) -> None:
    global _SHARED
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="ecnb-parent-watch").start()
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _SHARED = objects


def run_jobs(
    job: Callable[..., Any], args: Sequence[tuple], workers: int, objects: Any = None,
    start_order: Sequence[int] | None = None,
) -> Iterator[tuple[int, Any]]:
    """`job(*a)` for each `a` in `args`, yielded as (index, result) in the order of `args`; `shared()`
    returns `objects` while a job runs.

    `workers` processes do the jobs: this one and `workers - 1` spawned ones, each spawned process given its
    own copy of `objects`. This process takes jobs too, so it works while the others start (a spawned
    process spends about 3 s importing torch and scikit-learn) and a study of cached models starts none.
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

    def feed(first: tuple[int, concurrent.futures.Future]) -> None:
        """One spawned process's share: its first job, then the next job not yet taken, until none is left. A job
        that cannot be submitted (its process died and broke the pool) fails like one that raised."""
        i, future = first
        while i is not None:
            try:
                finish(i, (True, (future or executor.submit(job, *args[i])).result()))
            except BaseException as e:  # raised in the caller when its turn comes
                finish(i, (False, e))
            i, future = take(), None

    # each spawned process starts on its first job, now: it inherits the environment of the moment it starts
    with _worker_environment():
        executor = concurrent.futures.ProcessPoolExecutor(spawned, mp_context=multiprocessing.get_context("spawn"),
                                                          initializer=_start_worker, initargs=(objects, os.getpid()))
        firsts = [(i, executor.submit(job, *args[i])) for i in order[1 : 1 + spawned]]
    feeders = [threading.Thread(target=feed, args=(first,), daemon=True, name=f"ecnb-feed-{w}")
               for w, first in enumerate(firsts)]
    for feeder in feeders:
        feeder.start()
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
    finally:
        with changed:
            queue.clear()
        for feeder in feeders:
            feeder.join()
        executor.shutdown(wait=True, cancel_futures=True)


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
