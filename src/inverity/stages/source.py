"""Stages that work on the input *file* rather than its pixels: keep it as is, or transcode a JPEG losslessly.

Both promise more than a bit-exact round trip of the pixels: the original file itself comes back, byte for
byte, so nothing in it (markers, metadata, the JPEG's own DCT coefficients) is lost.

=========== ============ ==============================================================================
codec_id    inputs       output
=========== ============ ==============================================================================
original    any          the input file's bytes, unchanged (archive's "keep the original" candidate)
jxl-jpeg    JPEG only    JPEG XL holding the JPEG's DCT coefficients plus a reconstruction box
                         (``jbrd``): typically ~20 % smaller, and ``restore`` gives the JPEG back
                         byte-exact (libjxl's lossless JPEG recompression, via imagecodecs)
=========== ============ ==============================================================================

The file's bytes reach the stage as ``image.metadata["source_bytes"]`` (the pipeline sets it; an image built
from pixels alone has none and is refused). ``decode`` returns the pixels of the restored file through
:func:`inverity.image.load` — for ``jxl-jpeg`` the decoded *JPEG*, so they equal the input's pixels exactly
(a plain JPEG XL decoder renders the coefficients with its own IDCT, a few levels apart). ``restore(payload)``
returns the original file, which the pipeline compares with the input by sha256.

``Capabilities.sources`` tells the router which inputs a stage takes, so a PNG never gets a ``jxl-jpeg``
attempt, only a "skipped: transcodes jpeg inputs only" line.
"""
from __future__ import annotations

import imagecodecs

from .._promises import SOURCE_BYTES
from ..errors import CodecError, UnsupportedInputError
from ..image import Image, load
from ..formats import SAME_AS_INPUT
from .base import Capabilities, Stage, register_stage

__all__ = ["OriginalStage", "JxlJpegStage"]


def _source(codec_id: str, image: Image) -> bytes:
    data = image.metadata.get(SOURCE_BYTES)
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise UnsupportedInputError(f"{codec_id} needs the input file's bytes (metadata {SOURCE_BYTES!r}, set by "
                                    "the pipeline); this image was built from pixels only")
    return bytes(data)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@register_stage
class OriginalStage(Stage):
    """Keep the input file as is (its format, its metadata, its bytes); the output extension follows its format."""

    codec_id = "original"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8, 16), channels=(1, 2, 3, 4), alpha=True,
        metadata=("icc", "exif", "xmp", "dicom"), format=SAME_AS_INPUT)

    def encode(self, image: Image) -> bytes:
        return _source(self.codec_id, image)

    def decode(self, data: bytes) -> Image:
        return load(bytes(data), name=f"{self.codec_id} output")

    def restore(self, data: bytes) -> bytes:
        """The original file: the output itself."""
        return bytes(data)

    @classmethod
    def library_version(cls) -> str:
        return "none (bytes copied)"


@register_stage
class JxlJpegStage(Stage):
    """Lossless JPEG → JPEG XL transcoding (``imagecodecs.jpegxl_encode_jpeg``); the JPEG is restorable byte-exact.

    ``encode`` refuses a non-JPEG input and checks, before returning, that the payload restores the input
    byte for byte (a JPEG libjxl cannot reconstruct exactly is refused, never written).
    """

    codec_id = "jxl-jpeg"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8,), channels=(1, 3), alpha=False, metadata=("icc", "exif", "xmp"),
        format="jxl", sources=("jpeg",))

    def encode(self, image: Image) -> bytes:
        jpeg = _source(self.codec_id, image)
        if jpeg[:3] != b"\xff\xd8\xff":
            raise UnsupportedInputError(f"{self.codec_id} transcodes JPEG files only; this input is "
                                        f"{image.source_format or 'not a JPEG'}")
        try:
            out = bytes(imagecodecs.jpegxl_encode_jpeg(jpeg))
        except Exception as exc:  # libjxl refuses some JPEGs (e.g. CMYK, arithmetic coding): say so, one line
            raise CodecError(f"{self.codec_id}: libjxl cannot transcode this JPEG: {_one_line(exc)}") from exc
        if self.restore(out) != jpeg:
            raise CodecError(f"{self.codec_id}: the transcoded file does not restore the JPEG byte-exact; refused")
        return out

    def restore(self, data: bytes) -> bytes:
        """The original JPEG file, byte for byte."""
        try:
            return bytes(imagecodecs.jpegxl_decode_jpeg(bytes(data)))
        except Exception as exc:
            raise CodecError(f"{self.codec_id}: cannot restore a JPEG from {len(data)} bytes (not a JPEG XL "
                             f"with JPEG reconstruction data?): {_one_line(exc)}") from exc

    def decode(self, data: bytes) -> Image:
        image = load(self.restore(data), name=f"{self.codec_id} output")
        return Image(image.pixels, image.bit_depth, "jxl", dict(image.metadata))

    @classmethod
    def library_version(cls) -> str:
        return f"libjxl {imagecodecs.version(dict).get('libjxl', 'n/a')}"

    @classmethod
    def available(cls) -> bool:
        return bool(getattr(getattr(imagecodecs, "JPEGXL", None), "available", False))
