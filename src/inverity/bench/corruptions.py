"""The 15 image corruptions of ImageNet-C at 5 severities, for any image size (Kodak-C / CLIC-C).

Lieberman et al., "Neural Image Compression: Generalization, Robustness, and Spectral Biases" (NeurIPS 2023)
built Kodak-C and CLIC-C by applying the corruptions of Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations" (ICLR 2019; code: ``hendrycks/robustness``,
``ImageNet-C/imagenet_c``) to the Kodak and CLIC images. The reference implementation hard-codes 224-px
ImageNet crops in places and needs ImageMagick (motion blur) and six frost photographs; the ``imagecorruptions``
package (Michaelis et al. 2019), which generalised it to any size, does not run on numpy 2 / scikit-image 0.26.
This module re-implements the fifteen with numpy, scipy, scikit-image and Pillow.

Parameters
----------
Every per-severity parameter table (``CORRUPTIONS[name].params``) is ImageNet-C's, from
``hendrycks/robustness/ImageNet-C/imagenet_c/imagenet_c/corruptions.py``:

============================  =================================================================================
corruption                    parameters per severity 1..5 (ImageNet-C)
============================  =================================================================================
gaussian_noise                σ of additive noise on [0, 1]: .08 .12 .18 .26 .38
shot_noise                    photons per unit intensity (Poisson): 60 25 12 5 3
impulse_noise                 salt-and-pepper fraction (per value): .03 .06 .09 .17 .27
defocus_blur                  (disk radius px, anti-alias σ): (3,.1) (4,.5) (6,.5) (8,.5) (10,.5)
glass_blur                    (Gaussian σ, max shuffle distance px, iterations): (.7,1,2) (.9,2,1) (1,2,3)
                              (1.1,3,2) (1.5,4,2)
motion_blur                   (radius px, σ) of ImageMagick's motion blur, angle ~ U(−45°, 45°): (10,3) (15,5)
                              (15,8) (15,12) (20,15)
zoom_blur                     zoom factors averaged: 1..1.10 step .01, 1..1.15 step .01, 1..1.20 step .02,
                              1..1.25 step .02, 1..1.30 step .03
snow                          (mean, std, zoom, threshold, blur radius, blur σ, blend): (.1,.3,3,.5,10,4,.8)
                              (.2,.3,2,.5,12,4,.7) (.55,.3,4,.9,12,8,.7) (.55,.3,4.5,.85,12,8,.65)
                              (.55,.3,2.5,.85,12,12,.55)
frost                         (image weight, frost weight): (1,.4) (.8,.6) (.7,.7) (.65,.7) (.6,.75)
fog                           (fog amount, fractal wibble decay): (1.5,2) (2,2) (2.5,1.7) (2.5,1.5) (3,1.4)
brightness                    added to HSV value: .1 .2 .3 .4 .5
contrast                      factor around the per-channel mean: .4 .3 .2 .1 .05
elastic_transform             (α, σ, affine jitter) as multiples of 244: (2,.7,.1) (2,.08,.2) (.05,.01,.02)
                              (.07,.01,.02) (.12,.01,.02)
pixelate                      down-scale factor (box filter down and up): .6 .5 .4 .3 .25
jpeg_compression              JPEG quality (Pillow/libjpeg): 25 18 15 10 7
============================  =================================================================================

Any image size
--------------
Pixel-scale parameters (noise, blur radii, shuffle distances, motion-blur length, snow-flake zoom, JPEG quality)
are used as they are, in pixels: they set *which frequencies* a corruption touches, which is what a codec
benchmark probes. What ImageNet-C ties to its 224-px canvas is re-expressed relative to the actual image:

- ``fog``: the diamond-square fractal is generated on the next power of two ≥ max(H, W) (ImageNet-C: 256 for
  224) and cropped, so the fog's structure spans the image as it does in ImageNet-C.
- ``glass_blur``: the shuffle sweeps the whole image (ImageNet-C loops over 224 rows/columns).
- ``pixelate``: the factor applies to the image's own size (ImageNet-C resizes to 224·c).
- ``elastic_transform``: ImageNet-C writes α, σ and the affine jitter as multiples of 244 (its stand-in for the
  image size). With s = min(H, W) / 224, σ and the affine jitter scale by s and α by s², so the displacement
  field (∝ α/σ) and its smoothness keep their size *relative to the image*: a 768×512 Kodak image is warped as
  its 224-px thumbnail would be.
- ``frost``: ImageNet-C adds a random 224-px crop of one of six frost photographs, which cannot be shipped or
  downloaded here; :func:`frost_texture` synthesises one procedurally at the image's size (hexagonal dendrites —
  branches at ±60° — on a patchy fractal haze, with sparse hoarfrost grains, slightly blue), at the pixel scale of
  the photographs (crystals a few to ~50 px long).

Implementation notes (the same operations, without OpenCV, Wand or numba): motion blur is ImageMagick's one-sided
Gaussian-weighted line kernel, applied as a sum of shifted copies with edge replication; the glass-blur pixel
shuffle swaps every pixel with a random neighbour in [−d, d) as ImageNet-C does, but visits the pixels in
(2d)² interleaved sub-lattices — each sub-lattice's swaps are disjoint, so it is vectorised — instead of one
raster sweep (same per-pixel displacement law, different visit order). Output is rounded (ImageNet-C truncates).

Determinism: each call draws from its own ``numpy.random.Generator`` seeded by ``(seed, corruption, severity,
key)`` — ``key`` names the image (file name or index) — so a dataset is reproducible image by image and in any
order or process.
"""
from __future__ import annotations

