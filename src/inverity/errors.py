"""The exceptions inverity raises. Every user-facing failure is an ``InverityError`` whose ``str`` is one line."""
from __future__ import annotations

import os

__all__ = [
    "InverityError", "InputError", "PixelLimitError", "CodecError", "UnsupportedInputError", "UnknownIdError",
    "ContainerError", "ModelError", "RecordError", "PolicyError", "MissingDependencyError", "error_line", "safe_text",
]


class InverityError(Exception):
    """Base class; the CLI prints ``inverity: error: <str(exc)>`` and exits 2."""


class InputError(InverityError, ValueError):
    """An asset cannot be read: truncated, garbage, empty, too many pixels, unsupported."""


class PixelLimitError(InputError):
    """An image has more pixels than the caller allows (decompression-bomb guard; checked before decoding)."""


class CodecError(InverityError):
    """A stage failed to encode or decode."""


class UnsupportedInputError(CodecError, ValueError):
    """A stage cannot take this image (bit depth, channels, alpha) and refuses rather than converting."""


class UnknownIdError(InverityError, KeyError):
    """An id (stage, model, policy) is not registered; the message lists the available ones."""

    def __init__(self, kind: str, name: str, available: list[str] | tuple[str, ...]) -> None:
        self.kind, self.name, self.available = kind, name, sorted(available)
        super().__init__(f"unknown {kind} {name!r}; available: {', '.join(self.available) or '(none)'}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ContainerError(InverityError):
    """An ``.inv`` stream is refused (bad magic/version, checksum, unknown model, sha mismatch, hash mismatch)."""


class RecordError(InverityError, ValueError):
    """A decision record (JSON, a catalog row, an ``.inv`` header) is malformed; the message names what is wrong."""


class ModelError(InverityError):
    """Learned-model weights are missing, altered or incompatible."""


class PolicyError(InverityError, ValueError):
    """A policy is unknown, malformed or impossible."""


class MissingDependencyError(InverityError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'inverity[{extra}]'")


def error_line(exc: BaseException) -> str:
    """The one line an error prints: an ``InverityError``'s own message; an ``OSError`` as the file and the cause in
    words (``/x/y: permission denied``); anything else prefixed with its type.

    Examples
    --------
    >>> error_line(PermissionError(13, "Permission denied", "/x/y"))
    '/x/y: permission denied'
    >>> error_line(ValueError("bad\\nsecond line"))
    'ValueError: bad'
    """
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, InverityError):
        line = msg
    elif isinstance(exc, OSError) and exc.strerror:
        cause = exc.strerror[:1].lower() + exc.strerror[1:]
        line = f"{os.fsdecode(exc.filename)}: {cause}" if exc.filename is not None else cause
    elif isinstance(exc, OSError):
        line = msg
    else:
        line = f"{type(exc).__name__}: {msg}"
    return safe_text(line)


def safe_text(text: str) -> str:
    """``text`` printable and storable as UTF-8: a file name's undecodable bytes (surrogate escapes) become
    ``\\udcXX`` instead of an ``UnicodeEncodeError`` far from the cause.

    Examples
    --------
    >>> safe_text("caf\\udce9.png")
    'caf\\\\udce9.png'
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
