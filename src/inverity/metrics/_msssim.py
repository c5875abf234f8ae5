"""Multi-scale SSIM on luma."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._blur import _gauss1d
from ._prep import ContentWindow, ImageLike, _pair, luma


def ms_ssim(a: ImageLike, b: ImageLike, *, max_value: float | None = None,
            window: ContentWindow | str | None = None) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) on luma: 5 scales, 11-tap Gaussian σ=1.5.

    Standard constants K1=0.01, K2=0.03 and scale weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); the
    contrast-structure terms are clipped at 0 (as pytorch-msssim does) so the product stays real. Images too
    small for five scales (shorter side < 176 px) use as many scales as fit, with the weights renormalised.
    ``window`` (a :class:`ContentWindow` or ``"auto"``) judges both images on the original's content window.

    Examples
    --------
    >>> x = (np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)
    >>> ms_ssim(x, x)
    1.0
    """
    from scipy.ndimage import correlate1d

    pa, pb, m = _pair(a, b, max_value, window)
    x, y = luma(pa, m).astype(np.float64), luma(pb, m).astype(np.float64)
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    n = 5
    while n > 1 and min(x.shape) < 11 * 2 ** (n - 1):
        n -= 1
    if min(x.shape) < 11:
        raise InputError(f"image too small for MS-SSIM: {x.shape} (needs at least 11×11)")
    w = weights[:n] / weights[:n].sum()
    k = _gauss1d(1.5, 5).astype(np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def filt(z: np.ndarray) -> np.ndarray:  # 'valid' Gaussian window, as in the reference implementation
        z = correlate1d(correlate1d(z, k, axis=0), k, axis=1)
        return z[5:-5, 5:-5]

    result = 1.0
    for s in range(n):
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
        cs = float(np.mean((2 * sxy + c2) / (sxx + syy + c2)))
        if s == n - 1:
            lum = float(np.mean((2 * mx * my + c1) / (mx * mx + my * my + c1)))
            result *= max(lum, 0.0) ** w[s] * max(cs, 0.0) ** w[s]
        else:
            result *= max(cs, 0.0) ** w[s]
            hh, ww = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            x = x[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2).mean(axis=(1, 3))
            y = y[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2).mean(axis=(1, 3))
    return float(min(result, 1.0))
