"""The local engine: same results for any ``jobs``, lazy submission, errors surface, no fork."""
from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

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
    import multiprocessing

    method = local.mp_context().get_start_method()
    assert method != "fork"
    assert method == ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")


def modules_loaded(_: int) -> tuple[bool, bool, bool]:
    import sys

    from inverity import _warm

    return "inverity.verify" in sys.modules, "torch" in sys.modules, False in _warm._done


def test_workers_start_warm_from_the_preloaded_fork_server() -> None:
    """A worker forked from the fork server has the pipeline imported and warmed before any task asked for it
    (the warm-up ran once, in the server), and never torch."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver on this platform")
    res = list(local.run([1, 2, 3], modules_loaded, jobs=2))
    assert res == [(True, False, True)] * 3


_ORPHAN_CHILD = r"""
import os, signal, sys, time
sys.path.insert(0, {tests!r})
from test_engine_local import sleep_and_pid
from inverity.engine import local
for pid in local.run(list(range(8)), sleep_and_pid, jobs=2):
    print(pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def sleep_and_pid(x: int) -> int:
    import time

    time.sleep(0.3)
    return os.getpid()


def test_workers_exit_when_their_parent_is_killed() -> None:
    """SIGKILL the process that made the pool: its workers (and the fork server) must not linger; if they did,
    they would hold the captured stdout open and this run would time out."""
    code = _ORPHAN_CHILD.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -9, proc.stderr[-2000:]
    worker = int(proc.stdout.split()[0])
    import time

    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {worker} still alive after its parent was killed")


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


def note_pid(path: str) -> None:
    """A worker warm-up that leaves a trace: one line per call, the calling process's id."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")


def test_each_worker_warms_up_once_before_its_tasks(tmp_path: Path) -> None:
    trace = tmp_path / "warm.txt"
    res = list(local.run(list(range(10)), square_and_pid, jobs=2, warm=partial(note_pid, str(trace))))
    warmed = trace.read_text().split()
    task_pids = {str(p) for _, p in res}
    # once per worker process (no repeats), and every process that ran a task had warmed up first
    assert len(warmed) == len(set(warmed)) and task_pids <= set(warmed) and 1 <= len(warmed) <= 2
    assert sorted(r for r, _ in res) == [x * x for x in range(10)]
    # jobs=1 runs in this process: no warm-up (the first task loads what it needs)
    list(local.run([1, 2], square_and_pid, jobs=1, warm=partial(note_pid, str(tmp_path / "none.txt"))))
    assert not (tmp_path / "none.txt").exists()


@pytest.mark.parametrize("learned", [False, True])
def test_pipeline_warm_up_imports_torch_only_for_the_learned_stage(learned: bool) -> None:
    if learned:
        pytest.importorskip("torch")
    code = ("import sys; from inverity._warm import warm; warm(learned=%r); "
            "print('torch' in sys.modules, 'inverity.verify' in sys.modules, 'inverity.search' in sys.modules)"
            % learned)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.split()
    assert out == [str(learned), "True", "True"]


def test_compress_writes_the_same_bytes_for_jobs_1_and_2(tmp_path: Path) -> None:
    """Real stages and verifier: every output is byte-identical whatever ``--jobs`` (workers forked from the
    preloaded fork server compute exactly what the caller's process computes; codecs run one thread each)."""
    import imagecodecs
    import numpy as np
    from skimage import data

    from inverity.pipeline import compress

    src = tmp_path / "in"
    src.mkdir()
    imagecodecs.imwrite(src / "coffee.png", np.ascontiguousarray(data.coffee()[::3, ::3]))
    imagecodecs.imwrite(src / "chelsea.png", np.ascontiguousarray(data.chelsea()[60:220, 100:330]))
    imagecodecs.imwrite(src / "page.png", np.ascontiguousarray(data.page()[:120, :200]))
    imagecodecs.imwrite(src / "astronaut.png", np.ascontiguousarray(data.astronaut()[::4, ::4]))
    outs = {}
    for jobs in (1, 2):
        recs = compress([src], tmp_path / f"out{jobs}", policy="auto", jobs=jobs)
        assert len(recs) == 4 and all(r["status"] == "done" for r in recs)
        outs[jobs] = {p.relative_to(tmp_path / f"out{jobs}"): p.read_bytes()
                      for p in (tmp_path / f"out{jobs}").rglob("*") if p.is_file() and p.suffix != ".sqlite"}
    assert len(outs[1]) >= 4 and outs[1] == outs[2]


def env_and_cwd(name: str) -> tuple[str | None, str]:
    return os.environ.get(name), os.getcwd()


def test_workers_see_the_callers_environment_and_directory_as_they_are_now(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork server outlives one pool and keeps the environment it started with; workers must not: each pool's
    workers see the caller's environment and working directory at the time of the call, as spawned ones would."""
    list(local.run([1, 2], square_and_pid, jobs=2))            # the fork server (if any) is up from here on
    monkeypatch.setenv("INVERITY_TEST_LATE", "late value")
    monkeypatch.chdir(tmp_path)
    res = list(local.run(["INVERITY_TEST_LATE"] * 3, env_and_cwd, jobs=2))
    assert res == [("late value", str(tmp_path))] * 3
    monkeypatch.delenv("INVERITY_TEST_LATE")
    assert list(local.run(["INVERITY_TEST_LATE"] * 2, env_and_cwd, jobs=2)) == [(None, str(tmp_path))] * 2
