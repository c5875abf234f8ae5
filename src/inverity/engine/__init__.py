"""Engines: where the per-asset work of a batch runs.

An engine is a module with one function::

    run(tasks: Sequence[T], fn: Callable[[T], R], jobs: int | None = None, *,
        warm: Callable[[], None] | None = None) -> Iterator[R]

``warm`` (optional) is run once per worker process before its first task (the pipeline's warm-up: imports
and models); ``fn`` is applied to every task and each result is yielded **as it completes** (any order); the
caller (the parent process of :func:`inverity.pipeline.compress`) consumes them and is the only writer of the
catalog. ``fn`` must be a picklable, module-level function and must not raise for an ordinary per-task failure
(the pipeline's worker returns a failed result instead); an exception that escapes ``fn`` or the engine's own
machinery ends the batch, and what was already done stays in the catalog for the next run to resume from.

Results must not depend on the engine or on ``jobs``: the engine only decides *where* ``fn`` runs.

* ``local`` — a process pool on this machine (the default, :mod:`inverity.engine.local`).
* ``ray`` — a Ray cluster (:mod:`inverity.engine.ray`, needs ``pip install 'inverity[ray]'``).

Examples
--------
>>> from inverity.engine import get_engine
>>> sorted(get_engine("local").run([3, 1, 2], abs, jobs=1))
[1, 2, 3]
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

from ..errors import MissingDependencyError, UnknownIdError

__all__ = ["Engine", "ENGINES", "get_engine"]

T = TypeVar("T")
R = TypeVar("R")

#: engine name -> module implementing ``run`` (data, not an if-chain: STYLE.md 6)
ENGINES: dict[str, str] = {"local": "inverity.engine.local", "ray": "inverity.engine.ray"}
#: the optional dependency each engine needs, and the extra that installs it
_EXTRAS: dict[str, tuple[str, str]] = {"ray": ("ray", "ray")}


class Engine(Protocol):
    """What an engine module provides."""

    def run(self, tasks: Sequence[T], fn: Callable[[T], R], jobs: int | None = None, *,
            warm: Callable[[], None] | None = None) -> Iterator[R]: ...


def get_engine(name: str) -> Engine | ModuleType:
    """Import and return the engine module called ``name`` (``local`` or ``ray``)."""
    if name not in ENGINES:
        raise UnknownIdError("engine", name, list(ENGINES))
    try:
        return importlib.import_module(ENGINES[name])
    except ModuleNotFoundError as exc:
        if name in _EXTRAS and exc.name == _EXTRAS[name][0]:
            raise MissingDependencyError(*_EXTRAS[name]) from None
        if exc.name == ENGINES[name]:
            raise UnknownIdError("engine", name, [n for n in ENGINES if n != name]) from None
        raise
