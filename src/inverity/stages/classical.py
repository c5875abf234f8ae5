"""Classical lossy stages — JPEG, WebP, AVIF, JPEG XL — and the machinery every imagecodecs stage shares.

Every stage in this module and in :mod:`inverity.stages.lossless` is an :class:`ImagecodecsStage`: a few class
attributes (which imagecodecs backend, which options with which defaults, what the output can hold) plus a
one-line ``_encode``. The base does the rest the same way for all of them: refuse what the format cannot take
(never convert silently), call the library, wrap its errors in :class:`~inverity.errors.CodecError`, write the
metadata the format can carry and read it back on decode.

Quality is 0–100, higher is better, for every lossy stage here; how it maps onto each library's own knob is
documented on the stage (JPEG and WebP take it as is, AVIF as libavif's quality, JPEG XL through libjxl's own
quality→distance curve, :func:`jxl_distance`).

Metadata travels in the format's own standard places (``capabilities.metadata`` says which):

======== =====================================================================================
format   where icc / exif / xmp go
======== =====================================================================================
JPEG     APP2 ``ICC_PROFILE`` (chunked), APP1 ``Exif``, APP1 XMP
WebP     RIFF ``ICCP``, ``EXIF``, ``XMP `` chunks in an extended (``VP8X``) file
JPEG XL  ``Exif`` and ``xml `` boxes of the ISO BMFF container (no ICC: imagecodecs always writes sRGB)
PNG      ``iCCP``, ``eXIf``, ``iTXt`` (``XML:com.adobe.xmp``) — see :mod:`inverity.stages.lossless`
======== =====================================================================================

EXIF is exchanged as the bare TIFF structure (``b"II*\\0..."``/``b"MM\\0*..."``); a leading ``b"Exif\\0\\0"``
(as JPEG stores it) is accepted on encode and never returned on decode.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

import imagecodecs
import numpy as np

from ..errors import CodecError, InverityError, UnsupportedInputError
from ..formats import sniff
from ..image import Image
from .base import Capabilities, Stage, register_stage

__all__ = [
    "Option", "ImagecodecsStage", "JpegStage", "WebpStage", "AvifStage", "JxlStage", "jxl_distance",
    "exif_tiff", "significant_bits",
]

_EXIF_PREFIX = b"Exif\x00\x00"
_XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"


# --------------------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One stage option: its default (whose type is the option's type) and the values it accepts.

    Examples
    --------
    >>> Option(4, bounds=(0, 6)).validate("webp", "method", 6)
    6
    >>> Option("420", choices=("420", "444")).validate("jpeg", "subsampling", "411")
    Traceback (most recent call last):
    ...
    ValueError: jpeg: option subsampling='411' is invalid; expected one of '420', '444'
    """

    default: Any
    choices: tuple[Any, ...] | None = None
    bounds: tuple[int, int] | None = None
    help: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.bounds is not None:
            return f"an integer in {self.bounds[0]}..{self.bounds[1]}"
        return f"a {type(self.default).__name__}"

    def validate(self, stage: str, name: str, value: Any) -> Any:
        kind = type(self.default)
        # bool is an int subclass: keep the two apart so ``htj2k=1`` and ``effort=True`` are both refused
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        ok = ok and (self.choices is None or value in self.choices)
        ok = ok and (self.bounds is None or self.bounds[0] <= value <= self.bounds[1])
        if not ok:
            raise ValueError(f"{stage}: option {name}={value!r} is invalid; expected {self.describe()}")
        return value


