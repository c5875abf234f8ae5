"""Image-quality metrics: global (PSNR, MS-SSIM, SSIMULACRA 2, max abs error) and local (tiles, bands, edges).

Every function takes an :class:`~inverity.image.Image` or an ``ndarray`` (H×W, H×W×C; uint8, uint16 or float in
0..1) and is bit-depth aware: errors are measured relative to the original's ``max_value`` (255 for 8-bit, 4095
for a 12-bit CT stored in uint16, 1.0 for floats), so a PSNR means the same thing at every depth.

High-bit-depth content often uses a small part of its nominal range: a CT slice stored with a signed offset sits
in ≈ 32900–34750 of 0–65535, a 12-bit sensor frame saved as 16-bit PNG in 0–4095. Relative to the nominal peak
such an image looks flat — an error of 900 levels reads as PSNR 46 dB, SSIMULACRA 2 sees a uniform gray, and no
edge or frequency band is strong enough to judge. :func:`content_window` finds the range the original actually
uses (robust percentiles, never of the reconstruction) and the metrics' ``window`` argument rescales *both*
images to it — the same idea as a radiologist's window/level. 8-bit content, floats and content spanning most of
its nominal range keep the nominal scale, exactly as before.

The local helpers exist for :mod:`inverity.verify`: a learned codec fails *locally and plausibly* (a lesion
smoothed away, a line moved by two pixels, a text block blurred), and averages hide that. So besides the global
numbers this module computes per-tile PSNR, a per-window signal-to-error ratio, per-radial-band spectral
retention (globally and per window) and edge maps.

``ssimulacra2`` is a re-implementation of Cloudinary's SSIMULACRA 2 (libjxl ``tools/ssimulacra2.cc``, April 2023
weights): linear RGB → XYB, 6 scales, an SSIM map and two edge-difference maps per channel, 1- and 4-norms, 108
published weights and the final polynomial. It is ~15-20× faster than the pure-NumPy PyPI package ``ssimulacra2``
because it blurs all maps of a scale in one batch of small matrix products (a separable 11-tap Gaussian, σ = 1.5,
zero outside the image like libjxl's recursive Gaussian), works in float32, and skips the maps whose weights are
exactly zero. It agrees with the package to within a few hundredths on photographs (see
``benchmarks/ssimulacra2_check.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

import numpy as np

from .errors import InputError
from .image import Image

__all__ = [
    "psnr", "mse", "max_abs_error", "ms_ssim", "ssimulacra2", "S2_FLOOR",
    "ContentWindow", "content_window", "WINDOW_PERCENTILES", "WINDOW_MAX_SHARE", "WINDOW_MIN_SHARE",
    "as_float", "luma", "tile_psnr_map", "local_error_maps", "local_snr_map", "band_retention", "DEFAULT_BANDS",
    "gaussian_blur",
    "gradient_magnitude", "edge_map",
]

ImageLike = Union[Image, np.ndarray]

# ---------------------------------------------------------------------------------------------------------------
# input handling


def _pixels(x: ImageLike) -> tuple[np.ndarray, float]:
    """(H×W×C array, max value) of an Image or array."""
    if isinstance(x, Image):
        return x.pixels, float(x.max_value)
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise InputError(f"expected an H×W or H×W×C image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a, 255.0
    if a.dtype == np.uint16:
        return a, 65535.0
    if a.dtype.kind == "f":
        return a, 1.0
    if a.dtype == np.bool_:
        return a.astype(np.uint8), 1.0
    raise InputError(f"unsupported pixel dtype {a.dtype}; expected uint8, uint16 or float")


def _pair(a: ImageLike, b: ImageLike, max_value: float | None = None,
          window: "ContentWindow | str | None" = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Both images as arrays of the same shape, and the max value that errors are relative to.

    With ``window`` (a :class:`ContentWindow`, or ``"auto"``: :func:`content_window` of ``a``) and a window that
    applies, both come back as float32 rescaled to it, with max value 1.
    """
    pa, ma = _pixels(a)
    pb, _ = _pixels(b)
    if pa.shape != pb.shape:
        raise InputError(f"images differ in shape: {pa.shape} vs {pb.shape}")
    if window is not None:
        if isinstance(window, str):
            if window != "auto":
                raise ValueError(f"window must be a ContentWindow, 'auto' or None, not {window!r}")
            window = content_window(a, max_value=max_value)
        if window is not None:
            return window.apply(pa), window.apply(pb), 1.0
    return pa, pb, float(max_value) if max_value is not None else ma


# ---------------------------------------------------------------------------------------------------------------
# content window

#: percentiles (%) of the original that bound its content window: robust to a few hot or dead pixels
WINDOW_PERCENTILES: tuple[float, float] = (0.1, 99.9)
#: content spanning at least this share of its nominal range is judged on the nominal range, as before
WINDOW_MAX_SHARE = 0.5
#: a window is never narrower than this share of the nominal range: at most a 256× contrast stretch, so a
#: nearly flat frame is not judged on its noise
WINDOW_MIN_SHARE = 1 / 256
#: subsample the percentile estimate above this many samples (a regular stride: deterministic)
_WINDOW_MAX_SAMPLES = 1 << 22


