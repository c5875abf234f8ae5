"""The small-window, JND-style check ``local_fine`` (inverity.verify_checks.LocalFine, metrics.fine_error_maps):
it catches what 16-px windows average away (a 1-px line shift on a smooth gradient, a planted edit on a 64×64 MR
slice) and passes good codecs (JPEG q95, JPEG XL d1) on photographs. No /work/shared needed."""
from __future__ import annotations

import dataclasses

import imagecodecs
import numpy as np
import pytest
from skimage import data as skd

from inverity import metrics as M
from inverity.bench import planted as P
from inverity.errors import PolicyError
from inverity.verify import Floors, verify
from inverity.verify_checks import local_fine_failed

#: the controlled floors without the small-window check: what the verifier was before it
WITHOUT = dataclasses.replace(Floors.controlled(), local_fine=None)


def _jpeg(a: np.ndarray, q: int, sub: str = "444") -> np.ndarray:
    out = np.asarray(imagecodecs.jpeg8_decode(imagecodecs.jpeg8_encode(a, level=q, subsampling=sub)))
    return out.reshape(a.shape)


def _jxl(a: np.ndarray, d: float) -> np.ndarray:
    return np.asarray(imagecodecs.jpegxl_decode(imagecodecs.jpegxl_encode(a, distance=d))).reshape(a.shape)


def _gradient_with_line() -> np.ndarray:
    """A smooth ramp (1 level/px across, 0.3 down) with one bright, thin vertical line (60 levels, σ 1 px)."""
    y, x = np.mgrid[0:96, 0:128].astype(np.float64)
    img = 20 + x + 0.3 * y + 60 * np.exp(-((x - 64) ** 2) / 2)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def test_catches_a_one_pixel_line_shift_on_a_smooth_gradient() -> None:
    a = _gradient_with_line()
    b = a.copy()
    b[40:44, 56:72] = a[40:44, 55:71]           # four rows of the line moved right by one pixel
    c = _jpeg(b, 95)                            # and then a good codec on top
    v = verify(a, c, Floors.controlled())
    assert not v.passed and v.failures == ["local_fine"], v.reasons[:3]
    assert v.reasons[0].startswith("window at (y=") and "pixels off by" in v.reasons[0]
    box = next(w for w in v.checks["worst_windows"] if w["check"] == "local_fine")
    assert 32 <= box["y"] <= 44 and 52 <= box["x"] <= 68 and box["w"] == 8   # it points at the moved stretch
    # the 16-px checks alone let it through: the new check is what catches it
    assert verify(a, c, WITHOUT).passed
    # the same ramp and line, only compressed, passes
    assert verify(a, _jpeg(a, 95), Floors.controlled()).passed


@pytest.mark.parametrize("name, edit, seed", [
    ("MR_small", "line_shift", 3),      # an 8×8 window shifted by 1 px, then JPEG XL d0.53
    ("MR_small", "patch_replace", 5),   # an 8×8 patch replaced, then JPEG q96
    ("CT_small", "line_shift", 3),      # a 13×13 window shifted by 3 px, then JPEG q93
])
def test_catches_planted_edits_on_small_medical_slices(name: str, edit: str, seed: int) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    img = P._to8(pydicom.dcmread(str(get_testdata_file(f"{name}.dcm"))).pixel_array)
    case = P.make_case(img, edit, seed, kind="medical", name=name)
    assert case.psnr_edit >= 35.0                # invisible to a global average
    v = verify(case.original, case.candidate, Floors.controlled())
    assert not v.passed and "local_fine" in v.failures, (case.description, v.reasons[:3])
    assert verify(case.original, case.candidate, WITHOUT).passed, case.description


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "chelsea", "rocket"])
def test_passes_jpeg_q95_and_jxl_d1_of_photos(name: str) -> None:
    img = getattr(skd, name)()
    for cand in (_jpeg(img, 95), _jpeg(img, 95, "420") if img.ndim == 3 else _jpeg(img, 96), _jxl(img, 1.0)):
        v = verify(img, cand, Floors.controlled())
        assert "local_fine" not in v.failures, v.reasons[:3]
        assert v.checks["local_fine"] > -np.inf and "local_fine_visible" in v.checks


