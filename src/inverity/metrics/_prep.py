"""Shared preparation for the metrics: pixels of an Image or array, pairs of images, the content window,
float scaling and luma."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..errors import InputError
from ..image import Image


ImageLike = Union[Image, np.ndarray]

# ---------------------------------------------------------------------------------------------------------------
# input handling


def pixels(x: ImageLike) -> tuple[np.ndarray, float]:
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
    pa, ma = pixels(a)
    pb, _ = pixels(b)
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
        p, _ = pixels(x)
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
    p, m = pixels(x)
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
    p, m = pixels(x)
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


def luminance(x: ImageLike, max_value: float | None = None) -> np.ndarray:
    """H×W float32 *constant* luminance in 0..1: the sRGB-encoded value of the linear-light luminance
    (BT.709/sRGB weights on linearised R, G, B). Equal to the value itself for grey pixels.

    Luma (:func:`luma`) weights the gamma-encoded channels, so a codec's error in a dark channel of a saturated
    colour (G and B of a deep red, a few levels near 0) leaks into it at full weight, although it changes the
    light that reaches the eye by almost nothing. Constant luminance does not leak it.

    Examples
    --------
    >>> round(float(255 * luminance(np.full((1, 1, 3), 128, np.uint8))[0, 0]), 2)      # grey: unchanged
    128.0
    >>> red, red2 = np.array([[[210, 1, 24]]], np.uint8), np.array([[[210, 8, 31]]], np.uint8)
    >>> [round(float(255 * (f(red2) - f(red))[0, 0]), 1) for f in (luma, luminance)]
    [4.9, 0.7]
    """
    p, m = pixels(x)
    if p.shape[2] < 3:
        return luma(p, max_value or m)
    scale = 1.0 / float(max_value or m)
    if p.dtype.kind in "ui" and p.dtype.itemsize <= 2:
        # integer samples: linearise by table (one entry per code), far cheaper than a power per sample
        lut = _srgb_to_linear(np.minimum(np.arange(1 << (8 * p.dtype.itemsize)) * scale, 1.0)).astype(np.float32)
        r, g, b = (lut[p[:, :, i]] for i in range(3))
    else:
        r, g, b = (_srgb_to_linear(np.clip(p[:, :, i].astype(np.float32) * np.float32(scale), 0, 1))
                   for i in range(3))
    y = r * np.float32(0.2126) + g * np.float32(0.7152) + b * np.float32(0.0722)
    # back to the sRGB scale by table on 2^16 steps of Y (≤ 0.05 of 255 levels off, where the curve is steepest)
    return _ENCODE_LUT[np.rint(np.clip(y, 0, 1) * 65535).astype(np.int32)]


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(y: np.ndarray) -> np.ndarray:
    return np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.power(np.maximum(y, 0), 1 / 2.4) - 0.055)


_ENCODE_LUT = _linear_to_srgb(np.arange(65536) / 65535.0).astype(np.float32)
