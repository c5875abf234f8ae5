"""Every command that reads pixels, run in-process over the adversarial corpus (:mod:`corpus`).

For each file and command: success (exit 0; for ``decode`` the written pixels equal ``load``'s), or — whenever
the loader must refuse the file — exit 2 with exactly one ``inverity: error:`` line that names the file and the
cause, no traceback, nothing new in the output directory and the previous output untouched.

Select with ``-k``: ``-k "decode and bomb"``, ``-k png_70000x1``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from inverity.cli import main
from inverity.image import load

from .corpus import Case, generate, names

PREVIOUS = b"previous output, must survive a failed run"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {case.name: case for case in generate(tmp_path_factory.mktemp("adversarial"))}


def test_corpus_size_and_expectations(corpus: dict[str, Case]) -> None:
    from tests.adversarial.corpus import generate as reusable  # the import path other test modules use

    assert callable(reusable)
    assert len(corpus) >= 150
    assert list(corpus) == names()
    kinds = {case.expect for case in corpus.values()}
    assert kinds == {"ok", "error"}


def _argv(command: str, case: Case, out: Path) -> list[str]:
    src = str(case.path)
    return {
        "encode": ["encode", src, "-o", str(out / "encoded.png"), "--codec", "png"],
        "decode": ["decode", src, "-o", str(out / "decoded.png")],
        "analyse": ["analyse", src, "--json"],
        "verify": ["verify", src, src, "--json"],
        "compress": ["compress", src, "-o", str(out), "--jobs", "1", "--json"],
    }[command]


def _run(command: str, case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.png").write_bytes(PREVIOUS)
    capsys.readouterr()
    rc = main(_argv(command, case, out))
    return rc, capsys.readouterr().err, out


def _assert_clean_refusal(rc: int, err: str, case: Case, out: Path) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("inverity: error:")]
    assert rc == 2 and len(errors) == 1, f"{case.name}: rc={rc}\n{err}"
    assert all(line.startswith("inverity: ") for line in lines), err
    assert case.path.name in errors[0], errors[0]
    if case.match:
        assert re.search(case.match, errors[0]), f"{case.name}: {errors[0]!r} !~ {case.match!r}"
    assert (out / "previous.png").read_bytes() == PREVIOUS
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("inverity.sqlite"))
    assert left == ["previous.png"], f"{case.name}: output directory holds {left}"


@pytest.mark.parametrize("command", ["encode", "decode", "analyse", "verify"])
@pytest.mark.parametrize("name", names())
def test_command(name: str, command: str, corpus: dict[str, Case], tmp_path: Path,
                 capsys: pytest.CaptureFixture[str]) -> None:
    case = corpus[name]
    rc, err, out = _run(command, case, tmp_path, capsys)
    if case.expect == "error":
        _assert_clean_refusal(rc, err, case, out)
        return
    assert rc == 0 and "Traceback" not in err, f"{case.name}: {command} rc={rc}\n{err}"
    if command == "decode":  # `inverity decode FILE` writes exactly the pixels `load(FILE)` gives
        want, got = load(case.path), load(out / "decoded.png")
        assert (got.pixels.shape, got.bit_depth) == (want.pixels.shape, want.bit_depth)
        np.testing.assert_array_equal(got.pixels, want.pixels)


@pytest.mark.parametrize("name", names())
def test_compress(name: str, corpus: dict[str, Case], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = corpus[name]
    rc, err, out = _run("compress", case, tmp_path, capsys)
    if case.expect == "error":
        _assert_clean_refusal(rc, err, case, out)
    else:
        assert rc == 0 and "Traceback" not in err, f"{case.name}: compress rc={rc}\n{err}"
