"""``inverity encode`` / ``decode`` / ``codecs``, run in-process."""
from __future__ import annotations

import doctest
import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from helpers import assert_bit_exact, psnr, synthetic

import inverity.cli._codecs as cli_codecs
from inverity.cli import main
from inverity.formats import sniff
from inverity.image import Image, load

ALL_STAGES = {"jpeg", "webp", "avif", "jxl", "png", "webp-lossless", "jxl-lossless", "jpegls", "jpeg2000"}


def _write_png(path: Path, image: Image) -> Path:
    px = image.pixels[..., 0] if image.channels == 1 else image.pixels
    path.write_bytes(imagecodecs.png_encode(px))
    return path


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inverity: error: "), err
    return lines[0]


@pytest.mark.parametrize(("codec", "opts", "kind"), [
    ("png", [], "gray16"),
    ("jxl-lossless", [], "rgba8"),
    ("jpegls", [], "gray16"),
    ("jpeg2000", ["--opt", "htj2k=true"], "rgb8"),
    ("webp-lossless", ["--opt", "method=6"], "rgb8"),
])
def test_lossless_encode_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: str, opts: list[str],
                                kind: str) -> None:
    image = synthetic(kind, 40, 56)
    src = _write_png(tmp_path / "in.png", image)
    enc = tmp_path / f"out.{codec}"
    assert main(["encode", str(src), "-o", str(enc), "--codec", codec, *opts]) == 0
    assert f"{codec} " in capsys.readouterr().out
    dec = tmp_path / "back.png"
    assert main(["decode", str(enc), "-o", str(dec)]) == 0
    out = capsys.readouterr().out
    assert str(dec) in out and ("16-bit" in out) == (image.dtype == np.uint16)
    assert_bit_exact(image, load(dec))


def test_lossy_encode_with_quality_and_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = synthetic("rgb8", 64, 64)
    src = _write_png(tmp_path / "in.png", image)
    sizes = {}
    for q in (30, 90):
        out = tmp_path / f"q{q}.jpg"
        assert main(["encode", str(src), "-o", str(out), "--codec", "jpeg", "-q", str(q),
                     "--opt", "subsampling=444"]) == 0
        assert sniff(out.read_bytes()) == "jpeg"
        sizes[q] = out.stat().st_size
    assert '"subsampling": "444"' in capsys.readouterr().out
    assert sizes[90] > sizes[30]
    assert main(["decode", str(tmp_path / "q90.jpg"), "-o", str(tmp_path / "d.png")]) == 0
    assert psnr(image, load(tmp_path / "d.png")) > 30


def test_decode_detects_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = synthetic("rgba8")
    src = _write_png(tmp_path / "in.png", image)
    webp = tmp_path / "really.webp"
    assert main(["encode", str(src), "-o", str(webp), "--codec", "webp-lossless"]) == 0
    misnamed = webp.rename(tmp_path / "really-webp.png")     # encode refuses a .png name for WebP bytes
    assert main(["decode", str(misnamed), "-o", str(tmp_path / "d.png")]) == 0
    assert "(webp)" in capsys.readouterr().out
    assert_bit_exact(image, load(tmp_path / "d.png"))


def test_decode_dicom(tmp_path: Path) -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    ct = Path(pydicom_data.get_testdata_file("CT_small.dcm"))
    assert main(["decode", str(ct), "-o", str(tmp_path / "ct.png")]) == 0
    assert load(tmp_path / "ct.png").dtype == np.uint16


@pytest.mark.parametrize(("argv", "needle"), [
    (["encode", "{txt}", "-o", "{out}", "--codec", "png"], "not.png"),
    (["encode", "{missing}", "-o", "{out}", "--codec", "png"], "no such file"),
    (["encode", "{png}", "-o", "{out}", "--codec", "no-such"], "unknown codec 'no-such'; available: avif"),
    (["encode", "{png}", "-o", "{out}", "--codec", "png", "-q", "50"], "png is lossless and takes no quality"),
    (["encode", "{png}", "-o", "{out}", "--codec", "jpeg", "--opt", "subsampling=411"], "subsampling='411'"),
    (["encode", "{png}", "-o", "{out}", "--codec", "jpeg", "--opt", "speed=3"], "unknown option"),
    (["encode", "{png}", "-o", "{out}", "--codec", "jpeg", "--opt", "oops"], "--opt expects key=value"),
    (["encode", "{png16}", "-o", "{out}", "--codec", "jpeg"], "jpeg cannot encode 16-bit images"),
    (["decode", "{txt}", "-o", "{out}"], "not.png: not a recognised image format"),
    (["decode", "{trunc}", "-o", "{out}"], "trunc.jls: truncated JPEG-LS data"),
    (["decode", "{inv}", "-o", "{out}"], "x.inv"),
])
def test_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                     needle: str) -> None:
    paths = {
        "txt": tmp_path / "not.png", "missing": tmp_path / "missing.png", "out": tmp_path / "o" / "out.bin",
        "png": _write_png(tmp_path / "ok.png", synthetic("rgb8")),
        "png16": _write_png(tmp_path / "deep.png", synthetic("gray16")),
        "trunc": tmp_path / "trunc.jls", "inv": tmp_path / "x.inv",
    }
    paths["txt"].write_text("hello, not an image\n")
    from inverity.stages.base import get_stage

    paths["trunc"].write_bytes(get_stage("jpegls").encode(synthetic("rgb8"))[:60])
    paths["inv"].write_bytes(b"INV1" + bytes(40))
    rc = main([a.format(**paths) for a in argv])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and needle in line
    assert not paths["out"].exists()


def test_codecs_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codecs"]) == 0
    table = capsys.readouterr().out
    for codec_id in ALL_STAGES:
        assert codec_id in table
    assert "libjpeg_turbo" in table and "learned models" in table
    assert main(["codecs", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    stages = {s["codec_id"]: s for s in info["stages"]}
    assert ALL_STAGES <= set(stages)
    assert stages["jpegls"]["near_lossless"] and stages["png"]["bit_depths"] == [8, 16]
    assert stages["jpeg"]["quality"] == {"range": [0, 100], "default": 85}
    assert stages["png"]["quality"] is None and stages["jpeg2000"]["options"] == {"htj2k": False}
    for s in stages.values():
        assert s["library"] and "n/a" not in s["library"]
    assert isinstance(info["models"], list)
    for model in info["models"]:
        assert model["name"] and model["sha256"] and model["qualities"]


def test_doctests() -> None:
    result = doctest.testmod(cli_codecs)
    assert result.attempted >= 4 and result.failed == 0
