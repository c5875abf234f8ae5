"""Global error metrics: MSE, PSNR, max abs error."""
from __future__ import annotations

import math

import numpy as np

from ._prep import ContentWindow, ImageLike, _pair


def mse(a: ImageLike, b: ImageLike, *, max_value: float | None = None,
        window: ContentWindow | str | None = None) -> float:
    """Mean squared error on the 0..1 scale (all channels); with ``window`` (a :class:`ContentWindow` or
    ``"auto"``) on the scale of the original's content window.

    Examples
    --------
    >>> round(mse(np.zeros((2, 2), np.uint8), np.full((2, 2), 51, np.uint8)), 6)
    0.04
    """
    pa, pb, m = _pair(a, b, max_value, window)
    d = pa.astype(np.float64) - pb.astype(np.float64)
    return float(np.mean(d * d)) / (m * m)


def psnr(a: ImageLike, b: ImageLike, *, max_value: float | None = None,
         window: ContentWindow | str | None = None) -> float:
    """Peak signal-to-noise ratio in dB relative to the original's max value; ``inf`` when identical.

    With ``window="auto"`` the peak is the span of the original's :func:`content_window` where one applies
    (a CT using 1850 of 65535 levels: 20·log10(65535/1850) ≈ 31 dB lower than relative to 65535).

    Examples
    --------
    >>> a = np.zeros((8, 8), np.uint8); b = a.copy(); b[0, 0] = 255
    >>> round(psnr(a, b), 2)
    18.06
    >>> psnr(a, a)
    inf
    >>> c = np.full((8, 8), 30000, np.uint16); c[4:] = 32000; d = c + np.uint16(20)
    >>> round(psnr(c, d), 1), round(psnr(c, d, window="auto"), 1)
    (70.3, 40.0)
    """
    return psnr_of_mse(mse(a, b, max_value=max_value, window=window))


def psnr_of_mse(e: float) -> float:
    """PSNR (dB) of a mean squared error on the 0..1 scale; ``inf`` for 0."""
    return math.inf if e == 0 else 10.0 * math.log10(1.0 / e)


def max_abs_error(a: ImageLike, b: ImageLike) -> float:
    """Largest absolute per-sample difference, in the images' own units (integer for integer images).

    Examples
    --------
    >>> max_abs_error(np.array([[1, 9]], np.uint8), np.array([[4, 2]], np.uint8))
    7
    """
    pa, pb, _ = _pair(a, b)
    if pa.size == 0:
        return 0
    if pa.dtype.kind in "ui" and pb.dtype.kind in "ui":
        wide = np.int16 if pa.dtype == pb.dtype == np.uint8 else np.int32
        return int(np.max(np.abs(pa.astype(wide) - pb.astype(wide))))
    return float(np.max(np.abs(pa.astype(np.float64) - pb.astype(np.float64))))
