"""Header probes: width, height and layout read from the first bytes, *before* any decoder runs.

Each parser is a few lines of struct unpacking and raises ``_Truncated`` when the header ends early.
"""
from __future__ import annotations

import struct
from typing import Any, Iterator

from ._base import _Truncated

#: TIFF field type -> (struct code, size); BYTE/UNDEFINED/ASCII values are returned as bytes
_TIFF_TYPES = {1: ("B", 1), 2: ("B", 1), 3: ("H", 2), 4: ("I", 4), 6: ("b", 1), 7: ("B", 1), 8: ("h", 2),
               9: ("i", 4), 13: ("I", 4), 16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8)}
#: the IFD0 tags the loader needs: width, length, bits per sample, samples per pixel, orientation, XMP, ICC
_TIFF_TAGS = (256, 257, 258, 277, 274, 700, 34675)


def _tiff_header(data: bytes) -> tuple[dict[int, Any], int]:
    """The first IFD's interesting tags and the number of pages (IFDs), from classic TIFF or BigTIFF."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    head, entry, value_size = (16, 20, 8) if big else (8, 12, 4)
    if len(data) < head:
        raise _Truncated("TIFF header cut short")
    offset = struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    tags: dict[int, Any] = {}
    pages, seen = 0, set()
    while offset and pages < 10_000:
        if offset in seen:
            raise ValueError("IFD chain loops")
        seen.add(offset)
        count_size = 8 if big else 2
        if offset + count_size > len(data):
            raise _Truncated(f"IFD at byte {offset} cut short")
        n = struct.unpack(order + ("Q" if big else "H"), data[offset : offset + count_size])[0]
        start, end = offset + count_size, offset + count_size + n * entry
        if end + value_size > len(data):
            raise _Truncated(f"IFD at byte {offset} cut short")
        if pages == 0:
            for k in range(n):
                e = start + k * entry
                tag, kind = struct.unpack(order + "HH", data[e : e + 4])
                if tag not in _TIFF_TAGS or kind not in _TIFF_TYPES:
                    continue
                count = struct.unpack(order + ("Q" if big else "I"), data[e + 4 : e + 4 + (8 if big else 4)])[0]
                code, size = _TIFF_TYPES[kind]
                where = e + 4 + (8 if big else 4)
                if count * size > value_size:  # stored elsewhere: the field holds an offset
                    where = struct.unpack(order + ("Q" if big else "I"), data[where : where + value_size])[0]
                if where + count * size > len(data):
                    raise _Truncated(f"TIFF tag {tag} value cut short")
                if kind in (1, 2, 7):
                    tags[tag] = bytes(data[where : where + count])
                else:
                    tags[tag] = struct.unpack(order + code * count, data[where : where + count * size])
        offset = struct.unpack(order + ("Q" if big else "I"), data[end : end + value_size])[0]
        pages += 1
    return tags, pages



def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """Walk JPEG / JPEG-LS marker segments up to the first scan: (marker, offset of its 0xFF)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ValueError(f"bad marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        yield marker, i
        if marker in (0xDA, 0xD9):
            return
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            raise ValueError(f"bad segment length {length}")
        i += 2 + length
    raise _Truncated("marker segments cut short")


def _jpeg_sof(data: bytes) -> tuple[int, int, int, int, int]:
    """The frame header of a JPEG / JPEG-LS stream: (marker, precision, height, width, components)."""
    for marker, i in _jpeg_segments(data):
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            seg = data[i + 4 : i + 10]
            if len(seg) < 6:
                raise _Truncated("frame header cut short")
            return marker, seg[0], int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big"), seg[5]
        if marker in (0xDA, 0xD9):
            break
    raise ValueError("no frame header before the scan")


def _jpeg_complete(data: bytes) -> None:
    """Require an EOI marker after the first scan: libjpeg pads a cut-off scan with gray and only warns.

    (EOI cannot occur inside entropy-coded data thanks to byte stuffing; an EXIF thumbnail's EOI sits inside an
    APP1 segment, before the first scan, so it does not count.)
    """
    sos = next((i for marker, i in _jpeg_segments(data) if marker == 0xDA), None)
    if sos is None or data.find(b"\xff\xd9", sos) < 0:
        raise _Truncated("no end-of-image marker")



def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """ISOBMFF / JP2 boxes in ``data[start:end]``: (type, payload start, payload end); the last may be clipped."""
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size = int.from_bytes(data[i : i + 4], "big")
        kind, header = bytes(data[i + 4 : i + 8]), 8
        if size == 1:
            if i + 16 > end:
                raise _Truncated("box header cut short")
            size, header = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = end - i
        if size < header:
            raise ValueError(f"bad box size {size}")
        yield kind, i + header, min(i + size, end)
        i += size


def _j2k_siz(cs: bytes) -> tuple[int, int, int, bool]:
    """JPEG 2000 codestream SIZ marker: (width, height, max bit depth, any signed component)."""
    if cs[:4] != b"\xff\x4f\xff\x51":
        raise ValueError("codestream does not start with SOC + SIZ")
    if len(cs) < 42:
        raise _Truncated("SIZ marker cut short")
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", cs[8:24])
    ncomp = int.from_bytes(cs[40:42], "big")
    comps = cs[42 : 42 + 3 * ncomp]
    if ncomp == 0 or len(comps) < 3 * ncomp:
        raise _Truncated("SIZ components cut short")
    ssiz = comps[0::3]
    return xsiz - xo, ysiz - yo, max((s & 0x7F) + 1 for s in ssiz), any(s & 0x80 for s in ssiz)


def _j2k_codestream(data: bytes) -> bytes:
    if data[:4] == b"\xff\x4f\xff\x51":
        return data
    for kind, a, b in _boxes(data):
        if kind == b"jp2c":
            return data[a:b]
    raise _Truncated("no jp2c codestream box")



def _avif_properties(data: bytes) -> tuple[tuple[int, int] | None, int | None]:
    """Largest ``ispe`` (width, height) and deepest ``pixi`` bit depth in the AVIF item properties."""
    size: tuple[int, int] | None = None
    bits: int | None = None
    for kind, a, b in _boxes(data):
        if kind != b"meta":
            continue
        for k2, a2, b2 in _boxes(data, a + 4, b):  # meta is a FullBox: 4 bytes version/flags
            if k2 != b"iprp":
                continue
            for k3, a3, b3 in _boxes(data, a2, b2):
                if k3 != b"ipco":
                    continue
                for k4, a4, b4 in _boxes(data, a3, b3):
                    if k4 == b"ispe":
                        if b4 - a4 < 12:
                            raise _Truncated("ispe box cut short")
                        w, h = struct.unpack(">II", data[a4 + 4 : a4 + 12])
                        if size is None or w * h > size[0] * size[1]:
                            size = (w, h)
                    elif k4 == b"pixi" and b4 - a4 >= 6:
                        n = data[a4 + 4]
                        depths = data[a4 + 5 : min(a4 + 5 + n, b4)]
                        if depths:
                            bits = max(bits or 0, max(depths))
    return size, bits



class _BitReader:
    """LSB-first bit reader (JPEG XL header fields)."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data, self.pos = data, start * 8

    def bits(self, n: int) -> int:
        value = 0
        for k in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise _Truncated("JPEG XL header cut short")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << k
            self.pos += 1
        return value

    def u32(self, *dists: tuple[int, int]) -> int:
        """JPEG XL ``U32``: a 2-bit selector picks (offset, bit count)."""
        offset, n = dists[self.bits(2)]
        return offset + self.bits(n)


_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def _jxl_size(r: _BitReader) -> tuple[int, int]:
    """``SizeHeader`` (ISO/IEC 18181-1 Annex D): (width, height)."""
    small = r.bits(1)
    dist = ((1, 9), (1, 13), (1, 18), (1, 30))
    height = (r.bits(5) + 1) * 8 if small else r.u32(*dist)
    ratio = r.bits(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    else:
        width = (r.bits(5) + 1) * 8 if small else r.u32(*dist)
    return width, height


def _jxl_preview(r: _BitReader) -> None:
    div8 = r.bits(1)
    d8, d = ((16, 0), (32, 0), (1, 5), (33, 9)), ((1, 6), (65, 8), (321, 10), (1345, 12))
    r.u32(*(d8 if div8 else d))
    if r.bits(3) == 0:
        r.u32(*(d8 if div8 else d))


def jxl_header(data: bytes) -> tuple[int, int, int, bool, bool]:
    """(width, height, bits per sample, floating point?, animated?) from a JPEG XL file's first bytes."""
    cs = data
    if data[:2] != b"\xff\x0a":
        parts = []
        for kind, a, b in _boxes(data):
            if kind == b"jxlc":
                parts = [data[a:b]]
                break
            if kind == b"jxlp":
                parts.append(data[a + 4 : b])  # 4-byte part index first
                if sum(map(len, parts)) >= 64:
                    break
        cs = b"".join(parts)
        if cs[:2] != b"\xff\x0a":
            raise _Truncated("no JPEG XL codestream")
    r = _BitReader(cs, 2)
    width, height = _jxl_size(r)
    bits, floating, animated = 8, False, False
    if not r.bits(1):  # ImageMetadata.all_default
        if r.bits(1):  # extra_fields
            r.bits(3)  # orientation - 1
            if r.bits(1):
                _jxl_size(r)  # intrinsic size
            if r.bits(1):
                _jxl_preview(r)
            animated = bool(r.bits(1))
        if not animated:
            floating = bool(r.bits(1))
            if floating:
                bits = r.u32((32, 0), (16, 0), (24, 0), (1, 6))
            else:
                bits = r.u32((8, 0), (10, 0), (12, 0), (1, 6))
    return width, height, bits, floating, animated



def _webp_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first chunk of a WebP RIFF: the VP8X canvas, or the VP8 / VP8L frame header."""
    if len(data) < 30:
        raise _Truncated("WebP header cut short")
    kind, payload = data[12:16], data[20:30]
    if kind == b"VP8X":
        return 1 + int.from_bytes(payload[4:7], "little"), 1 + int.from_bytes(payload[7:10], "little")
    if kind == b"VP8 ":
        if payload[3:6] != b"\x9d\x01\x2a":
            raise ValueError("VP8 frame has no start code")
        return int.from_bytes(payload[6:8], "little") & 0x3FFF, int.from_bytes(payload[8:10], "little") & 0x3FFF
    if kind == b"VP8L":
        if payload[0] != 0x2F:
            raise ValueError("VP8L frame has no signature")
        bits = int.from_bytes(payload[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    raise ValueError(f"unknown first WebP chunk {kind!r}")


def _gif_complete(data: bytes) -> None:
    """A GIF ends with its trailer byte (0x3B); without it the last frame's data may be cut short."""
    if data.rstrip(b"\x00")[-1:] != b"\x3b":
        raise _Truncated("no GIF trailer")


def _j2k_complete(codestream: bytes) -> None:
    """A JPEG 2000 codestream ends with EOC (0xFFD9); OpenJPEG would decode a cut-off one partially.

    A few bytes after it are allowed (DICOM pads frames to an even length; some encoders leave a stray byte).
    Packet data cannot contain 0xFFD9 — a 0xFF there is always followed by a byte below 0x90 — so finding it in
    the last bytes means the codestream is complete.
    """
    if b"\xff\xd9" not in codestream[-8:]:
        raise _Truncated("no end-of-codestream marker")