import io
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, UnknownIdError

__all__ = ["CORRUPTIONS", "FAMILIES", "SEVERITIES", "Corruption", "corrupt", "corrupt_dataset",
           "corruption_names", "frost_texture", "plasma_fractal", "make_rng"]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
FAMILIES: tuple[str, ...] = ("noise", "blur", "weather", "digital")

Fn = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption: its ``name``, ``family`` (noise/blur/weather/digital), the function and its five
    per-severity parameter sets (``params[severity - 1]``)."""

    name: str
    family: str
    fn: Fn
    params: tuple[Any, ...]

    def __call__(self, image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        return self.fn(image, self.params[severity - 1], rng)


# ---------------------------------------------------------------------------------------------------------------
# helpers


def make_rng(seed: int, name: str, severity: int, key: str | int = 0) -> np.random.Generator:
    """The generator for one (seed, corruption, severity, image) — independent of call order.

    Examples
    --------
    >>> a = make_rng(0, "snow", 3, "kodim01.png").random()
    >>> b = make_rng(0, "snow", 3, "kodim01.png").random()
    >>> a == b, a == make_rng(0, "snow", 3, "kodim02.png").random()
    (True, False)
    """
    words = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, zlib.crc32(name.encode()), int(severity),
             zlib.crc32(str(key).encode())]
    return np.random.default_rng(np.random.SeedSequence(words))


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (OpenCV's RGB2GRAY weights), H×W."""
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Spatial Gaussian blur of an H×W or H×W×C float array (channels independent)."""
    from scipy import ndimage

    sig = (sigma, sigma) + (0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(x, sig, mode=mode, truncate=truncate)


def _shift_sum(x: np.ndarray, offsets: list[tuple[int, int]], weights: np.ndarray) -> np.ndarray:
    """Σ_i w_i · x(p + offset_i) with edge replication — a sparse (line) kernel without a dense convolution."""
    m = max([max(abs(dy), abs(dx)) for dy, dx in offsets] + [0])
    pad = [(m, m), (m, m)] + [(0, 0)] * (x.ndim - 2)
    xp = np.pad(x, pad, mode="edge")
    h, w = x.shape[:2]
    out = np.zeros(x.shape, dtype=np.float64)
    for (dy, dx), wt in zip(offsets, weights):
        out += wt * xp[m + dy:m + dy + h, m + dx:m + dx + w]
    return out


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle_deg: float) -> np.ndarray:
    """ImageMagick ``MotionBlurImage``: a one-sided line of 2·radius+1 taps with Gaussian weights exp(−i²/2σ²),
    stepping one pixel at a time along ``angle`` (degrees, 0 = +x, 90 = +y), offsets rounded to the grid."""
    width = 2 * int(radius) + 1
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i ** 2) / (2.0 * sigma ** 2))
    weights /= weights.sum()
    a = math.radians(angle_deg)
    h, w = x.shape[:2]
    offsets: list[tuple[int, int]] = []
    kept: list[float] = []
    for k in range(width):
        dy, dx = int(round(k * math.sin(a))), int(round(k * math.cos(a)))
        if abs(dy) >= h or abs(dx) >= w:      # the streak left the image: stop, as imagecorruptions does
            break
        offsets.append((dy, dx))
        kept.append(float(weights[k]))
    wk = np.asarray(kept)
    return _shift_sum(x, offsets, wk / wk.sum())


def _zoom_about_centre(x: np.ndarray, z: float) -> np.ndarray:
    """Magnify by ``z`` ≥ 1 about the centre, bilinear, same shape (ImageNet-C's ``clipped_zoom``)."""
    from scipy import ndimage

    h, w = x.shape[:2]
    ch, cw = (h - 1) / 2.0, (w - 1) / 2.0
    if x.ndim == 2:
        return ndimage.affine_transform(x, [1.0 / z, 1.0 / z], offset=[ch - ch / z, cw - cw / z],
                                        order=1, mode="nearest")
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        out[..., c] = ndimage.affine_transform(x[..., c], [1.0 / z, 1.0 / z],
                                               offset=[ch - ch / z, cw - cw / z], order=1, mode="nearest")
    return out


def _reflect_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Dense 2-D correlation per channel with reflect-101 borders (OpenCV ``filter2D``), via FFT."""
    from scipy.signal import fftconvolve

    r0, r1 = kernel.shape[0] // 2, kernel.shape[1] // 2
    k = kernel[::-1, ::-1]
    pad = [(r0, r0), (r1, r1)] + [(0, 0)] * (x.ndim - 2)
    xp = np.pad(x, pad, mode="reflect")
    if x.ndim == 2:
        return fftconvolve(xp, k, mode="valid")
    return fftconvolve(xp, k[..., None], mode="valid", axes=(0, 1))


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map (``mapsize`` a power of two) in [0, 1] — ImageNet-C's fog layer.

    The random displacement ("wibble") starts at 100 on the coarsest grid and is divided by ``wibbledecay`` at
    every halving of the step, so a smaller decay keeps more fine structure.

    Examples
    --------
    >>> m = plasma_fractal(64, 2.0, np.random.default_rng(0))
    >>> m.shape, float(m.min()), float(m.max())
    ((64, 64), 0.0, 1.0)
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    a = np.zeros((mapsize, mapsize), dtype=np.float64)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(s: np.ndarray) -> np.ndarray:
        return s / 4.0 + wibble * rng.uniform(-wibble, wibble, s.shape)

    while step >= 2:
        half = step // 2
        # squares: the centre of each square of corners gets their mean plus noise
        corners = a[0:mapsize:step, 0:mapsize:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        a[half:mapsize:step, half:mapsize:step] = wibbled_mean(sq)
        # diamonds: edge midpoints get the mean of their two corners and two centres plus noise
        centres = a[half:mapsize:step, half:mapsize:step]
        corners = a[0:mapsize:step, 0:mapsize:step]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        a[0:mapsize:step, half:mapsize:step] = wibbled_mean(top)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        a[half:mapsize:step, 0:mapsize:step] = wibbled_mean(left)
        step //= 2
        wibble /= wibbledecay
    a -= a.min()
    peak = a.max()
    return a / peak if peak > 0 else a


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def frost_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic frost layer, H×W×3 float in [0, 255] (stand-in for ImageNet-C's frost photographs).

    Ice on a window pane grows as hexagonal dendrites — needles with feathery side branches at ±60° — denser
    where the glass nucleates, over a translucent white haze. Here: a fractal density field places the trunks
    (many where it is high, few where it is low); each trunk gets side branches at ±60° along its length and
    those get their own; every segment is splatted with bilinear weights (anti-aliased), thinly blurred, and
    given a soft glow; a patchy haze and sparse bright grains are added; the tint is a cold blue-white.

    Examples
    --------
    >>> t = frost_texture(40, 60, np.random.default_rng(1))
    >>> t.shape, bool(t.min() >= 0), bool(t.max() <= 255)
    ((40, 60, 3), True, True)
    """
    h, w = int(height), int(width)
    ms = _next_pow2(max(h, w, 2))
    field = plasma_fractal(ms, 1.7, rng)[:h, :w]
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-9)

    # trunks: up to one per 90 px², kept with probability 0.2 + 0.8·field (everywhere, denser in patches)
    n_try = max(8, int(h * w / 90))
    ys, xs = rng.uniform(0, h, n_try), rng.uniform(0, w, n_try)
    dens = 0.2 + 0.8 * field[ys.astype(int).clip(0, h - 1), xs.astype(int).clip(0, w - 1)]
    keep = rng.random(n_try) < dens
    ys, xs = ys[keep], xs[keep]
    n = len(ys)
    # a common growth direction per region (crystals on a pane grow in loosely aligned sheaves)
    ang = rng.uniform(0, 2 * np.pi, n)
    length = rng.lognormal(math.log(14.0), 0.5, n).clip(3, 70)
    inten = rng.uniform(0.35, 0.9, n)
    segs = [(ys, xs, ang, length, inten)]
    for k, shrink in ((6, 0.4), (3, 0.45)):          # feathers: k side branches at ±60° per parent
        py, px, pa, pl, pi = segs[-1]
        idx = np.repeat(np.arange(len(py)), k)
        t = rng.uniform(0.1, 0.95, len(idx))
        by = py[idx] + t * pl[idx] * np.sin(pa[idx])
        bx = px[idx] + t * pl[idx] * np.cos(pa[idx])
        ba = pa[idx] + rng.choice([-1.0, 1.0], len(idx)) * np.pi / 3 + rng.normal(0, 0.06, len(idx))
        bl = pl[idx] * shrink * rng.uniform(0.4, 1.0, len(idx)) * (1.0 - 0.5 * t)
        bi = pi[idx] * rng.uniform(0.6, 0.9, len(idx))
        segs.append((by, bx, ba, bl, bi))

    canvas = np.zeros(h * w, dtype=np.float64)
    for sy, sx, sa, sl, si in segs:
        if len(sy) == 0:
            continue
        steps = np.maximum(2, np.ceil(sl * 2).astype(int))          # a sample every half pixel
        seg = np.repeat(np.arange(len(sy)), steps)
        start = np.concatenate([[0], np.cumsum(steps)[:-1]])
        frac = (np.arange(len(seg)) - start[seg]) / (steps[seg] - 1)
        py = sy[seg] + frac * sl[seg] * np.sin(sa[seg])
        px = sx[seg] + frac * sl[seg] * np.cos(sa[seg])
        val = si[seg] * 0.5                                         # two samples per pixel → ≈ intensity
        y0, x0 = np.floor(py), np.floor(px)
        fy, fx = py - y0, px - x0
        for oy, ox, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                           (1, 1, fy * fx)):
            yy, xx = (y0 + oy).astype(int), (x0 + ox).astype(int)
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            canvas += np.bincount(yy[ok] * w + xx[ok], weights=(val * wt)[ok], minlength=h * w)
    lines = np.tanh(canvas.reshape(h, w) * 1.5)                     # overlapping needles saturate, softly
    crystals = 0.7 * _gaussian(lines, 0.5) + 0.6 * _gaussian(lines, 2.5)
    grains = (rng.random((h, w)) < 0.004 * (0.2 + field)) * rng.uniform(0.2, 0.6, (h, w))
    grains = _gaussian(grains, 0.7) * 2.0
    haze = 0.15 + 0.35 * field + 0.1 * _gaussian(rng.random((h, w)), 1.5)
    v = np.clip(haze + crystals + grains, 0, 1)
    tint = np.array([0.82, 0.9, 1.0])
    return np.clip(v[..., None] * tint * 255.0, 0, 255)


