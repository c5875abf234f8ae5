"""EXIF / TIFF orientation: rotate the pixels upright and reset the tag, so no viewer rotates twice."""
from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF/TIFF orientation (2..8) so the array is upright (same result as ``ImageOps.exif_transpose``)."""
    p = pixels if pixels.ndim == 3 else pixels[:, :, None]
    out = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)(p)
    return np.ascontiguousarray(out)


def _exif_orientation(exif: bytes) -> tuple[int, int | None, str]:
    """(orientation, byte offset of its value in ``exif``, byte order) from IFD0; (1, None, '<') if absent."""
    base = 6 if exif[:6] == b"Exif\x00\x00" else 0
    tiff = exif[base:]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1, None, "<"
    order = "<" if tiff[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1, None, order
    for k in range(struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]):
        p = ifd + 2 + 12 * k
        if p + 12 > len(tiff):
            break
        tag, kind, count = struct.unpack(order + "HHI", tiff[p : p + 8])
        if tag == 0x0112 and kind == 3 and count == 1:
            return struct.unpack(order + "H", tiff[p + 8 : p + 10])[0], base + p + 8, order
    return 1, None, order


_XMP_ORIENTATION = (
    re.compile(rb"(tiff:Orientation\s*=\s*[\"'])[2-8]([\"'])"),
    re.compile(rb"(<tiff:Orientation>\s*)[2-8](\s*</tiff:Orientation>)"),
)


def _apply_exif_orientation(pixels: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Rotate/flip the pixels as EXIF says, then set the tag to 1 in place (the rest of the EXIF is untouched)."""
    exif = meta.get("exif")
    if not exif:
        return pixels
    orientation, offset, order = _exif_orientation(exif)
    if orientation == 1 or offset is None or not 2 <= orientation <= 8:
        return pixels
    patched = bytearray(exif)
    patched[offset : offset + 2] = struct.pack(order + "H", 1)
    meta["exif"] = bytes(patched)
    if meta.get("xmp"):  # an XMP copy of the tag would make viewers rotate a second time
        for pattern in _XMP_ORIENTATION:
            meta["xmp"] = pattern.sub(rb"\g<1>1\g<2>", meta["xmp"])
    meta["notes"].append(f"EXIF orientation {orientation} applied to the pixels and reset to 1")
    return _orient(pixels, orientation)

