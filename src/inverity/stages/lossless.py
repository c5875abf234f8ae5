"""Lossless (and bounded-error) stages: PNG, WebP lossless, JPEG XL lossless, JPEG-LS, JPEG 2000 / HTJ2K.

Every stage here reproduces its input bit for bit — 16-bit stays 16-bit — or refuses it with
:class:`~inverity.errors.UnsupportedInputError`; the one exception is explicit: ``jpegls`` with ``near=n > 0``
bounds every sample's error by ``n`` (its instance says ``lossless is False`` and ``max_abs_error == n``).

What each takes (all via imagecodecs; the shared machinery is :class:`~inverity.stages.classical.ImagecodecsStage`):

=============== ========= ============= ======== ==========================================================
codec_id        bits      channels      metadata output
=============== ========= ============= ======== ==========================================================
png             8, 16     1, 2, 3, 4    icc exif PNG (``iCCP``/``eXIf``/``iTXt`` XMP; ``sBIT`` for e.g. 12-bit)
                                        xmp
webp-lossless   8         3, 4          icc exif WebP VP8L (lossless WebP has no gray mode)
                                        xmp
jxl-lossless    8, 16     1, 2, 3, 4    exif xmp JPEG XL modular, coded at the declared bit depth
jpegls          8, 16     1, 3, 4       —        JPEG-LS (CharLS); ``near`` = max abs error
jpeg2000        8, 16     1, 2, 3, 4    —        reversible 5/3 wavelet: a JP2 file (OpenJPEG) or, with
                                                 ``htj2k=True``, an HTJ2K codestream (OpenJPH, ``.j2c``)
=============== ========= ============= ======== ==========================================================

JPEG 2000 output choice: the classic path writes a JP2 file because its header boxes record the colour space
(sRGB/greyscale) that a bare codestream leaves to guesswork, and ``.jp2`` is what archives expect. OpenJPH can
only write a codestream, so ``htj2k=True`` outputs one (extension ``.j2c``; the stage's ``extension``
property says which). Both decode with the same stage, and OpenJPEG reads either.
"""
from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np

from ..errors import CodecError, UnsupportedInputError
from ..image import Image, png_embed, png_encode, png_extract
from .base import Capabilities, register_stage
from .classical import ImagecodecsStage, Option, _JxlBase, _WebpBase, significant_bits

__all__ = ["PngStage", "WebpLosslessStage", "JxlLosslessStage", "JpeglsStage", "Jpeg2000Stage"]


# --------------------------------------------------------------------------------------------------------------
# the stages
# --------------------------------------------------------------------------------------------------------------
@register_stage
class PngStage(ImagecodecsStage):
    """PNG (libpng via imagecodecs). Options: ``level`` zlib compression 0–9, default 6."""

    codec_id = "png"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8, 16), channels=(1, 2, 3, 4), alpha=True, metadata=("icc", "exif", "xmp"),
        format="png")
    backend, library, format = "PNG", "libpng", "png"
    option_specs = {"level": Option(6, bounds=(0, 9), help="zlib level, 9 = smallest")}
    default_quality = None

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        return png_encode(pixels, level=self.opts["level"])

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.png_decode(data)

    def _finish(self, data: bytes, image: Image) -> bytes:
        return png_embed(data, image, self._metadata_to_write(image))

    def _read_metadata(self, data: bytes) -> dict[str, Any]:
        return png_extract(data)[0]

    def _bit_depth(self, data: bytes, pixels: np.ndarray) -> int:
        sbit = png_extract(data)[1]
        width = 8 * pixels.dtype.itemsize
        return sbit if sbit is not None and 8 < sbit <= width else width


@register_stage
class WebpLosslessStage(_WebpBase):
    """Lossless WebP (VP8L), bit-exact including RGB under transparent pixels.

    Options: ``method`` 0 (fast) – 6 (smallest), default 4.
    """

    codec_id = "webp-lossless"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8,), channels=(3, 4), alpha=True, metadata=("icc", "exif", "xmp"),
        format="webp")
    option_specs = {"method": Option(4, bounds=(0, 6), help="effort, 6 = smallest")}
    default_quality = None

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        # in lossless mode libwebp's "quality" is compression effort; 75 is its default
        return imagecodecs.webp_encode(pixels, level=75, lossless=True, method=self.opts["method"])


@register_stage
class JxlLosslessStage(_JxlBase):
    """Lossless JPEG XL (modular). Options: ``effort`` 1 (fast) – 9 (smallest), default 5."""

    codec_id = "jxl-lossless"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8, 16), channels=(1, 2, 3, 4), alpha=True, metadata=("exif", "xmp"),
        format="jxl")
    option_specs = {"effort": Option(5, bounds=(1, 9), help="encoder effort, 9 = smallest")}
    default_quality = None

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        return self._jxl(pixels, image, lossless=True)


