"""Safe image I/O: the ``Image`` value, ``load``, ``save`` and ``dicom_bytes``.

``load`` is the pipeline's front door, so it is written for hostile input (STYLE.md 7):

* the format is detected from the bytes (:func:`inverity.formats.sniff`), never from the file name;
* width × height is read from the header *before* any pixel is decoded and refused above ``max_pixels``
  (Pillow's lazy ``open`` for PNG/JPEG/GIF/TIFF/BMP/WebP, a few lines of header parsing for AVIF, JPEG XL,
  JPEG 2000, JPEG-LS and DICOM);
* every failure is an :class:`~inverity.errors.InputError` with a one-line message naming the file —
  no library exception escapes.

Decoding is delegated: Pillow for the common raster formats and their metadata, imagecodecs where Pillow would
lose precision (16-bit PNG/TIFF, 10/12-bit AVIF and JPEG XL) or has no codec (JPEG-LS, JPEG XL, lossless JPEG),
pydicom for DICOM datasets (with imagecodecs decoding the encapsulated JPEG-family frames).

Metadata keys set by ``load`` (all optional):

``icc``, ``exif``, ``xmp``
    raw bytes as found in the file (EXIF orientation already applied to the pixels and reset to 1).
``notes``
    list of one-line strings describing conversions made on the way in (CMYK → RGB, palette expanded, ...).
``dicom``
    the ``pydicom.Dataset`` (with ``file_meta``) minus its pixel data; its Photometric Interpretation and
    Planar Configuration describe the pixels as held.
``dicom_transfer_syntax``
    the transfer syntax UID of the source file.
``dicom_signed_offset``
    for signed DICOM pixel data (Pixel Representation 1): the ``2**(BitsStored-1)`` that was added so the
    values fit an unsigned array; ``stored = original + offset``. :func:`dicom_bytes` subtracts it again.
"""
from __future__ import annotations

import copy
import importlib
import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ._atomic import atomic_write_bytes
from .errors import InputError, PixelLimitError, UnknownIdError, UnsupportedInputError
from .formats import sniff

__all__ = [
    "Image", "load", "read_source", "save", "to_bytes", "dicom_bytes", "dicom_values",
    "DEFAULT_MAX_PIXELS", "DICOM_TRANSFER_SYNTAXES", "SAVE_FORMATS",
]

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
    """The header's width x height is over ``max_pixels`` (becomes :class:`PixelLimitError`)."""


class _Truncated(Exception):
    """A header ended before the fields we need."""


#: words in library messages that mean "the data stopped early" (Pillow, libpng, libjpeg, openjpeg, pydicom)
_TRUNCATION = re.compile(
    r"truncat|premature|unexpected end|end of (file|stream|data|buffer)|\beof\b|too short|not enough data"
    r"|incomplete|insufficient data|ran out|buffer is too small|reached the end|no more data|less than expected",
    re.IGNORECASE,
)

#: human names used in messages
_FORMAT_NAMES = {
    "png": "PNG", "jpeg": "JPEG", "jpegls": "JPEG-LS", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL",
    "jp2": "JPEG 2000", "j2k": "JPEG 2000", "tiff": "TIFF", "gif": "GIF", "bmp": "BMP", "dicom": "DICOM",
    "inv": "inverity container", "heif": "HEIF",
}


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


# --------------------------------------------------------------------------------------------------------------
# load


