"""Output safety: the one check every writer runs before it writes (CLI ``encode``/``decode``/``compress``, server).

DESIGN.md: *no command writes over its own input*. A path can name an input without being spelt like it
(``./a.png`` vs ``a.png``, a symlink, a hard link), so the check compares resolved paths *and* the files'
identity (``st_dev``, ``st_ino``). It also refuses, before any work is done, an output that cannot be written
for a reason the user can fix: a directory where a file is wanted, or a file where a directory is needed
(``-o out/x.png`` when ``out`` is a file).

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.png").write_bytes(b"x")
>>> check_output(d / "b.webp", [d / "a.png"]) == d / "b.webp"
True
>>> check_output(d / "." / "a.png", [d / "a.png"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
inverity.errors.InputError: ...a.png: is the input ...a.png; refusing to write over an input (choose another output)
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from .errors import InputError

__all__ = ["check_output", "check_output_dir", "same_file", "check_extension", "sha256_file"]


def sha256_file(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 of a file read in 1 MiB chunks; ``None`` when there is no path or it cannot be read."""
    if not path:
        return None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name the same file: equal resolved paths (symlinks followed), or — both existing —
    the same inode on the same device (hard links, bind mounts)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: fall through to the inode check
        pass
    try:
        sa, sb = pa.stat(), pb.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _writable_parent(out: Path) -> None:
    """Refuse when an ancestor of ``out`` exists but is not a directory (it could never be created)."""
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise InputError(f"{out}: cannot create it: {parent} exists and is a file, not a directory")
            return


def check_output(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> Path:
    """Check that writing the file ``out`` is safe and possible; returns ``Path(out)``.

    Raises
    ------
    InputError
        ``out`` names one of ``inputs`` (same path after resolving symlinks, or a hard link to it); ``out`` is an
        existing directory; or an ancestor of ``out`` is a file. The message names the user's path and the cause.
    """
    p = Path(out)
    for src in inputs:
        if same_file(p, src):
            raise InputError(f"{p}: is the input {src}; refusing to write over an input (choose another output)")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name for the output")
    _writable_parent(p)
    return p


def check_output_dir(outdir: str | os.PathLike[str]) -> Path:
    """Check that ``outdir`` can be an output directory: it is one, or can be created (no file in the way)."""
    p = Path(outdir)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is a file; the output (-o) must be a directory")
    _writable_parent(p)
    return p


def check_extension(out: str | os.PathLike[str], codec_id: str, extensions: Iterable[str],
                    known: Iterable[str]) -> None:
    """Refuse an output whose extension names *another* image format than the codec writes (AVIF bytes in a
    ``.png``). An extension no image format uses (``.bin``) is left alone.

    Examples
    --------
    >>> check_extension("x.avif", "avif", [".avif"], [".png", ".avif"])
    >>> check_extension("x.bin", "avif", [".avif"], [".png", ".avif"])
    >>> check_extension("x.png", "avif", [".avif"], [".png", ".avif"])
    Traceback (most recent call last):
    ...
    inverity.errors.InputError: x.png: avif writes .avif files, not .png; name the output x.avif
    """
    exts = [e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions]
    suffix = Path(out).suffix.lower()
    if not exts or suffix in exts:
        return
    if suffix in {k.lower() for k in known}:
        raise InputError(f"{out}: {codec_id} writes {' or '.join(exts)} files, not {suffix}; "
                         f"name the output {Path(out).with_suffix(exts[0]).name}")
