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



# -- private names stay inside their package (issue 11) ----------------------------------------------------------
#
# A name ``_x`` defined in module ``a.b.m`` is private to package ``a.b``: modules of ``a.b`` may import it, nothing
# else may (not even a subpackage ``a.b.c``). A private *module* ``a.b._m`` is internal to package ``a.b`` and its
# subpackages: its public names may be imported from there, elsewhere only through ``a.b``'s ``__init__``.

#: modules other helpers are refactoring; their cross-package private imports wait for them ("<module>: <import>").
#: TODO(integrator): empty this after the merge (a stale entry fails the test)
PRIVATE_IMPORT_EXEMPT: frozenset[str] = frozenset()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_names(root: Path) -> dict[str, Path]:
    """Dotted module name (``inverity.image._load``; a package is its ``__init__``) -> file, under ``root``."""
    out = {}
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def cross_package_private_imports(root: Path) -> list[str]:
    """``<module>: <what>`` for every import (or ``module._name`` use) under ``root`` that reaches a private name or
    private module of another package."""
    modules = _module_names(root)

    def package_of(mod: str) -> str:
        return mod if modules.get(mod, Path()).name == "__init__.py" else mod.rpartition(".")[0]

    def private_module_owner(dotted: str) -> str | None:
        """The package that owns the first private component of ``dotted`` (``a.b`` for ``a.b._m.x``), if any."""
        parts = dotted.split(".")
        for i in range(1, len(parts)):
            if _is_private(parts[i]):
                return ".".join(parts[:i])
        return None

    found: list[str] = []
    for mod, path in modules.items():
        here = package_of(mod)

        def inside(owner: str) -> bool:
            return here == owner or here.startswith(owner + ".")

        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if not source.startswith(root.name):
                    continue
                owner = private_module_owner(source)
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in modules:   # a module imported by name: `from . import _maps`, `from .. import x`
                        module_aliases[alias.asname or alias.name] = full
                        bad = _is_private(alias.name) and not inside(package_of(full))
                    elif _is_private(alias.name):
                        bad = here != package_of(source)
                    else:
                        bad = owner is not None and not inside(owner)
                    if bad or (owner is not None and not inside(owner)):
                        found.append(f"{mod}: from {source} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    owner = private_module_owner(alias.name)
                    if alias.name.startswith(root.name) and owner is not None and not inside(owner):
                        found.append(f"{mod}: import {alias.name}")
                    if alias.asname and alias.name in modules:
                        module_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _is_private(node.attr)
                    and node.value.id in module_aliases and package_of(module_aliases[node.value.id]) != here):
                found.append(f"{mod}: {module_aliases[node.value.id]}.{node.attr}")
    return sorted(set(found))


def test_no_private_import_across_packages() -> None:
    found = cross_package_private_imports(PACKAGE)
    over = [f for f in found if f not in PRIVATE_IMPORT_EXEMPT]
    assert not over, ("private names used outside their package (export them from the package's __init__ and "
                      "__all__, and import them from there): " + "; ".join(over))
    stale = PRIVATE_IMPORT_EXEMPT - set(found)
    assert not stale, f"fixed now, remove from PRIVATE_IMPORT_EXEMPT in tests/test_structure.py: {sorted(stale)}"


def test_the_check_finds_private_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    for d in ("", "a", "b", "a/sub"):
        (pkg / d).mkdir(parents=True, exist_ok=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "a" / "_impl.py").write_text("def _helper(): pass\ndef helper(): pass\n")
    (pkg / "a" / "mod.py").write_text("from ._impl import _helper, helper\n")              # same package: fine
    (pkg / "a" / "sub" / "x.py").write_text("from .._impl import helper\n")                # subpackage: fine
    (pkg / "a" / "sub" / "y.py").write_text("from .._impl import _helper\n")               # private name: not
    (pkg / "b" / "c.py").write_text("from ..a._impl import helper\nfrom ..a import _impl\n"
                                    "import pkg.a.mod as m\nm._helper()\n")
    (pkg / "top.py").write_text("from .a.mod import _helper\nfrom ._util import f\n")
    (pkg / "_util.py").write_text("def f(): pass\n")
    (pkg / "b" / "d.py").write_text("from .._util import f\n")                            # top-level private: fine
    assert cross_package_private_imports(pkg) == [
        "pkg.a.sub.y: from pkg.a._impl import _helper",
        "pkg.b.c: from pkg.a import _impl",
        "pkg.b.c: from pkg.a._impl import helper",
        "pkg.b.c: pkg.a.mod._helper",
        "pkg.top: from pkg.a.mod import _helper",
    ]