# --------------------------------------------------------------------------------------------------------------
# the shared base
# --------------------------------------------------------------------------------------------------------------
class ImagecodecsStage(Stage):
    """A stage backed by one imagecodecs codec. Subclasses declare data and implement ``_encode``/``_decode``.

    Class attributes
    ----------------
    backend : name of the imagecodecs codec class whose ``available`` flag says the build has it (``"JPEG8"``)
    library : key of ``imagecodecs.version(dict)`` naming the underlying library (``"libjpeg_turbo"``)
    format : the :func:`inverity.formats.sniff` name of the output (``"jpeg"``)
    option_specs : ``{name: Option}``; ``options`` (the base contract) is derived from it
    default_quality : ``None`` for lossless stages, which then refuse a ``quality``
    max_dimension : the format's limit on width and height
    max_significant_bits : the most significant bits a 16-bit input may use (AVIF: 12)
    """

    backend: ClassVar[str]
    library: ClassVar[str]
    format: ClassVar[str]
    option_specs: ClassVar[dict[str, Option]] = {}
    default_quality: ClassVar[int | None] = 85
    max_dimension: ClassVar[int] = 2**31 - 1
    max_significant_bits: ClassVar[int] = 16

    #: ``(0, 100)`` for the lossy stages, ``None`` for those that take no quality (derived, like ``options``)
    quality_range: ClassVar[tuple[int, int] | None] = (0, 100)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.options = tuple(cls.option_specs)
        cls.quality_range = None if cls.default_quality is None else (0, 100)

    def __init__(self, quality: int | None = None, **opts: Any) -> None:
        super().__init__(quality, **opts)  # refuses unknown option names
        if self.default_quality is None:
            if quality is not None:
                raise ValueError(f"{self.codec_id} is lossless and takes no quality (got {quality!r})")
        else:
            quality = self.default_quality if quality is None else quality
            if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
                raise ValueError(f"{self.codec_id}: quality must be an integer in 0..100, got {quality!r}")
        self.quality = quality
        # defaults are written into the config: a stored config keeps its meaning if a default changes later
        self.opts = {name: spec.validate(self.codec_id, name, opts.get(name, spec.default))
                     for name, spec in self.option_specs.items()}

    # -- what an instance promises -------------------------------------------------------------------------
    @property
    def lossless(self) -> bool:
        """Whether this configured stage reproduces its input bit-exactly."""
        return self.capabilities.lossless

    @property
    def max_abs_error(self) -> int | None:
        """Guaranteed bound on the per-sample absolute error: 0 when lossless, ``None`` when unbounded."""
        return 0 if self.lossless else None

    @property
    def extension(self) -> str:
        """File extension of this configured stage's output (e.g. ``".jpg"``)."""
        return self.capabilities.extensions[0]

    @classmethod
    def library_version(cls) -> str:
        return f"{cls.library} {imagecodecs.version(dict).get(cls.library, 'n/a')}"

    @classmethod
    def available(cls) -> bool:
        return bool(getattr(getattr(imagecodecs, cls.backend, None), "available", False))

    # -- the codec ------------------------------------------------------------------------------------------
    def check_input(self, image: Image) -> None:
        super().check_input(image)
        limit = self.max_dimension
        if not (1 <= image.width <= limit and 1 <= image.height <= limit):
            raise UnsupportedInputError(
                f"{self.codec_id} cannot encode a {image.width}x{image.height} image (at most {limit}x{limit})")
        if image.dtype == np.uint16 and image.bit_depth > self.max_significant_bits:
            raise UnsupportedInputError(
                f"{self.codec_id} cannot encode {image.bit_depth}-bit samples (at most "
                f"{self.max_significant_bits} significant bits in 16-bit images)")

    def encode(self, image: Image) -> bytes:
        self.check_input(image)
        if not self.available():
            raise CodecError(f"{self.codec_id}: this imagecodecs build has no {self.backend} codec")
        px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
        try:
            data = bytes(self._encode(np.ascontiguousarray(px), image))
        except InverityError:
            raise
        except Exception as exc:  # the libraries raise RuntimeError/ValueError subclasses of their own
            raise CodecError(f"{self.codec_id}: encoding failed: {_one_line(exc)}") from exc
        return self._finish(data, image)

    def decode(self, data: bytes) -> Image:
        data = bytes(data)
        try:
            px = np.asarray(self._decode(data))
            if px.ndim == 2:
                px = px[:, :, None]
            if px.ndim != 3 or px.dtype not in (np.uint8, np.uint16):
                raise CodecError(f"decoded an unsupported {px.dtype} array of shape {px.shape}")
            # malformed metadata is as much a broken file as broken pixels: same error, never a stray exception
            return Image(px, self._bit_depth(data, px), sniff(data) or self.format, self._read_metadata(data))
        except Exception as exc:
            raise CodecError(f"{self.codec_id}: cannot decode {len(data)} bytes: {_one_line(exc)}") from exc

    # -- hooks ----------------------------------------------------------------------------------------------
    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        """Library call; ``pixels`` is H×W for gray, else H×W×C."""
        raise NotImplementedError

    def _decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def _finish(self, data: bytes, image: Image) -> bytes:
        """Post-process the encoded bytes (write metadata). Default: as is."""
        return data

    def _read_metadata(self, data: bytes) -> dict[str, Any]:
        return {}

    def _bit_depth(self, data: bytes, pixels: np.ndarray) -> int:
        """Significant bits of the decoded samples, where the format records them; else the dtype width."""
        return 8 * pixels.dtype.itemsize

    def _metadata_to_write(self, image: Image) -> dict[str, bytes]:
        return {k: bytes(v) for k in self.capabilities.metadata if (v := image.metadata.get(k))}


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def significant_bits(stage: str, image: Image) -> int:
    """Bit depth to pass to an encoder's ``bitspersample``; refuses samples that exceed the declared depth."""
    bits = image.bit_depth if image.dtype == np.uint16 else 8
    if bits < 8 * image.dtype.itemsize and int(image.pixels.max()) > image.max_value:
        raise UnsupportedInputError(
            f"{stage}: pixel values exceed the image's declared {bits}-bit depth (max {image.max_value})")
    return bits


