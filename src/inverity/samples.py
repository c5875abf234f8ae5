"""The built-in demo set: a small mixed batch built from package-shipped or synthesised images.

``inverity demo`` compresses this set so a newcomer sees routing at work on every kind of content without
downloading anything:

=================  ==========================================================  =====================
file               what                                                        source
=================  ==========================================================  =====================
astronaut.png      natural photo, RGB 512×512                                  ``skimage.data``
chelsea.png        natural photo (cat), RGB 300×451                            ``skimage.data``
coffee.png         natural photo, RGB 400×600                                  ``skimage.data``
drawing.png        engineering drawing: thin lines, circles, dimensions, text  synthesised (Pillow)
screenshot.png     UI screenshot: flat colours, window chrome, text            synthesised (Pillow)
ct_slice.dcm       CT slice, 16-bit DICOM with its dataset                     ``pydicom`` test file
sensor16.png       16-bit grayscale "microscope" frame (12 bits used)          synthesised (NumPy)
=================  ==========================================================  =====================

Everything is deterministic (fixed seeds), so the demo's numbers are reproducible.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ._atomic import atomic_write_bytes

__all__ = ["SAMPLES", "build_demo_set", "engineering_drawing", "screenshot", "sensor16"]


def _png(pixels: np.ndarray) -> bytes:
    import imagecodecs

    px = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    return bytes(imagecodecs.png_encode(px, level=9))


def _half(px: np.ndarray) -> np.ndarray:
    """2× box downscale (keeps dtype), for the ``small`` variant tests use."""
    h, w = px.shape[0] // 2 * 2, px.shape[1] // 2 * 2
    p = px[:h, :w].astype(np.float64)
    p = (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4
    return np.round(p).astype(px.dtype)


def _font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def engineering_drawing(width: int = 640, height: int = 448) -> np.ndarray:
    """A synthetic engineering drawing (grayscale uint8 H×W×1): border, title block, a flange with bolt circle,
    centre lines, hatching and dimension lines — the thin, high-contrast structure a photo codec blurs."""
    from PIL import Image as PILImage, ImageDraw

    im = PILImage.new("L", (width, height), 255)
    d = ImageDraw.Draw(im)
    d.rectangle([8, 8, width - 9, height - 9], outline=0, width=2)
    # title block
    tb = (width - 250, height - 80, width - 9, height - 9)
    d.rectangle(tb, outline=0, width=2)
    d.line([tb[0], tb[1] + 24, tb[2], tb[1] + 24], fill=0)
    d.line([tb[0] + 120, tb[1] + 24, tb[0] + 120, tb[3]], fill=0)
    f = _font(13)
    d.text((tb[0] + 6, tb[1] + 5), "FLANGE  DN80  PN16", fill=0, font=f)
    d.text((tb[0] + 6, tb[1] + 30), "SCALE 1:2", fill=0, font=f)
    d.text((tb[0] + 126, tb[1] + 30), "DWG 0042-A", fill=0, font=f)
    d.text((tb[0] + 6, tb[1] + 50), "MAT S235JR", fill=0, font=f)
    # front view: flange with bolt circle
    cx, cy, r = 200, 200, 130
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=0, width=2)
    d.ellipse([cx - 45, cy - 45, cx + 45, cy + 45], outline=0, width=2)
    for k in range(8):
        a = k * np.pi / 4
        bx, by = cx + 95 * np.cos(a), cy + 95 * np.sin(a)
        d.ellipse([bx - 9, by - 9, bx + 9, by + 9], outline=0, width=1)
    # centre lines (dash-dot)
    for x0 in range(cx - r - 20, cx + r + 20, 18):
        d.line([x0, cy, x0 + 10, cy], fill=0)
        d.point([(x0 + 14, cy)], fill=0)
    for y0 in range(cy - r - 20, cy + r + 20, 18):
        d.line([cx, y0, cx, y0 + 10], fill=0)
        d.point([(cx, y0 + 14)], fill=0)
    # side view with hatched section
    x1, x2 = 400, 440
    d.rectangle([x1, cy - r, x2, cy + r], outline=0, width=2)
    d.rectangle([x2, cy - 60, x2 + 70, cy + 60], outline=0, width=2)
    for t in range(-r, r, 8):
        d.line([x1, cy + t + 8, x1 + 8, cy + t], fill=0)
        d.line([x1 + 8, cy + t + 8, x1 + 16, cy + t], fill=0)
    # dimension line with arrows and text
    y = cy + r + 30
    d.line([cx - r, y, cx + r, y], fill=0)
    for xa, s in ((cx - r, 1), (cx + r, -1)):
        d.polygon([(xa, y), (xa + 10 * s, y - 4), (xa + 10 * s, y + 4)], fill=0)
        d.line([xa, y - 12, xa, y + 4], fill=0)
    d.text((cx - 20, y + 4), "D 260", fill=0, font=f)
    return np.asarray(im, dtype=np.uint8)[:, :, None].copy()


def screenshot(width: int = 640, height: int = 400) -> np.ndarray:
    """A synthetic application screenshot (RGB uint8): window chrome, sidebar, buttons, a table and text —
    flat colours and sharp glyph edges."""
    from PIL import Image as PILImage, ImageDraw

    im = PILImage.new("RGB", (width, height), (243, 244, 246))
    d = ImageDraw.Draw(im)
    f, fb = _font(13), _font(16)
    d.rectangle([0, 0, width, 30], fill=(55, 65, 81))
    for i, c in enumerate(((239, 68, 68), (245, 158, 11), (34, 197, 94))):
        d.ellipse([10 + 20 * i, 9, 22 + 20 * i, 21], fill=c)
    d.text((90, 8), "inverity - audit of batch 2024-06-01", fill=(229, 231, 235), font=f)
    d.rectangle([0, 30, 150, height], fill=(229, 231, 235))
    for i, item in enumerate(("Overview", "Assets", "Policies", "Codecs", "Reports", "Settings")):
        y = 45 + 28 * i
        if i == 1:
            d.rectangle([6, y - 4, 144, y + 20], fill=(59, 130, 246))
        d.text((16, y), item, fill=(255, 255, 255) if i == 1 else (31, 41, 55), font=f)
    d.text((170, 42), "Assets (7)", fill=(17, 24, 39), font=fb)
    d.rounded_rectangle([width - 130, 40, width - 20, 66], radius=6, fill=(59, 130, 246))
    d.text((width - 118, 46), "Compress all", fill=(255, 255, 255), font=f)
    cols = (170, 320, 420, 500, 570)
    d.rectangle([165, 80, width - 15, 104], fill=(209, 213, 219))
    for x, h in zip(cols, ("asset", "kind", "stage", "bytes", "ok")):
        d.text((x, 85), h, fill=(17, 24, 39), font=f)
    rows = (("astronaut.png", "photo", "avif", "41 kB", "yes"), ("drawing.png", "drawing", "png", "9 kB", "yes"),
            ("ct_slice.dcm", "medical", "jpegls", "22 kB", "yes"), ("screen.png", "screen", "webp-ll", "14 kB", "yes"),
            ("sensor16.png", "synthetic", "jxl-ll", "64 kB", "yes"), ("coffee.png", "photo", "jxl", "38 kB", "yes"))
    for r, row in enumerate(rows):
        y = 110 + 26 * r
        if r % 2:
            d.rectangle([165, y - 3, width - 15, y + 21], fill=(255, 255, 255))
        for x, cell in zip(cols, row):
            d.text((x, y), cell, fill=(22, 163, 74) if cell == "yes" else (31, 41, 55), font=f)
    d.multiline_text((170, 280), "Every output was verified against its policy's floors.\n"
                     "Learned stage: off (policy 'auto' never picks it).\nClick an asset to see its decision.",
                     fill=(75, 85, 99), font=f, spacing=6)
    return np.asarray(im, dtype=np.uint8).copy()


def sensor16(width: int = 384, height: int = 288, seed: int = 7) -> np.ndarray:
    """A synthetic 16-bit grayscale frame (12 significant bits, like a scientific camera): smooth background,
    Gaussian "cells" and shot noise. Only bit-exact storage keeps it (archive / diagnostic)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = 300.0 + 200.0 * (xx / width) + 100.0 * np.sin(yy / 37.0)
    for _ in range(40):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        s, a = rng.uniform(4, 14), rng.uniform(500, 3200)
        img += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    img = rng.poisson(np.clip(img, 0, None)).astype(np.float64)
    return np.clip(img, 0, 4095).astype(np.uint16)[:, :, None]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def get() -> np.ndarray:
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())
    return get