# ---------------------------------------------------------------------------------------------------------------
# the corruptions: each takes x (H×W×3 float64 in [0, 255]), one parameter set and a generator; returns float


def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return (np.clip(x / 255.0 + rng.normal(0.0, c, x.shape), 0, 1)) * 255.0


def _shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.poisson(x / 255.0 * c) / float(c), 0, 1) * 255.0


def _impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    # skimage.util.random_noise(mode="s&p", amount=c): each value (per channel) is replaced with prob. c,
    # half by 0 and half by 1
    out = x.copy()
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out[hit & salt] = 255.0
    out[hit & ~salt] = 0.0
    return out


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    from scipy import ndimage

    r = 8 if radius <= 8 else int(radius)
    ll = np.arange(-r, r + 1)
    xx, yy = np.meshgrid(ll, ll)
    d = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    d /= d.sum()
    # OpenCV GaussianBlur with a 3×3 (5×5 for r > 8) window: truncate the Gaussian at that half-width
    half = 1 if radius <= 8 else 2
    return ndimage.gaussian_filter(d, alias_blur, mode="reflect", truncate=half / alias_blur)


def _defocus_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    return np.clip(_reflect_conv(x, _disk(c[0], c[1])), 0, 255)


def _glass_blur(x: np.ndarray, c: tuple[float, int, int], rng: np.random.Generator) -> np.ndarray:
    sigma, d, iters = c
    y = np.floor(np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255.0)   # ImageNet-C: np.uint8(... * 255)
    h, w = y.shape[:2]
    rows = np.arange(h - d, d, -1)          # ImageNet-C: range(224 - d, d, -1); here the image's own size
    cols = np.arange(w - d, d, -1)
    if len(rows) and len(cols):
        for _ in range(iters):
            # visit (2d)² interleaved sub-lattices; within one, sources and targets are all distinct
            for oy in range(2 * d):
                for ox in range(2 * d):
                    hh = rows[oy::2 * d]
                    ww = cols[ox::2 * d]
                    if not len(hh) or not len(ww):
                        continue
                    H, W = np.meshgrid(hh, ww, indexing="ij")
                    dxy = rng.integers(-d, d, size=(2,) + H.shape)
                    H2, W2 = H + dxy[1], W + dxy[0]
                    a = y[H, W].copy()
                    y[H, W] = y[H2, W2]
                    y[H2, W2] = a
    return np.clip(_gaussian(y / 255.0, sigma), 0, 1) * 255.0


