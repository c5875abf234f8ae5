"""Detect a file's format from its first bytes (never from its extension).

The table is data (STYLE.md 6): ``(name, offset, magic)`` rows checked in order.
"""
from __future__ import annotations

__all__ = ["sniff", "MAGIC"]

#: (format name, byte offset, magic bytes); order matters only where one magic prefixes another
MAGIC: tuple[tuple[str, int, bytes], ...] = (
    ("inv", 0, b"INV1"),
    ("png", 0, b"\x89PNG\r\n\x1a\n"),
    ("jpeg", 0, b"\xff\xd8\xff"),
    ("gif", 0, b"GIF87a"),
    ("gif", 0, b"GIF89a"),
    ("tiff", 0, b"II*\x00"),
    ("tiff", 0, b"MM\x00*"),
    ("tiff", 0, b"II+\x00"),                     # BigTIFF
    ("tiff", 0, b"MM\x00+"),
    ("bmp", 0, b"BM"),
    ("jxl", 0, b"\xff\x0a"),                     # JPEG XL codestream
    ("jxl", 0, b"\x00\x00\x00\x0cJXL \r\n\x87\n"),  # JPEG XL container
    ("jp2", 0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),  # JPEG 2000 (JP2 container)
    ("j2k", 0, b"\xff\x4f\xff\x51"),             # JPEG 2000 / HTJ2K codestream
    ("dicom", 128, b"DICM"),
)


def sniff(data: bytes) -> str | None:
    """Return the format name of ``data`` from its magic bytes, or ``None``.

    Examples
    --------
    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00" * 8)
    'png'
    >>> sniff(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 ")
    'webp'
    >>> sniff(b"hello") is None
    True
    """
    head = bytes(data[:512])
    if head[128:132] == b"DICM":  # before TIFF: some DICOM preambles are TIFF headers (dual-personality files)
        return "dicom"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"mif1", b"msf1", b"heic", b"heix"):
        return "avif" if head[8:12] in (b"avif", b"avis") or b"avif" in head[8:64] else "heif"
    for name, off, magic in MAGIC:
        if head[off : off + len(magic)] == magic:
            return _jpeg_family(data) if name == "jpeg" else name
    return None


def _jpeg_family(data: bytes) -> str:
    """``jpegls`` when the first frame header is SOF55 (JPEG-LS), else ``jpeg``; walks the marker segments."""
    i, n = 2, min(len(data), 1 << 16)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xF7:
            return "jpegls"
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return "jpeg"
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return "jpeg"
