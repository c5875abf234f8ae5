"""inverity.bench.spectral: error spectra, radial profiles and band tables on synthetic errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inverity.bench.spectral import BANDS, SpectrumAccumulator, band_of, error_spectrum, radial_frequencies

RNG = np.random.default_rng(0)
BASE = np.full((96, 128, 3), 128.0)


def _highpass_noise(shape: tuple[int, ...], amp: float = 6.0, cut: float = 0.3) -> np.ndarray:
    """White noise with every frequency below ``cut`` cycles/pixel removed (an ideal high-pass)."""
    n = RNG.normal(0, 1, shape)
    f = np.fft.fft2(n, axes=(0, 1))
    r = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    return amp * np.real(np.fft.ifft2(f * (r >= cut)[:, :, None], axes=(0, 1)))


def _lowpass_noise(shape: tuple[int, ...], amp: float = 40.0) -> np.ndarray:
    return amp * ndimage.gaussian_filter(RNG.normal(0, 1, shape), (8, 8, 0), mode="wrap")


def test_high_frequency_error_lands_in_the_high_band() -> None:
    sp = error_spectrum(BASE, BASE + _highpass_noise(BASE.shape))
    share = sp.band_share()
    assert share["high"] > 0.999 and share["low"] < 1e-6


def test_low_frequency_error_lands_in_the_low_band() -> None:
    share = error_spectrum(BASE, BASE + _lowpass_noise(BASE.shape)).band_share()
    assert share["low"] > 0.95


def test_white_noise_follows_the_band_areas() -> None:
    share = error_spectrum(BASE, BASE + RNG.normal(0, 5, BASE.shape)).band_share()
    # areas of the bands in the unit frequency square: π/64, 3π/64, 1 − π/16
    assert share["low"] == pytest.approx(np.pi / 64, abs=0.02)
    assert share["mid"] == pytest.approx(3 * np.pi / 64, abs=0.03)
    assert share["high"] == pytest.approx(1 - np.pi / 16, abs=0.03)


def test_band_rms_adds_up_to_the_mse() -> None:
    err = RNG.normal(0, 4, BASE.shape) + _lowpass_noise(BASE.shape, 10)
    sp = error_spectrum(BASE, BASE + err)
    rms = sp.band_rms()
    # Parseval: the band RMS values are an exact split of the mean squared error
    assert sum(v ** 2 for v in rms.values()) == pytest.approx(float(np.mean(err ** 2)), rel=1e-9)


def test_maps_and_profiles_shapes_and_orientation() -> None:
    h, w = 64, 64
    yy, xx = np.mgrid[0:h, 0:w]
    # a vertical-stripe error at 0.25 cycles/pixel along x: energy at fx = ±0.25, fy = 0
    err = 5 * np.cos(2 * np.pi * 0.25 * xx)[:, :, None]
    sp = error_spectrum(np.zeros((h, w, 1)), err, grid=32)
    assert sp.map2d is not None and sp.map2d.shape == (32, 32)
    peak = np.unravel_index(np.nanargmax(sp.map2d), sp.map2d.shape)
    assert peak[0] == 16 and peak[1] in (8, 24)          # row: fy = 0 (centre); column: fx = ±0.25
    freqs = radial_frequencies(len(sp.radial_power))
    assert abs(freqs[np.nanargmax(sp.radial_power)] - 0.25) < 0.02
    assert band_of(0.25) == "high" and band_of(0.2499) == "mid" and band_of(0.0) == "low"
    assert [b[0] for b in BANDS] == ["low", "mid", "high"]


def test_exact_reconstruction_and_bad_shapes() -> None:
    sp = error_spectrum(BASE, BASE)
    assert sp.energy == 0 and sp.band_share() == {"low": 0.0, "mid": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="shapes differ"):
        error_spectrum(BASE, BASE[:10])


def test_accumulator_averages_images_of_different_sizes(tmp_path: Path) -> None:
    acc = SpectrumAccumulator(grid=32)
    for shape in ((96, 128, 3), (37, 100, 3), (128, 64, 1)):
        base = np.full(shape, 100.0)
        acc.add("hp", base, base + _highpass_noise(shape))
        acc.add("lp", base, base + _lowpass_noise(shape), keep_map=False)
    assert acc.count("hp") == 3 and acc.mean_map("hp").shape == (32, 32)
    assert not acc.has_map("lp")
    with pytest.raises(KeyError):
        acc.mean_map("lp")
    assert acc.band_share("hp")["high"] > 0.999 and acc.band_share("lp")["low"] > 0.9
    assert sum(acc.band_share("hp").values()) == pytest.approx(1.0)
    rad = acc.radial_rms("hp")
    # the high-pass error grows with frequency
    assert np.nanmean(rad[-10:]) > 5 * np.nanmean(rad[:3])

    from inverity.bench.plots import plot_radial, plot_spectrum_maps

    p1 = plot_spectrum_maps({"hp": acc.mean_map("hp")}, tmp_path / "maps.png", title="t")
    p2 = plot_radial({"hp": rad, "lp": acc.radial_rms("lp")}, radial_frequencies(), tmp_path / "radial.png")
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