def _motion_blur_c(x: np.ndarray, c: tuple[int, float], rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(-45, 45)
    return np.clip(_motion_blur(x, c[0], c[1], angle), 0, 255)


def _zoom_blur(x: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    zooms = np.arange(*c)
    out = x.copy()
    for z in zooms:
        out += _zoom_about_centre(x, float(z))
    return np.clip(out / (len(zooms) + 1), 0, 255)


def _snow(x: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, thresh, radius, sigma, blend = c
    f = x / 255.0
    h, w = f.shape[:2]
    layer = rng.normal(loc, scale, (h, w))
    layer = _zoom_about_centre(layer, zoom)          # bigger flakes
    layer[layer < thresh] = 0
    layer = np.clip(layer, 0, 1)
    layer = _motion_blur(layer, int(radius), sigma, rng.uniform(-135, -45))   # falling streaks
    layer = np.round(np.clip(layer, 0, 1) * 255) / 255.0
    layer = layer[..., None]
    f = blend * f + (1 - blend) * np.maximum(f, _gray(f)[..., None] * 1.5 + 0.5)
    return np.clip(f + layer + np.rot90(layer, k=2), 0, 1) * 255.0


def _frost(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    fr = frost_texture(x.shape[0], x.shape[1], rng)
    return np.clip(c[0] * x + c[1] * fr, 0, 255)


def _fog(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    f = x / 255.0
    max_val = f.max()
    h, w = f.shape[:2]
    f = f + c[0] * plasma_fractal(_next_pow2(max(h, w)), c[1], rng)[:h, :w][..., None]
    return np.clip(f * max_val / (max_val + c[0]), 0, 1) * 255.0


def _brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from skimage import color

    hsv = color.rgb2hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(color.hsv2rgb(hsv), 0, 1) * 255.0


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 255)


def _elastic(x: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage
    from skimage import transform

    h, w = x.shape[:2]
    s = min(h, w) / 224.0
    alpha, sigma, jitter = 244 * c[0] * s * s, 244 * c[1] * s, 244 * c[2] * s
    f = x / 255.0
    # random affine: jitter three control points around the centre (ImageNet-C's cv2.getAffineTransform step)
    centre = np.array([w / 2.0, h / 2.0])
    sq = min(h, w) // 3
    src = np.array([centre + sq, [centre[0] + sq, centre[1] - sq], centre - sq])
    dst = src + rng.uniform(-jitter, jitter, src.shape)
    sol = np.linalg.solve(np.c_[src, np.ones(3)], dst)          # exact affine through the three pairs
    tf = transform.AffineTransform(matrix=np.vstack([sol.T, [0.0, 0.0, 1.0]]))
    f = transform.warp(f, tf.inverse, order=1, mode="reflect", preserve_range=True)
    # smooth random displacement field; gaussian over uniform(−1, 1), truncated at 3σ as ImageNet-C
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3) * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([yy + dy, xx + dx])
    out = np.empty_like(f)
    for ch in range(f.shape[2]):
        out[..., ch] = ndimage.map_coordinates(f[..., ch], coords, order=1, mode="reflect")
    return np.clip(out, 0, 1) * 255.0


def _pil(x: np.ndarray) -> Any:
    from PIL import Image as PILImage

    return PILImage.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), mode="RGB")


def _pixelate(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image as PILImage

    h, w = x.shape[:2]
    im = _pil(x).resize((max(1, int(w * c)), max(1, int(h * c))), PILImage.Resampling.BOX)
    return np.asarray(im.resize((w, h), PILImage.Resampling.BOX), dtype=np.float64)


def _jpeg(x: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    _pil(x).save(buf, "JPEG", quality=int(c))
    buf.seek(0)
    return np.asarray(PILImage.open(buf).convert("RGB"), dtype=np.float64)


def _table() -> dict[str, Corruption]:
    rows: list[tuple[str, str, Fn, tuple[Any, ...]]] = [
        ("gaussian_noise", "noise", _gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38)),
        ("shot_noise", "noise", _shot_noise, (60, 25, 12, 5, 3)),
        ("impulse_noise", "noise", _impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27)),
        ("defocus_blur", "blur", _defocus_blur, ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))),
        ("glass_blur", "blur", _glass_blur, ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))),
        ("motion_blur", "blur", _motion_blur_c, ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))),
        # (start, stop, step) of np.arange, as ImageNet-C writes them
        ("zoom_blur", "blur", _zoom_blur, ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02),
                                           (1, 1.31, 0.03))),
        ("snow", "weather", _snow, ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                                    (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                                    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))),
        ("frost", "weather", _frost, ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))),
        ("fog", "weather", _fog, ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))),
        ("brightness", "weather", _brightness, (0.1, 0.2, 0.3, 0.4, 0.5)),
        ("contrast", "digital", _contrast, (0.4, 0.3, 0.2, 0.1, 0.05)),
        ("elastic_transform", "digital", _elastic, ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02),
                                                    (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))),
        ("pixelate", "digital", _pixelate, (0.6, 0.5, 0.4, 0.3, 0.25)),
        ("jpeg_compression", "digital", _jpeg, (25, 18, 15, 10, 7)),
    ]
    return {name: Corruption(name, fam, fn, params) for name, fam, fn, params in rows}


