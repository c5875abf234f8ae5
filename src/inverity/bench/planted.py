"""Planted errors: plausible-but-wrong reconstructions, and benign ones, to measure what the verifier catches.

A learned codec does not fail like JPEG. It fails locally and plausibly: a small lesion smoothed into the
background, a line or a block of text moved by a pixel or three, a text region softened until it no longer
reads, a patch of texture that looks right but came from somewhere else. Global PSNR barely moves. This module
plants exactly those errors — each keeping global PSNR ≥ 35 dB so averages cannot see it — and then passes the
edited image through a benign codec, so the verifier has to tell an edit from ordinary compression noise:

=================  =====================================================================================
edit               what the reconstruction gets wrong
=================  =====================================================================================
``blob_remove``    a lesion-like spot (radius 2–7 px) present in the original is gone (perfect inpainting)
``line_shift``     a small window around a strong edge or line is moved by 1–3 px
``text_shift``     a larger block of structure (a word, a label, a row of UI) is moved by 1–3 px
``text_blur``      a region with fine structure is Gaussian-blurred (σ 1–2 px), feathered into its surround
``patch_replace``  a textured patch is replaced by the most similar-looking patch from elsewhere
=================  =====================================================================================

Benign reconstructions are real codecs at high quality: JPEG q90–98 (4:4:4 and 4:2:0), JPEG XL distance
0.3–1.0 and WebP q90–98 (imagecodecs). Everything is deterministic for a seed.

The built-in corpus (:func:`builtin_corpus`) needs nothing but installed packages: photographs from
scikit-image, medical images (Shepp–Logan phantom, retina, microaneurysms, pydicom's CT and MR slices scaled to
8 bit), and drawings (scikit-image's page and text, plus synthesised line art, engineering drawings, UI
screenshots and text pages).

Examples
--------
>>> import numpy as np
>>> img = synth_engineering(np.random.default_rng(0), 128, 160)
>>> case = make_case(img, "text_shift", seed=3, kind="drawing")
>>> case.label, case.edit, case.original.shape == case.candidate.shape
('planted', 'text_shift', True)
>>> case.psnr_edit >= 35.0
True
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "EDITS", "BENIGN", "KINDS", "Sample", "Case", "builtin_corpus", "plant", "benign", "make_case", "cases",
    "synth_line_art", "synth_engineering", "synth_ui", "synth_text_page",
]

#: plausible-but-wrong edits
EDITS: tuple[str, ...] = ("blob_remove", "line_shift", "text_shift", "text_blur", "patch_replace")
#: benign reconstructions (real codecs at high quality)
BENIGN: tuple[str, ...] = ("jpeg444", "jpeg420", "jxl", "webp")
#: content kinds of the built-in corpus
KINDS: tuple[str, ...] = ("photo", "medical", "drawing")

MIN_EDIT_PSNR = 35.0
_MIN_CHANGED = 16   # an edit must change at least this many pixels by ≥ 12 levels to count as one
_MIN_SIDE = 8       # and span at least this many pixels


@dataclass
class Sample:
    """One corpus image: ``pixels`` H×W×C uint8, its ``kind`` and a ``name``."""

    name: str
    kind: str
    pixels: np.ndarray


@dataclass
class Case:
    """An (original, candidate) pair and the truth about it."""

    original: np.ndarray
    candidate: np.ndarray
    label: str                     # "planted" or "benign"
    edit: str                      # an EDITS or BENIGN name
    kind: str = ""
    name: str = ""
    box: tuple[int, int, int, int] | None = None   # (y0, x0, y1, x1) of the edit
    description: str = ""
    psnr_edit: float = math.inf    # PSNR of the edit alone (before the benign codec)
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# synthetic content


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


_WORDS = ("the", "valve", "flow", "rate", "max", "input", "signal", "part", "scale", "axis", "note", "see",
          "detail", "bolt", "M6", "steel", "rev", "B", "12.5", "Ø40", "±0.1", "mm", "sheet", "2/3", "qty",
          "open", "file", "edit", "view", "help", "save", "cancel", "OK", "status", "ready", "user", "login")


def _words(rng: np.random.Generator, n: int) -> str:
    return " ".join(str(rng.choice(_WORDS)) for _ in range(n))


def synth_line_art(rng: np.random.Generator, h: int = 384, w: int = 512) -> np.ndarray:
    """Black ink on paper: strokes of varied width, circles, curves and hatching (comic/sketch-like), gray."""
    from PIL import Image as PILImage, ImageDraw

    im = PILImage.new("L", (w, h), int(rng.integers(235, 256)))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(12, 24))):
        kind = rng.integers(0, 4)
        width = int(rng.integers(1, 4))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:
            d.line([(x0, y0), (int(rng.integers(0, w)), int(rng.integers(0, h)))], fill=0, width=width)
        elif kind == 1:
            r = int(rng.integers(6, max(8, min(h, w) // 5)))
            d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=0, width=width)
        elif kind == 2:  # a curve through random control points
            t = np.linspace(0, 1, 40)
            pts = rng.integers(0, [w, h], size=(3, 2)).astype(float)
            curve = ((1 - t) ** 2)[:, None] * pts[0] + (2 * t * (1 - t))[:, None] * pts[1] + (t ** 2)[:, None] * pts[2]
            d.line([tuple(p) for p in curve], fill=0, width=width)
        else:  # hatching
            bw, bh = int(rng.integers(20, 80)), int(rng.integers(20, 80))
            for k in range(0, bw, int(rng.integers(3, 7))):
                d.line([(x0 + k, y0), (x0 + k + bh // 2, y0 + bh)], fill=int(rng.integers(0, 80)), width=1)
    return np.asarray(im)[:, :, None].copy()


def synth_engineering(rng: np.random.Generator, h: int = 384, w: int = 512) -> np.ndarray:
    """An engineering drawing: outlines, holes with centre marks, dimension lines with arrows and labels, a
    title block; dark lines on white or white on blueprint blue (RGB)."""
    from PIL import Image as PILImage, ImageDraw

    blueprint = bool(rng.random() < 0.3)
    bg, ink = ((20, 60, 140), (235, 240, 255)) if blueprint else ((255, 255, 255), (10, 10, 10))
    im = PILImage.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    font = _font(int(rng.integers(10, 15)))
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = int(rng.integers(10, w // 2)), int(rng.integers(10, h // 2))
        x1, y1 = int(rng.integers(x0 + 30, w - 10)), int(rng.integers(y0 + 30, h - 10))
        d.rectangle([x0, y0, x1, y1], outline=ink, width=int(rng.integers(1, 3)))
        for _ in range(int(rng.integers(1, 4))):  # holes
            cx, cy = int(rng.integers(x0 + 8, x1 - 7)), int(rng.integers(y0 + 8, y1 - 7))
            r = int(rng.integers(3, max(4, min(x1 - x0, y1 - y0) // 4)))
            d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=1)
            d.line([(cx - r - 3, cy), (cx + r + 3, cy)], fill=ink, width=1)
            d.line([(cx, cy - r - 3), (cx, cy + r + 3)], fill=ink, width=1)
        yd = min(h - 12, y1 + 12)  # a dimension line with arrows and its value
        d.line([(x0, yd), (x1, yd)], fill=ink, width=1)
        for xa, s in ((x0, 1), (x1, -1)):
            d.polygon([(xa, yd), (xa + 6 * s, yd - 3), (xa + 6 * s, yd + 3)], fill=ink)
        d.text(((x0 + x1) // 2 - 12, yd - 14), f"{(x1 - x0) / 4:.1f}", fill=ink, font=font)
    tx, ty = w - 170, h - 50  # title block
    d.rectangle([tx, ty, w - 4, h - 4], outline=ink, width=1)
    d.line([(tx, ty + 22), (w - 4, ty + 22)], fill=ink, width=1)
    d.text((tx + 4, ty + 4), _words(rng, 3), fill=ink, font=font)
    d.text((tx + 4, ty + 26), _words(rng, 2), fill=ink, font=font)
    return np.asarray(im).copy()


def synth_ui(rng: np.random.Generator, h: int = 384, w: int = 512) -> np.ndarray:
    """A UI screenshot: title bar, side bar, buttons with labels, text rows, a coloured chart (RGB)."""
    from PIL import Image as PILImage, ImageDraw

    dark = bool(rng.random() < 0.3)
    bg = (32, 33, 36) if dark else (246, 247, 249)
    fg = (230, 230, 230) if dark else (30, 30, 30)
    accent = tuple(int(v) for v in rng.integers(30, 220, 3))
    im = PILImage.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    font, small = _font(13), _font(11)
    d.rectangle([0, 0, w, 26], fill=accent)
    d.text((8, 6), _words(rng, 3).title(), fill=(255, 255, 255), font=font)
    side = int(rng.integers(90, 140))
    d.rectangle([0, 27, side, h], fill=(45, 46, 50) if dark else (232, 234, 238))
    for i in range(int(rng.integers(5, 10))):
        d.text((10, 40 + 24 * i), _words(rng, 1).title(), fill=fg, font=font)
    y = 40
    while y < h - 60:
        row = rng.integers(0, 3)
        if row == 0:  # buttons
            x = side + 12
            for _ in range(int(rng.integers(1, 4))):
                label = _words(rng, 1).upper()
                bw = 14 + 8 * len(label)
                d.rounded_rectangle([x, y, x + bw, y + 24], radius=4, fill=accent)
                d.text((x + 7, y + 5), label, fill=(255, 255, 255), font=small)
                x += bw + 10
            y += 34
        elif row == 1:  # text lines
            for _ in range(int(rng.integers(1, 4))):
                d.text((side + 12, y), _words(rng, int(rng.integers(3, 9))), fill=fg, font=font)
                y += 18
            y += 6
        else:  # a small bar chart
            for k in range(int(rng.integers(4, 9))):
                bh = int(rng.integers(5, 40))
                col = tuple(int(v) for v in rng.integers(40, 230, 3))
                d.rectangle([side + 12 + 16 * k, y + 40 - bh, side + 24 + 16 * k, y + 40], fill=col)
            d.line([(side + 8, y + 41), (side + 16 * 9 + 16, y + 41)], fill=fg, width=1)
            y += 50
    return np.asarray(im).copy()


def synth_text_page(rng: np.random.Generator, h: int = 320, w: int = 448) -> np.ndarray:
    """A page of text in two or three sizes, dark on light paper with slight shading (gray)."""
    from PIL import Image as PILImage, ImageDraw

    paper = int(rng.integers(215, 250))
    im = PILImage.new("L", (w, h), paper)
    d = ImageDraw.Draw(im)
    y = int(rng.integers(4, 14))
    while y < h - 14:
        size = int(rng.choice([10, 12, 14, 18]))
        d.text((int(rng.integers(6, 20)), y), _words(rng, int(rng.integers(4, 10))),
               fill=int(rng.integers(0, 60)), font=_font(size))
        y += size + int(rng.integers(3, 9))
    arr = np.asarray(im).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    arr += 8 * np.sin(xx / (w / 2.5) + yy / h)  # uneven illumination, like a scan
    return np.clip(arr, 0, 255).astype(np.uint8)[:, :, None]


# ---------------------------------------------------------------------------------------------------------------
# built-in corpus


def _to8(a: np.ndarray) -> np.ndarray:
    """Any-range array → uint8 H×W×C by min/max scaling (for float phantoms and 12-bit DICOM)."""
    a = np.asarray(a, np.float64)
    lo, hi = float(a.min()), float(a.max())
    out = np.round((a - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def _shrink(a: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area average, integer factor) so the longer side is ≤ max_side."""
    f = int(math.ceil(max(a.shape[:2]) / max_side))
    if f <= 1:
        return a
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    v = a[:h, :w].astype(np.float32).reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3))
    return np.round(v).astype(np.uint8)


