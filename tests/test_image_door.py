"""One door for pixels: every command reads through ``inverity.image.load`` — same pixels, same refusals.

Regression tests for the loader defects of the "one read path" issue: ``decode`` used to bypass the loader (no
pixel limit, truncated JPEG decoded with grey rows, animations gave frame 1), a DICOM whose Rows/Columns disagree
with its pixel data was cut silently, a PNG with > 1 MB of text was "corrupt", a 70000×1 PNG could not be
written. The adversarial corpus (``tests/adversarial``) runs the same checks over ~180 files and every command.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image as PILImage

from inverity.cli import main
from inverity.image import Image, dicom_bytes, load, to_bytes
from inverity.stages.base import get_stage

CT_SMALL = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
LEARNED_FIXTURE = Path(__file__).parent / "fixtures" / "learned" / "rgb8_q2.inv"


def _rgb(h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pil(im: PILImage.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = PILImage.Exif()
    exif[0x0112] = 6
    return _pil(PILImage.fromarray(_rgb()), "JPEG", exif=exif)


def _gray12() -> Image:
    return Image(np.random.default_rng(1).integers(0, 4096, (12, 10, 1), dtype=np.uint16), bit_depth=12)


#: name -> (bytes builder, bit depth the pixels must keep)
FORMATS = {
    "png_12bit": (lambda: to_bytes(_gray12(), "png"), 12),
    "jpeg_cmyk": (lambda: _pil(PILImage.fromarray(_rgb()).convert("CMYK"), "JPEG"), 8),
    "jpeg_exif_rotated": (_exif_rotated, 8),
    "dicom_ct": (lambda: CT_SMALL.read_bytes(), 16),
    "dicom_jpegls": (lambda: dicom_bytes(load(CT_SMALL)), 16),
    "jpegls_16bit": (lambda: to_bytes(_gray12(), "jpegls"), 16),  # CharLS codes uint16 at precision 16
    "j2k_12bit": (lambda: to_bytes(_gray12(), "j2k"), 12),
    "jp2": (lambda: to_bytes(Image(_rgb()), "jp2"), 8),
    "tiff_16bit": (lambda: to_bytes(Image(_rgb().astype(np.uint16) * 257), "tiff"), 16),
    "webp": (lambda: get_stage("webp").encode(Image(_rgb())), 8),
    "avif": (lambda: get_stage("avif").encode(Image(_rgb())), 8),
    "jxl": (lambda: get_stage("jxl").encode(Image(_rgb())), 8),
    "inv": (lambda: LEARNED_FIXTURE.read_bytes(), 8),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_decode_writes_the_pixels_load_reads(fmt: str, tmp_path: Path) -> None:
    """``inverity decode FILE`` and ``inverity.image.load(FILE)`` agree on every format, bit depth included."""
    build, depth = FORMATS[fmt]
    if fmt == "inv" and not LEARNED_FIXTURE.is_file():
        pytest.skip("no learned golden fixture")
    src = tmp_path / f"in.{fmt}"
    src.write_bytes(build())
    assert main(["decode", str(src), "-o", str(tmp_path / "out.png")]) == 0
    want, got = load(src), load(tmp_path / "out.png")
    assert want.bit_depth == got.bit_depth == depth
    np.testing.assert_array_equal(got.pixels, want.pixels)


STAGES = {"jpeg": "rgb", "webp": "rgb", "avif": "rgb", "jxl": "rgb", "png": "gray12", "webp-lossless": "rgb",
          "jxl-lossless": "gray12", "jpegls": "gray12", "jpeg2000": "gray12"}


@pytest.mark.parametrize("codec_id", list(STAGES))
def test_pipeline_and_commands_see_the_same_pixels(codec_id: str) -> None:
    """The pipeline verifies ``stage.decode(bytes)``; ``decode``/``verify``/the report read ``load(bytes)``:
    for every stage's output both must be the same pixels at the same bit depth."""
    image = _gray12() if STAGES[codec_id] == "gray12" else Image(_rgb())
    data = get_stage(codec_id).encode(image)
    a, b = get_stage(codec_id).decode(data), load(data)
    assert (a.pixels.shape, a.bit_depth) == (b.pixels.shape, b.bit_depth)
    np.testing.assert_array_equal(a.pixels, b.pixels)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("inverity: error: ") and "Traceback" not in err, err
    return lines[0]


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("name", "build", "needle"), [
    ("cut.jpg", lambda: _pil(PILImage.fromarray(_rgb(64, 64)), "JPEG")[:-300], "truncated JPEG data"),
    ("anim.webp", lambda: _pil(PILImage.fromarray(_rgb()), "WEBP", save_all=True, duration=50,
                               append_images=[PILImage.fromarray(_rgb(seed=k)) for k in (1, 2)]),
     "animated images are not supported (3 frames)"),
    ("anim.png", lambda: _pil(PILImage.fromarray(_rgb()), "PNG", save_all=True, duration=50,
                              append_images=[PILImage.fromarray(_rgb(seed=k)) for k in (1, 2)]),
     "animated images are not supported (3 frames)"),
    ("bomb.png", lambda: _png_header(60000, 60000), "too many pixels (60000x60000"),
    ("196mp.png", lambda: _png_header(14000, 14000), "too many pixels (14000x14000 = 196,000,000 > limit"),
])
def test_decode_refuses_what_load_refuses(name: str, build: object, needle: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / name, tmp_path / "out.png"
    src.write_bytes(build())  # type: ignore[operator]
    assert main(["decode", str(src), "-o", str(out)]) == 2
    line = _one_error(capsys)
    assert name in line and needle in line, line
    assert not out.exists()


def test_decode_never_writes_over_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(to_bytes(Image(_rgb()), "png"))
    before = src.read_bytes()
    assert main(["decode", str(src), "-o", str(src)]) == 2
    assert "refusing to write over an input" in _one_error(capsys)
    assert src.read_bytes() == before


def test_png_with_megabytes_of_text_is_valid(tmp_path: Path) -> None:
    """> 1 MB of compressed text is valid PNG (Pillow called it corrupt): the text is dropped, with a note;
    a large XMP packet is kept."""
    rng = np.random.default_rng(0)
    text = rng.integers(0x41, 0x5B, 2_000_000, dtype=np.uint8).tobytes()
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b" " * 2_000_000 + b"</x:xmpmeta>"

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    plain = to_bytes(Image(_rgb()), "png")
    data = (plain[:33] + chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(text))
            + chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(xmp)) + plain[33:])
    assert len(zlib.compress(text)) > 1 << 20
    image = load(data)
    np.testing.assert_array_equal(image.pixels, _rgb())
    assert image.metadata["xmp"] == xmp
    assert "PNG text chunks not kept (1): Comment" in image.metadata["notes"]


