"""``load``: the one door pixels enter by (sniff -> header probe and pixel limit -> decode -> checks)."""
from __future__ import annotations

import functools
import importlib
import io
import warnings
from typing import Any, Callable

import numpy as np

from ..errors import ContainerError, InputError, InverityError, PixelLimitError, UnknownIdError
from ..formats import Format, LazyView, get_format, list_formats, resolve, sniff
from ._base import (
    _FORMAT_NAMES,
    DEFAULT_MAX_PIXELS,
    Image,
    _check_decoded,
    _check_size,
    _describe_failure,
    _first_that_decodes,
    _nbytes,
    _PixelLimit,
    _Refusal,
    read_source,
)
from ._exif import _apply_exif_orientation, _orient
from ._probe import (
    _avif_properties,
    _gif_complete,
    _j2k_codestream,
    _j2k_complete,
    _j2k_siz,
    _jpeg_complete,
    _jpeg_sof,
    _tiff_header,
    _webp_size,
    jxl_header,
)


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
    fmt = sniff(data)  # by content, never by name (DICOM before TIFF: some DICOM preambles are TIFF headers)
    if fmt is None:
        raise InputError(f"{label}: not a recognised image format ({_nbytes(len(data))})")
    decoder = _DECODERS.get(fmt)
    if decoder is None:
        raise InputError(f"{label}: {_FORMAT_NAMES.get(fmt, fmt)} files are not supported as input")
    try:
        # Libraries warn about recoverable oddities of corrupt files; the loader's contract is a clean image or
        # one InputError, so their warnings are not passed on. (Where a warning means the pixels are wrong —
        # DICOM pixel data that does not fit its header — the decoder records it and refuses.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels, bit_depth, metadata = decoder(data, max_pixels)
            image = _finish(pixels, bit_depth, fmt, metadata)
    except _PixelLimit as exc:
        raise PixelLimitError(f"{label}: {exc}") from None
    except _Refusal as exc:
        raise InputError(f"{label}: {exc}") from None
    except ContainerError as exc:  # a broken or foreign .inv stream is bad input like any other
        raise InputError(f"{label}: {exc}") from None
    except InverityError as exc:  # the learned stage's other refusals (ModelError, ...): keep the class
        raise _renamed(exc, label) from None
    except Exception as exc:  # noqa: BLE001 - every library error becomes one InputError (the contract)
        raise InputError(f"{label}: {_describe_failure(fmt, len(data), exc)}") from None
    return image


def _renamed(exc: InverityError, label: str) -> InverityError:
    """The same error class with the input's name in front (unless it is already there)."""
    text = str(exc)
    if text.startswith(f"{label}:"):
        return exc
    try:
        return type(exc)(f"{label}: {text}")
    except TypeError:  # an error class with its own constructor signature
        return InputError(f"{label}: {text}")



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

def _pil_open(fmt: str, data: bytes) -> Any:
    """The format's Pillow plugin class (``Format.pillow``) constructed directly on ``data``: that parses the
    header lazily, mostly *without* Pillow's global decompression-bomb check, so our own ``max_pixels`` governs."""
    pillow = get_format(fmt).pillow
    if pillow is None:
        raise _Refusal(f"no Pillow plugin reads {fmt}")
    module, cls = pillow
    plugin = importlib.import_module(f"PIL.{module}")
    from PIL.Image import DecompressionBombError

    try:
        return getattr(plugin, cls)(io.BytesIO(data))
    except DecompressionBombError:  # WebP checks on open; reached only when max_pixels is above Pillow's limit
        raise _Refusal("image has more pixels than Pillow's decoder accepts (PIL.Image.MAX_IMAGE_PIXELS)") from None


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
    if mode == "F":
        raise _Refusal("floating-point samples are not supported")
    raise _Refusal(f"unsupported pixel mode {mode}")


