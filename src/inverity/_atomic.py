"""Atomic file writes: temp file in the destination directory, fsync, rename. A crash leaves no partial file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating parent directories).

    An ``OSError`` names ``path`` — the user's file — never the temporary ``.part`` file, with the cause in words
    (``out/a.avif: No space left on device``); a file where a folder is needed is an ``InputError``.
    """
    from .outputs import check_output

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        check_output(path, [])   # raises the clear message (a file is in the way)
        raise
    except OSError as exc:
        raise _renamed(exc, path) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise _renamed(exc, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _renamed(exc, path) from None
        raise
    return path


def _renamed(exc: OSError, path: Path) -> OSError:
    """The same error (class, errno, words) about ``path`` instead of a temporary file or no file at all."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once at import: os.umask can only be read by setting it, which is not thread-safe later on
_UMASK = _umask()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
