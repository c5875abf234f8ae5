"""Lossless stages: bit-exact round trips (8/16-bit, gray/RGB/alpha), honest refusals, JPEG-LS error bound,
metadata, config round trip, golden fixtures."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import (
    SAMPLE_EXIF, SAMPLE_XMP, assert_bit_exact, assert_config_round_trip, check_golden, srgb_icc, synthetic,
)

from inverity.errors import CodecError, UnsupportedInputError
from inverity.formats import sniff
from inverity.image import Image
from inverity.stages.base import get_stage, stage_class

LOSSLESS = ("png", "webp-lossless", "jxl-lossless", "jpegls", "jpeg2000")

#: what each stage promises to take bit-exactly (the documented contract; capabilities must agree)
SUPPORTED = {
    "png": {"rgb8", "gray8", "gray16", "gray12", "rgba8", "graya8", "rgba16"},
    "webp-lossless": {"rgb8", "rgba8"},
    "jxl-lossless": {"rgb8", "gray8", "gray16", "gray12", "rgba8", "graya8", "rgba16"},
    "jpegls": {"rgb8", "gray8", "gray16", "gray12", "rgba8", "rgba16"},
    "jpeg2000": {"rgb8", "gray8", "gray16", "gray12", "rgba8", "graya8", "rgba16"},
}
KINDS = ("rgb8", "gray8", "gray16", "gray12", "rgba8", "graya8", "rgba16")


def _accepts(codec_id: str, image: Image) -> bool:
    caps = stage_class(codec_id).capabilities
    return 8 * image.dtype.itemsize in caps.bit_depths and image.channels in caps.channels


@pytest.mark.parametrize("codec_id", LOSSLESS)
@pytest.mark.parametrize("kind", KINDS)
def test_bit_exact_or_clear_refusal(codec_id: str, kind: str) -> None:
    image = synthetic(kind, 40, 48)
    stage = get_stage(codec_id)
    assert stage.lossless and stage.max_abs_error == 0
    assert _accepts(codec_id, image) == (kind in SUPPORTED[codec_id]), "capabilities disagree with the contract"
    if kind in SUPPORTED[codec_id]:
        decoded = stage.decode(stage.encode(image))
        assert_bit_exact(image, decoded)
    else:
        with pytest.raises(UnsupportedInputError) as err:
            stage.encode(image)
        msg = str(err.value)
        assert codec_id in msg and "\n" not in msg
        assert ("16-bit" in msg) if image.dtype == np.uint16 else (image.colour in msg)


@pytest.mark.parametrize("codec_id", ("png", "jpeg2000", "jxl-lossless"))
def test_significant_bits_recorded(codec_id: str) -> None:
    """12 of 16 bits: PNG writes sBIT, JPEG 2000 and JPEG XL code 12-bit samples; all decode as 12-bit uint16."""
    image = synthetic("gray12")
    decoded = get_stage(codec_id).decode(get_stage(codec_id).encode(image))
    assert_bit_exact(image, decoded)
    assert decoded.bit_depth == 12


def test_significant_bits_must_hold_the_pixels() -> None:
    image = Image(np.full((4, 4, 1), 5000, np.uint16), bit_depth=12)
    with pytest.raises(UnsupportedInputError, match="exceed the image's declared 12-bit"):
        get_stage("jpeg2000").encode(image)


@pytest.mark.parametrize("near", [1, 2, 5])
@pytest.mark.parametrize("kind", ["rgb8", "gray16"])
def test_jpegls_near_bounds_error(near: int, kind: str) -> None:
    image = synthetic(kind, 48, 64, seed=near)
    stage = get_stage("jpegls", near=near)
    assert not stage.lossless and stage.max_abs_error == near
    data = stage.encode(image)
    decoded = stage.decode(data)
    err = int(np.abs(decoded.pixels.astype(np.int64) - image.pixels).max())
    assert 0 < err <= near
    assert len(data) < len(get_stage("jpegls").encode(image))


def test_jpegls_near_limit_refused() -> None:
    with pytest.raises(UnsupportedInputError, match="near=200 exceeds the limit 127"):
        get_stage("jpegls", near=200).encode(synthetic("gray8"))
    with pytest.raises(ValueError, match="near=-1 is invalid"):
        get_stage("jpegls", near=-1)


def test_jpeg2000_outputs() -> None:
    image = synthetic("rgb8")
    classic, ht = get_stage("jpeg2000"), get_stage("jpeg2000", htj2k=True)
    a, b = classic.encode(image), ht.encode(image)
    assert (sniff(a), classic.extension) == ("jp2", ".jp2")
    assert (sniff(b), ht.extension) == ("j2k", ".j2c")
    assert b"\xff\x50" in b[:200]  # CAP marker: a Part 15 (HTJ2K) codestream
    for stage in (classic, ht):  # either stage decodes either output
        assert_bit_exact(image, stage.decode(a))
        assert_bit_exact(image, stage.decode(b))


def test_htj2k_16bit_and_graya() -> None:
    ht = get_stage("jpeg2000", htj2k=True)
    for kind in ("gray16", "graya8", "rgba16"):
        image = synthetic(kind)
        assert_bit_exact(image, ht.decode(ht.encode(image)))


def test_webp_lossless_keeps_opaque_alpha_channel() -> None:
    """libwebp drops an all-255 alpha; the stage must still give back 4 channels."""
    px = synthetic("rgba8").pixels.copy()
    px[..., 3] = 255
    image = Image(px)
    stage = get_stage("webp-lossless")
    assert_bit_exact(image, stage.decode(stage.encode(image)))
    rgb = synthetic("rgb8")
    assert_bit_exact(rgb, stage.decode(stage.encode(rgb)))


@pytest.mark.parametrize("codec_id", LOSSLESS)
def test_metadata_declared_is_carried(codec_id: str) -> None:
    meta = {"icc": srgb_icc(), "exif": b"Exif\x00\x00" + SAMPLE_EXIF, "xmp": SAMPLE_XMP}
    image = Image(synthetic("rgb8").pixels, metadata=meta)
    stage = get_stage(codec_id)
    decoded = stage.decode(stage.encode(image))
    assert_bit_exact(image, decoded)
    expected = {k: (SAMPLE_EXIF if k == "exif" else meta[k]) for k in stage.capabilities.metadata}
    assert decoded.metadata == expected


def test_png_large_icc_and_16bit_metadata() -> None:
    icc = srgb_icc()
    image = Image(synthetic("rgba16").pixels, metadata={"icc": icc, "xmp": SAMPLE_XMP})
    decoded = get_stage("png").decode(get_stage("png").encode(image))
    assert_bit_exact(image, decoded)
    assert decoded.metadata == {"icc": icc, "xmp": SAMPLE_XMP}


@pytest.mark.parametrize("codec_id", LOSSLESS)
def test_config_round_trip(codec_id: str) -> None:
    assert_config_round_trip(get_stage(codec_id))
    non_default = {"png": {"level": 9}, "webp-lossless": {"method": 6}, "jxl-lossless": {"effort": 3},
                   "jpegls": {"near": 3}, "jpeg2000": {"htj2k": True}}[codec_id]
    stage = get_stage(codec_id, **non_default)
    assert_config_round_trip(stage)
    assert stage != get_stage(codec_id)


@pytest.mark.parametrize("codec_id", LOSSLESS)
def test_lossless_stage_takes_no_quality(codec_id: str) -> None:
    with pytest.raises(ValueError, match="lossless and takes no quality"):
        get_stage(codec_id, quality=50)


@pytest.mark.parametrize("codec_id", LOSSLESS + ("jpeg", "webp", "avif", "jxl"))
def test_stages_pickle(codec_id: str) -> None:
    """The process-pool engine ships stages to workers."""
    stage = get_stage(codec_id)
    again = pickle.loads(pickle.dumps(stage))
    assert again == stage and again.get_config() == stage.get_config()


def test_bad_option_values() -> None:
    with pytest.raises(ValueError, match=r"png: option level=10 is invalid; expected an integer in 0\.\.9"):
        get_stage("png", level=10)
    with pytest.raises(ValueError, match="htj2k=1 is invalid"):
        get_stage("jpeg2000", htj2k=1)
    with pytest.raises(TypeError, match="unknown option"):
        get_stage("png", quality_level=1)


@pytest.mark.parametrize("codec_id", LOSSLESS)
def test_garbage_and_truncated_input(codec_id: str) -> None:
    stage = get_stage(codec_id)
    data = stage.encode(synthetic("rgb8"))
    for bad in (b"", b"not an image at all", data[: len(data) // 3]):
        with pytest.raises(CodecError) as err:
            stage.decode(bad)
        assert str(err.value).startswith(f"{codec_id}: ") and "\n" not in str(err.value)


def test_png_level_changes_size_not_pixels() -> None:
    image = synthetic("rgb8", 64, 64)
    fast, small = get_stage("png", level=0).encode(image), get_stage("png", level=9).encode(image)
    assert len(small) < len(fast)
    assert_bit_exact(image, get_stage("png").decode(fast))


GOLDEN = {
    "png": {"rgb8": ({}, "rgb8"), "gray16": ({}, "gray16"), "gray12": ({}, "gray12"), "rgba8": ({}, "rgba8")},
    "webp-lossless": {"rgb8": ({}, "rgb8"), "rgba8": ({}, "rgba8")},
    "jxl-lossless": {"rgb8": ({}, "rgb8"), "gray16": ({}, "gray16"), "graya8": ({}, "graya8")},
    "jpegls": {"rgb8": ({}, "rgb8"), "gray16": ({}, "gray16"), "near2": ({"near": 2}, "rgb8")},
    "jpeg2000": {"rgb8": ({}, "rgb8"), "gray12": ({}, "gray12"), "htj2k_rgba8": ({"htj2k": True}, "rgba8")},
}


@pytest.mark.parametrize("codec_id", LOSSLESS)
def test_golden_fixtures(codec_id: str) -> None:
    check_golden(codec_id, GOLDEN[codec_id])
