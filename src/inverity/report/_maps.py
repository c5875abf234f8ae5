"""Pixel work behind the audit page: display tone-mapping, previews, error and spectral maps.

Everything here is plain numpy on ``H×W×C`` arrays and returns ``uint8`` arrays ready for PNG; the page
builder (``_build``) decides what to show. Kept free of I/O so each function can be tested on its own. Where to
look (the worst windows) is the verifier's to say (``checks["worst_windows"]``); nothing here searches for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "DISPLAY_MAX_SIDE", "ToneMap", "tone_map_for", "to_display", "preview_size", "resize_display",
    "abs_error", "error_map", "spectral_map", "colormap_lut", "gradient_css",
]

#: previews are downscaled so that their longest side is at most this many pixels
DISPLAY_MAX_SIDE = 1024
#: the error heat map saturates at no less than this fraction of full scale (4 code values at 8 bits), so that
#: a reconstruction off by ±1 everywhere does not look as alarming as one with a smeared edge
MIN_ERROR_SCALE = 4 / 255
#: spectral maps average periodograms over tiles of at most this side (Welch's method), at most 4×4 tiles
SPECTRUM_TILE = 1024


# -- colour maps -------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """A 256×3 ``uint8`` lookup table sampled from a matplotlib colour map.

    Only ``matplotlib.colormaps`` is imported (no pyplot, no figure): a LUT indexed with numpy is all a
    heat map needs.

    Examples
    --------
    >>> lut = colormap_lut("inferno")
    >>> lut.shape, lut.dtype
    ((256, 3), dtype('uint8'))
    """
    from matplotlib import colormaps

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def gradient_css(name: str, stops: int = 9) -> str:
    """A CSS ``linear-gradient`` reproducing a colour map, for the legend next to a map.

    Examples
    --------
    >>> gradient_css("gray", stops=2)
    'linear-gradient(to right, rgb(0,0,0) 0%, rgb(255,255,255) 100%)'
    """
    lut = colormap_lut(name)
    idx = np.linspace(0, 255, stops).round().astype(int)
    parts = [f"rgb({lut[i, 0]},{lut[i, 1]},{lut[i, 2]}) {100 * k / (stops - 1):.4g}%" for k, i in enumerate(idx)]
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


def _apply(values01: np.ndarray, name: str) -> np.ndarray:
    idx = np.clip(np.round(values01 * 255), 0, 255).astype(np.intp)
    return colormap_lut(name)[idx]


# -- tone mapping for display ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToneMap:
    """Linear window ``[low, high]`` (in code values) mapped to 0..255; ``note`` says what was done."""

    low: float
    high: float
    note: str

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.dtype == np.uint8 and self.low == 0 and self.high == 255:
            return pixels
        scaled = (pixels.astype(np.float32) - self.low) * (255.0 / max(self.high - self.low, 1e-6))
        return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def tone_map_for(pixels: np.ndarray, bit_depth: int) -> ToneMap:
    """Choose the display mapping of an image from the *original* (the same one is applied to its reconstruction).

    8-bit images are shown as they are. Deeper images (16-bit, 12-bit medical) cannot be shown on an 8-bit
    page as they are: their colour channels are windowed to the original's 0.5–99.5th percentiles, which is
    what makes a CT slice that uses a few hundred of 4096 levels visible at all. Applying the *same* window to
    both images keeps the comparison fair.

    Examples
    --------
    >>> tone_map_for(np.zeros((2, 2, 3), np.uint8), 8).note
    ''
    >>> tm = tone_map_for(np.arange(1000, dtype=np.uint16).reshape(10, 100, 1), 12)
    >>> round(tm.low), round(tm.high)
    (5, 994)
    """
    if pixels.dtype == np.uint8:
        return ToneMap(0.0, 255.0, "")
    colour = pixels[..., : 3 if pixels.shape[2] >= 3 else 1]
    lo, hi = (float(v) for v in np.percentile(colour, [0.5, 99.5]))
    if hi <= lo:  # flat image: fall back to the full range of its bit depth
        lo, hi = 0.0, float((1 << bit_depth) - 1)
    note = (f"{bit_depth}-bit image shown tone-mapped to 8-bit: code values {lo:.0f}–{hi:.0f} "
            f"(the original's 0.5–99.5th percentiles) stretched to 0–255, same mapping for both images")
    return ToneMap(lo, hi, note)


def to_display(pixels: np.ndarray, tone: ToneMap) -> np.ndarray:
    """Tone-map colour channels; an alpha channel is rescaled linearly (it is coverage, not brightness)."""
    if pixels.dtype == np.uint8:
        return pixels
    c = pixels.shape[2]
    if c in (2, 4):
        alpha = (pixels[..., -1:].astype(np.float32) * (255.0 / 65535.0)).round().astype(np.uint8)
        return np.concatenate([tone.apply(pixels[..., :-1]), alpha], axis=2)
    return tone.apply(pixels)


# -- previews ----------------------------------------------------------------------------------------------------
def preview_size(height: int, width: int, max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """Display size (h, w): unchanged when it fits, else scaled so the longest side is ``max_side``.

    Examples
    --------
    >>> preview_size(512, 768)
    (512, 768)
    >>> preview_size(3000, 1500)
    (1024, 512)
    """
    longest = max(height, width)
    if longest <= max_side:
        return height, width
    s = max_side / longest
    return max(1, round(height * s)), max(1, round(width * s))


def resize_display(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an 8-bit display image (Lanczos, via Pillow) to ``size`` = (h, w)."""
    from PIL import Image as PILImage

    if pixels.shape[:2] == size:
        return pixels
    c = pixels.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    arr = pixels[..., 0] if c == 1 else pixels
    im = PILImage.fromarray(np.ascontiguousarray(arr), mode=mode)
    out = np.asarray(im.resize((size[1], size[0]), PILImage.Resampling.LANCZOS))
    return out[..., None] if out.ndim == 2 else out


