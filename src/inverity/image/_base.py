"""The ``Image`` value, the limits and the error vocabulary every part of the loader shares."""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..formats import titles

#: like Pillow's MAX_IMAGE_PIXELS * 2 (its hard error threshold): refuse before decoding
DEFAULT_MAX_PIXELS = 178_956_970


@dataclass(eq=False)
class Image:
    """Pixels plus what travels with them.

    ``pixels`` is always H×W×C (C in 1, 2, 3, 4: gray, gray+alpha, RGB, RGBA), dtype uint8 or uint16.
    ``bit_depth`` is the significant bits (e.g. 12 for a 12-bit CT stored in uint16).
    ``metadata`` may hold ``icc`` (bytes), ``exif`` (bytes), ``xmp`` (bytes) and for DICOM ``dicom``
    (the ``pydicom.Dataset`` without pixel data) — written back wherever the output format can hold them.
    """

    pixels: np.ndarray
    bit_depth: int = 8
    source_format: str = "array"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.pixels
        if p.ndim == 2:
            p = p[:, :, None]
        if p.ndim != 3 or p.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"pixels must be H×W×C with C in 1..4, got shape {self.pixels.shape}")
        if p.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"pixels must be uint8 or uint16, got {p.dtype}")
        self.pixels = np.ascontiguousarray(p)
        if self.bit_depth == 8 and p.dtype == np.uint16:
            self.bit_depth = 16

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def dtype(self) -> np.dtype:
        return self.pixels.dtype

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def colour(self) -> str:
        """``gray``, ``graya``, ``rgb`` or ``rgba``."""
        return {1: "gray", 2: "graya", 3: "rgb", 4: "rgba"}[self.channels]

    @property
    def max_value(self) -> int:
        return (1 << self.bit_depth) - 1

    def with_pixels(self, pixels: np.ndarray) -> "Image":
        """Same metadata, new pixels (e.g. a reconstruction)."""
        return Image(pixels, self.bit_depth if pixels.dtype == self.pixels.dtype else 8 * pixels.dtype.itemsize,
                     self.source_format, dict(self.metadata))


# --------------------------------------------------------------------------------------------------------------
# errors raised inside decoders; ``load`` turns them into one-line InputErrors naming the file


class _Refusal(Exception):
    """A deliberate, already well-worded refusal (too many pixels, animated, unsupported variant)."""


class _PixelLimit(_Refusal):
    """The header's width x height is over ``max_pixels`` (becomes :class:`~inverity.errors.PixelLimitError`)."""


class _Truncated(Exception):
    """A header ended before the fields we need."""


#: words in library messages that mean "the data stopped early" (Pillow, libpng, libjpeg, openjpeg, pydicom)
_TRUNCATION = re.compile(
    r"truncat|premature|unexpected end|end of (file|stream|data|buffer)|\beof\b|too short|not enough data"
    r"|incomplete|insufficient data|ran out|buffer is too small|reached the end|no more data|less than expected",
    re.IGNORECASE,
)

#: human names used in messages (a view of the format registry's ``Format.title``)
_FORMAT_NAMES = titles()


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nbytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def _describe_failure(fmt: str, size: int, exc: BaseException) -> str:
    """Turn a library exception into ``truncated PNG data (N bytes)`` or ``corrupt PNG data (N bytes): why``."""
    kind = _FORMAT_NAMES.get(fmt, fmt)
    if isinstance(exc, MemoryError):
        return f"not enough memory to decode {kind} data ({_nbytes(size)})"
    reason = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, (_Truncated, EOFError, struct.error)) or _TRUNCATION.search(reason):
        return f"truncated {kind} data ({_nbytes(size)}): {reason}"
    return f"corrupt {kind} data ({_nbytes(size)}): {reason}"


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    """Refuse before decoding: the pixel-count limit that stops decompression bombs."""
    if width <= 0 or height <= 0:
        raise _Refusal(f"invalid image size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise _PixelLimit(
            f"image has too many pixels ({width}x{height} = {width * height:,} > limit {max_pixels:,}); "
            "pass max_pixels to raise the limit"
        )



def read_source(source: Any, name: str | None = None) -> tuple[bytes, str]:
    """The bytes of a path, bytes or binary file-like, and the label errors name it by; every failure to read
    is one :class:`InputError` line (no such file, a directory, permission denied, ...)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        try:
            with open(source, "rb") as f:
                return f.read(), label
        except FileNotFoundError:
            raise InputError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{label}: is a directory, not an image file") from None
        except PermissionError:
            raise InputError(f"{label}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{label}: cannot read file ({_one_line(exc.strerror or str(exc))})") from None
    if hasattr(source, "read"):
        label = name or str(getattr(source, "name", "") or "<stream>")
        try:
            data = source.read()
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{label}: cannot read stream ({_one_line(str(exc)) or type(exc).__name__})") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"{label}: stream is not binary (read() returned {type(data).__name__})")
        return bytes(data), label
    raise InputError(f"<{type(source).__name__}>: cannot load from this object; pass a path, bytes or a binary file")



def _check_decoded(pixels: np.ndarray, size: tuple[int, int]) -> None:
    """A decoder must return what the header promised; anything else is a corrupt or unsupported file."""
    if pixels.ndim < 2 or (pixels.shape[1], pixels.shape[0]) != tuple(size):
        raise _Refusal(f"decoded shape {tuple(pixels.shape)} does not match the header size {size[0]}x{size[1]}")



def _first_that_decodes(data: bytes, *decoders: Callable[[bytes], np.ndarray]) -> np.ndarray:
    """Try decoders in order (e.g. OpenJPEG, then OpenJPH for HTJ2K); if all fail, raise the first error."""
    first: Exception | None = None
    for decode in decoders:
        try:
            return decode(data)
        except Exception as exc:  # noqa: BLE001
            first = first or exc
    assert first is not None
    raise first