def exif_tiff(exif: bytes) -> bytes:
    """The bare TIFF structure of an EXIF block (strips JPEG's ``Exif\\0\\0`` prefix).

    Examples
    --------
    >>> exif_tiff(b"Exif\\x00\\x00II*\\x00")
    b'II*\\x00'
    >>> exif_tiff(b"MM\\x00*")
    b'MM\\x00*'
    """
    return exif[len(_EXIF_PREFIX):] if exif.startswith(_EXIF_PREFIX) else exif


# --------------------------------------------------------------------------------------------------------------
# metadata in JPEG (APPn segments), WebP (RIFF chunks) and JPEG XL (ISO BMFF boxes)
# --------------------------------------------------------------------------------------------------------------
_ICC_TAG = b"ICC_PROFILE\x00"
_ICC_CHUNK = 65519  # 65535 - 2 (length) - 12 (tag) - 2 (sequence, count)


def _jpeg_segment(marker: int, payload: bytes, what: str) -> bytes:
    if len(payload) > 65533:
        raise UnsupportedInputError(f"jpeg: {what} too large for one JPEG segment ({len(payload)} bytes)")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_embed(data: bytes, meta: dict[str, bytes]) -> bytes:
    """Insert APP1 Exif / APP1 XMP / APP2 ICC segments after SOI and any JFIF APP0."""
    segs = []
    if "exif" in meta:
        segs.append(_jpeg_segment(0xE1, _EXIF_PREFIX + exif_tiff(meta["exif"]), "EXIF"))
    if "xmp" in meta:
        segs.append(_jpeg_segment(0xE1, _XMP_NS + meta["xmp"], "XMP"))
    if "icc" in meta:
        icc = meta["icc"]
        parts = [icc[i : i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
        if len(parts) > 255:
            raise UnsupportedInputError(f"jpeg: ICC profile too large ({len(icc)} bytes)")
        segs += [_jpeg_segment(0xE2, _ICC_TAG + bytes((i + 1, len(parts))) + p, "ICC")
                 for i, p in enumerate(parts)]
    if not segs:
        return data
    pos = 2
    while data[pos : pos + 2] == b"\xff\xe0":  # JFIF must stay first
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return data[:pos] + b"".join(segs) + data[pos:]


def jpeg_extract(data: bytes) -> dict[str, bytes]:
    """Read EXIF, XMP and ICC from the APPn segments before the first scan."""
    meta: dict[str, bytes] = {}
    icc: dict[int, bytes] = {}
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more headers
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        n = struct.unpack(">H", data[i + 2 : i + 4])[0]
        payload = data[i + 4 : i + 2 + n]
        if marker == 0xE1 and payload.startswith(_EXIF_PREFIX):
            meta.setdefault("exif", payload[len(_EXIF_PREFIX):])
        elif marker == 0xE1 and payload.startswith(_XMP_NS):
            meta.setdefault("xmp", payload[len(_XMP_NS):])
        elif marker == 0xE2 and payload.startswith(_ICC_TAG) and len(payload) >= 14:
            icc[payload[12]] = payload[14:]
        i += 2 + n
    if icc:
        meta["icc"] = b"".join(icc[k] for k in sorted(icc))
    return meta


_WEBP_FLAGS = {"icc": 0x20, "alpha": 0x10, "exif": 0x08, "xmp": 0x04}
_WEBP_META_CHUNK = {"icc": b"ICCP", "exif": b"EXIF", "xmp": b"XMP "}


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise CodecError("webp: not a RIFF/WEBP file")
    chunks, i = [], 12
    while i + 8 <= len(data):
        size = struct.unpack("<I", data[i + 4 : i + 8])[0]
        chunks.append((data[i : i + 4], data[i + 8 : i + 8 + size]))
        i += 8 + size + (size & 1)
    return chunks


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(cid + struct.pack("<I", len(p)) + p + b"\x00" * (len(p) & 1) for cid, p in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_embed(data: bytes, image: Image, meta: dict[str, bytes]) -> bytes:
    """Rewrite a simple WebP as an extended (VP8X) one carrying metadata and, if the input had it, alpha.

    libwebp drops an all-opaque alpha channel; the VP8X alpha flag keeps the channel count of the input, so a
    decoded RGBA image stays RGBA (and the lossless stage stays bit-exact).
    """
    if not meta and not image.has_alpha:
        return data  # the simple format: smallest and most widely decodable
    chunks = [(c, p) for c, p in _riff_chunks(data) if c not in (b"VP8X", b"ICCP", b"EXIF", b"XMP ")]
    flags = _WEBP_FLAGS["alpha"] if image.has_alpha else 0
    for key in meta:
        flags |= _WEBP_FLAGS[key]
    w, h = image.width - 1, image.height - 1
    head = [(b"VP8X", bytes((flags, 0, 0, 0)) + w.to_bytes(3, "little") + h.to_bytes(3, "little"))]
    if "icc" in meta:
        head.append((b"ICCP", meta["icc"]))
    tail = [(_WEBP_META_CHUNK[k], exif_tiff(meta[k]) if k == "exif" else meta[k]) for k in ("exif", "xmp")
            if k in meta]
    return _riff(head + chunks + tail)


def webp_extract(data: bytes) -> dict[str, bytes]:
    by_id = {c: p for c, p in _riff_chunks(data)}
    return {k: exif_tiff(by_id[c]) if k == "exif" else by_id[c] for k, c in _WEBP_META_CHUNK.items()
            if c in by_id}


def webp_decode(data: bytes) -> np.ndarray:
    """Decode, asking for alpha when the extended header says the image has it (libwebp may have dropped it)."""
    chunks = _riff_chunks(data)
    alpha = bool(chunks and chunks[0][0] == b"VP8X" and chunks[0][1][0] & _WEBP_FLAGS["alpha"])
    return imagecodecs.webp_decode(data, hasalpha=True if alpha else None)


_JXL_SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def jxl_embed(data: bytes, meta: dict[str, bytes]) -> bytes:
    """Append ``Exif`` / ``xml `` boxes to a JPEG XL container (the encoder was asked for one)."""
    if not meta:
        return data
    if not data.startswith(_JXL_SIGNATURE):
        raise CodecError("jxl: metadata needs the container format, but the encoder wrote a bare codestream")
    boxes = b""
    if "exif" in meta:
        boxes += _box(b"Exif", b"\x00\x00\x00\x00" + exif_tiff(meta["exif"]))  # offset 0 to the TIFF header
    if "xmp" in meta:
        boxes += _box(b"xml ", meta["xmp"])
    return data + boxes


def jxl_extract(data: bytes) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    if not data.startswith(_JXL_SIGNATURE):
        return meta
    i = 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I", data[i : i + 4])[0], data[i + 4 : i + 8]
        start = i + 8
        if size == 1:  # 64-bit size follows
            size, start = struct.unpack(">Q", data[i + 8 : i + 16])[0], i + 16
        end = len(data) if size == 0 else i + size
        if end <= i:
            break
        payload = data[start:end]
        if kind == b"Exif" and len(payload) >= 4:
            meta["exif"] = payload[4 + struct.unpack(">I", payload[:4])[0]:]
        elif kind == b"xml ":
            meta["xmp"] = payload
        i = end
    return meta


# --------------------------------------------------------------------------------------------------------------
# the lossy stages
# --------------------------------------------------------------------------------------------------------------
def jxl_distance(quality: float) -> float:
    """libjxl's quality→Butteraugli-distance curve (``JxlEncoderDistanceFromQuality``, as ``cjxl -q``).

    Examples
    --------
    >>> [round(jxl_distance(q), 3) for q in (100, 90, 75, 30, 0)]
    [0.0, 1.0, 2.35, 6.4, 25.0]
    """
    if quality >= 100:
        return 0.0
    if quality >= 30:
        return 0.1 + (100 - quality) * 0.09
    return 53.0 / 3000.0 * quality * quality - 23.0 / 20.0 * quality + 25.0


@register_stage
class JpegStage(ImagecodecsStage):
    """Baseline JPEG (libjpeg-turbo), optimised Huffman tables; ``quality`` is libjpeg's 0–100 scale.

    Options: ``subsampling`` ``"420"`` (default) or ``"444"`` chroma subsampling.
    """

    codec_id = "jpeg"
    capabilities = Capabilities(
        lossless=False, bit_depths=(8,), channels=(1, 3), alpha=False, metadata=("icc", "exif", "xmp"),
        format="jpeg")
    backend, library, format = "JPEG8", "libjpeg_turbo", "jpeg"
    option_specs = {"subsampling": Option("420", choices=("420", "444"), help="chroma subsampling")}
    max_dimension = 65500

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        return imagecodecs.jpeg8_encode(pixels, level=self.quality, subsampling=self.opts["subsampling"],
                                        optimize=True)

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpeg8_decode(data)

    def _finish(self, data: bytes, image: Image) -> bytes:
        return jpeg_embed(data, self._metadata_to_write(image))

    def _read_metadata(self, data: bytes) -> dict[str, Any]:
        return jpeg_extract(data)


class _WebpBase(ImagecodecsStage):
    """What lossy and lossless WebP share: RGB/RGBA 8-bit, VP8X metadata, alpha kept."""

    capabilities = Capabilities(
        lossless=False, bit_depths=(8,), channels=(3, 4), alpha=True, metadata=("icc", "exif", "xmp"),
        format="webp")
    backend, library, format = "WEBP", "libwebp", "webp"
    max_dimension = 16383

    def _decode(self, data: bytes) -> np.ndarray:
        return webp_decode(data)

    def _finish(self, data: bytes, image: Image) -> bytes:
        return webp_embed(data, image, self._metadata_to_write(image))

    def _read_metadata(self, data: bytes) -> dict[str, Any]:
        return webp_extract(data)


@register_stage
class WebpStage(_WebpBase):
    """Lossy WebP (VP8; alpha, if any, coded losslessly by libwebp's default); ``quality`` is libwebp's.

    Options: ``method`` 0 (fast) – 6 (smallest), default 4. Gray input is refused (WebP has no gray mode).
    """

    codec_id = "webp"
    option_specs = {"method": Option(4, bounds=(0, 6), help="speed/size trade-off, 6 = smallest")}

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        # imagecodecs' webp_encode is LOSSLESS unless told otherwise
        return imagecodecs.webp_encode(pixels, level=self.quality, lossless=False, method=self.opts["method"])


@register_stage
class AvifStage(ImagecodecsStage):
    """AVIF (libavif); ``quality`` is libavif's 0–100 quality (100 = its lossless mode), 4:4:4 chroma.

    16-bit input is taken when its declared ``bit_depth`` is at most 12 and is coded as 10- or 12-bit AVIF;
    decode returns uint16 with that bit depth. Gray input is refused: imagecodecs codes monochrome AVIF
    only losslessly, which would silently ignore ``quality``. libavif drops an all-opaque alpha plane; to keep
    RGBA as RGBA the stage then lowers the alpha of one pixel by one step (well inside a lossy stage's error).
    Options: ``speed`` 0 (slowest, smallest) – 10 (fastest), default 6.
    """

    codec_id = "avif"
    capabilities = Capabilities(
        lossless=False, bit_depths=(8, 16), channels=(3, 4), alpha=True, metadata=(),
        format="avif")
    backend, library, format = "AVIF", "libavif", "avif"
    option_specs = {"speed": Option(6, bounds=(0, 10), help="encoder speed, 0 = slowest/smallest")}
    max_dimension = 65536
    max_significant_bits = 12

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        bits = significant_bits(self.codec_id, image)
        depth = 8 if bits == 8 else (10 if bits <= 10 else 12)
        if image.has_alpha and pixels[0, 0, -1] == image.max_value and (pixels[..., -1] == image.max_value).all():
            pixels = pixels.copy()
            pixels[0, 0, -1] -= 1
        # one encoder thread, always: libavif's bitstream depends on its thread count (2 threads give other bytes
        # than 1), so an output must not depend on the machine's cores or on ``--jobs``; the pool parallelises
        return imagecodecs.avif_encode(pixels, level=self.quality, speed=self.opts["speed"], bitspersample=depth,
                                       pixelformat="yuv444", numthreads=1)

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.avif_decode(data)

    def _bit_depth(self, data: bytes, pixels: np.ndarray) -> int:
        # the 'pixi' property box records bits per channel
        i = data.find(b"pixi")
        if i >= 4 and i + 10 <= len(data) and data[i + 8] >= 1 and 8 <= data[i + 9] <= 16:
            return int(data[i + 9])
        return 8 * pixels.dtype.itemsize


class _JxlBase(ImagecodecsStage):
    """What lossy and lossless JPEG XL share: 8/16-bit gray/RGB(+alpha), EXIF/XMP boxes."""

    backend, library, format = "JPEGXL", "libjxl", "jxl"
    max_dimension = 1 << 30

    def _jxl(self, pixels: np.ndarray, image: Image, **kw: Any) -> bytes | bytearray:
        return imagecodecs.jpegxl_encode(
            pixels, effort=self.opts["effort"], bitspersample=significant_bits(self.codec_id, image),
            usecontainer=bool(self._metadata_to_write(image)), **kw)

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpegxl_decode(data)

    def _bit_depth(self, data: bytes, pixels: np.ndarray) -> int:
        if pixels.dtype == np.uint16:
            try:  # the loader's JPEG XL header parser (bit-packed fields: not worth a second copy here)
                from ..image import jxl_header

                bits = int(jxl_header(data)[2])
                if 8 < bits <= 16:
                    return bits
            except Exception:  # noqa: BLE001 - without it the dtype width is still a correct upper bound
                pass
        return 8 * pixels.dtype.itemsize

    def _finish(self, data: bytes, image: Image) -> bytes:
        return jxl_embed(data, self._metadata_to_write(image))

    def _read_metadata(self, data: bytes) -> dict[str, Any]:
        return jxl_extract(data)


@register_stage
class JxlStage(_JxlBase):
    """Lossy JPEG XL (VarDCT); ``quality`` maps to a Butteraugli distance by libjxl's own curve
    (:func:`jxl_distance`: 90 → 1.0, 75 → 2.35). 16-bit input is coded at its declared bit depth.

    Options: ``effort`` 1 (fast) – 9 (smallest), default 5.
    """

    codec_id = "jxl"
    capabilities = Capabilities(
        lossless=False, bit_depths=(8, 16), channels=(1, 2, 3, 4), alpha=True, metadata=("exif", "xmp"),
        format="jxl")
    option_specs = {"effort": Option(5, bounds=(1, 9), help="encoder effort, 9 = smallest")}

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        return self._jxl(pixels, image, distance=jxl_distance(self.quality or 0), lossless=False)
