"""The exceptions inverity raises. Every user-facing failure is an ``InverityError`` whose ``str`` is one line."""
from __future__ import annotations

__all__ = [
    "InverityError", "InputError", "PixelLimitError", "CodecError", "UnsupportedInputError", "UnknownIdError", "ContainerError",
    "ModelError", "PolicyError", "MissingDependencyError",
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


class ModelError(InverityError):
    """Learned-model weights are missing, altered or incompatible."""


class PolicyError(InverityError, ValueError):
    """A policy is unknown, malformed or impossible."""


class MissingDependencyError(InverityError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'inverity[{extra}]'")
