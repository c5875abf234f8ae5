"""Safe image I/O: the ``Image`` value, ``load``, ``save`` and ``dicom_bytes``.

``load`` is the one door pixels enter by — the pipeline, ``encode``, ``decode``, ``analyse``, ``verify``, the
audit page, the benchmarks and the server all call it (STYLE.md 11) — so it is written for hostile input
(STYLE.md 7), in this order:

1. **sniff**: the format is detected from the bytes (:func:`inverity.formats.sniff`), never from the file name;
2. **header probe**: width × height is read from the header *before* any decoder runs and refused above
   ``max_pixels`` (:mod:`._probe`: a few lines of parsing per format — PNG ``IHDR``, JPEG ``SOF``, WebP
   ``VP8X``/``VP8``/``VP8L``, TIFF IFD, JPEG 2000 ``SIZ``, AVIF ``ispe``, JPEG XL ``SizeHeader``, DICOM
   Rows/Columns, the ``.inv`` header's shape; Pillow's lazy ``open`` for GIF and BMP);
3. **completeness and animation**: a file cut short is refused (PNG ``IEND``, JPEG ``EOI``, JPEG 2000 ``EOC``,
   GIF trailer, DICOM pixel data length / sequence delimiter), and so is any animation or multi-page file,
   with its frame count;
4. **decode**, then a check that the decoder returned what the header promised.

Every failure is an :class:`~inverity.errors.InputError` with a one-line message naming the file — no library
exception escapes (a learned-stage model that is missing or altered raises its own ``ModelError``).

Modules: :mod:`._load` (``load`` and the per-format decoders), :mod:`._probe` (header parsers), :mod:`._png`
(the PNG chunk layer, in and out), :mod:`._dicom`, :mod:`._exif` (orientation), :mod:`._save`, :mod:`._base`
(``Image``, limits, error wording). Which function decodes or writes a format is said once, by its entry in
:mod:`inverity.formats` (``Format.decoder``, ``Format.pillow``, ``Format.writer``).

Decoding is delegated: Pillow for the common raster formats and their metadata, imagecodecs where Pillow would
lose precision (16-bit PNG/TIFF, 10/12-bit AVIF and JPEG XL) or has no codec (JPEG-LS, JPEG XL, lossless JPEG),
pydicom for DICOM datasets (with imagecodecs decoding the encapsulated JPEG-family frames), the learned stage for
``.inv`` streams.

Metadata keys set by ``load`` (all optional):

``icc``, ``exif``, ``xmp``
    raw bytes as found in the file (EXIF orientation already applied to the pixels and reset to 1).
``notes``
    list of one-line strings describing conversions made on the way in (CMYK → RGB, palette expanded, PNG text
    chunks not kept, an oversized or unreadable ICC/XMP dropped, ...).
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

from ..errors import InputError, UnknownIdError, UnsupportedInputError  # noqa: F401 - importable here, as before
from ._base import DEFAULT_MAX_PIXELS, Image, read_source
from ._dicom import DICOM_TRANSFER_SYNTAXES, dicom_bytes, dicom_values
from ._load import _pil_pixels, load  # noqa: F401 - _pil_pixels: used by tests
from ._png import png_embed, png_encode, png_extract
from ._probe import jxl_header
from ._save import SAVE_FORMATS, save, to_bytes

__all__ = [
    "Image", "load", "read_source", "save", "to_bytes", "dicom_bytes", "dicom_values",
    "DEFAULT_MAX_PIXELS", "DICOM_TRANSFER_SYNTAXES", "SAVE_FORMATS",
    # the PNG chunk layer and the JPEG XL header parser, shared with the PNG and JPEG XL stages
    "png_encode", "png_embed", "png_extract", "jxl_header",
]
