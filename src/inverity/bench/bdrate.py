"""Bjøntegaard delta rate (BD-rate) and delta PSNR (BD-PSNR) between two rate-distortion curves.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", ITU-T VCEG-M33 (2001): fit each
curve with a cubic polynomial — log-rate as a function of PSNR for BD-rate, PSNR as a function of log-rate for
BD-PSNR — integrate both fits over the range where the curves overlap, and compare the averages. BD-rate is
the average bitrate change (percent) of the *test* codec against the *anchor* at equal quality: −30 means
"30% fewer bits for the same PSNR". ``method="pchip"`` uses the monotone piecewise-cubic interpolation of the
later VCEG-AL22 / JVET practice instead of a global cubic fit (more robust for curves with many points).

Any distortion that grows with quality works in place of PSNR (e.g. SSIMULACRA2, or MS-SSIM in dB).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["bd_rate", "bd_psnr"]


def _prepare(rate: Sequence[float], dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    if r.shape != d.shape or r.ndim != 1:
        raise ValueError("rate and distortion must be 1-D sequences of equal length")
    ok = np.isfinite(r) & np.isfinite(d) & (r > 0)
    r, d = r[ok], d[ok]
    if len(r) < 4:
        raise ValueError(f"need at least 4 finite RD points with positive rate, got {len(r)}")
    return np.log(r), d


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """∫_lo^hi f, where f fits y(x) (cubic polynomial or PCHIP)."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if method == "cubic":
        p = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        # PCHIP needs strictly increasing x: average duplicates
        ux, inv = np.unique(x, return_inverse=True)
        uy = np.bincount(inv, weights=y) / np.bincount(inv)
        if len(ux) < 2:
            raise ValueError("need at least 2 distinct points for pchip")
        return float(PchipInterpolator(ux, uy).integrate(lo, hi))
    raise ValueError(f"unknown method {method!r}; use 'cubic' or 'pchip'")


def bd_rate(anchor_rate: Sequence[float], anchor_psnr: Sequence[float], test_rate: Sequence[float],
            test_psnr: Sequence[float], *, method: str = "cubic") -> float:
    """Average rate difference (percent) of *test* against *anchor* at equal PSNR (negative = test saves bits).

    Parameters
    ----------
    anchor_rate, anchor_psnr
        The anchor's RD points (rate in any unit > 0, e.g. bpp; PSNR in dB), at least 4.
    test_rate, test_psnr
        The test codec's RD points, same units.
    method
        ``"cubic"`` (VCEG-M33) or ``"pchip"``.

    Raises
    ------
    ValueError
        Fewer than 4 usable points, or PSNR ranges that do not overlap.

    Examples
    --------
    A codec that needs exactly half the bits at every quality:

    >>> psnr = [30, 32, 34, 36, 38]
    >>> rate = [0.2, 0.35, 0.6, 1.0, 1.6]
    >>> round(bd_rate(rate, psnr, [r / 2 for r in rate], psnr), 6)
    -50.0
    """
    lr_a, d_a = _prepare(anchor_rate, anchor_psnr)
    lr_t, d_t = _prepare(test_rate, test_psnr)
    lo, hi = max(d_a.min(), d_t.min()), min(d_a.max(), d_t.max())
    if not hi > lo:
        raise ValueError(f"PSNR ranges do not overlap ({d_a.min():.2f}–{d_a.max():.2f} vs "
                         f"{d_t.min():.2f}–{d_t.max():.2f})")
    avg_a = _integral(d_a, lr_a, lo, hi, method) / (hi - lo)
    avg_t = _integral(d_t, lr_t, lo, hi, method) / (hi - lo)
    return float((np.exp(avg_t - avg_a) - 1.0) * 100.0)


def bd_psnr(anchor_rate: Sequence[float], anchor_psnr: Sequence[float], test_rate: Sequence[float],
            test_psnr: Sequence[float], *, method: str = "cubic") -> float:
    """Average PSNR difference (dB) of *test* over *anchor* at equal rate (positive = test is better).

    Examples
    --------
    >>> rate = [0.2, 0.35, 0.6, 1.0, 1.6]
    >>> psnr = [30, 32, 34, 36, 38]
    >>> round(bd_psnr(rate, psnr, rate, [p + 1.5 for p in psnr]), 6)
    1.5
    """
    lr_a, d_a = _prepare(anchor_rate, anchor_psnr)
    lr_t, d_t = _prepare(test_rate, test_psnr)
    lo, hi = max(lr_a.min(), lr_t.min()), min(lr_a.max(), lr_t.max())
    if not hi > lo:
        raise ValueError("rate ranges do not overlap")
    avg_a = _integral(lr_a, d_a, lo, hi, method) / (hi - lo)
    avg_t = _integral(lr_t, d_t, lo, hi, method) / (hi - lo)
    return float(avg_t - avg_a)