@dataclass(frozen=True)
class ContentWindow:
    """The part ``lo..hi`` of the nominal range ``0..nominal`` that a high-bit-depth image's content uses.

    :meth:`apply` maps ``lo`` → 0 and ``hi`` → 1 (linearly, no clipping: values outside the window keep their
    distance; SSIMULACRA 2 clips to 0..1 as it does for any float input). Alpha is scaled by ``nominal``, not
    windowed. ``bits`` is the nominal bit depth, for messages.

    Examples
    --------
    >>> w = ContentWindow(1000.0, 3000.0, 65535.0, 16)
    >>> w.describe()
    '16-bit content spans 1000–3000 of 0–65535 (3%)'
    >>> w.apply(np.array([[1000, 2000, 3500]], np.uint16)).ravel().tolist()
    [0.0, 0.5, 1.25]
    """

    lo: float
    hi: float
    nominal: float
    bits: int

    @property
    def span(self) -> float:
        """``hi - lo`` in the image's units."""
        return self.hi - self.lo

    @property
    def share(self) -> float:
        """The window's share of the nominal range (0..1)."""
        return self.span / self.nominal

    def describe(self) -> str:
        """One line: what the content spans, of what nominal range."""
        pct = 100 * self.share
        return (f"{self.bits}-bit content spans {self.lo:g}–{self.hi:g} of 0–{self.nominal:g} "
                f"({pct:.0f}%)" if pct >= 1 else
                f"{self.bits}-bit content spans {self.lo:g}–{self.hi:g} of 0–{self.nominal:g} ({pct:.1g}%)")

    def apply(self, x: ImageLike) -> np.ndarray:
        """H×W×C float32: colour channels rescaled so the window is 0..1, alpha scaled by ``nominal``."""
        p, _ = _pixels(x)
        out = p.astype(np.float32)
        n = _colour_channels(out.shape[2])
        out[:, :, :n] -= np.float32(self.lo)
        out[:, :, :n] *= np.float32(1.0 / self.span)
        if n < out.shape[2]:
            out[:, :, n:] *= np.float32(1.0 / self.nominal)
        return out

    def to_dict(self) -> dict[str, float]:
        """``lo``, ``hi``, ``nominal``, ``bits`` (JSON-ready)."""
        return {"lo": self.lo, "hi": self.hi, "nominal": self.nominal, "bits": self.bits}


def _colour_channels(c: int) -> int:
    """How many leading channels are colour (gray+alpha and RGBA carry alpha last)."""
    return c - 1 if c in (2, 4) else c


def content_window(x: ImageLike, *, max_value: float | None = None,
                   percentiles: tuple[float, float] = WINDOW_PERCENTILES, max_share: float = WINDOW_MAX_SHARE,
                   min_share: float = WINDOW_MIN_SHARE) -> ContentWindow | None:
    """The range an original's content actually uses, or ``None`` where the nominal range applies.

    Call it on the *original* only: a reconstruction must not move the yardstick it is judged by. The window is
    the ``percentiles`` of the colour samples (alpha excluded; inverted-CDF, i.e. actual sample values), widened
    about its centre to at least ``min_share`` of the nominal range. ``None`` — judge on the nominal range, as
    before — for 8-bit (nominal ≤ 255) and float images, whose nominal range is what a display shows, and for
    content whose window covers at least ``max_share`` of the nominal range.

    Examples
    --------
    >>> ct = np.linspace(32900, 34750, 64 * 64).reshape(64, 64).astype(np.uint16)
    >>> content_window(ct).describe()
    '16-bit content spans 32901–34748 of 0–65535 (3%)'
    >>> content_window((ct - 32768).astype(np.uint8)) is None                    # 8-bit: nominal range
    True
    >>> content_window(np.linspace(0, 65535, 4096).reshape(64, 64).astype(np.uint16)) is None  # full range
    True
    """
    p, m = _pixels(x)
    nominal = float(max_value) if max_value is not None else m
    if p.dtype.kind not in "ui" or nominal <= 255 or p.size == 0:
        return None
    bits = int(x.bit_depth) if isinstance(x, Image) else int(round(math.log2(nominal + 1)))
    colour = p[:, :, :_colour_channels(p.shape[2])]
    step = max(1, int(math.ceil(math.sqrt(colour.size / _WINDOW_MAX_SAMPLES))))
    sample = colour[::step, ::step].ravel()
    # a histogram of integer codes gives exact percentiles in one pass (np.percentile partitions, slower)
    cdf = np.cumsum(np.bincount(sample))
    n = int(cdf[-1])
    lo, hi = (float(np.searchsorted(cdf, max(1, math.ceil(n * q / 100.0)))) for q in percentiles)
    min_span = nominal * min_share
    if hi - lo < min_span:  # (nearly) flat: never stretch contrast more than 1/min_share
        lo = min(max(0.0, (lo + hi - min_span) / 2), max(0.0, nominal - min_span))
        hi = lo + min_span
    if (hi - lo) >= max_share * nominal:
        return None
    return ContentWindow(lo, hi, nominal, bits)