def builtin_corpus(kinds: tuple[str, ...] = KINDS, *, seed: int = 0, max_side: int = 384) -> list[Sample]:
    """The built-in images, by kind; synthetic ones are drawn with ``seed``. Needs no downloads.

    Photos: scikit-image astronaut, chelsea, coffee, rocket, camera. Medical: Shepp–Logan phantom, two retina
    crops, microaneurysms, immunohistochemistry crop, pydicom CT_small and MR_small (scaled to 8 bit).
    Drawings: scikit-image page and text, synthesised line art, engineering drawing, UI screenshot, text page.
    """
    import warnings

    from skimage import data as skd

    out: list[Sample] = []
    rng = np.random.default_rng(seed)

    def add(name: str, kind: str, make: Callable[[], np.ndarray]) -> None:
        if kind not in kinds:
            return
        a = make()
        a = a[:, :, None] if a.ndim == 2 else a
        out.append(Sample(name, kind, np.ascontiguousarray(_shrink(a, max_side))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
            add(n, "photo", getattr(skd, n))
        add("shepp_logan_phantom", "medical", lambda: _to8(skd.shepp_logan_phantom()))
        add("retina_disc", "medical", lambda: skd.retina()[300:812, 700:1212])
        add("retina_vessels", "medical", lambda: skd.retina()[700:1212, 250:762])
        add("microaneurysms", "medical", lambda: skd.microaneurysms())
        add("ihc", "medical", lambda: skd.immunohistochemistry()[:384, :384])
        for f in ("CT_small.dcm", "MR_small.dcm"):
            def dicom(f: str = f) -> np.ndarray:
                import pydicom
                from pydicom.data import get_testdata_file

                return _to8(pydicom.dcmread(str(get_testdata_file(f))).pixel_array)
            add(f.split(".")[0], "medical", dicom)
        add("page", "drawing", skd.page)
        add("text", "drawing", skd.text)
        add("line_art", "drawing", lambda: synth_line_art(rng))
        add("engineering", "drawing", lambda: synth_engineering(rng))
        add("ui", "drawing", lambda: synth_ui(rng))
        add("text_page", "drawing", lambda: synth_text_page(rng))
    return out


# ---------------------------------------------------------------------------------------------------------------
# planting


def _luma(a: np.ndarray) -> np.ndarray:
    f = a.astype(np.float32) / 255.0
    return f[:, :, :3] @ np.array([0.299, 0.587, 0.114], np.float32) if f.shape[2] >= 3 else f[:, :, 0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    m = float(np.mean(d * d))
    return math.inf if m == 0 else 10 * math.log10(255.0 ** 2 / m)


def _grad(l: np.ndarray) -> np.ndarray:
    from ..metrics import gradient_magnitude

    return gradient_magnitude(l)


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(x.astype(np.float32), size=size, mode="nearest")


def _pick(score: np.ndarray, rng: np.random.Generator, margin: int, top: float = 0.1) -> tuple[int, int]:
    """A random position among the highest-scoring ``top`` fraction, at least ``margin`` from the border."""
    h, w = score.shape
    m = np.full_like(score, -np.inf)
    if h > 2 * margin and w > 2 * margin:
        m[margin:h - margin, margin:w - margin] = score[margin:h - margin, margin:w - margin]
    else:
        m[h // 2, w // 2] = 0.0
    flat = m.ravel()
    finite = np.isfinite(flat)
    k = max(1, int(finite.sum() * top))
    idx = np.argpartition(-np.where(finite, flat, -np.inf), k - 1)[:k]
    i = int(rng.choice(idx))
    return i // w, i % w


def _feather(h: int, w: int, edge: int) -> np.ndarray:
    """A window that is 1 inside and ramps to 0 over ``edge`` px at the border (so edits blend in)."""
    if edge <= 0:
        return np.ones((h, w), np.float32)
    ry = np.minimum(np.arange(h) + 1, np.arange(h)[::-1] + 1) / (edge + 1)
    rx = np.minimum(np.arange(w) + 1, np.arange(w)[::-1] + 1) / (edge + 1)
    return np.clip(np.minimum.outer(ry, rx), 0, 1).astype(np.float32)


def _blob_remove(img: np.ndarray, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, tuple, str]:
    """Returns (new original with a lesion, candidate = the image without it, box, description)."""
    h, w, c = img.shape
    lum = _luma(img)
    r = float(rng.uniform(2.0, 7.0)) * scale
    r = max(1.5, min(r, min(h, w) / 6))
    contrast = float(rng.uniform(0.12, 0.35)) * min(1.0, 0.5 + scale)
    # place it where the surround is calm enough for a spot to be a finding, not lost in texture
    calm = -_box_mean(_grad(lum), int(4 * r) | 1)
    cy, cx = _pick(calm, rng, int(r) + 3, top=0.3)
    local = float(lum[cy, cx])
    sign = -1.0 if local > 0.5 else 1.0  # darker spot on bright tissue, brighter on dark
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # slightly irregular outline: radius varies with angle
    ang = np.arctan2(yy - cy, xx - cx)
    rr = r * (1 + 0.15 * np.sin(3 * ang + rng.uniform(0, 6.28)))
    dist = np.hypot(yy - cy, xx - cx)
    prof = 1.0 / (1.0 + np.exp(np.minimum((dist - rr) / 0.7, 60.0)))
    delta = sign * contrast * 255.0 * prof
    tint = np.ones(c, np.float32)
    if c >= 3:  # a slightly coloured lesion
        tint[:3] = rng.uniform(0.7, 1.0, 3)
    if c in (2, 4):  # never touch alpha
        tint[-1] = 0.0
    orig = np.clip(img.astype(np.float32) + delta[:, :, None] * tint, 0, 255).round().astype(np.uint8)
    rb = int(math.ceil(r * 1.3)) + 2
    box = (max(0, cy - rb), max(0, cx - rb), min(h, cy + rb + 1), min(w, cx + rb + 1))
    return orig, img.copy(), box, f"lesion-like spot r={r:.1f}px contrast {contrast:.2f} at ({cy},{cx}) removed"


def _structure_window(img: np.ndarray, rng: np.random.Generator, bh: int, bw: int) -> tuple[int, int]:
    """Top-left of a bh×bw window rich in strong edges."""
    lum = _luma(img)
    g = _grad(lum)
    dens = _box_mean((g > 0.12).astype(np.float32) + g, max(3, min(bh, bw)) | 1)
    cy, cx = _pick(dens, rng, max(bh, bw) // 2 + 1, top=0.05)
    h, w = lum.shape
    return int(np.clip(cy - bh // 2, 0, max(0, h - bh))), int(np.clip(cx - bw // 2, 0, max(0, w - bw)))


def _shift(img: np.ndarray, rng: np.random.Generator, scale: float, big: bool
           ) -> tuple[np.ndarray, np.ndarray, tuple, str]:
    h, w, c = img.shape
    if big:
        bh, bw = int(rng.integers(14, 33) * scale), int(rng.integers(32, 81) * scale)
    else:
        bh = bw = int(rng.integers(10, 25) * scale)
    bh, bw = max(_MIN_SIDE, min(bh, h // 2)), max(_MIN_SIDE, min(bw, w // 2))
    y0, x0 = _structure_window(img, rng, bh, bw)
    d = int(rng.integers(1, 4))
    axis = int(rng.integers(0, 2))
    sgn = 1 if rng.random() < 0.5 else -1
    dy, dx = (sgn * d, 0) if axis == 0 else (0, sgn * d)
    src = np.roll(img, (dy, dx), axis=(0, 1))
    cand = img.copy()
    cand[y0:y0 + bh, x0:x0 + bw] = src[y0:y0 + bh, x0:x0 + bw]
    what = "text block" if big else "line/edge window"
    return img.copy(), cand, (y0, x0, y0 + bh, x0 + bw), f"{what} {bw}×{bh} at ({y0},{x0}) shifted by ({dy},{dx}) px"


def _text_blur(img: np.ndarray, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, tuple, str]:
    from scipy.ndimage import gaussian_filter

    h, w, c = img.shape
    bh, bw = int(rng.integers(16, 41) * scale), int(rng.integers(24, 73) * scale)
    bh, bw = max(8, min(bh, h // 2)), max(8, min(bw, w // 2))
    y0, x0 = _structure_window(img, rng, bh, bw)
    sigma = float(rng.uniform(1.0, 2.0))
    region = img[y0:y0 + bh, x0:x0 + bw].astype(np.float32)
    blurred = gaussian_filter(region, sigma=(sigma, sigma, 0), mode="nearest")
    wgt = _feather(bh, bw, 2)[:, :, None]
    cand = img.copy()
    cand[y0:y0 + bh, x0:x0 + bw] = np.clip(region * (1 - wgt) + blurred * wgt, 0, 255).round().astype(np.uint8)
    return img.copy(), cand, (y0, x0, y0 + bh, x0 + bw), f"region {bw}×{bh} at ({y0},{x0}) blurred σ={sigma:.1f}"


def _patch_replace(img: np.ndarray, rng: np.random.Generator, scale: float
                   ) -> tuple[np.ndarray, np.ndarray, tuple, str]:
    h, w, c = img.shape
    s = int(rng.integers(12, 33) * scale)
    s = max(8, min(s, min(h, w) // 3))
    lum = _luma(img)
    mean = _box_mean(lum, s)
    var = np.maximum(_box_mean(lum * lum, s) - mean * mean, 0)
    # target: a textured place (where a swapped patch looks plausible but is wrong)
    cy, cx = _pick(var, rng, s // 2 + 1, top=0.2)
    y0, x0 = int(np.clip(cy - s // 2, 0, h - s)), int(np.clip(cx - s // 2, 0, w - s))
    # source: the most similar (mean, std) patch among random candidates that do not overlap the target
    best, best_d = None, math.inf
    tm, ts = float(mean[cy, cx]), float(np.sqrt(var[cy, cx]))
    for _ in range(200):
        sy, sx = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        if abs(sy - y0) < s and abs(sx - x0) < s:
            continue
        my, mx = min(sy + s // 2, h - 1), min(sx + s // 2, w - 1)
        dd = (float(mean[my, mx]) - tm) ** 2 + (float(np.sqrt(var[my, mx])) - ts) ** 2
        if dd < best_d:
            best, best_d = (sy, sx), dd
    if best is None:  # image too small to find a disjoint source: mirror the patch instead
        patch = img[y0:y0 + s, x0:x0 + s][::-1, ::-1]
        src_desc = "its own mirror image"
    else:
        patch = img[best[0]:best[0] + s, best[1]:best[1] + s]
        src_desc = f"({best[0]},{best[1]})"
    wgt = _feather(s, s, 2)[:, :, None]
    cand = img.copy()
    region = img[y0:y0 + s, x0:x0 + s].astype(np.float32)
    cand[y0:y0 + s, x0:x0 + s] = np.clip(region * (1 - wgt) + patch.astype(np.float32) * wgt, 0, 255).round().astype(np.uint8)
    return img.copy(), cand, (y0, x0, y0 + s, x0 + s), f"patch {s}×{s} at ({y0},{x0}) replaced from {src_desc}"


_PLANTERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, tuple, str]]] = {
    "blob_remove": _blob_remove,
    "line_shift": lambda img, rng, scale: _shift(img, rng, scale, big=False),
    "text_shift": lambda img, rng, scale: _shift(img, rng, scale, big=True),
    "text_blur": _text_blur,
    "patch_replace": _patch_replace,
}


def plant(image: np.ndarray, edit: str, rng: np.random.Generator, *, min_psnr: float = MIN_EDIT_PSNR
          ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], str, float]:
    """Plant one edit. Returns ``(original, edited, box, description, psnr)``.

    ``original`` equals ``image`` except for ``blob_remove``, whose original gains the lesion that ``edited``
    lacks. The edit shrinks until the edited image keeps PSNR ≥ ``min_psnr`` against the original; an edit
    that changes nothing (e.g. a shift inside a flat area) is re-drawn.
    """
    if edit not in _PLANTERS:
        raise ValueError(f"unknown edit {edit!r}; available: {', '.join(EDITS)}")
    img = image[:, :, None] if image.ndim == 2 else image
    scale = 1.0
    last: tuple[Any, ...] | None = None
    for attempt in range(24):
        orig, cand, box, desc = _PLANTERS[edit](img, rng, scale)
        p = _psnr(orig, cand)
        # meaningful: a visible number of pixels change visibly (≥ 16 px by ≥ 12 levels), not just by rounding
        changed = int(np.count_nonzero(np.abs(orig.astype(np.int16) - cand.astype(np.int16)).max(axis=2) >= 12))
        if p >= min_psnr and changed >= _MIN_CHANGED:
            return orig, cand, box, desc, p
        if changed >= _MIN_CHANGED:
            last = (orig, cand, box, desc, p)
            scale *= 0.8  # too strong for the PSNR budget: shrink
    if last is not None and last[4] >= min_psnr:
        return last  # pragma: no cover
    raise ValueError(f"could not plant {edit} in a {img.shape[1]}×{img.shape[0]} image within PSNR ≥ {min_psnr}")


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def benign(image: np.ndarray, codec: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A real high-quality reconstruction: ``(pixels, description)``; gray stays gray."""
    import imagecodecs

    img = image[:, :, None] if image.ndim == 2 else image
    gray = img.shape[2] == 1
    arr = img[:, :, 0] if gray else img
    if codec in ("jpeg444", "jpeg420"):
        q = int(rng.integers(90, 99))
        sub = "444" if gray else codec[-3:]
        out = imagecodecs.jpeg8_decode(imagecodecs.jpeg8_encode(arr, level=q, subsampling=sub))
        desc = f"JPEG q{q} {sub}"
    elif codec == "jxl":
        dist = round(float(rng.uniform(0.3, 1.0)), 2)
        out = imagecodecs.jpegxl_decode(imagecodecs.jpegxl_encode(arr, distance=dist))
        desc = f"JPEG XL d{dist}"
    elif codec == "webp":
        q = int(rng.integers(90, 99))
        # imagecodecs' WebP is lossless unless told otherwise
        out = imagecodecs.webp_decode(imagecodecs.webp_encode(_rgb(img), level=q, lossless=False))
        if gray:
            out = np.round(out[:, :, :3].astype(np.float32).mean(axis=2)).astype(np.uint8)
        desc = f"WebP q{q}"
    else:
        raise ValueError(f"unknown benign codec {codec!r}; available: {', '.join(BENIGN)}")
    out = np.asarray(out)
    out = out[:, :, None] if out.ndim == 2 else out
    return np.ascontiguousarray(out[:, :, :img.shape[2]]).astype(np.uint8), desc


def make_case(image: np.ndarray, edit: str, seed: int, *, kind: str = "", name: str = "",
              codec: str | None = "random") -> Case:
    """One labelled pair. ``edit`` in :data:`EDITS` plants an error and then (unless ``codec`` is None) passes
    the edited image through a benign codec (``"random"`` picks one of :data:`BENIGN` by seed); ``edit`` in
    :data:`BENIGN` makes a benign reconstruction."""
    # crc32, not hash(): str hashes change from process to process, and cases must be reproducible
    rng = np.random.default_rng([seed, zlib.crc32(edit.encode()), zlib.crc32(name.encode())])
    img = image[:, :, None] if image.ndim == 2 else image
    if edit in BENIGN:
        out, desc = benign(img, edit, rng)
        return Case(img, out, "benign", edit, kind, name, None, desc, _psnr(img, out))
    orig, cand, box, desc, p = plant(img, edit, rng)
    if codec is not None:
        c = str(rng.choice(BENIGN)) if codec == "random" else codec
        cand, cdesc = benign(cand, c, rng)
        desc = f"{desc}; then {cdesc}"
    return Case(orig, cand, "planted", edit, kind, name, box, desc, p)


def cases(samples: list[Sample], seeds: range | list[int], *, edits: tuple[str, ...] = EDITS,
          benigns: tuple[str, ...] = BENIGN) -> Any:
    """Yield every (sample × seed × edit/benign) case; images too small for an edit are skipped."""
    for s in samples:
        for seed in seeds:
            for e in tuple(edits) + tuple(benigns):
                try:
                    yield make_case(s.pixels, e, seed, kind=s.kind, name=s.name)
                except ValueError:
                    continue
