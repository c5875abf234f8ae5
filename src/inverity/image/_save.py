"""``save`` and ``to_bytes``: every format written losslessly (JPEG at quality 95), refusing what a format
cannot hold."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._atomic import atomic_write_bytes
from ..errors import UnknownIdError, UnsupportedInputError
from ..formats import LazyView, get_format, resolve, save_extensions, writable_formats
from ._base import _FORMAT_NAMES, Image
from ._dicom import dicom_bytes
from ._png import png_embed, png_encode

#: file extension -> output format name (``save`` picks by extension unless ``format`` is given); a view of the
#: format registry: every extension of a format that names a ``writer``
SAVE_FORMATS = save_extensions()


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
    >>> from inverity.image import load
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
    if fmt not in _ENCODERS and f".{fmt}" in SAVE_FORMATS:  # an extension without its dot: "tif", "jpg", "jls"
        fmt = SAVE_FORMATS[f".{fmt}"]
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


def write_png(image: Image) -> bytes:
    # sBIT for e.g. 12 of 16 bits, so a 12-bit image comes back as 12-bit; ICC, EXIF and XMP after IHDR
    return png_embed(png_encode(image.pixels), image, image.metadata)


def write_tiff(image: Image) -> bytes:
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


def write_jpeg(image: Image) -> bytes:
    _refuse_unless(image.dtype == np.uint8, "jpeg", image, "only 8-bit samples")
    _refuse_unless(not image.has_alpha, "jpeg", image, "no alpha channel")
    return _pil_save(image, "JPEG", quality=95, subsampling=0)


def write_webp(image: Image) -> bytes:
    _refuse_unless(image.dtype == np.uint8, "webp", image, "only 8-bit samples")
    if image.channels < 3:
        image = image.with_pixels(image.pixels[:, :, [0, 0, 0, 1][: image.channels + 2]])
    return _pil_save(image, "WEBP", lossless=True, exact=True, quality=100)


def write_bmp(image: Image) -> bytes:
    _refuse_unless(image.dtype == np.uint8, "bmp", image, "only 8-bit samples")
    _refuse_unless(image.channels in (1, 3, 4), "bmp", image, "no gray+alpha")
    return _pil_save(image, "BMP")


def write_avif(image: Image) -> bytes:
    import imagecodecs

    _refuse_unless(image.bit_depth in (8, 10, 12), "avif", image, "only 8-, 10- or 12-bit samples")
    _refuse_unless(image.channels in (3, 4), "avif", image, "only RGB or RGBA (lossless AVIF needs 4:4:4)")
    return bytes(imagecodecs.avif_encode(image.pixels, level=100, pixelformat="444",
                                         bitspersample=image.bit_depth))


def write_jxl(image: Image) -> bytes:
    import imagecodecs

    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    return bytes(imagecodecs.jpegxl_encode(px, lossless=True, bitspersample=image.bit_depth))


def write_jpegls(image: Image) -> bytes:
    import imagecodecs

    _refuse_unless(image.channels in (1, 3), "jpegls", image, "only gray or RGB (no alpha)")
    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    return bytes(imagecodecs.jpegls_encode(px))


def _write_jpeg2000(image: Image, codecformat: str) -> bytes:
    import imagecodecs

    px = image.pixels[:, :, 0] if image.channels == 1 else image.pixels
    return bytes(imagecodecs.jpeg2k_encode(px, level=0, reversible=True, codecformat=codecformat,
                                           bitspersample=image.bit_depth))


def write_jp2(image: Image) -> bytes:
    return _write_jpeg2000(image, "jp2")


def write_j2k(image: Image) -> bytes:
    return _write_jpeg2000(image, "j2k")


def write_dicom(image: Image) -> bytes:
    _refuse_unless("dicom" in image.metadata, "dicom", image, "the image was not loaded from DICOM")
    return dicom_bytes(image)


def _writers() -> dict[str, Callable[[Image], bytes]]:
    return {name: resolve(str(get_format(name).writer)) for name in writable_formats()}


#: writer per output format, a view of the registry (``Format.writer``), built on first use
_ENCODERS: LazyView[Callable[[Image], bytes]] = LazyView(_writers)
