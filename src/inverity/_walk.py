"""Walking the inputs of a batch: files and directories become the sorted, deterministic list of ``Asset``.

Part of :mod:`inverity.pipeline` (which re-exports :func:`collect_assets`); kept apart so the orchestrator stays
small. The walker never takes as an input what a batch writes: the output directory, ``*.part`` temporaries,
the catalog and its side files, and every output the catalog knows (``exclude``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable

from .errors import InputError, safe_text

if TYPE_CHECKING:
    from .pipeline import Asset

__all__ = ["collect_assets"]

log = logging.getLogger("inverity.pipeline")


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _rel_name(f: Path, root: Path, note: Callable[[str], None]) -> str:
    """The catalog name of ``f`` under ``root``; a name that is not valid UTF-8 (undecodable bytes) is kept with
    those bytes written as ``\\udcXX``, so SQLite, JSON and the console can carry it (the file is still read by
    its real name)."""
    rel = f.relative_to(root).as_posix()
    safe = safe_text(rel)
    if safe != rel:
        note(f"{safe}: the file name is not valid UTF-8; catalogued (and its output named) as {safe!r}")
    return safe


def collect_assets(inputs: Iterable[str | os.PathLike[str]], outdir: str | os.PathLike[str] | None = None,
                   *, on_note: Callable[[str], None] | None = None,
                   exclude: Iterable[str | os.PathLike[str]] = ()) -> list[Asset]:
    """Expand files and directories into the batch's :class:`Asset` list (sorted, deterministic).

    Directories are walked (hidden files and folders, the output directory, ``*.part`` temporaries and files whose
    content is not a recognised image are skipped, each with a note). Files named explicitly are always taken —
    if one is not an image, that asset fails with a clear error rather than being skipped quietly. Two inputs that
    would share an output name keep their extension in it (``b.png.avif``, ``b.jpg.avif``); two inputs with the
    same relative path under different roots are refused. ``exclude`` (resolved paths: the catalog's files and
    the outputs it knows) is never taken as an input, walked or named, so ``compress d -o d`` run twice does not
    compress its own outputs.
    """
    from .formats import sniff, walked_formats
    from .pipeline import Asset

    image_formats = walked_formats()   # by content: everything else in a walked directory is skipped with a note

    note = on_note or (lambda m: log.info("%s", m))
    out_res = Path(outdir).resolve() if outdir is not None else None
    excluded = {Path(os.path.normpath(Path(e).resolve())) for e in exclude}
    assets: list[Asset] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            root = p.resolve()
            for dirpath, dirnames, filenames in os.walk(root):
                d = Path(dirpath)
                dirnames[:] = sorted(n for n in dirnames if not _hidden(n) and (d / n).resolve() != out_res)
                for name in sorted(filenames):
                    f = d / name
                    if _hidden(name) or name.endswith(".part") or name.startswith("inverity.sqlite"):
                        continue
                    if f.resolve() in excluded:
                        continue       # an output (or the catalog) of this output directory: never an input
                    try:
                        with open(f, "rb") as fh:
                            fmt = sniff(fh.read(512))
                    except OSError as exc:
                        note(f"skipped {safe_text(str(f))}: cannot read ({exc.strerror or exc})")
                        continue
                    if fmt not in image_formats:
                        note(f"skipped {safe_text(str(f))}: not a recognised image ({fmt or 'unknown format'})")
                        continue
                    assets.append(Asset(str(f), str(root), _rel_name(f, root, note)))
        else:
            if p.exists() and p.resolve() in excluded:
                note(f"skipped {safe_text(str(p))}: it is an output of this output directory's catalog")
                continue
            # a missing or unreadable explicit file still becomes an asset: it fails with a clear one-line error
            root = p.parent.resolve()
            assets.append(Asset(str(p), str(root), _rel_name(root / p.name, root, note), explicit=True))
    # name collisions: same relative path from two roots -> refuse; same stem -> keep the suffix
    seen: dict[str, Asset] = {}
    for a in assets:
        if a.input in seen and seen[a.input].path != a.path:
            raise InputError(f"{safe_text(a.path)} and {safe_text(seen[a.input].path)} would both be catalogued "
                             f"as {a.input!r}; compress them into different output directories")
        seen[a.input] = a
    unique = list({(a.input, Path(a.path).resolve()): a for a in assets}.values())
    stems: dict[str, int] = {}
    for a in unique:
        stem = PurePosixPath(a.input).with_suffix("").as_posix()
        stems[stem] = stems.get(stem, 0) + 1
    return [Asset(a.path, a.root, a.input, keep_suffix=stems[PurePosixPath(a.input).with_suffix("").as_posix()] > 1,
                  explicit=a.explicit) for a in unique]
