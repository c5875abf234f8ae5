"""The Ray engine: the same per-asset work as :mod:`inverity.engine.local`, on a Ray cluster.

``run`` connects to the cluster named by ``RAY_ADDRESS`` (``ray.init()`` reads it) or, when that is unset and no
Ray runtime is up yet, starts a local one with ``jobs`` CPUs. Every task becomes one Ray task; the parent process
(:func:`inverity.pipeline.compress`) receives results as they complete and stays the only writer of the
catalog, exactly as with the local engine — so outputs and catalog are the same whichever engine ran them.

GPU placement: a task that may use the learned stage (its ``wants_gpu`` attribute is true — the pipeline sets it
from the policy's ``uses_gpu``, true for ``controlled``) asks for a *fraction* of a GPU (``INVERITY_RAY_GPU_FRACTION``, default 0.25) when
the cluster has GPUs, so several decodes share one card; classical tasks are CPU-only.

Ray is an optional extra: ``pip install 'inverity[ray]'``; without it :func:`inverity.engine.get_engine` names
the extra.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence, TypeVar

import ray

from .local import default_jobs

__all__ = ["run", "gpu_fraction"]

T = TypeVar("T")
R = TypeVar("R")


def gpu_fraction() -> float:
    """Share of one GPU requested by a learned-stage task (``INVERITY_RAY_GPU_FRACTION``)."""
    frac = float(os.environ.get("INVERITY_RAY_GPU_FRACTION", "0.25"))
    if not 0 < frac <= 1:
        raise ValueError(f"INVERITY_RAY_GPU_FRACTION must be in (0, 1], got {frac}")
    return frac


def _ensure_ray(jobs: int | None) -> bool:
    """Initialise Ray if needed; returns True when this call started the runtime (and should stop it)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = jobs or default_jobs()
    ray.init(**kwargs)
    return True


@ray.remote
def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    return fn(task)


def run(tasks: Sequence[T], fn: Callable[[T], R], jobs: int | None = None, *,
        warm: Callable[[], None] | None = None) -> Iterator[R]:
    """Apply ``fn`` to every task on Ray, yielding results as they complete.

    ``warm`` is accepted for the engine interface and not used: Ray reuses its worker processes across tasks,
    so what the first task loads stays loaded for the next.

    ``jobs`` caps the number of tasks in flight (and the CPUs of a locally started runtime); ``None`` means the
    cluster decides.
    """
    tasks = list(tasks)
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if not tasks:
        return
    started = _ensure_ray(jobs)
    try:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        fn_ref = ray.put(fn)
        limit = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        in_flight: list[Any] = []
        it = iter(tasks)

        def submit(task: T) -> None:
            opts: dict[str, Any] = {"num_cpus": 1}
            if has_gpu and getattr(task, "wants_gpu", False):
                opts["num_gpus"] = gpu_fraction()
            in_flight.append(_call.options(**opts).remote(fn_ref, task))

        for task in it:
            submit(task)
            if len(in_flight) >= 2 * limit:
                break
        while in_flight:
            done, in_flight = ray.wait(in_flight, num_returns=1)
            for ref in done:
                yield ray.get(ref)
            for task in it:
                submit(task)
                if len(in_flight) >= 2 * limit:
                    break
    finally:
        if started:
            ray.shutdown()