def as_float(x: ImageLike, max_value: float | None = None) -> np.ndarray:
    """H×W×C float32 in 0..1 (relative to ``max_value``, default the image's own).

    Examples
    --------
    >>> as_float(np.array([[0, 255]], np.uint8)).ravel().tolist()
    [0.0, 1.0]
    """
    p, m = _pixels(x)
    return (p.astype(np.float32) * np.float32(1.0 / (max_value or m)))


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, what JPEG's Y uses


def luma(x: ImageLike, max_value: float | None = None) -> np.ndarray:
    """H×W float32 luma in 0..1 (BT.601 weights for colour; alpha is ignored).

    Structure checks run on luma because chroma subsampling (JPEG 4:2:0) legitimately drops chroma detail.

    Examples
    --------
    >>> luma(np.full((2, 2, 3), 255, np.uint8)).round(4).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    f = as_float(x, max_value)
    if f.shape[2] >= 3:
        return f[:, :, 0] * _LUMA[0] + f[:, :, 1] * _LUMA[1] + f[:, :, 2] * _LUMA[2]
    return np.ascontiguousarray(f[:, :, 0])


# ---------------------------------------------------------------------------------------------------------------
# global metrics


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
    return _psnr_of_mse(mse(a, b, max_value=max_value, window=window))


def _psnr_of_mse(e: float) -> float:
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


def _gauss1d(sigma: float, radius: int) -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


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


# ---------------------------------------------------------------------------------------------------------------
# SSIMULACRA 2

# fmt: off
#: the 108 weights of libjxl tools/ssimulacra2.cc (April 2023), index = c*36 + scale*6 + norm*3 + map
_S2_WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
    0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752,
    0.0, 0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
    0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
    0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967,
    0.00031949755934435053,
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
    0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408,
    0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0008680556573291698, 0.0, 0.0,
    0.0, 0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0,
    0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0,
    0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
    95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493, 171.2667255897307,
    0.9807858872435379,
    0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
]).reshape(3, 6, 2, 3)  # channel, scale, norm (1, 4), map (ssim, ringing, blurring)
# fmt: on

_S2_SCALES = 6
_S2_C2 = np.float32(0.0009)
# opsin absorbance (libjxl opsin_params.h) and its bias
_OPSIN = np.array([[0.30, 0.622, 0.078],
                   [0.23, 0.692, 0.078],
                   [0.24342268924547819, 0.20476744424496821, 1.0 - 0.24342268924547819 - 0.20476744424496821]],
                  np.float32)
_OPSIN_BIAS = np.float32(0.0037930732552754493)
_OPSIN_BIAS_CBRT = np.float32(np.cbrt(0.0037930732552754493))
#: Below this a weight is negligible: 27 of the 52 non-zero weights are < 0.0021 (together 0.0199), the rest
#: > 0.28, so the fast path drops them and skips every map only they use (scale 0 needs Y alone, scale 5
#: nothing) — half the blurring, for a change of at most ~0.02 on realistic distortions (a hard bound is
#: 0.0199 × the largest dropped norm, and those norms stay far below 1).
_S2_FAST_MIN_WEIGHT = 0.01


@lru_cache(maxsize=2)
def _s2_plan(exact: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights in use, need SSIM maps [channel, scale], need edge maps [channel, scale])."""
    w = _S2_WEIGHTS if exact else np.where(_S2_WEIGHTS >= _S2_FAST_MIN_WEIGHT, _S2_WEIGHTS, 0.0)
    return w, (w[:, :, :, 0] != 0).any(axis=2), (w[:, :, :, 1:] != 0).any(axis=(2, 3))


@lru_cache(maxsize=8)
def _srgb_lut(max_value: int) -> np.ndarray:
    """sRGB EOTF for integer codes 0..max_value (a table is far cheaper than the power per pixel)."""
    v = np.arange(max_value + 1, dtype=np.float64) / max_value
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _srgb_to_linear(p: np.ndarray, max_value: float) -> np.ndarray:
    if p.dtype.kind in "ui" and max_value == int(max_value) and max_value <= 65535:
        lut = _srgb_lut(int(max_value))
        if np.iinfo(p.dtype).max > max_value:  # e.g. 12-bit data in uint16: clamp stray codes
            p = np.minimum(p, int(max_value))
        return lut[p]
    v = np.clip(p.astype(np.float32) / np.float32(max_value), 0, 1)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _to_xyb_positive(lin: np.ndarray) -> np.ndarray:
    """(3,H,W) linear sRGB → (3,H,W) XYB rescaled to ~0..1 with B-Y (libjxl ``MakePositiveXYB``)."""
    mixed = np.empty_like(lin)
    for i in range(3):
        np.multiply(lin[0], _OPSIN[i, 0], out=mixed[i])
        mixed[i] += _OPSIN[i, 1] * lin[1]
        mixed[i] += _OPSIN[i, 2] * lin[2]
    mixed += _OPSIN_BIAS
    np.maximum(mixed, 0, out=mixed)
    np.cbrt(mixed, out=mixed)
    mixed -= _OPSIN_BIAS_CBRT
    out = np.empty_like(mixed)
    half = np.float32(0.5)
    np.subtract(mixed[0], mixed[1], out=out[0])
    out[0] *= np.float32(0.5 * 14.0)
    out[0] += np.float32(0.42)
    np.add(mixed[0], mixed[1], out=out[1])
    out[1] *= half                                # Y
    np.subtract(mixed[2], out[1], out=out[2])
    out[2] += np.float32(0.55)                    # B - Y
    out[1] += np.float32(0.01)
    return out


