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

from ._base import DEFAULT_MAX_PIXELS, Image, read_source
from ._dicom import DICOM_TRANSFER_SYNTAXES, dicom_bytes, dicom_values
from ._load import _pil_pixels, load  # noqa: F401 - _pil_pixels: used by tests
from ._probe import _jxl_header  # noqa: F401 - used by stages.classical
from ._save import SAVE_FORMATS, save, to_bytes

__all__ = [
    "Image", "load", "read_source", "save", "to_bytes", "dicom_bytes", "dicom_values",
    "DEFAULT_MAX_PIXELS", "DICOM_TRANSFER_SYNTAXES", "SAVE_FORMATS",
]
