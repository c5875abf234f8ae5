#!/usr/bin/env python3
"""Print the package's file tree with line counts per file and per directory, as markdown.

Reads the work tree by default (tracked and untracked files that git does not ignore), or any git revision with
``--rev`` (through ``git ls-tree`` and ``git cat-file``, so nothing is checked out)::

    python scripts/layout_tree.py                        # src/inverity in the work tree
    python scripts/layout_tree.py --rev e7dfe04          # the same at a revision
    python scripts/layout_tree.py --rev e7dfe04 --dirs   # directories only (totals)
    python scripts/layout_tree.py --ext py --depth 1     # Python files; deeper directories as totals

A directory's line shows its totals (files, lines) over everything below it; binary files count as files with
no lines. Lines are newline-separated lines, as ``wc -l`` counts them plus a last line without a newline.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Node:
    """A directory: its files ``{name: lines or None (binary)}`` and subdirectories."""

    files: dict[str, int | None] = field(default_factory=dict)
    dirs: dict[str, "Node"] = field(default_factory=dict)

    def add(self, parts: list[str], lines: int | None) -> None:
        if len(parts) == 1:
            self.files[parts[0]] = lines
        else:
            self.dirs.setdefault(parts[0], Node()).add(parts[1:], lines)

    def totals(self) -> tuple[int, int]:
        """(files, lines) below this directory."""
        n, lines = len(self.files), sum(v or 0 for v in self.files.values())
        for d in self.dirs.values():
            dn, dl = d.totals()
            n, lines = n + dn, lines + dl
        return n, lines


def count_lines(data: bytes) -> int | None:
    """Number of lines of a text file; ``None`` for binary data (a NUL byte in the first 8 kB)."""
    if b"\0" in data[:8192]:
        return None
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, check=True).stdout


def files_at_rev(repo: Path, rev: str, root: str) -> dict[str, bytes]:
    """``{path: contents}`` of every file under ``root`` at ``rev`` (one ``git cat-file --batch`` for all)."""
    listing = _git(repo, "ls-tree", "-r", "-z", rev, "--", root).split(b"\0")
    entries = []
    for item in listing:
        if not item:
            continue
        meta, _, path = item.partition(b"\t")
        mode, kind, sha = meta.split()
        if kind == b"blob" and mode != b"160000":
            entries.append((path.decode(), sha.decode()))
    if not entries:
        return {}
    out = _git(repo, "cat-file", "--batch", stdin="".join(f"{sha}\n" for _, sha in entries).encode())
    result, pos = {}, 0
    for path, _sha in entries:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        start = header_end + 1
        result[path] = out[start:start + size]
        pos = start + size + 1   # the blob is followed by a newline
    return result


def files_in_work_tree(repo: Path, root: str) -> dict[str, bytes]:
    """``{path: contents}`` of the tracked and not-ignored untracked files under ``root`` in the work tree."""
    listing = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", root).split(b"\0")
    out = {}
    for raw in sorted(set(listing)):
        path = raw.decode()
        if path and (repo / path).is_file():   # a file deleted but not yet committed is gone
            out[path] = (repo / path).read_bytes()
    return out


def build_tree(files: dict[str, bytes], root: str, exts: tuple[str, ...]) -> Node:
    tree = Node()
    prefix = root.rstrip("/") + "/"
    for path, data in files.items():
        if not path.startswith(prefix) or "__pycache__" in path.split("/"):
            continue
        if exts and not path.endswith(tuple(f".{e.lstrip('.')}" for e in exts)):
            continue
        tree.add(path[len(prefix):].split("/"), count_lines(data))
    return tree


def _files(n: int) -> str:
    return "1 file" if n == 1 else f"{n} files"


def render(tree: Node, name: str, *, dirs_only: bool = False, depth: int | None = None) -> list[str]:
    """Markdown: a nested list, directories first (with totals), then files (with lines), both by name."""
    lines: list[str] = []

    def walk(node: Node, label: str, level: int) -> None:
        n, total = node.totals()
        indent = "  " * level
        lines.append(f"{indent}- **`{label}/`** — {_files(n)}, {total:,} lines")
        if depth is not None and level >= depth:
            return
        for d in sorted(node.dirs):
            walk(node.dirs[d], d, level + 1)
        if not dirs_only:
            for f in sorted(node.files):
                count = node.files[f]
                lines.append(f"{indent}  - `{f}` {'binary' if count is None else f'{count:,}'}")

    walk(tree, name, 0)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", help="git revision to read (default: the work tree)")
    ap.add_argument("--root", default="src/inverity", help="directory to show, relative to the repository root")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent, help="repository root")
    ap.add_argument("--ext", action="append", default=[], help="only files with this extension (repeatable)")
    ap.add_argument("--dirs", action="store_true", help="directories only (their totals)")
    ap.add_argument("--depth", type=int, help="show directories below this depth as totals only")
    args = ap.parse_args(argv)
    try:
        files = (files_at_rev(args.repo, args.rev, args.root) if args.rev
                 else files_in_work_tree(args.repo, args.root))
    except subprocess.CalledProcessError as exc:
        print(f"layout_tree: error: git {' '.join(exc.cmd[3:])}: {exc.stderr.decode().strip()}", file=sys.stderr)
        return 2
    tree = build_tree(files, args.root, tuple(args.ext))
    n, total = tree.totals()
    if not n:
        print(f"layout_tree: error: no files under {args.root} at {args.rev or 'the work tree'}", file=sys.stderr)
        return 2
    where = f"at `{args.rev}`" if args.rev else "in the work tree"
    body = render(tree, args.root.rstrip("/").rsplit("/", 1)[-1], dirs_only=args.dirs, depth=args.depth)
    try:
        print(f"### `{args.root}` {where}: {_files(n)}, {total:,} lines\n")
        print("\n".join(body), flush=True)
    except BrokenPipeError:   # `| head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")
    return 0


if __name__ == "__main__":
    sys.exit(main())
