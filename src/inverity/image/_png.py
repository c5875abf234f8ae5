"""PNG in and out, with the chunk layer parsed here rather than by Pillow.

Reading walks every chunk to ``IEND`` first (a cut-off file is refused as truncated, even where libpng would stop
early), takes the size from ``IHDR`` before any pixel is decoded, refuses APNG animation from ``acTL``, and reads
the metadata itself: ``iCCP``, ``eXIf``, XMP (``iTXt``/``zTXt``/``tEXt`` with keyword ``XML:com.adobe.xmp``) and
``sBIT`` — so a 12-bit image written with ``sBIT`` comes back as 12-bit. Other text chunks are valid PNG but not
kept; a note names them. Inflated metadata is capped (:data:`MAX_METADATA`): a larger ICC profile or XMP packet is
dropped with a note, never called corrupt (Pillow refuses any text chunk over 1 MB as an error).

Writing goes through :func:`png_encode`, which hands libpng an output buffer large enough for incompressible
images of any aspect ratio (imagecodecs' own estimate is too small for e.g. 70000×1), and :func:`png_embed`,
which inserts ``sBIT``, ``iCCP``, ``eXIf`` and XMP right after ``IHDR``.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ._base import Image, _check_decoded, _check_size, _Refusal, _Truncated
from ._exif import _apply_exif_orientation

__all__ = ["decode_png", "png_encode", "png_embed", "png_extract", "png_chunk", "MAX_METADATA"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_KEYWORD = b"XML:com.adobe.xmp"
#: cap on an inflated iCCP / XMP payload: a compressed chunk must not become a memory bomb
MAX_METADATA = 16 << 20


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bool, int]]:
    """``(type, payload, crc ok, offset)`` for every chunk up to and including ``IEND``; raises ``_Truncated``
    when the file ends first."""
    i = len(SIGNATURE)
    while True:
        if i + 12 > len(data):
            raise _Truncated(f"chunk header at byte {i} cut short" if i < len(data) else "no IEND chunk")
        length = int.from_bytes(data[i : i + 4], "big")
        if length > 0x7FFFFFFF:
            raise ValueError(f"bad chunk length {length}")
        kind = bytes(data[i + 4 : i + 8])
        if i + 12 + length > len(data):
            raise _Truncated(f"{kind.decode('latin-1')!r} chunk cut short")
        payload = data[i + 8 : i + 8 + length]
        crc = int.from_bytes(data[i + 8 + length : i + 12 + length], "big")
        yield kind, payload, zlib.crc32(kind + payload) == crc, i
        if kind == b"IEND":
            return
        i += 12 + length


def _inflate(payload: bytes, limit: int = MAX_METADATA) -> bytes | None:
    """Inflate a zlib stream; ``None`` when it is broken or inflates beyond ``limit``."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(payload, limit)
    except zlib.error:
        return None
    return None if d.unconsumed_tail else out


#: chunks that shape the decoded samples (bit depth and colour type, palette, transparency, data)
_PIXEL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})


@dataclass
class _PngInfo:
    width: int = 0
    height: int = 0
    colour_type: int = -1
    frames: int = 1
    sbit: int | None = None
    meta: dict[str, Any] = field(default_factory=lambda: {"notes": []})
    dropped_text: list[str] = field(default_factory=list)
    #: the chunks libpng needs for the pixels (signature included); metadata chunks are read here instead, so
    #: libpng neither warns about them on stderr nor runs out of its chunk cache on thousands of text chunks
    pixel_chunks: list[bytes] = field(default_factory=lambda: [SIGNATURE])


def _text(kind: bytes, payload: bytes) -> tuple[bytes, bytes | None]:
    """``(keyword, text)`` of a tEXt/zTXt/iTXt chunk; text ``None`` when it cannot be read within the cap."""
    keyword, _, rest = payload.partition(b"\x00")
    if kind == b"tEXt":
        return keyword, rest
    if kind == b"zTXt":
        return keyword, _inflate(rest[1:])
    compressed = rest[:1] == b"\x01"
    parts = rest[2:].split(b"\x00", 2)  # language tag, translated keyword, text
    if len(parts) < 3:
        return keyword, None
    return keyword, _inflate(parts[2]) if compressed else parts[2]


def _scan(data: bytes) -> _PngInfo:
    """Walk all chunks: size, animation, significant bits and the metadata the loader keeps."""
    info = _PngInfo()
    notes = info.meta["notes"]
    for n, (kind, payload, crc_ok, offset) in enumerate(_chunks(data)):
        if kind in _PIXEL_CHUNKS:
            info.pixel_chunks.append(data[offset : offset + 12 + len(payload)])
        if n == 0:
            if kind != b"IHDR" or len(payload) != 13:
                raise ValueError("first chunk is not a 13-byte IHDR")
            if not crc_ok:
                raise ValueError("IHDR CRC mismatch")
            info.width, info.height = struct.unpack(">II", payload[:8])
            info.colour_type = payload[9]
        elif kind == b"acTL" and len(payload) >= 4 and crc_ok:
            info.frames = max(1, int.from_bytes(payload[:4], "big"))
        elif not crc_ok and kind in (b"iCCP", b"eXIf", b"iTXt", b"zTXt", b"tEXt", b"sBIT"):
            notes.append(f"PNG {kind.decode('latin-1')} chunk with a bad CRC ignored")
        elif kind == b"sBIT" and payload:
            info.sbit = max(payload)
        elif kind == b"iCCP" and b"\x00" in payload:
            icc = _inflate(payload[payload.index(b"\x00") + 2 :])
            if icc:
                info.meta["icc"] = icc
            else:
                notes.append("PNG ICC profile unreadable or larger than 16 MiB: dropped")
        elif kind == b"eXIf" and payload:
            info.meta["exif"] = bytes(payload)
        elif kind in (b"iTXt", b"zTXt", b"tEXt"):
            keyword, text = _text(kind, payload)
            if keyword == XMP_KEYWORD and text:
                info.meta["xmp"] = text
            elif keyword == XMP_KEYWORD:
                notes.append("PNG XMP packet unreadable or larger than 16 MiB: dropped")
            else:
                info.dropped_text.append(keyword.decode("latin-1", "replace")[:40])
    if info.dropped_text:
        names = sorted(set(info.dropped_text))
        notes.append(f"PNG text chunks not kept ({len(info.dropped_text)}): " + ", ".join(names[:5])
                     + (", …" if len(names) > 5 else ""))
    return info


