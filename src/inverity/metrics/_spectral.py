"""Per-radial-band spectral retention (globally and per window)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._blur import SingleThreadBlas
from ._prep import ContentWindow, ImageLike, _pair, luma


def _window_origins(n: int, window: int, stride: int) -> np.ndarray:
    if n <= window:
        return np.array([0])
    o = list(range(0, n - window + 1, stride))
    if o[-1] != n - window:
        o.append(n - window)
    return np.array(o)


#: radial frequency bands (cycles/pixel) for spectral retention; the last band holds the diagonal corners
DEFAULT_BANDS: tuple[tuple[float, float], ...] = (
    (1 / 32, 1 / 16), (1 / 16, 1 / 8), (1 / 8, 1 / 4), (1 / 4, 0.35), (0.35, 0.5), (0.5, 0.75))


@lru_cache(maxsize=32)
def _band_index(h: int, w: int, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """One-hot (h*(w//2+1), n_bands) float32 matrix of rfft2 bins, counting mirrored bins twice (Parseval)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(fy * fy + fx * fx)
    mult = np.full(fx.shape, 2.0)
    mult[0, 0] = 1.0
    if w % 2 == 0:
        mult[0, -1] = 1.0
    onehot = np.zeros((h, w // 2 + 1, len(bands)), np.float32)
    for i, (lo, hi) in enumerate(bands):
        onehot[:, :, i] = ((r >= lo) & (r < hi)) * mult
    return onehot.reshape(-1, len(bands))


@lru_cache(maxsize=32)
def _band_index2(h: int, w: int, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """:func:`_band_index` with every row repeated, matching a complex array viewed as (re, im) floats."""
    return np.repeat(_band_index(h, w, bands), 2, axis=0)


@lru_cache(maxsize=32)
def _hann2(h: int, w: int, taper: float) -> np.ndarray:
    from scipy.signal.windows import tukey

    return np.outer(tukey(h, taper), tukey(w, taper)).astype(np.float32)


def band_retention(a: ImageLike, b: ImageLike, *, bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS,
                   window: int | None = None, stride: int | None = None, max_value: float | None = None,
                   content: ContentWindow | str | None = None) -> dict[str, np.ndarray]:
    """Per-radial-band spectral retention of the luma of ``b`` against ``a``.

    In each band the reconstruction R is split into the part along the original O and the rest
    (R = g·O + N): ``kept`` = max(g, 0)² is the fraction of the band's energy that survives (a blurring codec
    drops high bands: kept → 0), ``invented`` = |N|²/|O|² is energy that was not there (ringing, hallucinated
    texture, moved structure). ``rms`` is the original band's RMS amplitude (0..1 scale), so callers can ignore
    bands with too little signal to judge. With ``window`` the same is computed per overlapping window
    (Hann-windowed, mean removed) and every array gets two leading axes (window row, column); without, once for
    the whole image (Tukey-windowed). Also returns ``rows``/``cols`` (window origins). ``content`` (a
    :class:`ContentWindow` or ``"auto"``) measures on the original's content window, so ``rms`` is a share of
    the range the content uses.

    Examples
    --------
    >>> rng = np.random.default_rng(0); a = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    >>> r = band_retention(a, a)
    >>> r["kept"].round(3).tolist(), r["invented"].round(3).tolist()
    ([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    """
    pa, pb, m = _pair(a, b, max_value, content)
    x, y = luma(pa, m), luma(pb, m)
    h, w = x.shape
    if window is None:
        win = _hann2(h, w, 0.2)
        xs, ys = (x - x.mean())[None], (y - x.mean())[None]
        rows, cols = np.array([0]), np.array([0])
        wh, ww = h, w
    else:
        stride = stride or max(1, window // 2)
        wh, ww = min(window, h), min(window, w)
        rows, cols = _window_origins(h, window, stride), _window_origins(w, window, stride)
        from numpy.lib.stride_tricks import sliding_window_view

        # index rows and columns together: indexing one after the other would copy every column offset
        ri, ci = rows[:, None], cols[None, :]
        xs = sliding_window_view(x, (wh, ww))[ri, ci].reshape(-1, wh, ww)
        ys = sliding_window_view(y, (wh, ww))[ri, ci].reshape(-1, wh, ww)
        mean = xs.mean(axis=(1, 2), keepdims=True)
        xs, ys = xs - mean, ys - mean
        win = _hann2(wh, ww, 1.0)
    from scipy import fft as sfft

    fo = sfft.rfft2(xs * win)          # float32 in, complex64 out: half the work of numpy.fft
    fr = sfft.rfft2(ys * win)
    # viewing complex64 as (re, im) float32 pairs: |F|² and Re(Fo·conj(Fr)) become plain products, and the
    # per-band sums one matrix product with the band indicator (each bin's row repeated for re and im)
    onehot = _band_index2(wh, ww, tuple(bands))
    n = fo.shape[0]
    fo_r = np.ascontiguousarray(fo, np.complex64).view(np.float32).reshape(n, -1)
    fr_r = np.ascontiguousarray(fr, np.complex64).view(np.float32).reshape(n, -1)
    with SingleThreadBlas():
        eo = (fo_r * fo_r) @ onehot
        er = (fr_r * fr_r) @ onehot
        cross = (fo_r * fr_r) @ onehot
    eo64, er64, cr64 = eo.astype(np.float64), er.astype(np.float64), cross.astype(np.float64)
    safe = np.maximum(eo64, 1e-30)
    gain = cr64 / safe
    kept = np.where(eo64 > 0, np.maximum(gain, 0.0) ** 2, 1.0)
    invented = np.where(eo64 > 0, np.maximum(er64 - gain * cr64, 0.0) / safe, 0.0)
    # rms amplitude of the band in the original (window energy normalised by the window's power)
    wpow = float(np.sum(win.astype(np.float64) ** 2))
    rms = np.sqrt(eo64 / (wpow * wh * ww))
    shape = (len(rows), len(cols), len(bands)) if window is not None else (len(bands),)
    return {"kept": kept.reshape(shape), "invented": invented.reshape(shape), "rms": rms.reshape(shape),
            "rows": rows, "cols": cols}
