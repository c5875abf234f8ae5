"""Tests for inverity.image: load / save / dicom_bytes on synthesised images and pydicom's bundled files."""
from __future__ import annotations

import doctest
import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps

import inverity.image as image_module
from inverity.errors import InputError, UnknownIdError, UnsupportedInputError
from inverity.image import (
    DICOM_TRANSFER_SYNTAXES, Image, dicom_bytes, dicom_values, load, save, to_bytes,
)

DICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def dicom_file(name: str) -> Path:
    """A file bundled with pydicom (never downloaded: pydicom's get_testdata_file would try the network)."""
    path = DICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom test file {name} is not installed")
    return path


# ---- shared assertion helpers --------------------------------------------------------------------------------


def assert_same_image(got: Image, want: Image) -> None:
    """Bit-exact pixels, same layout and bit depth."""
    assert got.pixels.shape == want.pixels.shape
    assert got.dtype == want.dtype
    assert got.bit_depth == want.bit_depth
    np.testing.assert_array_equal(got.pixels, want.pixels)


def assert_dicom_pixels_equal(got: Image, want: Image) -> None:
    """Same stored DICOM values (sign restored), geometry and bit depth — whatever the transfer syntax."""
    assert got.source_format == want.source_format == "dicom"
    assert_same_image(got, want)
    assert got.metadata.get("dicom_signed_offset") == want.metadata.get("dicom_signed_offset")
    np.testing.assert_array_equal(dicom_values(got), dicom_values(want))