def decode_jpeg(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
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


def decode_pillow(fmt: str, data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    """The decoder of a format that names only a Pillow plugin (``Format.pillow``, no ``Format.decoder``)."""
    if fmt == "webp":  # Pillow's own WebP bomb check would fire first, with its own message
        _check_size(*_webp_size(data), max_pixels)
    elif fmt == "gif":
        _gif_complete(data)
    im = _pil_open(fmt, data)
    _check_size(int(im.size[0]), int(im.size[1]), max_pixels)
    _refuse_animation(im)
    meta = _pil_metadata(im)
    im.seek(0)
    pixels, depth = _pil_pixels(im, meta)
    if fmt == "webp":
        pixels = _apply_exif_orientation(pixels, meta)
    return pixels, depth, meta



def decode_tiff(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
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



def decode_jpegls(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    _, precision, height, width, _ = _jpeg_sof(data)
    _check_size(width, height, max_pixels)
    _jpeg_complete(data)
    if not 2 <= precision <= 16:
        raise ValueError(f"bad sample precision {precision}")
    pixels = imagecodecs.jpegls_decode(data)
    _check_decoded(pixels, (width, height))
    return pixels, precision if pixels.dtype == np.uint16 else 8, {}



def decode_j2k(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    codestream = _j2k_codestream(data)
    width, height, depth, signed = _j2k_siz(codestream)
    _check_size(width, height, max_pixels)
    _j2k_complete(codestream)
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



def decode_avif(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
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



def decode_jxl(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import imagecodecs

    width, height, bits, floating, animated = jxl_header(data)
    _check_size(width, height, max_pixels)
    if animated:
        raise _Refusal("animated images are not supported (JPEG XL animation)")
    if floating:
        raise _Refusal("floating-point samples are not supported")
    if b"jbrd" in data:
        # a losslessly transcoded JPEG (JPEG reconstruction box): its pixels are the JPEG's, decoded exactly as the
        # original file would be (libjxl renders the same coefficients up to ~11 levels differently)
        try:
            jpeg = bytes(imagecodecs.jpegxl_decode_jpeg(data))
        except Exception:  # noqa: BLE001 - "jbrd" in an ordinary codestream by chance: decode it as pixels
            jpeg = b""
        if jpeg:
            return decode_jpeg(jpeg, max_pixels)
    pixels = imagecodecs.jpegxl_decode(data, index=0)
    if pixels.ndim < 2 or pixels.shape[0] * pixels.shape[1] != width * height:  # orientation may swap axes
        raise _Refusal(f"decoded shape {tuple(pixels.shape)} does not match the header size {width}x{height}")
    return pixels, bits if pixels.dtype == np.uint16 else 8, {}



def decode_inv(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    """A learned-stage ``.inv`` stream: the container is checked and its declared size limited before the model
    runs; the stage then refuses unknown models, weight or reconstruction mismatches (each its own message)."""
    from ..container import unpack
    from ..stages.base import get_stage

    header, _ = unpack(data)
    shape = header.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int for v in shape)):
        raise _Refusal(f".inv header shape {shape!r} is not [height, width, channels]")
    _check_size(shape[1], shape[0], max_pixels)
    try:
        stage = get_stage("learned")
    except UnknownIdError:
        raise _Refusal("an .inv stream needs the learned stage (inverity.stages.learned, needs torch), "
                       "which is not installed") from None
    image = stage.decode(data)
    return image.pixels, image.bit_depth, dict(image.metadata)


#: ``decoder(data, max_pixels) -> (pixels, bit_depth, metadata)``
Decoder = Callable[[bytes, int | None], tuple[np.ndarray, int, dict[str, Any]]]


def decoder_of(fmt: Format) -> Decoder | None:
    """How ``load`` decodes ``fmt``: the function its ``decoder`` names, else its Pillow plugin, else ``None``."""
    if fmt.decoder:
        named: Decoder = resolve(fmt.decoder)
        return named
    if fmt.pillow:
        return functools.partial(decode_pillow, fmt.name)
    return None


def _decoders() -> dict[str, Decoder]:
    return {f.name: d for f in list_formats() if (d := decoder_of(f)) is not None}


#: decoder per sniffed format, a view of the registry (``Format.decoder`` / ``Format.pillow``), built on first use
#: so that a decoder in another module may import this one
_DECODERS: LazyView[Decoder] = LazyView(_decoders)
