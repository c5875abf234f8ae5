"""The local engine: a process pool on this machine.

``jobs=1`` runs the tasks in this process, in order (no pool: cheapest, and what tests and debuggers want).
``jobs>1`` uses a :class:`concurrent.futures.ProcessPoolExecutor` whose workers are started with *spawn*, never
plain *fork*: forking a parent that has already started threads — torch's intra-op pool, OpenMP, imagecodecs'
threads — can deadlock the child. Workers therefore import what ``fn`` needs on their own, once per worker, not
per task: the pool lives for the whole batch, and ``warm`` (the pipeline passes :func:`inverity._warm.warm`:
codecs, metrics, router, kind classifier, search model; torch only when the learned stage may run) is each
worker's initializer, run once when it starts. (*forkserver* would save little here, since nothing is
preloaded, and its workers hold the server alive after the parent is killed, so they could not notice its
death; see :func:`_watch_parent`.)

Each result is yielded as soon as its task completes; the caller does all bookkeeping (the catalog) in the one
parent process. Results are identical to ``jobs=1`` because each task is computed independently and
deterministically; only the order of arrival differs.

Examples
--------
>>> list(run([1, -2, 3], abs, jobs=1))
[1, 2, 3]
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Iterator, Sequence, TypeVar

__all__ = ["run", "default_jobs", "mp_context"]

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """The default worker count: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def mp_context() -> multiprocessing.context.BaseContext:
    """spawn — never fork (see the module docstring)."""
    return multiprocessing.get_context("spawn")


def _watch_parent() -> None:
    """Worker initializer: exit when the batch's parent process dies.

    A pool worker blocks reading its task queue, and it holds that queue's write end itself, so a parent killed
    with SIGKILL would leave it waiting forever. Under spawn the worker's parent is the batch's process; when
    that dies the worker is re-parented (``getppid`` changes, even while the dead parent is an unreaped zombie)
    and exits. Its unfinished output is at worst a ``.part`` temporary, swept by the next run.
    """
    import threading

    ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os._exit(1)

    threading.Thread(target=watch, name="inverity-parent-watch", daemon=True).start()


def _init_worker(warm: Callable[[], None] | None) -> None:
    """Worker initializer: watch the parent, then warm up once (before the worker's first task)."""
    _watch_parent()
    if warm is not None:
        warm()


def run(tasks: Sequence[T], fn: Callable[[T], R], jobs: int | None = None, *,
        warm: Callable[[], None] | None = None) -> Iterator[R]:
    """Apply ``fn`` to every task, yielding results as they complete.

    Parameters
    ----------
    tasks
        The work items (picklable when ``jobs > 1``).
    fn
        A module-level function (picklable when ``jobs > 1``).
    jobs
        Worker processes; ``None`` means :func:`default_jobs`. Never more workers than tasks.
    warm
        Run once in each worker process when it starts (picklable: a module-level function or a
        :func:`functools.partial` of one); not with ``jobs=1``, where the first task loads what it needs.
    """
    tasks = list(tasks)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(tasks) <= 1:
        for t in tasks:
            yield fn(t)
        return
    workers = min(jobs, len(tasks))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context(), initializer=_init_worker,
                               initargs=(warm,))
    try:
        # Submit lazily, keeping every worker busy plus one queued task each: an interrupted batch then has
        # started only about as many tasks as it finished, and a huge batch does not pickle everything up front.
        pending: set[Future[R]] = set()
        it = iter(tasks)
        for t in it:
            pending.add(pool.submit(fn, t))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
            for t in it:
                pending.add(pool.submit(fn, t))
                if len(pending) >= 2 * workers:
                    break
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