def decode_png(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    info = _scan(data)
    _check_size(info.width, info.height, max_pixels)
    if info.frames > 1:
        raise _Refusal(f"animated images are not supported ({info.frames} frames)")
    meta = info.meta
    # libpng keeps 16-bit samples (Pillow would narrow 16-bit RGB to 8 bits) and expands palette + tRNS to
    # RGB/RGBA and gray + tRNS to gray+alpha.
    pixels = imagecodecs.png_decode(b"".join(info.pixel_chunks))
    if info.colour_type == 3:
        meta["notes"].append("palette expanded to " + ("RGBA" if pixels.shape[-1] == 4 else "RGB"))
    _check_decoded(pixels, (info.width, info.height))
    depth = 16 if pixels.dtype == np.uint16 else 8
    if depth == 16 and info.sbit is not None and 8 < info.sbit < 16:
        if int(pixels.max()) < 1 << info.sbit:
            depth = info.sbit
        else:  # a lying sBIT must not make the image unencodable at its "declared" depth
            meta["notes"].append(f"sBIT says {info.sbit} significant bits but samples exceed them: kept as 16-bit")
    pixels = _apply_exif_orientation(pixels, meta)
    return pixels, depth, meta


def png_encode(pixels: np.ndarray, level: int | None = 6) -> bytes:
    """PNG-encode H×W or H×W×C uint8/uint16 pixels with libpng, for any aspect ratio.

    imagecodecs sizes its output buffer from the raw size, which is too small for incompressible tall images
    (libpng adds per-row deflate overhead): a 70000×1 noise image failed with "output stream too small". The
    bound given here covers deflate's worst case (stored blocks) plus one IDAT chunk header per row.

    Examples
    --------
    >>> import numpy as np, imagecodecs
    >>> tall = np.random.default_rng(0).integers(0, 256, (70000, 1), dtype=np.uint8)
    >>> bool((imagecodecs.png_decode(png_encode(tall)) == tall).all())
    True
    """
    import imagecodecs

    px = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    height, width = px.shape[:2]
    raw = height * (1 + width * (px.shape[2] if px.ndim == 3 else 1) * px.dtype.itemsize)
    bound = raw + (raw >> 10) + 12 * (raw // 8192 + height + 2) + 1024
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(px), level=level, out=bound))


def _exif_tiff(exif: bytes) -> bytes:
    return exif[6:] if exif[:6] == b"Exif\x00\x00" else exif


def png_embed(data: bytes, image: Image, meta: dict[str, bytes]) -> bytes:
    """Insert ``sBIT`` (when fewer than 16 of 16 bits are used), ``iCCP``, ``eXIf`` and XMP ``iTXt`` after IHDR,
    where ``iCCP`` must be and where readers look for ``eXIf`` / XMP."""
    extra = []
    if image.dtype == np.uint16 and 8 < image.bit_depth < 16:
        extra.append(png_chunk(b"sBIT", bytes([image.bit_depth]) * image.channels))
    if meta.get("icc"):
        extra.append(png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta["icc"], 9)))
    if meta.get("exif"):
        extra.append(png_chunk(b"eXIf", _exif_tiff(meta["exif"])))
    if meta.get("xmp"):
        # keyword, uncompressed, no language tag, no translated keyword
        extra.append(png_chunk(b"iTXt", XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + meta["xmp"]))
    if not extra:
        return data
    end_ihdr = len(SIGNATURE) + 12 + struct.unpack(">I", data[8:12])[0]
    return data[:end_ihdr] + b"".join(extra) + data[end_ihdr:]


def png_extract(data: bytes) -> tuple[dict[str, bytes], int | None]:
    """Metadata (``icc``, ``exif``, ``xmp``) and the ``sBIT`` significant bits (``None`` if absent) of a PNG.

    Examples
    --------
    >>> import numpy as np
    >>> img = Image(np.full((2, 2, 1), 4095, np.uint16), bit_depth=12)
    >>> png_extract(png_embed(png_encode(img.pixels), img, {"xmp": b"<x/>"}))
    ({'xmp': b'<x/>'}, 12)
    """
    try:
        info = _scan(data)
    except _Truncated as exc:
        raise ValueError(f"truncated PNG: {exc}") from None
    return {k: v for k, v in info.meta.items() if k != "notes"}, info.sbit
