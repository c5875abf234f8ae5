"""The local engine: same results for any ``jobs``, lazy submission, errors surface, no fork."""
from __future__ import annotations

import os

import pytest

from inverity.engine import ENGINES, get_engine
from inverity.engine import local
from inverity.errors import MissingDependencyError, UnknownIdError


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def boom(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def test_jobs_1_runs_in_process_in_order() -> None:
    res = list(local.run(range(5), square_and_pid, jobs=1))
    assert [r for r, _ in res] == [0, 1, 4, 9, 16]
    assert {p for _, p in res} == {os.getpid()}


def test_jobs_2_same_results_in_other_processes() -> None:
    res = list(local.run(list(range(12)), square_and_pid, jobs=2))
    assert sorted(r for r, _ in res) == [x * x for x in range(12)]
    pids = {p for _, p in res}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_start_method_is_never_fork() -> None:
    assert local.mp_context().get_start_method() == "spawn"


def test_an_exception_in_fn_ends_the_iteration() -> None:
    with pytest.raises(ValueError, match="three"):
        list(local.run(range(6), boom, jobs=1))
    with pytest.raises(ValueError, match="three"):
        list(local.run(range(6), boom, jobs=2))


def test_bad_jobs_and_defaults() -> None:
    with pytest.raises(ValueError):
        list(local.run([1], abs, jobs=0))
    assert local.default_jobs() >= 1
    assert list(local.run([], abs, jobs=4)) == []


def test_get_engine() -> None:
    assert get_engine("local") is local
    assert set(ENGINES) == {"local", "ray"}
    with pytest.raises(UnknownIdError, match="local"):
        get_engine("spark")
    try:
        import inverity.engine.ray  # noqa: F401
    except ImportError:
        with pytest.raises((MissingDependencyError, UnknownIdError)):
            get_engine("ray")
