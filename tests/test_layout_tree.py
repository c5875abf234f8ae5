"""scripts/layout_tree.py: the package tree with line counts, from the work tree or any git revision."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "layout_tree.py"


def _module():
    spec = importlib.util.spec_from_file_location("layout_tree", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def test_counts_files_and_directories_at_a_revision_and_in_the_work_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lt = _module()
    pkg = tmp_path / "src" / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\ny = 2\n")
    (pkg / "sub" / "b.py").write_text("1\n2\n3")          # last line without a newline still counts
    (pkg / "sub" / "w.bin").write_bytes(b"\0\1\2\n")       # binary: a file, no lines
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    (pkg / "a.py").write_text("x = 1\n" * 10)              # the work tree moves on; the revision does not
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.pyc").write_bytes(b"\0")

    assert lt.main(["--repo", str(tmp_path), "--root", "src/pkg", "--rev", "HEAD"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "### `src/pkg` at `HEAD`: 3 files, 5 lines", "",
        "- **`pkg/`** — 3 files, 5 lines",
        "  - **`sub/`** — 2 files, 3 lines",
        "    - `b.py` 3",
        "    - `w.bin` binary",
        "  - `a.py` 2",
    ]
    assert lt.main(["--repo", str(tmp_path), "--root", "src/pkg", "--ext", "py", "--dirs"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "### `src/pkg` in the work tree: 2 files, 13 lines", "",
        "- **`pkg/`** — 2 files, 13 lines",
        "  - **`sub/`** — 1 file, 3 lines",
    ]
    assert lt.main(["--repo", str(tmp_path), "--root", "src/pkg", "--rev", "no-such-rev"]) == 2
    assert "layout_tree: error: git ls-tree" in capsys.readouterr().err