def _reduce_axis(values: np.ndarray, n_out: int, axis: int, how: str) -> np.ndarray:
    n = values.shape[axis]
    if n_out >= n:
        return values
    # output pixel j covers source pixels [j*n//n_out, (j+1)*n//n_out): aligned with the resized preview
    starts = np.arange(n_out) * n // n_out
    if how == "max":
        return np.maximum.reduceat(values, starts, axis=axis)
    counts = np.diff(np.append(starts, n)).astype(values.dtype)
    shape = [1] * values.ndim
    shape[axis] = n_out
    return np.add.reduceat(values, starts, axis=axis) / counts.reshape(shape)


def _block_reduce(values: np.ndarray, size: tuple[int, int], how: str) -> np.ndarray:
    """Downscale a 2-D float map to ``size`` by block max (so that a one-pixel error survives) or mean.

    Examples
    --------
    >>> m = np.zeros((4, 6)); m[3, 5] = 1
    >>> _block_reduce(m, (2, 3), "max")
    array([[0., 0., 0.],
           [0., 0., 1.]])
    """
    return _reduce_axis(_reduce_axis(values, size[0], 0, how), size[1], 1, how)


# -- error maps --------------------------------------------------------------------------------------------------
def abs_error(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """``max over channels of |x̂ − x|`` as float32 H×W, in the original's code values."""
    diff = np.abs(reconstruction.astype(np.float32) - original.astype(np.float32))
    return diff.max(axis=2)


def error_map(err: np.ndarray, full_scale: float, size: tuple[int, int], cmap: str = "inferno",
              vmax: float | None = None) -> tuple[np.ndarray, float]:
    """Colour-mapped heat map of an absolute error map, downscaled by block *max* to ``size``.

    The colour scale saturates at the 99.9th percentile of the error (never below ``MIN_ERROR_SCALE`` of
    ``full_scale``), which amplifies small errors so that their structure is visible. Returns the RGB map and
    the saturation value (for the legend); pass ``vmax`` to reuse a scale (a crop coloured like its whole map).

    Examples
    --------
    >>> rgb, vmax = error_map(np.zeros((4, 4), np.float32), 255, (4, 4))
    >>> rgb.shape, vmax, bool((rgb == colormap_lut("inferno")[0]).all())
    ((4, 4, 3), 4.0, True)
    """
    if vmax is None:
        vmax = max(float(np.percentile(err, 99.9)) if err.size else 0.0, MIN_ERROR_SCALE * full_scale)
    small = _block_reduce(err, size, "max")
    return _apply(small / vmax, cmap), vmax


def spectral_map(original: np.ndarray, reconstruction: np.ndarray, size_cap: int = DISPLAY_MAX_SIDE,
                 cmap: str = "magma") -> tuple[np.ndarray, str]:
    """Centred log-magnitude spectrum of the error, ``log(1 + |FFT(x̂ − x)|)``, colour-mapped.

    The error is averaged over colour channels, Hann-windowed (so the tile border does not paint a false
    cross through the centre) and, for images larger than ``SPECTRUM_TILE``, the power is averaged over up to
    4×4 tiles spread over the whole image (Welch's method) instead of cropping one region. Centre = low
    frequencies; energy far from the centre = lost or added fine detail (blur, ringing, blocking shows as a
    grid of peaks at multiples of the block frequency). Returns the RGB map and a caption.
    """
    nch = 3 if original.shape[2] >= 3 else 1
    diff = (reconstruction[..., :nch].astype(np.float64) - original[..., :nch].astype(np.float64)).mean(axis=2)
    h, w = diff.shape
    th, tw = min(h, SPECTRUM_TILE), min(w, SPECTRUM_TILE)
    ys = np.unique(np.linspace(0, h - th, min(4, -(-h // th))).round().astype(int))
    xs = np.unique(np.linspace(0, w - tw, min(4, -(-w // tw))).round().astype(int))
    window = np.outer(np.hanning(th) if th > 1 else np.ones(1), np.hanning(tw) if tw > 1 else np.ones(1))
    power = np.zeros((th, tw))
    for y in ys:
        for x in xs:
            tile = diff[y:y + th, x:x + tw]
            power += np.abs(np.fft.fft2((tile - tile.mean()) * window)) ** 2
    power /= len(ys) * len(xs)
    mag = np.log1p(np.sqrt(np.fft.fftshift(power)))
    peak = float(mag.max())
    # an exact reconstruction has no spectrum at all: paint it the colour of zero rather than divide by zero
    norm = mag / peak if peak > 0 else mag
    small = _block_reduce(norm, preview_size(th, tw, size_cap), "mean")
    tiles = len(ys) * len(xs)
    how = f"averaged over {tiles} tiles of {th}×{tw}" if tiles > 1 else f"{th}×{tw}, whole image"
    caption = (f"log(1+|FFT(x̂−x)|), centred (DC in the middle), Hann window, {how}; "
               f"colour scale 0–{peak:.3g}" if peak > 0 else "no error: the spectrum is empty")
    return _apply(small, cmap), caption
