"""The local engine: a process pool on this machine.

``jobs=1`` runs the tasks in this process, in order (no pool: cheapest, and what tests and debuggers want).
``jobs>1`` uses a :class:`concurrent.futures.ProcessPoolExecutor` whose workers are never forked from the caller:
forking a parent that has already started threads — torch's intra-op pool, OpenMP, a progress bar, a server's
event loop — can deadlock the child. Where the platform has it (Linux, macOS) workers come from a
*forkserver*: a fresh, single-threaded interpreter started once per process, which imports the pipeline and
loads its models (``inverity._preload``: codecs, metrics, router, kind classifier, search model — never torch)
before it forks any worker. A worker then starts with all of that in memory, shared copy-on-write, instead of
each *spawn*ed worker importing and loading it again (≈ 0.4 s CPU per worker); the server lives as long as this
process and serves every later pool too. Elsewhere workers are *spawn*ed. Either way ``warm`` (the pipeline
passes :func:`inverity._warm.warm`; torch only when the learned stage may run) is each worker's initializer,
run once when it starts — a no-op for what the fork server already loaded.

A worker notices the death of the process that made its pool (even by SIGKILL) through a pipe whose only
writer is that process: the read end reports end-of-file, and the worker exits (see :func:`_watch_parent`).

Each result is yielded as soon as its task completes; the caller does all bookkeeping (the catalog) in the one
parent process. Results are identical to ``jobs=1`` because each task is computed independently and
deterministically; only the order of arrival differs.

Examples
--------
>>> list(run([1, -2, 3], abs, jobs=1))
[1, 2, 3]
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.connection import Connection
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


#: what the fork server imports before it forks a worker (its import warms the pipeline up)
_PRELOAD = ["inverity._preload"]


def mp_context() -> multiprocessing.context.BaseContext:
    """forkserver (preloaded with the pipeline) where the platform has it, else spawn — never plain fork."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)   # read when the server starts: once per process
        return ctx
    return multiprocessing.get_context("spawn")


def _watch_parent(alive: Connection) -> None:
    """Worker initializer: exit when the process that made the pool dies.

    A pool worker blocks reading its task queue, and it holds that queue's write end itself, so a parent killed
    with SIGKILL would leave it waiting forever. ``alive`` is the read end of a pipe whose only write end stays in
    the pool's process: when that process dies, for whatever reason, the kernel closes it, the read reports
    end-of-file and the worker exits. (``getppid`` cannot tell: a fork server's worker is the server's child,
    and the server lives on while a worker does.) Its unfinished output is at worst a ``.part`` temporary,
    swept by the next run.
    """
    import threading

    def watch() -> None:
        try:
            alive.recv_bytes()             # nothing is ever sent: returns only by end-of-file
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="inverity-parent-watch", daemon=True).start()


def _init_worker(alive: Connection, env: dict[str, str], warm: Callable[[], None] | None) -> None:
    """Worker initializer: take the parent's environment, watch the parent, then warm up once (before the
    worker's first task).

    A fork server's worker inherits the *server's* environment, as it was when the server started (the first
    pool of this process); the caller's may have changed since (``INVERITY_WEIGHTS_DIR``, a test's
    ``monkeypatch.setenv``). A spawned worker would have the caller's, so every worker is given it. (The working
    directory and ``sys.path`` are the caller's already: multiprocessing sends them to every new process.)
    """
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)
    _watch_parent(alive)
    if warm is not None:
        warm()


def _reap_fork_server() -> None:
    """At exit: stop this process's fork server and wait for it, so that it and the CPU time of the workers it
    forked are accounted to this process (``getrusage(RUSAGE_CHILDREN)``, ``time``) and no process outlives it."""
    try:
        from multiprocessing import forkserver

        if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:
            forkserver._forkserver._stop()
    except Exception:  # noqa: BLE001 - best effort at interpreter exit
        pass


_reaper_registered: list[bool] = []


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
    ctx = mp_context()
    if ctx.get_start_method() == "forkserver" and not _reaper_registered:
        atexit.register(_reap_fork_server)
        _reaper_registered.append(True)
    alive_r, alive_w = multiprocessing.Pipe(duplex=False)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(alive_r, dict(os.environ), warm))
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
    finally:
        alive_r.close()
        alive_w.close()   # workers still running (after an error) see end-of-file and exit