def _downsample2(lin: np.ndarray) -> np.ndarray:
    """2×2 box average; an odd last row/column averages the pixels that exist (libjxl clamps the index)."""
    c, h, w = lin.shape
    if h % 2 or w % 2:
        lin = np.pad(lin, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    out = lin[:, 0::2, 0::2] + lin[:, 1::2, 0::2]
    out += lin[:, 0::2, 1::2]
    out += lin[:, 1::2, 1::2]
    out *= np.float32(0.25)
    return out


@lru_cache(maxsize=16)
def _band_matrix(block: int, radius: int, sigma: float) -> np.ndarray:
    """(block, block+2r) matrix whose rows are the Gaussian taps shifted by one each: a blur as a matmul."""
    k = _gauss1d(sigma, radius)
    t = np.zeros((block, block + 2 * radius), np.float32)
    for j in range(block):
        t[j, j:j + 2 * radius + 1] = k
    return t


class _SingleThreadBlas:
    """Limit BLAS to one thread while blurring: the products are small, and in a pool of verifying processes
    (or on a busy machine) threaded BLAS spins and runs several times slower. No-op without threadpoolctl."""

    _controller: Any = None

    def __enter__(self) -> None:
        self._ctx = None
        try:
            if _SingleThreadBlas._controller is None:
                from threadpoolctl import ThreadpoolController

                _SingleThreadBlas._controller = ThreadpoolController()
            self._ctx = _SingleThreadBlas._controller.limit(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover - optional dependency
            pass

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)


_ROW_BLOCK, _COL_BLOCK = 8, 32


def _blur_stack(planes: list[Any], h: int, w: int, *, sigma: float = 1.5, radius: int | None = None,
                mirror_rows: bool = False) -> np.ndarray:
    """Separable Gaussian blur of P planes (each an H×W array, or a callable writing one into ``out``).

    Both passes are batched matrix products with a banded (block × block+2r) tap matrix, which BLAS runs far
    faster than a per-pixel loop. Outside the image is zero (libjxl's recursive Gaussian), or, with
    ``mirror_rows``, rows are mirrored (half-sample symmetric) and columns zero — what the PyPI ``ssimulacra2``
    package does, since it blurs a transposed image with zero padding along one axis and reflection along the
    other.
    """
    r = int(round(3.33 * sigma)) if radius is None else radius
    p = len(planes)
    rb, cb = _ROW_BLOCK, _COL_BLOCK
    nr, nc = -(-h // rb), -(-w // cb)
    src = np.zeros((p, nr * rb + 2 * r, w), np.float32)
    for i, plane in enumerate(planes):
        if callable(plane):
            plane(src[i, r:r + h])
        else:
            src[i, r:r + h] = plane
    if mirror_rows:
        if h >= r:
            src[:, :r] = src[:, 2 * r - 1:r - 1:-1]
            src[:, r + h:2 * r + h] = src[:, r + h - 1:h - 1:-1]
        else:  # tiny image: repeated reflection, as scipy.ndimage does
            src[:, :h + 2 * r] = np.pad(src[:, r:r + h], ((0, 0), (r, r), (0, 0)), mode="symmetric")
    mid = np.zeros((p, nr * rb, nc * cb + 2 * r), np.float32)
    out = np.empty((p, nr * rb, nc * cb), np.float32)
    with _SingleThreadBlas():
        t = _band_matrix(rb, r, sigma)
        for b in range(nr):  # vertical pass, written straight into the horizontally padded buffer
            np.matmul(t, src[:, b * rb:b * rb + rb + 2 * r], out=mid[:, b * rb:(b + 1) * rb, r:r + w])
        flat, flat_out = mid.reshape(p * nr * rb, -1), out.reshape(p * nr * rb, -1)
        tt = np.ascontiguousarray(_band_matrix(cb, r, sigma).T)
        for b in range(nc):
            np.matmul(flat[:, b * cb:b * cb + cb + 2 * r], tt, out=flat_out[:, b * cb:(b + 1) * cb])
    return out[:, :h, :w]


def gaussian_blur(x: np.ndarray, sigma: float = 1.5, radius: int | None = None) -> np.ndarray:
    """Separable Gaussian blur of the last two axes of a (…, H, W) array, zero outside (float32).

    ``radius`` defaults to round(3.33 σ), the reference's truncation (11 taps at σ = 1.5).

    Examples
    --------
    >>> z = np.zeros((11, 11), np.float32); z[5, 5] = 1
    >>> b = gaussian_blur(z); round(float(b.sum()), 5), round(float(b[5, 5]), 4)
    (1.0, 0.0708)
    """
    x = np.asarray(x, np.float32)
    shape = x.shape
    x3 = x.reshape(-1, shape[-2], shape[-1])
    return _blur_stack(list(x3), shape[-2], shape[-1], sigma=sigma, radius=radius).reshape(shape)


def _norms(v: np.ndarray, n: int) -> tuple[float, float]:
    """(mean, 4-norm) of a non-negative map; overwrites ``v``."""
    flat = v.reshape(-1)
    mean = float(flat.sum(dtype=np.float64)) / n
    np.multiply(flat, flat, out=flat)
    return mean, (float(np.dot(flat, flat)) / n) ** 0.25


def _s2_scale(x1: np.ndarray, x2: np.ndarray, scale: int, mirror_rows: bool, exact: bool) -> np.ndarray:
    """The (3 channels, 2 norms, 3 maps) averages of one scale; maps whose weights are zero are not computed."""
    out = np.zeros((3, 2, 3))
    _, need_ssim, need_edge = _s2_plan(exact)
    mu_ch = [c for c in range(3) if need_edge[c, scale] or need_ssim[c, scale]]
    ss_ch = [c for c in range(3) if need_ssim[c, scale]]
    if not mu_ch:
        return out
    _, h, w = x1.shape
    n = h * w
    # Blur x1 and the *differences* (x2 - x1, (x1 - x2)²), never x2 on its own: BLAS kernels (OpenBLAS's Haswell
    # ones, for instance) may round the same row differently at different places in one product, so blur(x1) and
    # blur(x2) of identical planes could differ in the last bit and identical images score 99.6. Blurring a zero
    # plane gives exact zeros on every kernel, so identical inputs give error maps of exactly 0 (score 100).
    # mu2 = mu1 + blur(x2 - x1) and s11 + s22 - 2 s12 = blur((x1 - x2)²) hold exactly in real arithmetic.
    planes: list[Any] = [x1[c] for c in mu_ch] + [lambda o, c=c: np.subtract(x2[c], x1[c], out=o) for c in mu_ch]
    for c in ss_ch:
        planes.append(lambda o, c=c: (np.subtract(x1[c], x2[c], out=o), np.multiply(o, o, out=o)))
        planes.append(lambda o, c=c: np.multiply(x1[c], x2[c], out=o))
    blurred = _blur_stack(planes, h, w, mirror_rows=mirror_rows)
    nm = len(mu_ch)
    for k in range(nm):
        blurred[nm + k] += blurred[k]            # mu2 = mu1 + blur(x2 - x1)
    one, two = np.float32(1.0), np.float32(2.0)
    for i, c in enumerate(ss_ch):
        m1, m2 = blurred[mu_ch.index(c)], blurred[nm + mu_ch.index(c)]
        sdd, s12 = blurred[2 * nm + 2 * i], blurred[2 * nm + 2 * i + 1]
        m12 = m1 * m2
        num_s = s12 - m12
        num_s *= two
        num_s += _S2_C2                          # 2 σ12 + C2
        dm = m1 - m2
        np.multiply(dm, dm, out=dm)              # (m1-m2)²
        num_m = one - dm
        # denominator σ1² + σ2² + C2 = num_s + [blur((x1-x2)²) - (m1-m2)²]; the bracket is 0 for identical inputs
        np.subtract(sdd, dm, out=dm)
        dm += num_s
        num_s *= num_m
        num_s /= dm
        np.subtract(one, num_s, out=num_s)
        np.maximum(num_s, 0, out=num_s)
        out[c, 0, 0], out[c, 1, 0] = _norms(num_s, n)
    for c in mu_ch:
        if not need_edge[c, scale]:
            continue
        k = mu_ch.index(c)
        a = np.subtract(x2[c], blurred[nm + k])
        np.abs(a, out=a)
        a += one
        b = np.subtract(x1[c], blurred[k])
        np.abs(b, out=b)
        b += one
        a /= b
        a -= one                                  # d1 > 0: ringing/blockiness, d1 < 0: smoothing
        np.maximum(a, 0, out=b)
        out[c, 0, 1], out[c, 1, 1] = _norms(b, n)
        np.negative(a, out=a)
        np.maximum(a, 0, out=a)
        out[c, 0, 2], out[c, 1, 2] = _norms(a, n)
    return out


#: the lowest SSIMULACRA 2 score reported: "unusable" (the formula's negative tail is clamped here)
S2_FLOOR = 0.0


def _s2_score(averages: list[np.ndarray], exact: bool) -> float:
    """Weighted sum of the 108 norms and libjxl's final polynomial."""
    weights = _s2_plan(exact)[0]
    total = 0.0
    for s, avg in enumerate(averages):
        total += float(np.sum(weights[:, s] * np.abs(avg)))
    total *= 0.9562382616834844
    total = 2.326765642916932 * total - 0.020884521182843837 * total ** 2 + 6.248496625763138e-05 * total ** 3
    if total > 0:
        # libjxl's polynomial keeps falling below 0 (-949 for noise vs a photo): that tail ranks nothing useful,
        # so scores are floored at S2_FLOOR = 0, "unusable" (documented in ssimulacra2's docstring).
        return max(S2_FLOOR, 100.0 - 10.0 * total ** 0.6276336467831387)
    return 100.0


def _linear_planes(p: np.ndarray, m: float) -> np.ndarray:
    """(3,H,W) linear sRGB of an H×W×C image (gray becomes R=G=B, as libjxl converts it)."""
    chw = p.transpose(2, 0, 1)
    lin = np.ascontiguousarray(_srgb_to_linear(chw, m))  # a table lookup already yields C×H×W order
    return np.repeat(lin, 3, axis=0) if lin.shape[0] == 1 else lin


def _s2_rgb(pa: np.ndarray, pb: np.ndarray, m: float, mirror_rows: bool, exact: bool) -> float:
    lin1, lin2 = _linear_planes(pa, m), _linear_planes(pb, m)
    averages = []
    for scale in range(_S2_SCALES):
        # libjxl checks the size *before* downsampling, so a last scale may be smaller than 8 px
        if lin1.shape[1] < 8 or lin1.shape[2] < 8:
            break
        if scale:
            lin1, lin2 = _downsample2(lin1), _downsample2(lin2)
        if not exact and scale == _S2_SCALES - 1:
            break  # no weight of the last scale reaches the fast threshold
        averages.append(_s2_scale(_to_xyb_positive(lin1), _to_xyb_positive(lin2), scale, mirror_rows, exact))
    return _s2_score(averages, exact)


def ssimulacra2(a: ImageLike, b: ImageLike, *, max_value: float | None = None, boundary: str = "package",
                exact: bool = False, window: ContentWindow | str | None = None) -> float:
    """SSIMULACRA 2 score of ``b`` against the original ``a`` (100 = identical, 90 visually lossless,
    70 high quality, 50 medium, 30 low, 0 = unusable).

    The score is floored at :data:`S2_FLOOR` (0): libjxl's formula goes on below 0 for images that have little
    left in common (−949 for noise against a photo), a range that says nothing more than "unusable". Identical
    images score exactly 100 on every BLAS kernel (the error maps are computed from differences, which are
    exactly zero).

    Pixel values are taken as sRGB-encoded relative to the original's max value. Gray images are compared as
    R=G=B. With alpha, both are blended on a dark (10%) and a light (90%) background and the worse score
    returned, as libjxl's tool does. Images smaller than 8×8 raise ``InputError``.

    ``window`` (a :class:`ContentWindow` or ``"auto"``: :func:`content_window` of ``a``) shows both images
    through the original's content window first — the sRGB curve then spans the window, as a viewer's
    window/level would show it; samples outside it clip. Without it a 16-bit CT using 3% of 0..65535 is a
    near-uniform gray, and heavy loss still scores "high quality".

    ``boundary`` says what the blur sees outside the image: ``"package"`` (default) mirrors rows and zeroes
    columns, as the PyPI ``ssimulacra2`` package does — so scores agree with that widely used reference to a few
    hundredths; ``"libjxl"`` zeroes both, as libjxl's recursive Gaussian does. The two differ only through the
    borders, most at the coarse scales: ≈0.1–0.4 points at high quality, up to ≈2 at low quality.

    By default the 27 weights below 0.01 (together 0.02 of a total of ~1100) are dropped with the maps that only
    they use, which halves the work; ``exact=True`` computes all 108 terms.

    Examples
    --------
    >>> x = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    >>> ssimulacra2(x, x)
    100.0
    >>> y = np.clip(x.astype(int) + 10, 0, 255).astype(np.uint8)
    >>> 0 < ssimulacra2(x, y) < 100
    True
    """
    if boundary not in ("package", "libjxl"):
        raise ValueError(f"boundary must be 'package' or 'libjxl', not {boundary!r}")
    mirror = boundary == "package"
    pa, pb, m = _pair(a, b, max_value, window)
    if pa.shape[0] < 8 or pa.shape[1] < 8:
        raise InputError(f"image too small for SSIMULACRA 2: {pa.shape[1]}×{pa.shape[0]} (needs 8×8)")
    if pa.shape[2] in (2, 4):  # alpha: composite on dark and light backgrounds, keep the worse score
        colour_a, alpha_a = pa[:, :, :-1].astype(np.float32), pa[:, :, -1:].astype(np.float32) / np.float32(m)
        colour_b, alpha_b = pb[:, :, :-1].astype(np.float32), pb[:, :, -1:].astype(np.float32) / np.float32(m)
        scores = []
        for bg in (0.1, 0.9):
            ba = colour_a * alpha_a + np.float32(bg * m) * (1 - alpha_a)
            bb = colour_b * alpha_b + np.float32(bg * m) * (1 - alpha_b)
            scores.append(_s2_rgb(ba, bb, m, mirror, exact))
        return min(scores)
    return _s2_rgb(pa, pb, m, mirror, exact)


# ---------------------------------------------------------------------------------------------------------------
# local helpers: tiles, windows, bands, edges


def tile_psnr_map(a: ImageLike, b: ImageLike, tile: int = 32, *, max_value: float | None = None,
                  window: ContentWindow | str | None = None) -> np.ndarray:
    """PSNR (dB, all channels) of each ``tile``×``tile`` tile, row-major; edge tiles may be smaller.
    ``window`` as for :func:`psnr`.

    Entry ``[ty, tx]`` covers rows ``ty*tile …`` and columns ``tx*tile …``; identical tiles are ``inf``.

    Examples
    --------
    >>> a = np.zeros((64, 64), np.uint8); b = a.copy(); b[40, 40] = 255
    >>> tile_psnr_map(a, b).round(1).tolist()
    [[inf, inf], [inf, 30.1]]
    """
    pa, pb, m = _pair(a, b, max_value, window)
    return _tile_psnr(_squared_error(pa, pb, m), tile, pa.shape[2])


def _squared_error(pa: np.ndarray, pb: np.ndarray, m: float) -> np.ndarray:
    """H×W float32 squared error summed over channels, on the 0..1 scale."""
    d = pa.astype(np.float32)
    d -= pb
    d *= np.float32(1.0 / m)
    d *= d
    return d.sum(axis=2) if d.shape[2] > 1 else d[:, :, 0]


def _tile_psnr(se: np.ndarray, tile: int, channels: int) -> np.ndarray:
    h, w = se.shape
    ny, nx = -(-h // tile), -(-w // tile)
    sums = _block_sums(se, tile)
    counts = np.outer(np.minimum(tile, h - np.arange(ny) * tile), np.minimum(tile, w - np.arange(nx) * tile)) * channels
    with np.errstate(divide="ignore"):
        return np.where(sums > 0, 10.0 * np.log10(counts / np.maximum(sums, 1e-300)), np.inf)


def _block_sums(x: np.ndarray, b: int) -> np.ndarray:
    """Sums over b×b blocks (zero-padded at the right/bottom edge), as float64.

    Strided adds (b slices per axis) are several times faster than a reshape-and-sum over small axes.
    """
    h, w = x.shape
    ny, nx = -(-h // b), -(-w // b)
    if ny * b != h or nx * b != w:
        x = np.pad(x, ((0, ny * b - h), (0, nx * b - w)))
    cols = x[:, 0::b].copy()
    for k in range(1, b):
        cols += x[:, k::b]
    out = cols[0::b].astype(np.float64)
    for k in range(1, b):
        out += cols[k::b]
    return out


def _windows(blocks: np.ndarray) -> np.ndarray:
    """2×2-block window sums from block sums (windows of two blocks, stepping by one block)."""
    if blocks.shape[0] > 1:
        blocks = blocks[:-1] + blocks[1:]
    if blocks.shape[1] > 1:
        blocks = blocks[:, :-1] + blocks[:, 1:]
    return blocks


def local_error_maps(a: ImageLike, b: ImageLike, window: int = 16, *, signal_floor: float = 0.03,
                     max_value: float | None = None, content: ContentWindow | str | None = None
                     ) -> dict[str, np.ndarray]:
    """Per-window error statistics of the luma of ``b`` against ``a`` (windows of ``window`` px, stepping by half).

    ``snr`` — signal-to-error ratio in dB, 10·log10((var_orig + floor²) / MSE). The error is compared with how much
    structure the original has *there*: a codec's error hides in texture and stays small in flat areas, while a
    lesion smoothed away, a line moved or a patch replaced makes the error as large as the local signal (≈ 0 dB).
    ``signal_floor`` (0..1 scale, default 0.03 ≈ 8 of 255 levels) keeps faint codec noise in flat windows from
    reading as a failure.

    ``structured_snr`` — the same ratio for the part of the error that is a *coherent transformation of the
    original's own structure*: the error is regressed on the original's gradients (at σ 0.7 and 2 px — what a
    displacement produces, e ≈ −d·∇I) and on a difference of Gaussians (what blurring produces); the explained
    energy replaces the MSE. Quantisation noise is nearly orthogonal to those, so this separates a line moved by
    one pixel or a softened text block from ordinary codec error much better than the MSE does.
    ``shift_share`` (0..1) says how much of the explained part is displacement rather than blur, ``shift_px`` the
    estimated displacement (dy, dx) in pixels. ``rows``/``cols`` are the window origins.

    ``content`` (a :class:`ContentWindow` or ``"auto"``) measures on the original's content window, so
    ``signal_floor`` is a share of the range the content uses (``window`` here is the window size in pixels).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> a = (rng.random((64, 64)) * 60 + 100).astype(np.uint8)
    >>> b = a.copy(); b[24:40, 24:40] = a[24:40, 23:39]          # a block moved right by one pixel
    >>> m = local_error_maps(a, b)
    >>> bool(m["structured_snr"].min() < 5), bool(m["snr"].min() < 5)
    (True, True)
    """
    pa, pb, mv = _pair(a, b, max_value, content)
    x = luma(pa, mv)
    e = luma(pb, mv) - x
    h, w = x.shape
    blk = max(2, window // 2)
    ones = np.ones_like(x)
    n = _windows(_block_sums(ones, blk))
    s1 = _windows(_block_sums(x, blk))
    s2 = _windows(_block_sums(x * x, blk))
    se = _windows(_block_sums(e * e, blk))
    var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0)
    mse = se / n
    floor2 = signal_floor ** 2
    with np.errstate(divide="ignore"):
        snr = 10.0 * np.log10((var + floor2) / np.maximum(mse, 1e-300))
    snr[mse == 0] = np.inf
    # regressors: gradients at two scales (displacement), a difference of Gaussians (blur)
    g1 = gaussian_blur(x, 0.7)
    g2 = gaussian_blur(x, 2.0)
    gy1, gx1 = _gradient2(g1)
    gy2, gx2 = _gradient2(g2)
    feats = [gy1, gx1, gy2, gx2, g2 - g1]
    k = len(feats)
    A = np.empty(snr.shape + (k, k))
    bb = np.empty(snr.shape + (k,))
    for i in range(k):
        for j in range(i, k):
            A[..., i, j] = A[..., j, i] = _windows(_block_sums(feats[i] * feats[j], blk))
        bb[..., i] = _windows(_block_sums(feats[i] * e, blk))
    # ridge: flat windows have (near-)singular systems; their explained energy is ~0 either way
    ridge = 1e-6 * np.trace(A, axis1=-2, axis2=-1)[..., None, None] + 1e-12
    with _SingleThreadBlas():
        coef = np.linalg.solve(A + ridge * np.eye(k), bb[..., None])[..., 0]
    parts = coef * bb
    explained = np.clip(parts.sum(axis=-1), 0.0, se)
    shift_part = np.maximum(parts[..., :4].sum(axis=-1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        structured = 10.0 * np.log10((var + floor2) / np.maximum(explained / n, 1e-300))
        share = np.where(explained > 0, np.clip(shift_part / np.maximum(explained, 1e-300), 0, 1), 0.0)
    structured[explained <= 0] = np.inf
    # e ≈ −d·∇I for a displacement d: the gradient coefficients estimate −d (both scales together)
    shift = -np.stack([coef[..., 0] + coef[..., 2], coef[..., 1] + coef[..., 3]], axis=-1)
    ny, nx = snr.shape
    rows = np.minimum(np.arange(ny) * blk, max(0, h - 1))
    cols = np.minimum(np.arange(nx) * blk, max(0, w - 1))
    return {"snr": snr, "structured_snr": structured, "shift_share": share, "shift_px": shift,
            "rows": rows, "cols": cols}


def _gradient2(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference (dy, dx); zero along an axis too short to differentiate."""
    dy = np.gradient(g, axis=0) if g.shape[0] > 1 else np.zeros_like(g)
    dx = np.gradient(g, axis=1) if g.shape[1] > 1 else np.zeros_like(g)
    return dy, dx


def local_snr_map(a: ImageLike, b: ImageLike, window: int = 16, *, signal_floor: float = 0.03,
                  max_value: float | None = None, content: ContentWindow | str | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(snr_db, row_origins, col_origins)`` of :func:`local_error_maps` (windows step by half a window).

    Examples
    --------
    >>> a = np.full((64, 64), 100, np.uint8); b = a.copy(); b[10:14, 10:14] = 180
    >>> snr, ys, xs = local_snr_map(a, b, 16)
    >>> bool(snr.min() < 0), ys[:3].tolist()
    (True, [0, 8, 16])
    """
    m = local_error_maps(a, b, window, signal_floor=signal_floor, max_value=max_value, content=content)
    return m["snr"], m["rows"], m["cols"]


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
    with _SingleThreadBlas():
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


def gradient_magnitude(x: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a 2-D float image, scaled so a step of height h reads ≈ h at the edge.

    Examples
    --------
    >>> z = np.zeros((5, 6), np.float32); z[:, 3:] = 1
    >>> gradient_magnitude(z)[2].round(2).tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    """
    p = np.pad(np.asarray(x, np.float32), 1, mode="edge")
    # separable Sobel: [1,2,1]/4 smoothing across, central difference along
    sy = p[:-2] + 2 * p[1:-1] + p[2:]
    gx = (sy[:, 2:] - sy[:, :-2]) * np.float32(0.25)
    sx = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    gy = (sx[2:] - sx[:-2]) * np.float32(0.25)
    return np.sqrt(gx * gx + gy * gy)


def edge_map(x: ImageLike, threshold: float = 0.12, *, max_value: float | None = None,
             window: ContentWindow | None = None) -> np.ndarray:
    """Boolean map of luma edges whose contrast (Sobel magnitude, 0..1 scale) is at least ``threshold``.

    With ``window`` (the *original's* :class:`ContentWindow`, also for a reconstruction) the contrast is a share
    of the window.

    Examples
    --------
    >>> z = np.zeros((4, 6), np.uint8); z[:, 3:] = 255
    >>> edge_map(z)[1].tolist()
    [False, False, True, True, False, False]
    """
    if window is not None:
        return gradient_magnitude(luma(window.apply(x), 1.0)) >= threshold
    return gradient_magnitude(luma(x, max_value)) >= threshold