def _ct_slice(dest: Path, small: bool) -> None:
    from pydicom.data import get_testdata_file

    src = get_testdata_file("CT_small.dcm")
    if src is None:  # pragma: no cover - pydicom always ships it
        raise FileNotFoundError("pydicom test file CT_small.dcm is missing")
    data = Path(src).read_bytes()
    if not (dest.is_file() and dest.read_bytes() == data):
        atomic_write_bytes(dest, data)


#: file name -> (maker of the pixels | None for a copied file, description)
SAMPLES: dict[str, tuple[Callable[[], np.ndarray] | None, str]] = {
    "astronaut.png": (_skimage("astronaut"), "photo (skimage.data)"),
    "chelsea.png": (_skimage("chelsea"), "photo (skimage.data)"),
    "coffee.png": (_skimage("coffee"), "photo (skimage.data)"),
    "drawing.png": (engineering_drawing, "engineering drawing (synthesised)"),
    "screenshot.png": (screenshot, "screenshot with text (synthesised)"),
    "ct_slice.dcm": (None, "CT slice, DICOM (pydicom CT_small.dcm)"),
    "sensor16.png": (sensor16, "16-bit scientific frame (synthesised)"),
}


def build_demo_set(dest: str | os.PathLike[str], *, small: bool = False,
                   names: tuple[str, ...] | None = None) -> list[Path]:
    """Write the demo set into ``dest`` (created) and return the files, in :data:`SAMPLES` order.

    ``small`` halves the synthesised and photo images (for quick tests); ``names`` picks a subset.
    Existing files with the same content are left alone, so rebuilding keeps a resumable batch resumable.

    Examples
    --------
    >>> import tempfile
    >>> [p.name for p in build_demo_set(tempfile.mkdtemp(), small=True, names=("drawing.png", "ct_slice.dcm"))]
    ['drawing.png', 'ct_slice.dcm']
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, (make, _desc) in SAMPLES.items():
        if names is not None and name not in names:
            continue
        path = out / name
        if make is None:
            _ct_slice(path, small)
        else:
            px = make()
            if small:
                px = _half(px)
            data = _png(px)
            if not (path.is_file() and path.read_bytes() == data):
                atomic_write_bytes(path, data)
        files.append(path)
    return files