@pytest.mark.parametrize("shape", [(1, 70000, 3), (70000, 1, 3), (70000, 1, 1)])
def test_extreme_aspect_ratios_write_as_png(shape: tuple[int, int, int]) -> None:
    """Incompressible 70000×1 images overflowed imagecodecs' PNG output estimate ("output stream too small")."""
    px = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image = Image(px)
    for data in (to_bytes(image, "png"), get_stage("png").encode(image)):
        np.testing.assert_array_equal(load(data).pixels, px)


def test_verify_reads_inv_candidates_through_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``verify`` judges the pixels ``load`` gives, ``.inv`` candidates included."""
    if not LEARNED_FIXTURE.is_file():
        pytest.skip("no learned golden fixture")
    inv = tmp_path / "c.inv"
    inv.write_bytes(LEARNED_FIXTURE.read_bytes())
    orig = tmp_path / "o.png"
    orig.write_bytes(to_bytes(load(inv), "png"))
    assert main(["verify", str(orig), str(inv), "--policy", "archive", "--json"]) == 0
    assert '"passed": true' in capsys.readouterr().out


def test_dicom_mismatch_is_refused_by_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = pydicom.dcmread(CT_SMALL)
    ds.Rows = ds.Columns = 64
    src = tmp_path / "ct64.dcm"
    ds.save_as(src)
    for argv in (["decode", str(src), "-o", str(tmp_path / "x.png")], ["analyse", str(src)],
                 ["verify", str(src), str(src)], ["encode", str(src), "-o", str(tmp_path / "y.png"), "-c", "png"]):
        assert main(argv) == 2, argv
        assert "ct64.dcm: DICOM pixel data is 32,768 bytes but the header" in _one_error(capsys)