@register_stage
class JpeglsStage(ImagecodecsStage):
    """JPEG-LS (CharLS). Option ``near``: the maximum absolute error per sample, 0 (default) = lossless.

    Gray, RGB and RGBA, 8 or 16 bit (CharLS cannot code gray+alpha).
    """

    codec_id = "jpegls"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8, 16), channels=(1, 3, 4), alpha=True, metadata=(),
        format="jpegls", near_lossless=True)
    backend, library, format = "JPEGLS", "charls", "jpegls"
    option_specs = {"near": Option(0, bounds=(0, 255), help="max abs error per sample, 0 = lossless")}
    default_quality = None
    max_dimension = 65535

    @property
    def lossless(self) -> bool:
        return self.opts["near"] == 0

    @property
    def max_abs_error(self) -> int:
        return int(self.opts["near"])

    def check_input(self, image: Image) -> None:
        super().check_input(image)
        # JPEG-LS limits NEAR to half the sample range (ISO 14495-1, C.2.4.1.1)
        if self.opts["near"] > min(255, image.max_value // 2):
            raise UnsupportedInputError(f"jpegls: near={self.opts['near']} exceeds the limit "
                                        f"{min(255, image.max_value // 2)} for {image.bit_depth}-bit samples")

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        return imagecodecs.jpegls_encode(pixels, level=self.opts["near"])

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpegls_decode(data)

    def _bit_depth(self, data: bytes, pixels: np.ndarray) -> int:
        i = data.find(b"\xff\xf7")  # SOF55: length (2), precision P (1)
        return int(data[i + 4]) if 0 <= i and i + 4 < len(data) and 2 <= data[i + 4] <= 16 else 8 * pixels.dtype.itemsize


@register_stage
class Jpeg2000Stage(ImagecodecsStage):
    """JPEG 2000 with the reversible 5/3 wavelet (lossless).

    ``htj2k=False`` (default): a JP2 file from OpenJPEG, coded at the declared bit depth (e.g. 12 of 16).
    ``htj2k=True``: a High-Throughput JPEG 2000 (Part 15) codestream from OpenJPH — much faster to code,
    slightly larger; extension ``.j2c``.
    """

    codec_id = "jpeg2000"
    capabilities = Capabilities(
        lossless=True, bit_depths=(8, 16), channels=(1, 2, 3, 4), alpha=True, metadata=(),
        format="jp2", extensions=(".jp2", ".j2c"))   # HTJ2K: .j2c
    backend, library, format = "JPEG2K", "openjpeg", "jp2"
    option_specs = {"htj2k": Option(False, help="High-Throughput block coder (OpenJPH), codestream output")}
    default_quality = None

    @property
    def extension(self) -> str:
        return ".j2c" if self.opts["htj2k"] else ".jp2"

    @classmethod
    def library_version(cls) -> str:
        versions = imagecodecs.version(dict)
        return f"openjpeg {versions.get('openjpeg', 'n/a')}, openjph {versions.get('openjph', 'n/a')}"

    def encode(self, image: Image) -> bytes:
        if self.opts["htj2k"] and not imagecodecs.HTJ2K.available:
            raise CodecError("jpeg2000: this imagecodecs build has no HTJ2K (OpenJPH) codec; use htj2k=false")
        return super().encode(image)

    def _encode(self, pixels: np.ndarray, image: Image) -> bytes | bytearray:
        if self.opts["htj2k"]:
            return imagecodecs.htj2k_encode(pixels, reversible=True)
        return imagecodecs.jpeg2k_encode(pixels, codecformat="jp2", reversible=True,
                                         bitspersample=significant_bits(self.codec_id, image))

    def _decode(self, data: bytes) -> np.ndarray:
        # OpenJPEG reads JP2 files and both Part 1 and HTJ2K codestreams (OpenJPH's decoder returns 2-channel
        # images planar, OpenJPEG does not)
        return imagecodecs.jpeg2k_decode(data)

    def _bit_depth(self, data: bytes, pixels: np.ndarray) -> int:
        i = data.find(b"\xff\x51")  # SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz, Ssiz...
        if 0 <= i and i + 41 <= len(data):
            bits = (data[i + 40] & 0x7F) + 1
            if 2 <= bits <= 8 * pixels.dtype.itemsize:
                return bits
        return 8 * pixels.dtype.itemsize