def load(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None) -> Image:
    """Read an image from a path, bytes or a binary file object, refusing anything unsafe or unreadable.

    Parameters
    ----------
    source
        ``str``/``os.PathLike`` path, ``bytes``-like object, or an object with a binary ``read()``.
    max_pixels
        Refuse images with more than this many pixels (width × height), checked from the header before any
        pixel is decoded. ``None`` disables the check.
    name
        What error messages call the input (default: the path, the stream's ``name``, or ``<bytes>``).

    Returns
    -------
    Image
        H×W×C ``uint8``/``uint16`` pixels; ``source_format`` is the sniffed format name (``png``, ``dicom``, ...).

    Raises
    ------
    InputError
        One line naming the input and the problem: empty, truncated, corrupt, unsupported, animated,
        too many pixels, unreadable file.

    Examples
    --------
    >>> import numpy as np, imagecodecs
    >>> img = load(imagecodecs.png_encode(np.zeros((2, 3, 3), np.uint8)))
    >>> (img.height, img.width, img.colour, img.source_format)
    (2, 3, 'rgb', 'png')
    >>> load(b"")
    Traceback (most recent call last):
    ...
    inverity.errors.InputError: <bytes>: empty file (0 bytes)
    """
    data, label = read_source(source, name)
    if not data:
        raise InputError(f"{label}: empty file (0 bytes)")
    # DICOM first: a DICOM preamble may itself be a TIFF header (dual-personality files such as pydicom's
    # CT_small.dcm), which ``sniff`` would otherwise report as TIFF.
    fmt = "dicom" if data[128:132] == b"DICM" else sniff(data)
    if fmt is None:
        raise InputError(f"{label}: not a recognised image format ({_nbytes(len(data))})")
    decoder = _DECODERS.get(fmt)
    if decoder is None:
        hint = "; decode it with `inverity decode`" if fmt == "inv" else ""
        raise InputError(f"{label}: {_FORMAT_NAMES.get(fmt, fmt)} files are not supported as input{hint}")
    try:
        # Libraries warn about recoverable oddities of corrupt files; the loader's contract is a clean image or
        # one InputError, so their warnings are not passed on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels, bit_depth, metadata = decoder(data, max_pixels)
            image = _finish(pixels, bit_depth, fmt, metadata)
    except _PixelLimit as exc:
        raise PixelLimitError(f"{label}: {exc}") from None
    except _Refusal as exc:
        raise InputError(f"{label}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - every library error becomes one InputError (the contract)
        raise InputError(f"{label}: {_describe_failure(fmt, len(data), exc)}") from None
    return image


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


def _finish(pixels: np.ndarray, bit_depth: int, fmt: str, metadata: dict[str, Any]) -> Image:
    """Normalise a decoder's array to H×W×C uint8/uint16 and build the Image."""
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype.kind == "f":
        raise _Refusal("floating-point samples are not supported")
    if pixels.dtype.kind != "u" or pixels.dtype.itemsize > 2:
        raise _Refusal(f"{pixels.dtype} samples are not supported (only 8- and 16-bit unsigned)")
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise _Refusal(f"unsupported sample layout {tuple(pixels.shape)}")
    if not metadata.get("notes"):
        metadata.pop("notes", None)
    return Image(pixels, bit_depth=bit_depth, source_format=fmt, metadata=metadata)


# ---- Pillow-backed formats -----------------------------------------------------------------------------------

#: sniffed name -> (Pillow plugin module, ImageFile class). Constructing the plugin class directly parses the
#: header lazily *without* Pillow's global decompression-bomb check, so our own ``max_pixels`` governs.
_PIL_CLASSES = {
    "png": ("PngImagePlugin", "PngImageFile"),
    "jpeg": ("JpegImagePlugin", "JpegImageFile"),
    "gif": ("GifImagePlugin", "GifImageFile"),
    "tiff": ("TiffImagePlugin", "TiffImageFile"),
    "bmp": ("BmpImagePlugin", "BmpImageFile"),
    "webp": ("WebPImagePlugin", "WebPImageFile"),
    "avif": ("AvifImagePlugin", "AvifImageFile"),
}


def _pil_open(fmt: str, data: bytes) -> Any:
    module, cls = _PIL_CLASSES[fmt]
    plugin = importlib.import_module(f"PIL.{module}")
    return getattr(plugin, cls)(io.BytesIO(data))


def _pil_metadata(im: Any) -> dict[str, Any]:
    info = im.info
    meta: dict[str, Any] = {"notes": []}
    if isinstance(info.get("icc_profile"), (bytes, bytearray)) and info["icc_profile"]:
        meta["icc"] = bytes(info["icc_profile"])
    if isinstance(info.get("exif"), (bytes, bytearray)) and info["exif"]:
        meta["exif"] = bytes(info["exif"])
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if isinstance(xmp, (bytes, bytearray)) and xmp:
        meta["xmp"] = bytes(xmp)
    return meta


def _frames(im: Any) -> int:
    return int(getattr(im, "n_frames", 1) or 1)


def _refuse_animation(im: Any) -> None:
    n = _frames(im)
    if n > 1:
        raise _Refusal(f"animated images are not supported ({n} frames)")


def _pil_pixels(im: Any, meta: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Decode a (lazily opened) Pillow image to an array, expanding modes that are not H×W×C samples."""
    from PIL import ImageCms

    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im), 8
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), 16
    if mode == "1":
        return np.asarray(im.convert("L")), 8
    if mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in im.info
        meta["notes"].append("palette expanded to " + ("RGBA" if alpha else "RGB"))
        return np.asarray(im.convert("RGBA" if alpha else "RGB")), 8
    if mode == "La":
        return np.asarray(im.convert("LA")), 8
    if mode in ("RGBa", "RGBX"):
        return np.asarray(im.convert("RGBA" if mode == "RGBa" else "RGB")), 8
    if mode == "YCbCr":
        return np.asarray(im.convert("RGB")), 8
    if mode == "CMYK":
        icc = meta.get("icc")
        if icc:
            try:
                rgb = ImageCms.profileToProfile(
                    im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
                )
                meta.pop("icc")  # the pixels are sRGB now; the CMYK profile no longer describes them
                meta["notes"].append("converted CMYK to sRGB with the embedded ICC profile")
                return np.asarray(rgb), 8
            except Exception:  # noqa: BLE001 - a broken profile falls back to the plain conversion below
                pass
        meta.pop("icc", None)
        meta["notes"].append("converted CMYK to RGB without a colour profile (approximate colours)")
        return np.asarray(im.convert("RGB")), 8
    raise _Refusal(f"unsupported pixel mode {mode}")


def _png_chunks_complete(data: bytes) -> None:
    """Walk the chunk lengths to IEND: a cut-off file is refused even where libpng would stop reading early."""
    i = 8
    while True:
        if i + 12 > len(data):
            raise _Truncated(f"chunk header at byte {i} cut short" if i < len(data) else "no IEND chunk")
        length = int.from_bytes(data[i : i + 4], "big")
        if length > 0x7FFFFFFF:
            raise ValueError(f"bad chunk length {length}")
        if i + 12 + length > len(data):
            raise _Truncated(f"{data[i + 4 : i + 8]!r} chunk cut short".replace("b'", "'"))
        if data[i + 4 : i + 8] == b"IEND":
            return
        i += 12 + length


def _decode_png(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    _png_chunks_complete(data)
    im = _pil_open("png", data)
    _check_size(int(im.size[0]), int(im.size[1]), max_pixels)
    _refuse_animation(im)
    meta = _pil_metadata(im)
    # imagecodecs (libpng) keeps 16-bit samples (Pillow would narrow 16-bit RGB to 8 bits) and expands
    # palette + tRNS to RGB/RGBA and gray + tRNS to gray+alpha.
    pixels = imagecodecs.png_decode(data)
    if len(data) > 25 and data[25] == 3:  # IHDR colour type 3: palette
        meta["notes"].append("palette expanded to " + ("RGBA" if pixels.shape[-1] == 4 else "RGB"))
    _check_decoded(pixels, im.size)
    pixels = _apply_exif_orientation(pixels, meta)
    return pixels, 16 if pixels.dtype == np.uint16 else 8, meta


def _check_decoded(pixels: np.ndarray, size: tuple[int, int]) -> None:
    """A decoder must return what the header promised; anything else is a corrupt or unsupported file."""
    if pixels.ndim < 2 or (pixels.shape[1], pixels.shape[0]) != tuple(size):
        raise _Refusal(f"decoded shape {tuple(pixels.shape)} does not match the header size {size[0]}x{size[1]}")


def _decode_jpeg(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    marker, precision, height, width, _ = _jpeg_sof(data)
    _check_size(width, height, max_pixels)
    _jpeg_complete(data)
    if marker in (0xC3, 0xC7, 0xCB, 0xCF) or precision > 8:
        # lossless (process 14) or 12/16-bit JPEG: Pillow cannot; libjpeg-turbo / ljpeg via imagecodecs can
        import imagecodecs

        pixels = imagecodecs.jpeg_decode(data)
        _check_decoded(pixels, (width, height))
        return pixels, precision if pixels.dtype == np.uint16 else 8, {}
    im = _pil_open("jpeg", data)
    _check_size(int(im.size[0]), int(im.size[1]), max_pixels)
    meta = _pil_metadata(im)
    pixels, depth = _pil_pixels(im, meta)
    pixels = _apply_exif_orientation(pixels, meta)
    return pixels, depth, meta


def _decode_pil_generic(fmt: str) -> Callable[[bytes, int | None], tuple[np.ndarray, int, dict[str, Any]]]:
    def decode(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
        im = _pil_open(fmt, data)
        _check_size(int(im.size[0]), int(im.size[1]), max_pixels)
        _refuse_animation(im)
        meta = _pil_metadata(im)
        im.seek(0)
        pixels, depth = _pil_pixels(im, meta)
        if fmt == "webp":
            pixels = _apply_exif_orientation(pixels, meta)
        return pixels, depth, meta

    return decode


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


def _decode_tiff(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    tags, pages = _tiff_header(data)
    if 256 not in tags or 257 not in tags:
        raise ValueError("no ImageWidth / ImageLength tag")
    width, height = int(tags[256][0]), int(tags[257][0])
    _check_size(width, height, max_pixels)
    if pages > 1:
        raise _Refusal(f"multi-page TIFF is not supported ({pages} pages)")
    meta: dict[str, Any] = {"notes": []}
    if isinstance(tags.get(34675), bytes) and tags[34675]:
        meta["icc"] = tags[34675]
    if isinstance(tags.get(700), bytes) and tags[700]:
        meta["xmp"] = tags[700]
    bits = max(tags.get(258, (1,)) or (1,))
    samples = int(tags.get(277, (1,))[0])
    im = None
    if not (bits == 16 and samples > 1):
        try:
            im = _pil_open("tiff", data)
        except Exception:  # noqa: BLE001 - a layout Pillow has no mode for: libtiff below decides
            im = None
    if im is None:
        # Pillow has no 16-bit multi-channel modes and would narrow to 8 bits; libtiff via imagecodecs does not
        import imagecodecs

        pixels = imagecodecs.tiff_decode(data, index=0)
        _check_decoded(pixels, (width, height))
        depth = 16 if pixels.dtype == np.uint16 else 8
    else:
        _check_size(int(im.size[0]), int(im.size[1]), max_pixels)
        pixels, depth = _pil_pixels(im, meta)
    orientation = int(tags.get(274, (1,))[0])
    if 2 <= orientation <= 8:
        pixels = _orient(pixels, orientation)
        meta["notes"].append(f"TIFF orientation {orientation} applied to the pixels")
    return pixels, depth, meta


# ---- imagecodecs-backed formats with hand-parsed headers ----------------------------------------------------


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


def _decode_jpegls(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    _, precision, height, width, _ = _jpeg_sof(data)
    _check_size(width, height, max_pixels)
    _jpeg_complete(data)
    if not 2 <= precision <= 16:
        raise ValueError(f"bad sample precision {precision}")
    pixels = imagecodecs.jpegls_decode(data)
    _check_decoded(pixels, (width, height))
    return pixels, precision if pixels.dtype == np.uint16 else 8, {}


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


def _decode_j2k(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    width, height, depth, signed = _j2k_siz(_j2k_codestream(data))
    _check_size(width, height, max_pixels)
    if signed:
        raise _Refusal("signed JPEG 2000 samples are not supported outside DICOM")
    if depth > 16:
        raise _Refusal(f"{depth}-bit JPEG 2000 samples are not supported")
    if data[:4] == b"\xff\x4f\xff\x51":  # a raw codestream may be HTJ2K, which OpenJPH reads when OpenJPEG cannot
        pixels = _first_that_decodes(data, imagecodecs.jpeg2k_decode, imagecodecs.htj2k_decode)
    else:
        pixels = imagecodecs.jpeg2k_decode(data)
    _check_decoded(pixels, (width, height))
    return pixels, depth if pixels.dtype == np.uint16 else 8, {}


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


def _decode_avif(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    size, bits = _avif_properties(data)
    if size is not None:
        _check_size(*size, max_pixels)
    meta: dict[str, Any] = {"notes": []}
    im = None
    plugin = importlib.import_module("PIL.AvifImagePlugin") if _has_module("PIL.AvifImagePlugin") else None
    if plugin is not None and getattr(plugin, "SUPPORTED", False):
        im = _pil_open("avif", data)  # libavif parse only: size, frame count and metadata, no pixels
        _check_size(int(im.size[0]), int(im.size[1]), max_pixels)
        _refuse_animation(im)
        meta = _pil_metadata(im)
        size = size or (int(im.size[0]), int(im.size[1]))
    if size is None:
        raise ValueError("no image size (ispe) property")
    pixels = imagecodecs.avif_decode(data, index=0)
    # irot/imir may swap the axes, so compare areas, not shapes
    if pixels.ndim < 2 or pixels.shape[0] * pixels.shape[1] != size[0] * size[1]:
        raise _Refusal(f"decoded shape {tuple(pixels.shape)} does not match the header size {size[0]}x{size[1]}")
    if pixels.dtype == np.uint16:
        depth = bits if bits and 8 < bits <= 16 else 16
    else:
        depth = 8
    return pixels, depth, meta


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


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


def _jxl_header(data: bytes) -> tuple[int, int, int, bool, bool]:
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


def _decode_jxl(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    width, height, bits, floating, animated = _jxl_header(data)
    _check_size(width, height, max_pixels)
    if animated:
        raise _Refusal("animated images are not supported (JPEG XL animation)")
    if floating:
        raise _Refusal("floating-point samples are not supported")
    pixels = imagecodecs.jpegxl_decode(data, index=0)
    if pixels.ndim < 2 or pixels.shape[0] * pixels.shape[1] != width * height:  # orientation may swap axes
        raise _Refusal(f"decoded shape {tuple(pixels.shape)} does not match the header size {width}x{height}")
    return pixels, bits if pixels.dtype == np.uint16 else 8, {}


# ---- DICOM ---------------------------------------------------------------------------------------------------

#: transfer syntaxes whose frames imagecodecs decodes (pydicom would need optional plugins for several)
_DICOM_IMAGECODECS = {
    "1.2.840.10008.1.2.4.50": "jpeg8",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "jpeg",   # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": "ljpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "ljpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "jpegls",
    "1.2.840.10008.1.2.4.81": "jpegls",
    "1.2.840.10008.1.2.4.90": "jpeg2k",
    "1.2.840.10008.1.2.4.91": "jpeg2k",
    "1.2.840.10008.1.2.4.201": "jpeg2k",  # HTJ2K Lossless (OpenJPEG >= 2.5 decodes HT)
    "1.2.840.10008.1.2.4.202": "jpeg2k",
    "1.2.840.10008.1.2.4.203": "jpeg2k",
}

#: transfer syntax name -> UID written by :func:`dicom_bytes`
DICOM_TRANSFER_SYNTAXES = {
    "jpegls": "1.2.840.10008.1.2.4.80",    # JPEG-LS Lossless
    "jpeg2000": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "htj2k": "1.2.840.10008.1.2.4.201",    # HTJ2K Lossless
    "explicit": "1.2.840.10008.1.2.1",     # Explicit VR Little Endian (uncompressed)
}


def _decode_dicom_frame(frame: bytes, codec: str, rows: int, cols: int) -> np.ndarray:
    """Decode one encapsulated frame after checking that its own header agrees with Rows × Columns.

    The check matters for safety, not only consistency: the codec allocates what the *frame* header says,
    so a small Rows/Columns in the dataset must not smuggle in a huge codestream.
    """
    import imagecodecs

    if codec == "jpeg2k":
        width, height, _, _ = _j2k_siz(_j2k_codestream(frame))  # some encoders wrap frames in JP2
    else:
        _, _, height, width, _ = _jpeg_sof(frame)
    if (width, height) != (cols, rows):
        raise _Refusal(f"frame header says {width}x{height} but the dataset says {cols}x{rows}")
    if codec == "ljpeg":
        return _first_that_decodes(frame, imagecodecs.ljpeg_decode, imagecodecs.jpeg_decode)
    if codec == "jpeg2k":
        return _first_that_decodes(frame, imagecodecs.jpeg2k_decode, imagecodecs.htj2k_decode)
    return getattr(imagecodecs, f"{codec}_decode")(frame)


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


def _decode_dicom(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import pydicom
    from pydicom.encaps import generate_frames
    from pydicom.pixels import pixel_array

    ds = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        raise _Refusal("DICOM file has " + (f"{other[0]}, which is not supported" if other else "no pixel data"))
    if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
        raise _Refusal("DICOM image is missing Rows, Columns or BitsAllocated")
    rows, cols = int(ds.Rows), int(ds.Columns)
    _check_size(cols, rows, max_pixels)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise _Refusal(f"multi-frame DICOM is not supported ({frames} frames)")
    samples = int(ds.get("SamplesPerPixel", 1))
    allocated, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if allocated not in (8, 16) or not 1 <= stored <= allocated:
        raise _Refusal(f"DICOM pixel data with {allocated} bits allocated / {stored} stored is not supported")
    if samples not in (1, 3):
        raise _Refusal(f"DICOM pixel data with {samples} samples per pixel is not supported")

    ts = str(ds.file_meta.TransferSyntaxUID)
    notes: list[str] = []
    codec = _DICOM_IMAGECODECS.get(ts)
    if codec is not None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        raw = _decode_dicom_frame(frame, codec, rows, cols)
        if samples == 3 and codec in ("jpeg8", "jpeg") and photometric != "RGB":
            # libjpeg returns RGB for YCbCr-coded lossy JPEG; the kept dataset must describe the held pixels
            notes.append(f"JPEG-coded {photometric} decoded to RGB")
            photometric = "RGB"
        elif photometric in ("YBR_RCT", "YBR_ICT"):
            notes.append(f"JPEG 2000 {photometric} decoded to RGB")
            photometric = "RGB"
    else:
        # native and RLE: pydicom's own decoders; raw=True keeps YBR samples as stored (no colour conversion)
        raw = pixel_array(ds, index=0, raw=True)
        if photometric == "YBR_FULL_422" and ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                                     "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
            notes.append("YBR_FULL_422 chroma upsampled to YBR_FULL")
            photometric = "YBR_FULL"

    raw = np.asarray(raw)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.shape != (rows, cols, samples):
        raise _Refusal(f"decoded DICOM frame has shape {tuple(raw.shape)}, expected {(rows, cols, samples)}")

    # Signed data: take the BitsStored-bit two's-complement pattern (decoders differ on whether they
    # sign-extend) and flip the sign bit, i.e. add 2**(stored-1): the result is unsigned with the same bit depth.
    depth = stored
    meta: dict[str, Any] = {"notes": notes, "dicom_transfer_syntax": ts}
    mask = (1 << stored) - 1
    if signed:
        half = 1 << (stored - 1)
        values = (raw.astype(np.int64) & mask) ^ half
        meta["dicom_signed_offset"] = half
    else:
        values = raw.astype(np.int64)
        if values.min() < 0:
            values = values & mask  # a signed codestream under Pixel Representation 0: keep the bit pattern
        top = int(values.max()) if values.size else 0
        if top > mask:  # junk above BitsStored (e.g. old overlay bits): keep it, losslessly, in a wider depth
            depth = allocated
            notes.append(f"pixel values exceed BitsStored={stored}; kept with {allocated}-bit depth")
    pixels = values.astype(np.uint8 if depth <= 8 else np.uint16)
    if photometric == "MONOCHROME1":
        notes.append("MONOCHROME1: low values display bright; pixels kept as stored")
    elif photometric == "PALETTE COLOR":
        notes.append("PALETTE COLOR: pixels are palette indices; the LUTs stay in the dataset")

    del ds.PixelData
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    kept = pydicom.Dataset(ds)  # a plain Dataset: no reference to the source buffer, cheap to pickle
    kept.file_meta = ds.file_meta
    meta["dicom"] = kept
    return pixels, depth, meta


_DECODERS: dict[str, Callable[[bytes, int | None], tuple[np.ndarray, int, dict[str, Any]]]] = {
    "png": _decode_png,
    "jpeg": _decode_jpeg,
    "jpegls": _decode_jpegls,
    "gif": _decode_pil_generic("gif"),
    "bmp": _decode_pil_generic("bmp"),
    "webp": _decode_pil_generic("webp"),
    "tiff": _decode_tiff,
    "avif": _decode_avif,
    "jxl": _decode_jxl,
    "jp2": _decode_j2k,
    "j2k": _decode_j2k,
    "dicom": _decode_dicom,
}


# ---- EXIF orientation ----------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# save

#: file extension -> output format name (``save`` picks by extension unless ``format`` is given)
SAVE_FORMATS = {
    ".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp",
    ".avif": "avif", ".jxl": "jxl", ".jls": "jpegls", ".jp2": "jp2", ".j2k": "j2k", ".j2c": "j2k",
    ".bmp": "bmp", ".dcm": "dicom",
}


def save(image: Image, path: str | os.PathLike[str], *, format: str | None = None) -> Path:
    """Write ``image`` to ``path`` atomically, in the format its extension names (PNG when there is none).

    Every format except JPEG is written losslessly. PNG and TIFF carry the ICC profile (PNG also EXIF and
    XMP); JPEG is written at quality 95 with 4:4:4 chroma (8-bit only); ``.dcm`` needs an image loaded from
    DICOM and writes :func:`dicom_bytes` (JPEG-LS lossless).

    Raises
    ------
    UnknownIdError
        Unknown format / extension.
    UnsupportedInputError
        The format cannot hold this image (e.g. 16-bit JPEG, alpha in JPEG-LS) — refused, never converted.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> img = Image(np.arange(12, dtype=np.uint16).reshape(2, 2, 3) * 4000, bit_depth=16)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save(img, os.path.join(d, "x.png"))
    ...     bool((load(p).pixels == img.pixels).all())
    True
    """
    path = Path(path)
    if format is None:
        suffix = path.suffix.lower()
        if not suffix:
            format = "png"
        elif suffix in SAVE_FORMATS:
            format = SAVE_FORMATS[suffix]
        else:
            raise UnknownIdError("output extension", suffix, list(SAVE_FORMATS))
    return atomic_write_bytes(path, to_bytes(image, format))


def to_bytes(image: Image, format: str = "png") -> bytes:
    """Encode ``image`` as a complete file of ``format`` (a value of :data:`SAVE_FORMATS`), in memory.

    Examples
    --------
    >>> import numpy as np
    >>> to_bytes(Image(np.zeros((1, 1, 1), np.uint8)), "png")[:4]
    b'\\x89PNG'
    """
    fmt = format.lower().lstrip(".")
    fmt = {"tif": "tiff", "jpg": "jpeg", "dcm": "dicom", "jls": "jpegls"}.get(fmt, fmt)
    encoder = _ENCODERS.get(fmt)
    if encoder is None:
        raise UnknownIdError("output format", format, sorted(_ENCODERS))
    return encoder(image)


def _refuse_unless(ok: bool, fmt: str, image: Image, why: str) -> None:
    if not ok:
        raise UnsupportedInputError(
            f"cannot write {_FORMAT_NAMES.get(fmt, fmt)}: {why} "
            f"(image is {image.colour}, {image.bit_depth}-bit {image.dtype})"
        )


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png(image: Image) -> bytes:
    import imagecodecs

    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    data = bytes(imagecodecs.png_encode(px))
    # libpng via imagecodecs writes no metadata; the chunks go right after IHDR (8-byte signature + 25-byte IHDR),
    # where iCCP must be and where readers (Pillow included) look for eXIf / XMP.
    extra = b""
    icc = image.metadata.get("icc")
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    exif = image.metadata.get("exif")
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:] if exif[:6] == b"Exif\x00\x00" else exif)
    xmp = image.metadata.get("xmp")
    if xmp:
        extra += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    return data[:33] + extra + data[33:] if extra else data


def _encode_tiff(image: Image) -> bytes:
    import imagecodecs

    c = image.channels
    px = image.pixels[:, :, 0] if c == 1 else image.pixels
    kwargs: dict[str, Any] = {
        "photometric": 2 if c >= 3 else 1,  # RGB / minisblack
        "planarconfig": 1,                  # contiguous
        "compression": 8,                   # Adobe deflate
        "predictor": True,
    }
    if image.has_alpha:
        kwargs["extrasample"] = 2  # unassociated alpha
    if image.metadata.get("icc"):
        kwargs["iccprofile"] = image.metadata["icc"]
    return bytes(imagecodecs.tiff_encode(px, **kwargs))


def _pil_image(image: Image) -> Any:
    from PIL import Image as PILImage

    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    return PILImage.fromarray(px, mode={1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[image.channels])


def _pil_save(image: Image, fmt: str, **options: Any) -> bytes:
    im = _pil_image(image)
    for key, meta_key in (("icc_profile", "icc"), ("exif", "exif"), ("xmp", "xmp")):
        if image.metadata.get(meta_key):
            options[key] = image.metadata[meta_key]
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _encode_jpeg(image: Image) -> bytes:
    _refuse_unless(image.dtype == np.uint8, "jpeg", image, "only 8-bit samples")
    _refuse_unless(not image.has_alpha, "jpeg", image, "no alpha channel")
    return _pil_save(image, "JPEG", quality=95, subsampling=0)


def _encode_webp(image: Image) -> bytes:
    _refuse_unless(image.dtype == np.uint8, "webp", image, "only 8-bit samples")
    if image.channels < 3:
        image = image.with_pixels(image.pixels[:, :, [0, 0, 0, 1][: image.channels + 2]])
    return _pil_save(image, "WEBP", lossless=True, exact=True, quality=100)


def _encode_bmp(image: Image) -> bytes:
    _refuse_unless(image.dtype == np.uint8, "bmp", image, "only 8-bit samples")
    _refuse_unless(image.channels in (1, 3, 4), "bmp", image, "no gray+alpha")
    return _pil_save(image, "BMP")


def _encode_avif(image: Image) -> bytes:
    import imagecodecs

    _refuse_unless(image.bit_depth in (8, 10, 12), "avif", image, "only 8-, 10- or 12-bit samples")
    _refuse_unless(image.channels in (3, 4), "avif", image, "only RGB or RGBA (lossless AVIF needs 4:4:4)")
    return bytes(imagecodecs.avif_encode(image.pixels, level=100, pixelformat="444",
                                         bitspersample=image.bit_depth))


def _encode_jxl(image: Image) -> bytes:
    import imagecodecs

    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    return bytes(imagecodecs.jpegxl_encode(px, lossless=True, bitspersample=image.bit_depth))


def _encode_jpegls(image: Image) -> bytes:
    import imagecodecs

    _refuse_unless(image.channels in (1, 3), "jpegls", image, "only gray or RGB (no alpha)")
    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    return bytes(imagecodecs.jpegls_encode(px))


def _encode_j2k(codecformat: str) -> Callable[[Image], bytes]:
    def encode(image: Image) -> bytes:
        import imagecodecs

        px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
        return bytes(imagecodecs.jpeg2k_encode(px, level=0, reversible=True, codecformat=codecformat,
                                               bitspersample=image.bit_depth))

    return encode


def _encode_dicom(image: Image) -> bytes:
    _refuse_unless("dicom" in image.metadata, "dicom", image, "the image was not loaded from DICOM")
    return dicom_bytes(image)


_ENCODERS: dict[str, Callable[[Image], bytes]] = {
    "png": _encode_png,
    "tiff": _encode_tiff,
    "jpeg": _encode_jpeg,
    "webp": _encode_webp,
    "bmp": _encode_bmp,
    "avif": _encode_avif,
    "jxl": _encode_jxl,
    "jpegls": _encode_jpegls,
    "jp2": _encode_j2k("jp2"),
    "j2k": _encode_j2k("j2k"),
    "dicom": _encode_dicom,
}


# --------------------------------------------------------------------------------------------------------------
# DICOM out


def dicom_values(image: Image) -> np.ndarray:
    """The pixel values as the DICOM file stores them (H×W×C ``int32``): signed data get their sign back.

    ``load`` adds ``2**(BitsStored-1)`` to signed DICOM samples so they fit an unsigned array of the same bit
    depth; this undoes it. Rescale Slope/Intercept (e.g. Hounsfield units) are *not* applied — they stay in
    ``metadata["dicom"]``. For an image without ``dicom_signed_offset`` the pixels are returned as ``int32``.

    Examples
    --------
    >>> import pydicom.data, pathlib
    >>> ct = load(pathlib.Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm")
    >>> ct.metadata["dicom_signed_offset"], int(ct.pixels.min()), int(dicom_values(ct).min())
    (32768, 32896, 128)
    """
    offset = int(image.metadata.get("dicom_signed_offset", 0))
    px = image.pixels.astype(np.int64)
    if not offset:
        return px.astype(np.int32)
    bits = offset.bit_length()  # == BitsStored, since offset == 2**(BitsStored-1)
    mask = (1 << bits) - 1
    pattern = (px ^ offset) & mask  # undo the sign-bit flip: the BitsStored-bit two's-complement pattern
    return np.where(pattern >= offset, pattern - (1 << bits), pattern).astype(np.int32)  # sign-extend


def dicom_bytes(image: Image, *, transfer_syntax: str = "jpegls") -> bytes:
    """A complete DICOM Part-10 file: the loaded dataset intact, the pixel data re-encoded losslessly.

    Same object, new encoding: SOP Instance UID and every other attribute are kept; only the transfer syntax,
    the pixel data (and the extended offset table, which described the old encoding) change. Signed data are
    restored exactly (``metadata["dicom_signed_offset"]`` is subtracted again).

    Parameters
    ----------
    image
        An :class:`Image` from :func:`load` of a DICOM file (or ``with_pixels`` of one, same shape).
    transfer_syntax
        ``"jpegls"`` (JPEG-LS Lossless, 1.2.840.10008.1.2.4.80), ``"jpeg2000"`` (JPEG 2000 Lossless Only,
        .4.90), ``"htj2k"`` (HTJ2K Lossless, .4.201) or ``"explicit"`` (Explicit VR Little Endian).

    Raises
    ------
    UnsupportedInputError
        The image carries no DICOM dataset, or its pixels no longer match the dataset's geometry.
    UnknownIdError
        Unknown ``transfer_syntax``.

    Examples
    --------
    >>> import pydicom.data, pathlib
    >>> ct = load(pathlib.Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm")
    >>> again = load(dicom_bytes(ct))  # JPEG-LS Lossless
    >>> bool((again.pixels == ct.pixels).all())
    True
    >>> again.metadata["dicom"].SOPInstanceUID == ct.metadata["dicom"].SOPInstanceUID
    True
    """
    import pydicom
    from pydicom.encaps import encapsulate

    if transfer_syntax not in DICOM_TRANSFER_SYNTAXES:
        raise UnknownIdError("DICOM transfer syntax", transfer_syntax, list(DICOM_TRANSFER_SYNTAXES))
    source = image.metadata.get("dicom")
    if not isinstance(source, pydicom.Dataset):
        raise UnsupportedInputError("dicom_bytes needs an image loaded from DICOM (metadata['dicom'] is missing)")
    ds = copy.deepcopy(source)
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1))
    if (image.height, image.width, image.channels) != (rows, cols, samples):
        raise UnsupportedInputError(
            f"pixels {image.height}x{image.width}x{image.channels} do not match the DICOM dataset "
            f"({rows}x{cols}x{samples})"
        )
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored", allocated))
    offset = int(image.metadata.get("dicom_signed_offset", 0))
    dtype = np.dtype(("i" if offset else "u") + str(allocated // 8))
    values = dicom_values(image).astype(dtype)
    frame = values[:, :, 0] if samples == 1 else values

    uid = DICOM_TRANSFER_SYNTAXES[transfer_syntax]
    if transfer_syntax == "explicit":
        raw = frame.astype(dtype.newbyteorder("<")).tobytes()
        ds.PixelData = raw + b"\x00" * (len(raw) % 2)
        ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
    else:
        import imagecodecs

        if transfer_syntax == "jpegls":
            # JPEG-LS has no signed samples: by DICOM convention the BitsStored-bit two's-complement pattern is
            # coded as unsigned and readers reinterpret it through Pixel Representation (pydicom does).
            coded = frame
            if offset:
                coded = (frame.astype(np.int64) & ((1 << stored) - 1)).astype(dtype.str.replace("i", "u"))
            stream = imagecodecs.jpegls_encode(coded)
        elif transfer_syntax == "jpeg2000":
            # JPEG 2000 codes signed components natively (Ssiz sign bit), as PS3.5 asks for Pixel Representation 1
            stream = imagecodecs.jpeg2k_encode(frame, level=0, reversible=True, codecformat="j2k",
                                               bitspersample=image.bit_depth, mct=False)
        else:
            stream = imagecodecs.htj2k_encode(frame, reversible=True)
        ds.PixelData = encapsulate([bytes(stream)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        if samples > 1:
            ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(uid)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
