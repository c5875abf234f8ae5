"""Content analysis: kinds on package-shipped and synthesised images, flags, the OOD gate, robustness, the CLI.

The synthesised line art and UI below are drawn here, differently from the generators in scripts/fit_kind.py
(a floor plan and a settings dialog), so the kind classifier is tested on content it was not fitted on.
Timing is not asserted (benchmarks/analyse.py measures it).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from inverity.analyse import FEATURE_NAMES, KINDS, analyse, features, kind_model_path, ood_stats_file
from inverity.image import Image


def _font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def floor_plan() -> np.ndarray:
    """Architectural line art: walls, door swings, room labels, a dimension chain."""
    from PIL import Image as P, ImageDraw

    im = P.new("L", (700, 520), 255)
    d = ImageDraw.Draw(im)
    d.rectangle([40, 40, 660, 470], outline=0, width=6)
    d.line([300, 40, 300, 300], fill=0, width=4)
    d.line([40, 300, 520, 300], fill=0, width=4)
    d.line([520, 300, 520, 470], fill=0, width=4)
    for x0, y0 in ((300, 160), (420, 300), (150, 300)):
        d.arc([x0 - 50, y0 - 50, x0 + 50, y0 + 50], 0, 90, fill=0, width=1)
        d.line([x0, y0, x0 + 50, y0], fill=0, width=2)
    for (x, y), label in (((120, 150), "LIVING 24 m2"), ((420, 150), "KITCHEN"), ((200, 380), "BEDROOM"),
                          ((560, 380), "BATH")):
        d.text((x, y), label, fill=0, font=_font(16))
    d.line([40, 495, 660, 495], fill=0, width=1)
    for x in (40, 300, 520, 660):
        d.line([x, 488, x, 502], fill=0, width=1)
    d.text((150, 500), "5.20", fill=0, font=_font(12))
    d.text((390, 500), "4.40", fill=0, font=_font(12))
    return np.asarray(im)[:, :, None]


def settings_dialog() -> np.ndarray:
    """A UI screenshot: window chrome, tabs, checkboxes with labels, a slider, buttons."""
    from PIL import Image as P, ImageDraw

    im = P.new("RGB", (800, 560), (236, 238, 241))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 800, 32], fill=(52, 58, 70))
    d.text((12, 8), "Preferences - Example App", fill=(255, 255, 255), font=_font(14))
    for i, tab in enumerate(("General", "Display", "Network", "Advanced")):
        fill = (255, 255, 255) if i == 1 else (214, 218, 224)
        d.rectangle([16 + i * 120, 44, 130 + i * 120, 72], fill=fill, outline=(170, 175, 185))
        d.text((30 + i * 120, 50), tab, fill=(30, 30, 30), font=_font(14))
    d.rectangle([16, 72, 784, 500], fill=(255, 255, 255), outline=(170, 175, 185))
    for j, label in enumerate(("Show line numbers", "Wrap long lines", "Highlight current row", "Use dark theme",
                               "Smooth scrolling", "Show minimap", "Render whitespace")):
        y = 92 + j * 44
        d.rectangle([36, y, 54, y + 18], outline=(90, 90, 90), fill=(66, 133, 244) if j % 2 == 0 else None)
        d.text((66, y), label, fill=(20, 20, 20), font=_font(15))
    d.line([420, 130, 740, 130], fill=(180, 180, 180), width=4)
    d.ellipse([560, 120, 580, 140], fill=(66, 133, 244))
    d.text((420, 96), "Font size: 14 pt", fill=(20, 20, 20), font=_font(15))
    for i, (label, fill) in enumerate((("Cancel", (225, 228, 232)), ("Apply", (66, 133, 244)))):
        x = 560 + i * 110
        d.rectangle([x, 512, x + 96, 546], fill=fill, outline=(140, 140, 150))
        d.text((x + 24, 520), label, fill=(0, 0, 0) if i == 0 else (255, 255, 255), font=_font(15))
    return np.asarray(im)


needs_model = pytest.mark.skipif(not kind_model_path().is_file(), reason="no kind model shipped")
needs_ood = pytest.mark.skipif(not ood_stats_file().is_file(), reason="no OOD statistics for the default model")


@needs_model
def test_astronaut_is_a_photo() -> None:
    from skimage import data

    p = analyse(Image(data.astronaut()))
    assert p.kind == "photo" and p.kind_source == "classifier", p.kind_probabilities
    assert "grayscale" not in p.flags and "alpha" not in p.flags
    assert set(p.kind_probabilities) == set(KINDS) and math.isclose(sum(p.kind_probabilities.values()), 1, abs_tol=1e-3)


@needs_model
@pytest.mark.parametrize("name", ["page", "text"])
def test_printed_text_is_screen_or_drawing(name: str) -> None:
    from skimage import data

    p = analyse(Image(getattr(data, name)()))
    assert p.kind in ("screen", "drawing"), (p.kind, p.kind_probabilities)
    assert "grayscale" in p.flags


@needs_model
def test_synthesised_line_art_is_a_drawing() -> None:
    p = analyse(Image(floor_plan()))
    assert p.kind == "drawing", p.kind_probabilities
    assert "line_art" in p.flags


@needs_model
def test_synthesised_ui_is_a_screen() -> None:
    p = analyse(Image(settings_dialog()))
    assert p.kind == "screen", p.kind_probabilities


def test_ct_small_dicom_is_medical_from_metadata() -> None:
    import pydicom.data

    from inverity.image import load

    path = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
    img = load(path)
    p = analyse(img)
    assert p.kind == "medical" and p.kind_source == "metadata" and p.kind_confidence == 1.0
    assert p.modality == "CT" and "dicom" in p.flags and "dicom" in p.metadata_keys
    assert any("DICOM" in r for r in p.reasons)


def test_sixteen_bit_gray_is_medical_or_scientific() -> None:
    rng = np.random.default_rng(0)
    px = (rng.normal(2000, 300, (96, 128)).clip(0, 4095)).astype(np.uint16)[:, :, None]
    p = analyse(Image(px, bit_depth=12))
    assert (p.kind, p.kind_source) == ("medical", "metadata")
    assert {"high_bit_depth", "grayscale"} <= set(p.flags) and p.bit_depth == 12


def test_flags_alpha_and_gray() -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 255
    p = analyse(Image(rgba))
    assert {"alpha", "alpha_opaque"} <= set(p.flags)
    rgba[0, 0, 3] = 0
    assert "alpha_opaque" not in analyse(Image(rgba)).flags
    assert "grayscale" in analyse(Image(np.full((20, 20, 2), 128, np.uint8))).flags


def test_noisy_flag_follows_the_noise_estimate() -> None:
    rng = np.random.default_rng(1)
    flat = np.full((256, 256, 3), 128.0)
    # the same noise in every channel, so luma noise is σ = 12 too (independent channels would average down)
    noisy = Image(np.clip(flat + rng.normal(0, 12, (256, 256, 1)), 0, 255).astype(np.uint8))
    clean = Image(flat.astype(np.uint8))
    fn, fc = features(noisy), features(clean)
    assert 10 < fn["noise_sigma"] < 14 and fc["noise_sigma"] == 0.0
    assert "noisy" in analyse(noisy).flags and "noisy" not in analyse(clean).flags


@pytest.mark.parametrize("shape, dtype", [
    ((1, 1, 3), np.uint8), ((3, 5, 1), np.uint8), ((7, 2000, 3), np.uint8), ((2000, 9, 1), np.uint16),
    ((64, 64, 2), np.uint8), ((33, 65, 4), np.uint16), ((300, 200, 3), np.uint8),
])
def test_features_are_finite_for_odd_shapes_and_depths(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(2)
    px = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    f = features(Image(px))
    assert list(f) == list(FEATURE_NAMES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in f.values())
    p = analyse(Image(px))
    assert p.kind in KINDS and 0.0 <= p.kind_confidence <= 1.0


def test_sixteen_bit_features_match_the_eight_bit_rendering() -> None:
    from skimage import data

    a8 = data.coffee()
    a12 = (a8.astype(np.int64) * 4095 // 255).astype(np.uint16)
    f8, f12 = features(Image(a8)), features(Image(a12, bit_depth=12))
    assert all(abs(f8[k] - f12[k]) < 1e-2 for k in FEATURE_NAMES), {k: (f8[k], f12[k]) for k in FEATURE_NAMES
                                                                      if abs(f8[k] - f12[k]) >= 1e-2}


def test_constant_image_features() -> None:
    f = features(Image(np.full((100, 150, 3), 77, np.uint8)))
    assert f["flat_frac"] == 1.0 and f["log_colours"] == 0.0 and f["edge_density"] == 0.0
    assert f["hist_entropy"] == 0.0 and f["top8_coverage"] == 1.0


def test_spectral_slope_separates_smooth_from_white_noise() -> None:
    rng = np.random.default_rng(3)
    white = Image(rng.integers(0, 256, (256, 256, 1), dtype=np.uint8))
    f = np.fft.fftfreq(256)
    r = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    r[0, 0] = 1
    pink = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(256, 256))) / r))   # power ∝ 1/f²
    pink = ((pink - pink.min()) / (pink.max() - pink.min()) * 255).astype(np.uint8)[:, :, None]
    sw, sp = features(white)["slope_native"], features(Image(pink))["slope_native"]
    assert abs(sw) < 0.5 and -2.6 < sp < -1.4, (sw, sp)


def test_profile_to_dict_is_json_safe_and_deterministic() -> None:
    from skimage import data

    img = Image(data.coffee())
    a, b = analyse(img).to_dict(), analyse(img).to_dict()
    a.pop("cost_ms"), b.pop("cost_ms")
    assert a == b
    again = json.loads(json.dumps(a, allow_nan=False))
    for key in ("kind", "kind_confidence", "ood_score", "ood_threshold", "in_distribution", "flags", "drivers",
                "features"):
        assert key in again


@needs_ood
def test_ood_gate_flags_synthetic_graphics_with_named_drivers() -> None:
    yy, xx = np.mgrid[0:256, 0:256]
    shapes = np.where((xx - 128) ** 2 + (yy - 128) ** 2 < 60 ** 2, 200, 40).astype(np.uint8)
    p = analyse(Image(np.repeat(shapes[:, :, None], 3, axis=2)))
    assert p.in_distribution is False and p.ood_score > p.ood_threshold
    assert len(p.drivers) == 3 and all(d["feature"] in FEATURE_NAMES and abs(d["z"]) > 0 for d in p.drivers)


@needs_ood
def test_ood_gate_passes_a_natural_photo() -> None:
    from skimage import data

    p = analyse(Image(data.coffee()))
    assert p.ood_threshold is not None and p.ood_score is not None
    assert p.in_distribution is True, (p.ood_score, p.ood_threshold, p.drivers)


def test_missing_statistics_and_model_degrade_to_unknown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import inverity.analyse as A

    monkeypatch.setattr(A, "kind_model_path", lambda: tmp_path / "none.json")
    p = analyse(Image(np.zeros((32, 32, 3), np.uint8)), model_name="no-such-model")
    assert p.kind_source == "fallback" and p.kind_confidence == 0.0
    assert p.in_distribution is None and p.ood_score is None and p.ood_model == "no-such-model"
    assert any("no OOD statistics" in r for r in p.reasons)


def test_kind_model_provenance_is_recorded() -> None:
    if not kind_model_path().is_file():
        pytest.skip("no kind model shipped")
    m = json.loads(kind_model_path().read_text())
    assert m["classes"] == list(KINDS) and set(m["features"]) <= set(FEATURE_NAMES)
    prov = m["provenance"]
    assert prov["cv"]["split"] == "by source image" and 0 < prov["cv"]["accuracy"] <= 1
    assert "shared/datasets/kodak" in prov["held_out_of_fitting"]


def test_cli_analyse_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image as P

    from inverity.cli import main

    f = tmp_path / "ui.png"
    P.fromarray(settings_dialog()).save(f)
    assert main(["analyse", str(f), "--json", "--policy", "delivery"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] in KINDS and d["input"] == str(f) and d["plan"]["candidates"]
    assert main(["analyse", str(f)]) == 0
    out = capsys.readouterr().out
    assert "kind" in out and "in distribution" in out
    assert main(["analyse", str(tmp_path / "missing.png")]) == 2
    assert "inverity: error:" in capsys.readouterr().err


def test_shared_ood_folders_and_train_photos(shared_datasets: Path) -> None:
    if not ood_stats_file().is_file():
        pytest.skip("no OOD statistics")
    from inverity.image import load

    synth = [analyse(load(p)) for p in sorted((shared_datasets / "ood" / "synthetic").glob("*.png"))]
    assert synth and all(p.in_distribution is False for p in synth)
    train = [analyse(load(p)) for p in sorted((shared_datasets / "train").iterdir())[:: 60]]
    assert sum(p.in_distribution is True for p in train) >= len(train) - 1


# -- gate v2: the learned model's own evidence, computed lazily ------------------------------------------------
def _stats_have_model_part() -> bool:
    try:
        from inverity.stages.learned import zoo

        return ood_stats_file().is_file() and "model_evidence" in json.loads(ood_stats_file().read_text()) \
            and bool(zoo.list_models())
    except Exception:  # noqa: BLE001 - no torch / no zoo: skip
        return False


needs_gate_v2 = pytest.mark.skipif(not _stats_have_model_part(), reason="no gate-v2 statistics or no learned model")


@needs_gate_v2
@pytest.mark.parametrize("make", [floor_plan, settings_dialog], ids=["line drawing", "screenshot"])
def test_gate_v2_judges_line_art_and_screens_out(make) -> None:  # type: ignore[no-untyped-def]
    p = analyse(Image(make()))
    assert p.ood_gate == "spectral" and p.evidence == {} and p.evidence_ms is None   # lazy: nothing yet
    assert p.learned_gate() is False
    assert p.ood_gate == "spectral+model" and p.in_distribution is False and p.ood_score > p.ood_threshold
    assert {"lat_bpp", "lat_vs_jpeg", "lat_vs_png"} <= set(p.evidence) and p.evidence_ms is not None
    assert any("model evidence" in r for r in p.reasons)


@needs_gate_v2
def test_gate_v2_judges_a_photo_in_and_caches() -> None:
    from skimage import data

    p = analyse(Image(data.coffee()))
    assert p.learned_gate() is True, (p.ood_score, p.ood_threshold, p.drivers)
    score = p.ood_score
    assert p.learned_gate() is True and p.ood_score == score          # computed once
    d = json.loads(json.dumps(p.to_dict()))
    assert d["ood_gate"] == "spectral+model" and -2.0 < d["evidence"]["lat_vs_jpeg"] < 0.0


@needs_gate_v2
def test_gate_v2_runs_only_where_the_learned_stage_is_a_candidate() -> None:
    from skimage import data

    from inverity.policy import get_policy
    from inverity.route import plan

    img = Image(data.chelsea())
    p = analyse(img)
    plan(p, get_policy("delivery"), img)
    assert p.ood_gate == "spectral" and p.evidence_ms is None          # delivery never pays for the model part
    plan(p, get_policy("controlled"), img)
    assert p.ood_gate == "spectral+model" and p.evidence


@needs_gate_v2
def test_gate_v2_refuses_to_judge_with_statistics_of_other_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage import data

    p = analyse(Image(data.coffee()))
    stale = dict(p._stats)
    stale["model_evidence"] = {**stale["model_evidence"], "weights_sha256": "0" * 64}
    p._stats = stale
    assert p.learned_gate() is None and p.in_distribution is None
    assert any("scripts/fit_ood.py" in r for r in p.reasons)


@needs_gate_v2
def test_gate_v2_statistics_match_the_installed_weights() -> None:
    from inverity.stages.learned import zoo

    stats = json.loads(ood_stats_file().read_text())
    info = zoo.model_info(stats["model"])
    assert stats["model_evidence"]["weights_sha256"] == info.sha256, \
        "OOD statistics are stale for the installed weights: run python scripts/fit_ood.py"
    assert stats["train"]["list_sha256"] == info.provenance.get("train_list_sha256", stats["train"]["list_sha256"])
