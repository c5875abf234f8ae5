"""Dataset plumbing shared by the benchmarks: find images in a folder, read pixels, write PNGs atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_bytes
from ..errors import InputError
from ..formats import walked_extensions

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_pixels", "write_png", "corrupted_path", "image_key"]

#: file suffixes the benchmarks treat as images when walking a dataset folder: those of the formats ``image.load``
#: reads (a view of :mod:`inverity.formats`; ``.ppm``/``.pgm`` were listed by hand once, and no loader reads them)
IMAGE_SUFFIXES: frozenset[str] = walked_extensions()


def list_images(root: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, sorted by relative path; hidden files skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                   key=lambda p: p.relative_to(root).as_posix())
    return files[:limit] if limit else files


def image_key(path: Path, root: Path) -> str:
    """The name an image goes by in benchmark tables and seeds: its path relative to the dataset root."""
    return path.relative_to(root).as_posix()


def corrupted_path(out: Path, corruption: str, severity: int, rel: str) -> Path:
    """``OUT/<corruption>/<severity>/<rel>`` with the suffix ``.png`` (corrupted images are always PNG)."""
    return out / corruption / str(int(severity)) / Path(rel).with_suffix(".png")


def read_pixels(path: str | os.PathLike[str]) -> np.ndarray:
    """The pixels of an image file, H×W×C (uint8 or uint16), via :func:`inverity.image.load` (the one door)."""
    from ..image import load

    return np.asarray(load(path).pixels)


def write_png(path: str | os.PathLike[str], pixels: np.ndarray) -> Path:
    """Write ``pixels`` (H×W, H×W×C uint8/uint16) as PNG, atomically."""
    from ..image import Image, to_bytes

    return atomic_write_bytes(path, to_bytes(Image(np.asarray(pixels)), "png"))