def assert_one_line_error(exc: pytest.ExceptionInfo[InputError], label: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{label}: ")
    return message


def synth(shape: tuple[int, ...], dtype: type = np.uint8, bits: int | None = None, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise: stresses predictors without being pure noise."""
    rng = np.random.default_rng(seed)
    top = (1 << (bits or 8 * np.dtype(dtype).itemsize)) - 1
    h, w = shape[:2]
    ramp = np.add.outer(np.linspace(0, 0.6, h), np.linspace(0, 0.3, w))[..., None]
    noise = rng.random(shape if len(shape) == 3 else (*shape, 1))
    return np.clip((ramp + 0.1 * noise) * top, 0, top).astype(dtype).reshape(shape)


def pil_bytes(im: PILImage.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


# ---- round trips ---------------------------------------------------------------------------------------------

LAYOUTS = [
    pytest.param(1, np.uint8, 8, id="gray8"),
    pytest.param(2, np.uint8, 8, id="graya8"),
    pytest.param(3, np.uint8, 8, id="rgb8"),
    pytest.param(4, np.uint8, 8, id="rgba8"),
    pytest.param(1, np.uint16, 16, id="gray16"),
    pytest.param(2, np.uint16, 16, id="graya16"),
    pytest.param(3, np.uint16, 16, id="rgb16"),
    pytest.param(4, np.uint16, 16, id="rgba16"),
]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize(("channels", "dtype", "bits"), LAYOUTS)
def test_png_and_tiff_round_trip(tmp_path: Path, suffix: str, channels: int, dtype: type, bits: int) -> None:
    original = Image(synth((13, 17, channels), dtype, seed=channels), bit_depth=bits)
    path = save(original, tmp_path / f"x{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"x{suffix}"]  # atomic: no temp file left
    loaded = load(path)
    assert loaded.source_format == {".png": "png", ".tif": "tiff"}[suffix]
    assert_same_image(loaded, original)


@pytest.mark.parametrize(
    ("fmt", "channels", "dtype", "bits"),
    [
        ("webp", 3, np.uint8, 8), ("webp", 4, np.uint8, 8),
        ("jxl", 3, np.uint8, 8), ("jxl", 1, np.uint16, 16), ("jxl", 3, np.uint16, 12), ("jxl", 4, np.uint16, 10),
        ("jpegls", 1, np.uint8, 8), ("jpegls", 3, np.uint8, 8), ("jpegls", 1, np.uint16, 16),
        ("jp2", 3, np.uint8, 8), ("jp2", 1, np.uint16, 12), ("j2k", 1, np.uint16, 16), ("j2k", 4, np.uint8, 8),
        ("avif", 3, np.uint8, 8), ("avif", 4, np.uint8, 8), ("avif", 3, np.uint16, 10), ("avif", 3, np.uint16, 12),
        ("bmp", 1, np.uint8, 8), ("bmp", 3, np.uint8, 8),
    ],
)
def test_lossless_formats_round_trip(fmt: str, channels: int, dtype: type, bits: int) -> None:
    original = Image(synth((12, 20, channels), dtype, bits=bits, seed=bits), bit_depth=bits)
    loaded = load(to_bytes(original, fmt))
    assert loaded.source_format == {"jp2": "jp2", "j2k": "j2k"}.get(fmt, fmt)
    assert_same_image(loaded, original)


def test_sources_path_bytes_filelike_and_names(tmp_path: Path) -> None:
    original = Image(synth((5, 6, 3)))
    data = to_bytes(original, "png")
    (tmp_path / "a.png").write_bytes(data)
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), data, bytearray(data), io.BytesIO(data)):
        assert_same_image(load(source), original)
    with pytest.raises(InputError) as exc:
        load(data[:-20], name="upload.png")
    assert_one_line_error(exc, "upload.png")


def test_wrong_extension_is_ignored(tmp_path: Path) -> None:
    original = Image(synth((6, 7, 3)))
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(to_bytes(original, "png"))
    loaded = load(path)
    assert loaded.source_format == "png"
    assert_same_image(loaded, original)


def test_12_bit_png_comes_back_as_12_bit() -> None:
    """PNG stores 12 of 16 bits with an sBIT chunk: ``save`` writes it, ``load`` and the png stage read it."""
    from inverity.stages.base import get_stage

    original = Image(synth((4, 5, 1), np.uint16, bits=12), bit_depth=12)
    data = to_bytes(original, "png")
    assert b"sBIT\x0c" in data
    for loaded in (load(data), get_stage("png").decode(data), load(get_stage("png").encode(original))):
        np.testing.assert_array_equal(loaded.pixels, original.pixels)
        assert loaded.bit_depth == 12


def test_png_sbit_that_lies_is_ignored_with_a_note() -> None:
    """An sBIT of 12 over samples that use 16 bits must not make the image unencodable at a false depth."""
    px = np.full((2, 3, 1), 65535, np.uint16)
    data = to_bytes(Image(px, bit_depth=16), "png")
    lying = data[:33] + image_module._png.png_chunk(b"sBIT", b"\x0c") + data[33:]
    loaded = load(lying)
    assert loaded.bit_depth == 16 and "sBIT" in " ".join(loaded.metadata["notes"])


# ---- colour models -------------------------------------------------------------------------------------------

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)


@pytest.mark.parametrize("transparency", [None, bytes([255, 0, 128, 255])])
def test_palette_png_is_expanded(transparency: bytes | None) -> None:
    index = np.random.default_rng(3).integers(0, 4, (6, 7)).astype(np.uint8)
    im = PILImage.fromarray(index, mode="P")
    im.putpalette(PALETTE.ravel().tolist())
    data = pil_bytes(im, "PNG", **({"transparency": transparency} if transparency else {}))
    loaded = load(data)
    assert loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.pixels[..., :3], PALETTE[index])
    if transparency is None:
        assert loaded.colour == "rgb"
    else:
        assert loaded.colour == "rgba"
        np.testing.assert_array_equal(loaded.pixels[..., 3], np.frombuffer(transparency, np.uint8)[index])
    assert any("palette" in note for note in loaded.metadata["notes"])


def test_gray_with_trns_gets_alpha() -> None:
    gray = synth((5, 8, 1))[..., 0]
    key = int(gray[2, 3])
    loaded = load(pil_bytes(PILImage.fromarray(gray), "PNG", transparency=key))
    assert loaded.colour == "graya"
    np.testing.assert_array_equal(loaded.pixels[..., 1], np.where(gray == key, 0, 255))


def test_cmyk_jpeg_becomes_rgb_with_a_note() -> None:
    rgb = synth((16, 24, 3))
    data = pil_bytes(PILImage.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    loaded = load(data)
    assert (loaded.colour, loaded.bit_depth) == ("rgb", 8)
    # without a profile the conversion is Pillow's own CMYK -> RGB of the same decoded samples
    expected = np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert any("CMYK" in note for note in loaded.metadata["notes"])


def test_cmyk_jpeg_with_profile_uses_it() -> None:
    rgb = synth((8, 8, 3))
    cmyk_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))  # stand-in: any parseable profile
    data = pil_bytes(PILImage.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    im = PILImage.open(io.BytesIO(data))
    meta = {"icc": cmyk_profile.tobytes(), "notes": []}
    pixels, depth = image_module._pil_pixels(im, meta)  # a broken/mismatched profile falls back, never raises
    assert pixels.shape == (8, 8, 3) and depth == 8
    assert "icc" not in meta and any("CMYK" in note for note in meta["notes"])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_and_reset(orientation: int) -> None:
    rgb = synth((8, 12, 3), seed=orientation)
    im = PILImage.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    xmp = f'<x:xmpmeta><rdf:Description tiff:Orientation="{orientation}"/></x:xmpmeta>'.encode()
    data = pil_bytes(im, "JPEG", quality=95, exif=exif, xmp=xmp)
    loaded = load(data)
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(io.BytesIO(data))))
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert (loaded.height, loaded.width) == ((12, 8) if orientation >= 5 else (8, 12))
    kept = PILImage.Exif()
    kept.load(loaded.metadata["exif"])
    assert kept[0x0112] == 1 and kept[0x010F] == "TestCam"
    assert b'tiff:Orientation="1"' in loaded.metadata["xmp"]


def test_orientation_6_rotates_clockwise() -> None:
    """Orientation 6 = the camera was turned 90° clockwise: the top-left pixel ends up top-right."""
    gray = np.zeros((8, 16), np.uint8)
    gray[:4, :4] = 255  # a bright block at the top-left of the stored image
    im = PILImage.fromarray(gray)
    exif = im.getexif()
    exif[0x0112] = 6
    loaded = load(pil_bytes(im, "JPEG", quality=100, exif=exif))
    assert (loaded.height, loaded.width) == (16, 8)
    assert loaded.pixels[:4, -4:].mean() > 200 and loaded.pixels[:4, :4].mean() < 50


def test_metadata_survives_png_and_tiff() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = PILImage.Exif()
    exif[0x010F] = "TestCam"
    xmp = b"<x:xmpmeta>hello</x:xmpmeta>"
    original = Image(synth((6, 6, 3)), metadata={"icc": icc, "exif": exif.tobytes(), "xmp": xmp})
    png = load(to_bytes(original, "png"))
    assert png.metadata["icc"] == icc and png.metadata["xmp"] == xmp
    back = PILImage.Exif()
    back.load(png.metadata["exif"])
    assert back[0x010F] == "TestCam"
    assert load(to_bytes(original, "tiff")).metadata["icc"] == icc


# ---- animation and pages -------------------------------------------------------------------------------------


def _frames(n: int) -> list[PILImage.Image]:
    return [PILImage.fromarray(synth((8, 8, 3), seed=k)) for k in range(n)]


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_refused(fmt: str) -> None:
    first, *rest = _frames(3)
    data = pil_bytes(first, fmt, save_all=True, append_images=rest, duration=100)
    with pytest.raises(InputError, match=r"animated images are not supported \(3 frames\)") as exc:
        load(data, name=f"anim.{fmt.lower()}")
    assert_one_line_error(exc, f"anim.{fmt.lower()}")


def test_animated_jxl_refused() -> None:
    frames = np.stack([synth((8, 8, 3), seed=k) for k in range(3)])
    with pytest.raises(InputError, match="animated images are not supported"):
        load(imagecodecs.jpegxl_encode(frames, lossless=True))


def test_single_frame_gif_loads() -> None:
    rgb = synth((8, 8, 3))
    im = PILImage.fromarray(rgb).quantize(16)
    loaded = load(pil_bytes(im, "GIF"))
    assert loaded.colour == "rgb"
    np.testing.assert_array_equal(loaded.pixels, np.asarray(im.convert("RGB")))


def test_multi_page_tiff_refused() -> None:
    first, *rest = _frames(2)
    with pytest.raises(InputError, match=r"multi-page TIFF is not supported \(2 pages\)"):
        load(pil_bytes(first, "TIFF", save_all=True, append_images=rest))


# ---- hostile and broken input --------------------------------------------------------------------------------


def _valid(fmt: str) -> bytes:
    rgb = synth((24, 32, 3))
    return to_bytes(Image(rgb), "png") if fmt == "png" else pil_bytes(PILImage.fromarray(rgb), "JPEG", quality=90)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
@pytest.mark.parametrize("cut", ["0", "1", "8", "33", "half", "len-1"])
def test_truncated_files_refused(fmt: str, cut: str) -> None:
    data = _valid(fmt)
    length = {"half": len(data) // 2, "len-1": len(data) - 1}.get(cut) if not cut.isdigit() else int(cut)
    with pytest.raises(InputError) as exc:
        load(data[:length], name=f"photo.{fmt}")
    message = assert_one_line_error(exc, f"photo.{fmt}")
    if length == 0:
        assert message == f"photo.{fmt}: empty file (0 bytes)"
    elif length >= 8:
        assert "truncated" in message and f"({length} bytes)" in message


def test_random_bytes_and_garbage_after_magic() -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(InputError, match=r"^<bytes>: not a recognised image format \(4096 bytes\)$"):
        load(noise)
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"II*\x00", b"BM", b"\xff\x0a",
                  b"\xff\x4f\xff\x51", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00" * 128 + b"DICM"):
        with pytest.raises(InputError):
            load(magic + noise)


def test_file_system_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.png: empty file \(0 bytes\)$"):
        load(empty)
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        load(tmp_path)
    with pytest.raises(InputError, match="pass a path, bytes or a binary file"):
        load(12345)
    with pytest.raises(InputError, match="stream is not binary"):
        load(io.StringIO("hello"))


def test_inverity_container_is_loaded_through_the_same_door() -> None:
    """``.inv`` streams are read by ``load`` too (the learned stage decodes them); junk is one InputError."""
    with pytest.raises(InputError, match=r"^x\.inv: unsupported \.inv format version 0"):
        load(b"INV1" + b"\x00" * 64, name="x.inv")
    fixture = Path(__file__).parent / "fixtures" / "learned" / "rgb8_q2.inv"
    if not fixture.is_file():
        pytest.skip("no learned golden fixture")
    pytest.importorskip("torch")
    from inverity.stages.base import get_stage

    data = fixture.read_bytes()
    loaded = load(data)
    assert loaded.source_format == "inv"
    np.testing.assert_array_equal(loaded.pixels, get_stage("learned").decode(data).pixels)
    with pytest.raises(InputError, match="too many pixels"):  # the limit applies before the model runs
        load(data, max_pixels=loaded.width * loaded.height - 1)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a valid CRC) promises width × height RGB pixels, followed by a tiny IDAT."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b"")


def test_decompression_bomb_refused_before_decoding() -> None:
    data = _png_header_only(30000, 30000)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"too many pixels \(30000x30000 = 900,000,000 > limit") as exc:
            load(data, name="bomb.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_one_line_error(exc, "bomb.png")
    assert peak < 8 * 2**20  # 900 MP of RGB would be 2.7 GB


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "webp", "avif", "jxl", "jpegls", "jp2", "j2k", "bmp", "gif"])
def test_max_pixels_checked_from_each_header(fmt: str) -> None:
    rgb = synth((30, 40, 3))
    data = pil_bytes(PILImage.fromarray(rgb).quantize(8), "GIF") if fmt == "gif" else to_bytes(
        Image(rgb), fmt)
    with pytest.raises(InputError, match=r"too many pixels \(40x30 = 1,200 > limit 1,199\)"):
        load(data, max_pixels=1199)
    assert load(data, max_pixels=1200).pixels.shape[:2] == (30, 40)
    assert load(data, max_pixels=None).pixels.shape[:2] == (30, 40)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (8, 8), (64, 64), (120, 90), (160, 90), (200, 100),
                                                (257, 3), (3, 257), (1000, 800), (640, 480), (96, 80)])
@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_jxl_header_parser(width: int, height: int, bits: int) -> None:
    dtype = np.uint8 if bits == 8 else np.uint16
    data = imagecodecs.jpegxl_encode(np.zeros((height, width, 3), dtype), lossless=True, bitspersample=bits,
                                     effort=1)
    assert image_module.jxl_header(data)[:4] == (width, height, bits, False)
    boxed = imagecodecs.jpegxl_encode(np.zeros((height, width), dtype), lossless=True, bitspersample=bits,
                                      usecontainer=True, effort=1)
    assert image_module.jxl_header(boxed)[:2] == (width, height)


def test_dicom_bomb_refused() -> None:
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    ds.Rows = ds.Columns = 60000
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(InputError, match="too many pixels"):
        load(buf.getvalue())


def test_dicom_frame_header_must_match_dataset() -> None:
    """Rows/Columns that lie about an encapsulated frame are refused (the codec would allocate the frame's size)."""
    ds = pydicom.dcmread(dicom_file("MR_small_jpeg_ls_lossless.dcm"))
    ds.Rows = 32
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(InputError, match="frame header says 64x64 but the dataset says 64x32"):
        load(buf.getvalue())


# ---- DICOM ---------------------------------------------------------------------------------------------------


def test_ct_small_signed_values() -> None:
    ct = load(dicom_file("CT_small.dcm"))
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    assert ct.source_format == "dicom"
    assert (ct.height, ct.width, ct.channels, ct.dtype, ct.bit_depth) == (128, 128, 1, np.uint16, 16)
    assert ct.metadata["dicom_signed_offset"] == 32768
    np.testing.assert_array_equal(dicom_values(ct)[..., 0], ds.pixel_array)
    np.testing.assert_array_equal(ct.pixels[..., 0].astype(np.int64), ds.pixel_array.astype(np.int64) + 32768)
    kept = ct.metadata["dicom"]
    assert "PixelData" not in kept and kept.PatientName == ds.PatientName
    assert ct.metadata["dicom_transfer_syntax"] == ds.file_meta.TransferSyntaxUID


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_compressed_and_other_encodings_of_mr_small_decode_identically(name: str) -> None:
    reference = load(dicom_file("MR_small.dcm"))
    assert (reference.height, reference.width, reference.bit_depth) == (64, 64, 16)
    assert_dicom_pixels_equal(load(dicom_file(name)), reference)


@pytest.mark.parametrize(("name", "bits"), [("693_J2KI.dcm", 14), ("J2K_pixelrep_mismatch.dcm", 13),
                                            ("JPGExtended.dcm", 12), ("examples_overlay.dcm", 12)])
def test_bit_depth_is_bits_stored(name: str, bits: int) -> None:
    img = load(dicom_file(name))
    assert img.bit_depth == bits == int(pydicom.dcmread(dicom_file(name)).BitsStored)
    assert int(img.pixels.max()) <= img.max_value


def test_dicom_values_match_pydicom_for_signed_j2k() -> None:
    img = load(dicom_file("693_J2KI.dcm"))
    ds = pydicom.dcmread(dicom_file("693_J2KI.dcm"))
    np.testing.assert_array_equal(dicom_values(img)[..., 0], ds.pixel_array)  # pydicom decodes J2K via Pillow


def _all_but_pixels(ds: pydicom.Dataset) -> dict[object, object]:
    skip = {0x7FE00010, 0x7FE00001, 0x7FE00002, 0x00280006, 0x00280004}  # pixel data, offsets, planar, photometric
    # group lengths (gggg,0000) are retired and pydicom drops them on write: they would be wrong anyway
    return {elem.tag: elem.value for elem in ds if elem.tag not in skip and elem.tag.element != 0}


@pytest.mark.parametrize("transfer_syntax", sorted(DICOM_TRANSFER_SYNTAXES))
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm", "SC_rgb_rle_16bit.dcm",
                                  "examples_palette.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_dicom_bytes_round_trip(name: str, transfer_syntax: str) -> None:
    original = load(dicom_file(name))
    data = dicom_bytes(original, transfer_syntax=transfer_syntax)
    again = load(data)
    assert_dicom_pixels_equal(again, original)
    written = pydicom.dcmread(io.BytesIO(data))
    source = pydicom.dcmread(dicom_file(name))
    assert written.file_meta.TransferSyntaxUID == DICOM_TRANSFER_SYNTAXES[transfer_syntax]
    assert written.SOPInstanceUID == source.SOPInstanceUID  # same object, not a derived one
    assert written.file_meta.MediaStorageSOPInstanceUID == source.file_meta.MediaStorageSOPInstanceUID
    assert written.PatientName == source.PatientName
    assert _all_but_pixels(written) == _all_but_pixels(source)


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpeg2000"])
def test_pydicom_reads_our_dicom_independently(transfer_syntax: str) -> None:
    """A second decoder (pydicom's own) agrees on the values, including the sign of CT numbers."""
    ct = load(dicom_file("CT_small.dcm"))
    written = pydicom.dcmread(io.BytesIO(dicom_bytes(ct, transfer_syntax=transfer_syntax)))
    np.testing.assert_array_equal(written.pixel_array, pydicom.dcmread(dicom_file("CT_small.dcm")).pixel_array)


def test_dicom_bytes_of_a_reconstruction_and_refusals() -> None:
    ct = load(dicom_file("CT_small.dcm"))
    shifted = ct.with_pixels(ct.pixels + np.uint16(1))
    assert_dicom_pixels_equal(load(dicom_bytes(shifted)), shifted)
    with pytest.raises(UnsupportedInputError, match="loaded from DICOM"):
        dicom_bytes(Image(synth((4, 4, 1))))
    with pytest.raises(UnsupportedInputError, match="do not match the DICOM dataset"):
        dicom_bytes(ct.with_pixels(ct.pixels[:64]))
    with pytest.raises(UnknownIdError, match="jpegls"):
        dicom_bytes(ct, transfer_syntax="mpeg2")


@pytest.mark.parametrize(("name", "message"), [
    ("SC_rgb_rle_2frame.dcm", r"multi-frame DICOM is not supported \(2 frames\)"),
    ("rtdose_1frame.dcm", "32 bits allocated"),
    ("liver_1frame.dcm", "1 bits allocated"),
    ("MR_truncated.dcm", "truncated DICOM data"),
    ("MR_small_padded.dcm", "8,320 bytes but the header"),  # pydicom would warn and cut 128 bytes off
    ("rtplan.dcm", "no pixel data"),
])
def test_dicom_refusals(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as exc:
        load(dicom_file(name), name=name)
    assert_one_line_error(exc, name)


def test_dicom_image_pickles_for_worker_processes() -> None:
    import pickle

    ct = load(dicom_file("CT_small.dcm"))
    again = pickle.loads(pickle.dumps(ct))
    assert_dicom_pixels_equal(load(dicom_bytes(again)), ct)


def test_dicom_save_and_dual_personality_preamble(tmp_path: Path) -> None:
    """CT_small.dcm's preamble is a TIFF header: it must still load as DICOM; .dcm saves via dicom_bytes."""
    assert dicom_file("CT_small.dcm").read_bytes()[:4] == b"II*\x00"
    ct = load(dicom_file("CT_small.dcm"))
    assert_dicom_pixels_equal(load(save(ct, tmp_path / "ct.dcm")), ct)


# ---- save ----------------------------------------------------------------------------------------------------


def test_save_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedInputError, match="cannot write JPEG: only 8-bit"):
        save(Image(synth((4, 4, 3), np.uint16)), tmp_path / "x.jpg")
    with pytest.raises(UnsupportedInputError, match="no alpha"):
        save(Image(synth((4, 4, 4))), tmp_path / "x.jpeg")
    with pytest.raises(UnknownIdError, match=".xyz"):
        save(Image(synth((4, 4, 3))), tmp_path / "x.xyz")
    with pytest.raises(UnsupportedInputError, match="loaded from DICOM"):
        save(Image(synth((4, 4, 1))), tmp_path / "x.dcm")
    assert list(tmp_path.iterdir()) == []


def test_save_default_png_and_explicit_format(tmp_path: Path) -> None:
    img = Image(synth((4, 5, 3)))
    assert load(save(img, tmp_path / "noext")).source_format == "png"
    assert load(save(img, tmp_path / "y.bin", format="webp")).source_format == "webp"
    smooth = Image(np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, axis=0).repeat(3, 2))
    jpeg = load(save(smooth, tmp_path / "z.JPG"))  # JPEG is the one lossy target: quality 95, 4:4:4
    assert jpeg.source_format == "jpeg"
    assert np.abs(jpeg.pixels.astype(int) - smooth.pixels).max() <= 3


def test_doctests() -> None:
    import importlib
    import pkgutil

    attempted = 0
    for info in pkgutil.iter_modules(image_module.__path__):
        module = importlib.import_module(f"inverity.image.{info.name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, info.name
        attempted += result.attempted
    assert attempted >= 5


@pytest.mark.parametrize("size", [64, 100])
def test_dicom_whose_header_disagrees_with_its_pixel_data_is_refused(size: int) -> None:
    """CT_small.dcm holds 128×128 samples; told Rows = Columns = 64, pydicom would keep the first 4,096 of
    16,384 and only warn — the loader refuses, whether the data is too long or too short for the header."""
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.Rows = ds.Columns = size
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(InputError) as exc:
        load(buf.getvalue(), name="ct64.dcm")
    message = assert_one_line_error(exc, "ct64.dcm")
    assert "32,768 bytes" in message and f"{size * size * 2:,}" in message
