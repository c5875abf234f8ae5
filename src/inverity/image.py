"""Safe image I/O: the ``Image`` value and ``load``/``save``.

(Skeleton: the dataclass is the shared contract; ``load``/``save`` are being implemented.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Image", "load", "save", "DEFAULT_MAX_PIXELS"]

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


def load(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None) -> Image:
    raise NotImplementedError


def save(image: Image, path: Any, *, format: str | None = None) -> None:
    raise NotImplementedError
