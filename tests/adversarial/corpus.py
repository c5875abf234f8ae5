"""A seeded corpus of hostile and odd image files, synthesised at test time (no committed binaries).

Every format the loader knows, valid and then truncated at several points; bomb headers (a declared size far
over the pixel limit on a few hundred bytes); empty, garbage and magic-plus-garbage files; animations (GIF, WebP,
APNG, JPEG XL); multi-page and floating-point TIFF; CMYK, palette + tRNS, EXIF-rotated, 12-bit and 16-bit files;
broken ICC profiles; megabytes of metadata; 1×70000 and 70000×1 images; DICOM in every transfer syntax pydicom
(or inverity) can write, and DICOM whose pixel data is missing or disagrees with its header.

Each :class:`Case` says what :func:`inverity.image.load` must do with it: ``"ok"`` (an image) or ``"error"`` (one
``InputError`` line), optionally with a regex the message must match.

Reuse (the server tests post the same files)::

    from tests.adversarial.corpus import generate
    cases = generate(tmp_path)          # writes the files, returns list[Case]

``names()`` lists the case names without building anything (for test parametrisation).
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Case", "generate", "names", "BOMB", "ANIMATED", "TRUNCATED"]

#: regexes the loader's message must match, per kind of case
BOMB = r"too many pixels"
ANIMATED = r"animated images are not supported \(3 frames\)"
TRUNCATED = r"truncated|corrupt|not a recognised|no pixel data|cut short"


@dataclass(frozen=True)
class Case:
    """One corpus file: ``expect`` is ``"ok"`` or ``"error"``; ``match`` a regex for the error message."""

    name: str
    path: Path
    expect: str
    why: str
    match: str | None = None


_Builder = Callable[[np.random.Generator], bytes]
#: name -> (file suffix, expectation, regex, why, builder); filled by ``@_case``
_SPECS: dict[str, tuple[str, str, str | None, str, _Builder]] = {}
#: names of the valid files that are also cut short (see ``_CUTS``)
_TRUNCATABLE: list[str] = []
#: where a valid file is cut: a header-only prefix, the middle, and just before the end
_CUTS = (("head", lambda n: min(20, n // 3)), ("quarter", lambda n: n // 4), ("half", lambda n: n // 2),
         ("end", lambda n: n - 2))


def _case(name: str, suffix: str, expect: str = "ok", match: str | None = None, why: str = "",
          truncate: bool = False) -> Callable[[_Builder], _Builder]:
    def register(builder: _Builder) -> _Builder:
        _SPECS[name] = (suffix, expect, match, why or (builder.__doc__ or name).strip(), builder)
        if truncate:
            _TRUNCATABLE.append(name)
        return builder
    return register


# ---- small deterministic pictures --------------------------------------------------------------------------

def _rgb(rng: np.random.Generator, h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.dstack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(h + w - 2, 1)])
    return np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)


def _gray16(rng: np.random.Generator, bits: int = 12, h: int = 20, w: int = 28) -> np.ndarray:
    return rng.integers(0, 1 << bits, (h, w, 1), dtype=np.uint16)


def _pil(im: object, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)  # type: ignore[attr-defined]
    return buf.getvalue()


def _fromarray(px: np.ndarray) -> object:
    from PIL import Image as PILImage

    return PILImage.fromarray(px[:, :, 0] if px.ndim == 3 and px.shape[2] == 1 else px)


def _to_bytes(px: np.ndarray, fmt: str, bits: int | None = None) -> bytes:
    from inverity.image import Image, to_bytes

    return to_bytes(Image(px, bit_depth=bits or 8 * px.dtype.itemsize), fmt)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with(extra: bytes, rng: np.random.Generator) -> bytes:
    """A small valid PNG with ``extra`` chunks inserted after IHDR."""
    data = _to_bytes(_rgb(rng, 8, 8), "png")
    return data[:33] + extra + data[33:]


# ---- valid files of every format (also truncated) -----------------------------------------------------------

@_case("png_rgb8", ".png", truncate=True)
def _png_rgb8(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng), "png")


@_case("png_gray12_sbit", ".png", truncate=True, why="12 of 16 bits with sBIT: must come back 12-bit")
def _png_gray12(rng: np.random.Generator) -> bytes:
    return _to_bytes(_gray16(rng), "png", 12)


@_case("png_palette_trns", ".png", truncate=True, why="palette + tRNS: expanded to RGBA")
def _png_palette(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)).quantize(16), "PNG", transparency=0)  # type: ignore[attr-defined]


@_case("png_graya8", ".png")
def _png_graya(rng: np.random.Generator) -> bytes:
    return _to_bytes(np.dstack([_rgb(rng)[:, :, :1], _rgb(rng)[:, :, 1:2]]), "png")


@_case("jpeg_rgb", ".jpg", truncate=True)
def _jpeg_rgb(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)), "JPEG", quality=85)


@_case("jpeg_progressive", ".jpg", truncate=True)
def _jpeg_progressive(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)), "JPEG", quality=85, progressive=True)


@_case("jpeg_cmyk", ".jpg", truncate=True, why="CMYK JPEG: converted to RGB with a note")
def _jpeg_cmyk(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)).convert("CMYK"), "JPEG")  # type: ignore[attr-defined]


@_case("jpeg_exif_rotated", ".jpg", why="EXIF orientation 6: pixels rotated upright, tag reset")
def _jpeg_exif(rng: np.random.Generator) -> bytes:
    from PIL import Image as PILImage

    exif = PILImage.Exif()
    exif[0x0112] = 6
    return _pil(_fromarray(_rgb(rng)), "JPEG", quality=90, exif=exif)


@_case("jpeg_12bit", ".jpg", truncate=True, why="12-bit JPEG (libjpeg-turbo 12-bit path)")
def _jpeg_12(rng: np.random.Generator) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpeg8_encode(_gray16(rng)[:, :, 0], level=90, bitspersample=12))


@_case("jpeg_lossless", ".jpg", truncate=True, why="lossless JPEG (process 14), 16-bit")
def _jpeg_lossless(rng: np.random.Generator) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.ljpeg_encode(_gray16(rng, 16)[:, :, 0]))


@_case("jpegls_gray12", ".jls", truncate=True)
def _jpegls(rng: np.random.Generator) -> bytes:
    return _to_bytes(_gray16(rng), "jpegls", 12)


@_case("jp2_rgb", ".jp2", truncate=True)
def _jp2(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng), "jp2")


@_case("j2k_gray12", ".j2k", truncate=True)
def _j2k(rng: np.random.Generator) -> bytes:
    return _to_bytes(_gray16(rng), "j2k", 12)


@_case("htj2k_rgb", ".j2c", truncate=True)
def _htj2k(rng: np.random.Generator) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.htj2k_encode(_rgb(rng), reversible=True))


@_case("tiff_rgb8", ".tif", truncate=True)
def _tiff8(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng), "tiff")


@_case("tiff_rgb16", ".tif", truncate=True, why="16-bit RGB TIFF: libtiff path, stays 16-bit")
def _tiff16(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng).astype(np.uint16) * 257, "tiff")


@_case("bmp_rgb", ".bmp", truncate=True)
def _bmp(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng), "bmp")


@_case("gif_static", ".gif", truncate=True)
def _gif(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)).quantize(32), "GIF")  # type: ignore[attr-defined]


@_case("webp_lossy", ".webp", truncate=True)
def _webp(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)), "WEBP", quality=80)


@_case("webp_lossless", ".webp", truncate=True)
def _webp_ll(rng: np.random.Generator) -> bytes:
    return _to_bytes(np.dstack([_rgb(rng), _rgb(rng)[:, :, :1]]), "webp")


@_case("avif_rgb", ".avif", truncate=True)
def _avif(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng), "avif")


@_case("jxl_rgb", ".jxl", truncate=True)
def _jxl(rng: np.random.Generator) -> bytes:
    return _to_bytes(_rgb(rng), "jxl")


@_case("inv_learned", ".inv", truncate=True, why="learned-stage container (golden fixture), decoded by the stage")
def _inv(rng: np.random.Generator) -> bytes:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "learned" / "rgb8_q2.inv"
    return fixture.read_bytes()


# ---- DICOM ----------------------------------------------------------------------------------------------------

def _ct_dataset() -> object:
    import pydicom
    import pydicom.data

    ds = pydicom.dcmread(Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm")
    del ds[0xFFFCFFFC]  # trailing padding: without it, a cut near the end of the file cuts the pixel data
    return ds


def _dcm(ds: object, **kw: object) -> bytes:
    import pydicom

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def _dicom_ts(uid: str) -> _Builder:
    def build(rng: np.random.Generator) -> bytes:
        import pydicom

        ds = _ct_dataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(uid)  # type: ignore[attr-defined]
        return _dcm(ds, enforce_file_format=True)
    return build


for _name, _uid in (("implicit_le", "1.2.840.10008.1.2"), ("explicit_le", "1.2.840.10008.1.2.1"),
                    ("deflated", "1.2.840.10008.1.2.1.99")):
    _case(f"dicom_{_name}", ".dcm", truncate=_name == "explicit_le",
          why=f"CT_small.dcm written by pydicom as {_name}")(_dicom_ts(_uid))


@_case("dicom_rle", ".dcm", truncate=True, why="RLE Lossless, compressed by pydicom's own encoder")
def _dicom_rle(rng: np.random.Generator) -> bytes:
    import pydicom

    ds = _ct_dataset()
    ds.compress(pydicom.uid.RLELossless)  # type: ignore[attr-defined]
    return _dcm(ds)


def _dicom_inverity(syntax: str) -> _Builder:
    def build(rng: np.random.Generator) -> bytes:
        from inverity.image import dicom_bytes, load

        return dicom_bytes(load(_dcm(_ct_dataset())), transfer_syntax=syntax)
    return build


for _syntax in ("jpegls", "jpeg2000", "htj2k"):
    _case(f"dicom_{_syntax}", ".dcm", truncate=_syntax != "htj2k",
          why=f"CT_small.dcm re-encoded by inverity.image.dicom_bytes as {_syntax}")(_dicom_inverity(_syntax))


@_case("dicom_jpeg_baseline", ".dcm", why="8-bit RGB, JPEG Baseline frame encapsulated by hand")
def _dicom_jpeg(rng: np.random.Generator) -> bytes:
    import imagecodecs
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate

    px = _rgb(rng)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["adv"])
    ds.Rows, ds.Columns, ds.SamplesPerPixel = px.shape[0], px.shape[1], 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "YBR_FULL_422", 0
    ds.PixelData = encapsulate([bytes(imagecodecs.jpeg8_encode(px, level=90))])
    ds["PixelData"].VR = "OB"
    return _dcm(ds, enforce_file_format=True)


def _ct_modified(**changes: object) -> _Builder:
    def build(rng: np.random.Generator) -> bytes:
        ds = _ct_dataset()
        for key, value in changes.items():
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)
        return _dcm(ds)
    return build


_case("dicom_rows_disagree_64", ".dcm", "error", r"32,768 bytes but the header",
      "CT_small.dcm with Rows=Columns=64: pydicom would keep 4,096 of 16,384 samples")(
    _ct_modified(Rows=64, Columns=64))
_case("dicom_rows_disagree_200", ".dcm", "error", r"truncated DICOM",
      "CT_small.dcm with Rows=Columns=200: less pixel data than the header says")(_ct_modified(Rows=200, Columns=200))
_case("dicom_no_pixel_data", ".dcm", "error", r"no pixel data", "PixelData removed")(_ct_modified(PixelData=None))
_case("dicom_bomb", ".dcm", "error", BOMB, "Rows=Columns=60000 over 32 KB of pixel data")(
    _ct_modified(Rows=60000, Columns=60000))


# ---- bombs: a declared size far over the limit -----------------------------------------------------------------

def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


_case("bomb_png_60000", ".png", "error", BOMB, "10 KB PNG declaring 60000×60000 (10 GiB)")(
    lambda rng: _png_header(60000, 60000))
_case("bomb_png_196mp", ".png", "error", BOMB, "PNG declaring 14000×14000 = 196 MP > 179 MP limit")(
    lambda rng: _png_header(14000, 14000))


@_case("bomb_jpeg", ".jpg", "error", BOMB, "JPEG whose SOF0 declares 65500×65500")
def _bomb_jpeg(rng: np.random.Generator) -> bytes:
    data = _jpeg_rgb(rng)
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", 65500, 65500) + data[i + 9 :]


@_case("bomb_gif", ".gif", "error", BOMB, "GIF whose screen and frame declare 65535×65535")
def _bomb_gif(rng: np.random.Generator) -> bytes:
    lsd = struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    desc = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + lsd + desc + b"\x3b"


@_case("bomb_bmp", ".bmp", "error", BOMB, "BMP header declaring 50000×50000")
def _bomb_bmp(rng: np.random.Generator) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + bytes(64)


@_case("bomb_tiff", ".tif", "error", BOMB, "TIFF with ImageWidth = ImageLength = 100000")
def _bomb_tiff(rng: np.random.Generator) -> bytes:
    entries = [(256, 4, 1, 100000), (257, 4, 1, 100000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (277, 3, 1, 1), (278, 4, 1, 100000), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else
                                                  struct.pack("<I", value)) for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + bytes(16)


@_case("bomb_webp", ".webp", "error", BOMB, "WebP VP8X canvas 16384×16384 = 268 MP")
def _bomb_webp(rng: np.random.Generator) -> bytes:
    data = _webp(rng)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = vp8x + data[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@_case("bomb_j2k", ".j2k", "error", BOMB, "JPEG 2000 codestream whose SIZ declares 60000×60000")
def _bomb_j2k(rng: np.random.Generator) -> bytes:
    data = bytearray(_j2k(rng))
    data[8:16] = struct.pack(">II", 60000, 60000)
    return bytes(data)


@_case("bomb_avif", ".avif", "error", BOMB, "AVIF whose ispe property declares 30000×30000")
def _bomb_avif(rng: np.random.Generator) -> bytes:
    data = bytearray(_avif(rng))
    i = data.index(b"ispe")
    data[i + 8 : i + 16] = struct.pack(">II", 30000, 30000)
    return bytes(data)


@_case("bomb_jxl", ".jxl", "error", BOMB, "JPEG XL codestream whose SizeHeader declares 2**20 × 2**20")
def _bomb_jxl(rng: np.random.Generator) -> bytes:
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> k) & 1 for k in range(n))

    put(0, 1)  # not small
    for _ in ("height", "width"):
        put(3, 2)  # U32 selector 3: 1 + 30 bits
        put((1 << 20) - 1, 30)
        if _ == "height":
            put(0, 3)  # no aspect ratio: an explicit width follows
    put(1, 1)  # all_default metadata
    body = bytes(sum(b << k for k, b in enumerate(bits[i : i + 8])) for i in range(0, len(bits), 8))
    return b"\xff\x0a" + body + bytes(32)


@_case("inv_garbage_payload", ".inv", "error", r"inverity container|differs|cannot|decod",
       "the learned fixture's header (valid CRC) over a random payload: the model runs, the hash check refuses")
def _inv_garbage(rng: np.random.Generator) -> bytes:
    from inverity.container import pack, unpack

    header, payload = unpack(_inv(rng))
    return pack(header, rng.integers(0, 256, len(payload), dtype=np.uint8).tobytes())


@_case("bomb_inv", ".inv", "error", BOMB, "an .inv container whose header declares 60000×60000×3")
def _bomb_inv(rng: np.random.Generator) -> bytes:
    from inverity.container import pack

    header = {"codec_id": "learned", "model": "hp-gain", "model_version": 1, "quality": 1,
              "shape": [60000, 60000, 3], "dtype": "uint8", "package_version": "0",
              "weights_sha256": "0" * 16, "recon_sha256": "0" * 16}
    return pack(header, bytes(16))


# ---- empty, garbage, magic + garbage ---------------------------------------------------------------------------

_case("empty", ".png", "error", r"empty file", "zero bytes")(lambda rng: b"")
_case("one_byte", ".png", "error", r"not a recognised", "a single byte")(lambda rng: b"\x89")
_case("garbage", ".png", "error", r"not a recognised", "4 KB of random bytes")(
    lambda rng: b"\x00" + rng.integers(0, 256, 4095, dtype=np.uint8).tobytes())
_case("text", ".jpg", "error", r"not a recognised", "a text file named .jpg")(
    lambda rng: b"hello, this is not an image\n" * 20)
for _magic_name, _magic in (("png", b"\x89PNG\r\n\x1a\n"), ("jpeg", b"\xff\xd8\xff\xe0"), ("gif", b"GIF89a"),
                            ("tiff", b"II*\x00"), ("bmp", b"BM"), ("jxl", b"\xff\x0a"),
                            ("j2k", b"\xff\x4f\xff\x51"), ("webp", b"RIFF\x00\x01\x00\x00WEBPVP8 "),
                            ("avif", b"\x00\x00\x00\x1cftypavif"), ("inv", b"INV1\x01"),
                            ("dicom", bytes(128) + b"DICM")):
    _case(f"garbage_{_magic_name}", ".bin", "error", TRUNCATED + "|unsupported|invalid|not supported|" + BOMB,
          f"{_magic_name} magic followed by random bytes")(
        lambda rng, m=_magic: m + rng.integers(0, 256, 600, dtype=np.uint8).tobytes())


# ---- animation, pages, samples the loader refuses ---------------------------------------------------------------

def _frames(rng: np.random.Generator) -> list[object]:
    return [_fromarray(_rgb(rng, 16, 16)) for _ in range(3)]


def _animated(fmt: str) -> _Builder:
    def build(rng: np.random.Generator) -> bytes:
        first, *rest = _frames(rng)
        return _pil(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)
    return build


for _fmt, _sfx in (("GIF", ".gif"), ("WEBP", ".webp"), ("PNG", ".png")):
    _case(f"animated_{_fmt.lower()}", _sfx, "error", ANIMATED, f"3-frame animated {_fmt}")(_animated(_fmt))


@_case("animated_jxl", ".jxl", "error", r"animated images are not supported", "3-frame JPEG XL animation")
def _animated_jxl(rng: np.random.Generator) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(np.stack([_rgb(rng, 16, 16) for _ in range(3)]), photometric="rgb"))


@_case("tiff_multipage", ".tif", "error", r"multi-page TIFF is not supported \(3 pages\)", "3-page TIFF")
def _tiff_pages(rng: np.random.Generator) -> bytes:
    first, *rest = _frames(rng)
    return _pil(first, "TIFF", save_all=True, append_images=rest)


@_case("tiff_float_nan", ".tif", "error", r"floating-point samples", "float32 TIFF full of NaN and inf")
def _tiff_nan(rng: np.random.Generator) -> bytes:
    import imagecodecs

    px = rng.random((8, 8)).astype(np.float32)
    px[::2] = np.nan
    px[1::4] = np.inf
    return bytes(imagecodecs.tiff_encode(px))


# ---- odd but valid --------------------------------------------------------------------------------------------

@_case("png_broken_icc", ".png", why="iCCP whose zlib stream is garbage: dropped with a note")
def _png_broken_icc(rng: np.random.Generator) -> bytes:
    return _png_with(_chunk(b"iCCP", b"ICC profile\x00\x00" + rng.integers(0, 256, 300, np.uint8).tobytes()), rng)


@_case("jpeg_broken_icc", ".jpg", why="APP2 ICC_PROFILE of random bytes")
def _jpeg_broken_icc(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)), "JPEG", icc_profile=rng.integers(0, 256, 500, np.uint8).tobytes())


@_case("jpeg_cmyk_broken_icc", ".jpg", why="CMYK JPEG with a garbage ICC profile: plain conversion, note")
def _jpeg_cmyk_icc(rng: np.random.Generator) -> bytes:
    return _pil(_fromarray(_rgb(rng)).convert("CMYK"), "JPEG",  # type: ignore[attr-defined]
                icc_profile=b"\x00\x00\x02\x00" + rng.integers(0, 256, 508, np.uint8).tobytes())


@_case("png_huge_text", ".png", why="2 MB of random letters in zTXt (1.3 MB compressed): valid, text not kept (noted)")
def _png_huge_text(rng: np.random.Generator) -> bytes:
    text = rng.integers(0x41, 0x5B, 2_000_000, dtype=np.uint8).tobytes()
    return _png_with(_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(text)), rng)


@_case("png_huge_xmp", ".png", why="2 MB XMP packet in a compressed iTXt: kept")
def _png_huge_xmp(rng: np.random.Generator) -> bytes:
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b"<!-- pad -->" * 170_000 + b"</x:xmpmeta>"
    return _png_with(_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(xmp)), rng)


@_case("png_many_text", ".png", why="2,000 tEXt chunks")
def _png_many_text(rng: np.random.Generator) -> bytes:
    return _png_with(b"".join(_chunk(b"tEXt", b"k%d\x00value" % k) for k in range(2000)), rng)


@_case("jpeg_many_comments", ".jpg", why="20 × 60 KB COM segments")
def _jpeg_comments(rng: np.random.Generator) -> bytes:
    data = _jpeg_rgb(rng)
    com = b"".join(b"\xff\xfe" + struct.pack(">H", 60002) + bytes([0x61 + k % 26]) * 60000 for k in range(20))
    return data[:2] + com + data[2:]


def _extreme(h: int, w: int) -> _Builder:
    def build(rng: np.random.Generator) -> bytes:
        return _to_bytes(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "png")
    return build


_case("png_1x70000", ".png", why="1 row, 70000 columns of noise")(_extreme(1, 70000))
_case("png_70000x1", ".png", why="70000 rows, 1 column of noise")(_extreme(70000, 1))


# ---- building ---------------------------------------------------------------------------------------------------

def names() -> list[str]:
    """Every case name, in generation order, without building any file."""
    out = list(_SPECS)
    out += [f"{name}_cut_{cut}" for name in _TRUNCATABLE for cut, _ in _CUTS]
    return out


def generate(tmpdir: str | Path, seed: int = 0) -> list[Case]:
    """Write every corpus file into ``tmpdir`` and return the cases (same bytes for the same ``seed``)."""
    folder = Path(tmpdir)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    built: dict[str, bytes] = {}
    for k, (name, (suffix, expect, match, why, build)) in enumerate(_SPECS.items()):
        data = build(np.random.default_rng([seed, k]))
        built[name] = data
        path = folder / f"{name}{suffix}"
        path.write_bytes(data)
        cases.append(Case(name, path, expect, why, match))
    for name in _TRUNCATABLE:
        data, suffix = built[name], _SPECS[name][0]
        for cut, where in _CUTS:
            n = where(len(data))
            path = folder / f"{name}_cut_{cut}{suffix}"
            path.write_bytes(data[:n])
            cases.append(Case(f"{name}_cut_{cut}", path, "error", f"{name} cut to {n} of {len(data)} bytes",
                              TRUNCATED))
    return cases
