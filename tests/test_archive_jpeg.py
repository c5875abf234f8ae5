"""Archive never grows an asset: keep the original, transcode JPEG losslessly to JPEG XL (byte-exact restorable).

End to end on real files (skimage photos saved as JPEG / WebP), through :func:`inverity.pipeline.compress_one`
and the CLI, plus the two stages of :mod:`inverity.stages.source` on their own.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image as PILImage

from helpers import assert_config_round_trip
from inverity.cli import main
from inverity.errors import UnsupportedInputError
from inverity.image import Image, load
from inverity.pipeline import compress, compress_one
from inverity.stages.base import get_stage, list_stages


def _jpeg(path: Path, quality: int = 90, gray: bool = False) -> bytes:
    from skimage import data

    px = data.camera() if gray else data.astronaut()[::2, ::2]
    buf = io.BytesIO()
    PILImage.fromarray(px).save(buf, "JPEG", quality=quality)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_archive_of_a_jpeg_is_a_smaller_jxl_that_restores_the_jpeg_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "in" / "astro.jpg"
    src.parent.mkdir()
    original = _jpeg(src)
    res = compress_one(src, "archive", outdir=tmp_path / "out")
    rec = res.record
    out = Path(res.output)
    assert out.suffix == ".jxl" and rec["stage"] == "jxl-jpeg"
    payload = out.read_bytes()
    assert len(payload) < 0.95 * len(original)                     # smaller (typically ~15-20 %)
    assert bytes(imagecodecs.jpegxl_decode_jpeg(payload)) == original         # the JPEG, byte for byte
    assert rec["restores_input"] is True
    # keeping the original competed, and the record gives both sizes
    stages = {a["stage"]: a for a in rec["attempts"]}
    # the original was encoded too; the search verifies it only if it could still win (it cannot: bigger)
    assert stages["original"]["bytes"] == len(original)
    assert stages["original"]["passed"] or "not verified" in stages["original"]["reasons"][0]
    sizes = next(r for r in rec["reasons"] if r.startswith(("smallest of", "jxl-jpeg ")) and "original" in r)
    assert "jxl-jpeg" in sizes and "original" in sizes and "at the same floors" in sizes
    assert not rec.get("grew")
    # the stage's decode gives the JPEG's own pixels
    assert np.array_equal(get_stage("jxl-jpeg").decode(payload).pixels, load(src).pixels)


def test_cli_archive_then_decode_the_transcoded_jxl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "cam.jpg"
    src.parent.mkdir()
    _jpeg(src, quality=88, gray=True)
    assert main(["compress", str(src.parent), "-o", str(tmp_path / "out"), "--policy", "archive", "--jobs", "1",
                 "--json"]) in (0, None)
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["stage"] == "jxl-jpeg" and rec["output_rel"] == "cam.jxl" and rec["bytes"] < rec["input_bytes"]
    assert main(["decode", str(tmp_path / "out" / "cam.jxl"), "-o", str(tmp_path / "cam.png")]) in (0, None)
    back, ref = load(tmp_path / "cam.png"), load(src)
    assert back.pixels.shape == ref.pixels.shape
    # a plain JPEG XL decoder renders the coefficients with its own IDCT: a few levels from libjpeg's pixels
    assert int(np.abs(back.pixels.astype(int) - ref.pixels).max()) <= 16


def test_archive_keeps_a_lossy_webp_as_is_rather_than_growing_it(tmp_path: Path) -> None:
    from skimage import data

    src = tmp_path / "photo.webp"
    PILImage.fromarray(data.chelsea()).save(src, "WEBP", quality=80)                 # lossy WebP
    res = compress_one(src, "archive", outdir=tmp_path / "out")
    rec, out = res.record, Path(res.output)
    assert rec["stage"] == "original" and out.suffix == ".webp"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == rec["input_sha256"]
    assert rec["bytes"] == rec["input_bytes"] and not rec.get("grew")
    assert any("the output is the input file itself (sha256" in r for r in rec["reasons"])
    # the bigger lossless alternatives were considered: tried, or skipped by their predicted size (named)
    considered = {a["stage"] for a in rec["attempts"]} | {r.split(" ")[0] for r in rec["reasons"]
                                                          if " not tried: its predicted size" in r}
    assert considered >= {"png", "jxl-lossless", "original"}


def test_an_archive_policy_without_the_original_says_why_it_grew(tmp_path: Path) -> None:
    src = tmp_path / "astro.jpg"
    _jpeg(src)
    rec = compress_one(src, "archive-png", outdir=tmp_path / "out").record
    assert rec["stage"] in ("png", "jpeg2000") and rec["bytes"] > rec["input_bytes"] and rec["grew"] is True
    assert any("is larger than the input" in r and "keeping the original is not among policy archive-png's stages"
               in r for r in rec["reasons"]), rec["reasons"]


def test_batch_archive_of_jpegs_never_grows(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for q in (85, 95):
        _jpeg(d / f"a{q}.jpg", quality=q)
    recs = compress([d], tmp_path / "out", policy="archive", jobs=1)
    assert [r["status"] for r in recs] == ["done", "done"]
    assert all(r["bytes"] <= r["input_bytes"] for r in recs)


# ---- the stages on their own ------------------------------------------------------------------------------------
def test_source_stages_are_registered_and_round_trip_their_config() -> None:
    reg = list_stages()
    assert {"original", "jxl-jpeg"} <= set(reg)
    assert reg["jxl-jpeg"].capabilities.sources == ("jpeg",) and reg["jxl-jpeg"].capabilities.lossless
    for cid in ("original", "jxl-jpeg"):
        assert_config_round_trip(get_stage(cid))


def test_source_stages_refuse_an_image_without_its_file_bytes(tmp_path: Path) -> None:
    img = Image(np.zeros((8, 8, 3), np.uint8))
    for cid in ("original", "jxl-jpeg"):
        with pytest.raises(UnsupportedInputError, match="needs the input file's bytes"):
            get_stage(cid).encode(img)
    png = bytes(imagecodecs.png_encode(np.zeros((8, 8, 3), np.uint8)))
    img = load(png)
    img.metadata["source_bytes"] = png
    with pytest.raises(UnsupportedInputError, match="transcodes JPEG files only"):
        get_stage("jxl-jpeg").encode(img)


def test_jxl_jpeg_stage_round_trip_is_byte_exact_for_gray_and_colour(tmp_path: Path) -> None:
    for gray in (False, True):
        data = _jpeg(tmp_path / "x.jpg", gray=gray)
        img = load(data)
        img.metadata["source_bytes"] = data
        stage = get_stage("jxl-jpeg")
        payload = stage.encode(img)
        assert stage.restore(payload) == data
        assert np.array_equal(stage.decode(payload).pixels, img.pixels)


def test_cli_encode_jxl_jpeg_then_decode_gives_the_jpegs_own_pixels(tmp_path: Path) -> None:
    """The CLI's encode hands the stage the file; load()/decode of the transcoded JPEG XL gives the pixels of the
    original JPEG exactly (libjxl's own rendering of the coefficients differs by up to ~11 levels)."""
    from skimage import data


    src = tmp_path / "a.jpg"
    PILImage.fromarray(data.astronaut()).save(src, quality=90)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.jxl"), "--codec", "jxl-jpeg"]) in (0, None)
    assert bytes(imagecodecs.jpegxl_decode_jpeg((tmp_path / "a.jxl").read_bytes())) == src.read_bytes()
    assert main(["decode", str(tmp_path / "a.jxl"), "-o", str(tmp_path / "b.png")]) in (0, None)
    assert np.array_equal(load(tmp_path / "b.png").pixels, load(src).pixels)
    assert np.array_equal(load(tmp_path / "a.jxl").pixels, load(src).pixels)