#: name → :class:`Corruption`, in ImageNet-C's order (noise, blur, weather, digital)
CORRUPTIONS: dict[str, Corruption] = _table()


def corruption_names(family: str | None = None) -> list[str]:
    """The corruption names, optionally of one family.

    Examples
    --------
    >>> len(corruption_names()), corruption_names("noise")
    (15, ['gaussian_noise', 'shot_noise', 'impulse_noise'])
    """
    return [n for n, c in CORRUPTIONS.items() if family is None or c.family == family]


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0, *, key: str | int = 0) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1..5) to a uint8 image; returns uint8 of the same shape.

    Parameters
    ----------
    image
        uint8 array H×W×3 (RGB). Gray (H×W or H×W×1) is corrupted as RGB and returned as gray (BT.601 luma);
        an alpha channel (H×W×4, H×W×2) passes through untouched.
    name
        One of :data:`CORRUPTIONS` (e.g. ``"gaussian_noise"``).
    severity
        1 (mild) to 5 (severe).
    seed, key
        The generator is seeded by ``(seed, name, severity, key)``; give each image its own ``key`` (its file
        name) so that images of one corrupted set get independent noise, reproducibly.

    Examples
    --------
    >>> x = np.full((16, 24, 3), 128, np.uint8)
    >>> y = corrupt(x, "gaussian_noise", 3, seed=1)
    >>> y.shape, y.dtype, bool((y == corrupt(x, "gaussian_noise", 3, seed=1)).all())
    ((16, 24, 3), dtype('uint8'), True)
    """
    try:
        spec = CORRUPTIONS[name]
    except KeyError:
        raise UnknownIdError("corruption", name, list(CORRUPTIONS)) from None
    if int(severity) not in SEVERITIES:
        raise InputError(f"severity must be 1..5, got {severity}")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"corruptions take uint8 images, got {arr.dtype}")
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"expected an H×W×C image with C in 1..4, got shape {np.asarray(image).shape}")
    nc = arr.shape[2]
    colour = arr[..., :3] if nc >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    rng = make_rng(seed, name, int(severity), key)
    out = spec(colour.astype(np.float64), int(severity), rng)
    out = np.clip(np.rint(out), 0, 255)
    if nc < 3:
        out = np.clip(np.rint(_gray(out)), 0, 255)[..., None]
    res = out.astype(np.uint8)
    if nc in (2, 4):
        res = np.concatenate([res, arr[..., -1:]], axis=2)
    return res[:, :, 0] if squeeze else res


def corrupt_dataset(data: str | os.PathLike[str], out: str | os.PathLike[str], *, seed: int = 0,
                    corruptions: Sequence[str] | None = None, severities: Sequence[int] | None = None,
                    limit: int | None = None, overwrite: bool = True,
                    progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write the corrupted copies of every image under ``data``: ``out/<corruption>/<severity>/<name>.png``.

    ``<name>`` is the image's path relative to ``data`` (suffix replaced by ``.png``), which is also the seed
    key, so each file is reproducible on its own. Writes are atomic; ``overwrite=False`` keeps files that exist
    (resume). ``progress(done, total, label)`` is called after each file. Returns the paths written or kept.
    """
    from ._data import corrupted_path, image_key, list_images, read_pixels, write_png

    names = list(corruptions) if corruptions else list(CORRUPTIONS)
    for n in names:
        if n not in CORRUPTIONS:
            raise UnknownIdError("corruption", n, list(CORRUPTIONS))
    sevs = [int(s) for s in (severities or SEVERITIES)]
    for s in sevs:
        if s not in SEVERITIES:
            raise InputError(f"severity must be 1..5, got {s}")
    root, out_p = Path(data), Path(out)
    files = list_images(root, limit)
    if not files:
        raise InputError(f"{root}: no images found")
    total, done, written = len(files) * len(names) * len(sevs), 0, []
    for f in files:
        key = image_key(f, root)
        px = None
        for n in names:
            for s in sevs:
                dest = corrupted_path(out_p, n, s, key)
                if overwrite or not dest.exists():
                    if px is None:
                        px = read_pixels(f)
                        if px.dtype != np.uint8:
                            raise InputError(f"{f}: corruptions take 8-bit images, got {px.dtype}")
                    write_png(dest, corrupt(px, n, s, seed, key=key))
                written.append(dest)
                done += 1
                if progress:
                    progress(done, total, f"{n}/{s}/{key}")
    return written
