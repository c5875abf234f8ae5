"""Structure limits of the package: no module under ``src/inverity`` over 800 lines, no function over 120 lines.

Large modules and functions are where behaviour hides and merges collide; the limits are the ones
``HELPERS.md`` asks for. A function's length runs from its ``def`` line to its last line (docstring included);
methods and nested functions count on their own.
"""
from __future__ import annotations

import ast
from pathlib import Path

import inverity

MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 120

#: known offenders, "<path under src/inverity>::<qualified name>" (none; a stale entry fails the test)
ALLOWED: frozenset[str] = frozenset()

PACKAGE = Path(inverity.__file__).resolve().parent


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, length in lines) of every function in ``tree``, methods and nested ones included."""
    out: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            out.append((name, (node.end_lineno or node.lineno) - node.lineno + 1))
            out += _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            out += _functions(node, prefix + node.name + ".")
        else:
            out += _functions(node, prefix)
    return out


def oversized(root: Path) -> tuple[list[str], int]:
    """(``path: N lines`` / ``path::function: N lines`` over the limits, number of modules scanned)."""
    found: list[str] = []
    modules = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    for path in modules:
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            found.append(f"{rel}: {n} lines")
        for name, length in _functions(ast.parse(text, filename=str(path))):
            if length > MAX_FUNCTION_LINES:
                found.append(f"{rel}::{name}: {length} lines")
    return found, len(modules)


def test_no_module_or_function_over_the_limits() -> None:
    found, scanned = oversized(PACKAGE)
    assert scanned > 50, f"scanned only {scanned} modules under {PACKAGE}"
    over = [f for f in found if f.rsplit(":", 1)[0] not in ALLOWED]
    assert not over, (f"over the limits (modules ≤ {MAX_MODULE_LINES} lines, functions ≤ {MAX_FUNCTION_LINES}): "
                      + "; ".join(over))
    stale = ALLOWED - {f.rsplit(":", 1)[0] for f in found}
    assert not stale, f"within the limits now, remove from ALLOWED in tests/test_structure.py: {sorted(stale)}"


def test_the_check_finds_long_modules_and_functions(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))  # def line + 120 = 121 lines
    (tmp_path / "long_fn.py").write_text(f"class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "ok.py").write_text("def f():\n" + "\n".join(f"    y{i} = {i}" for i in range(119)) + "\n")
    found, scanned = oversized(tmp_path)
    assert scanned == 3
    assert found == ["long_fn.py::C.m: 121 lines", "sub/big.py: 801 lines"]