def test_a_few_ringing_pixels_are_not_enough() -> None:
    f = Floors.controlled()
    n = f.local_fine_pixels
    a = np.full((32, 32), 100, np.uint8)
    b = a.copy()
    b[12, 12:12 + n - 1] = 160                   # n - 1 pixels far above the visible step: codec ringing
    m = M.fine_error_maps(a, b, 8, visible=f.local_fine_visible)
    assert int(m["visible"].max()) == n - 1 and m["snr"].min() < f.local_fine  # below the floor, but too few
    assert not local_fine_failed(m["snr"], m["visible"], f.local_fine, n).any()
    assert "local_fine" not in verify(a, b, f).failures
    b[13, 12] = 160                              # one more next to them: a visible structure
    m = M.fine_error_maps(a, b, 8, visible=f.local_fine_visible)
    assert local_fine_failed(m["snr"], m["visible"], f.local_fine, n).any()
    assert "local_fine" in verify(a, b, f).failures


def test_fine_error_maps_grid_and_counts() -> None:
    a = np.zeros((16, 24), np.uint8)
    b = a.copy()
    b[0:2, 0:3] = 51                             # 6 pixels off by 0.2 of the range
    m = M.fine_error_maps(a, b, 8, visible=0.1)
    assert m["snr"].shape == m["visible"].shape == (3, 5)
    assert m["rows"].tolist() == [0, 4, 8] and m["cols"].tolist() == [0, 4, 8, 12, 16]
    assert m["visible"][0, 0] == 6 and m["visible"][2, 4] == 0
    assert np.isinf(m["snr"][2, 4])              # no error at all: infinitely good


def test_floors_fine_parameters() -> None:
    f = Floors.controlled()
    assert "local_fine" in f.checked() and f.local_fine is not None
    assert "local_fine" not in Floors.delivery().checked()
    assert Floors.from_dict({"local_fine": 9, "local_fine_pixels": 3}).local_fine_pixels == 3
    with pytest.raises(PolicyError, match="local_fine_pixels"):
        Floors(local_fine=9.0, local_fine_pixels=0)
    with pytest.raises(PolicyError, match="local_fine_visible"):
        Floors(local_fine=9.0, local_fine_visible=1.5)
    with pytest.raises(PolicyError, match="integer"):
        Floors.from_dict({"local_fine_pixels": 2.5})
    # a check of the controlled floors only: delivery neither runs nor records it
    a = _gradient_with_line()
    v = verify(a, _jpeg(a, 90), Floors.delivery())
    assert "local_fine" not in v.checks          # delivery does not run it


def test_dark_channel_noise_in_a_saturated_colour_is_not_a_local_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A codec's error in G and B of a deep red (a few levels near 0) moves BT.601 luma by several levels but the
    light by almost nothing: the local checks judge the smaller of the luma and the constant-luminance error."""
    from inverity.verify_checks import Context

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    a = np.zeros((64, 64, 3), np.uint8)
    a[..., 0] = 190 + (x // 16) * 4                    # a deep red with a little structure
    a[..., 1:] = 2
    b = a.copy()
    b[..., 1:] += rng.integers(0, 15, (64, 64, 2)).astype(np.uint8)
    f = Floors.controlled()
    la, lb = M.luma(a), M.luma(b)
    assert float(np.abs(lb - la).mean()) * 255 > 3      # luma moves by several levels
    v = verify(a, b, f)
    assert not {"local_snr", "local_structure", "local_fine"} & set(v.failures), v.reasons[:3]
    monkeypatch.setattr(Context, "local_luma", property(lambda self: self.luma))
    assert {"local_snr", "local_fine"} & set(verify(a, b, f).failures)   # on plain luma it would fail
    # a real change of that red's lightness (a block moved) still fails
    monkeypatch.undo()
    c = a.copy()
    c[24:40, 24:40, 0] = np.roll(a[24:40, 24:40, 0], 5, axis=1) - 40
    assert {"local_snr", "local_fine"} & set(verify(a, c, f).failures)


def test_luminance_is_identity_on_grey_and_agrees_across_dtypes() -> None:
    grey = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert np.abs(255 * M.luminance(grey)[0] - np.arange(256)).max() < 0.05
    assert np.array_equal(M.luminance(grey[:, :, :1]), M.luma(grey[:, :, :1]))       # one channel: its value
    rng = np.random.default_rng(2)
    a8 = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    a16 = a8.astype(np.uint16) * 257                                                # the same colours, 16-bit
    af = a8.astype(np.float32) / 255                                                # and as floats
    l8 = M.luminance(a8)
    assert np.abs(M.luminance(a16) - l8).max() < 1e-3 and np.abs(M.luminance(af, 1.0) - l8).max() < 1e-3
    # pure red: constant luminance is the sRGB encoding of 0.2126 (≈ 0.50), its BT.601 luma 0.299
    red = np.array([[[255, 0, 0]]], np.uint8)
    assert float(M.luminance(red)[0, 0]) == pytest.approx(0.4985, abs=2e-3) and float(M.luma(red)[0, 0]) < 0.3
