"""Fit the content-kind classifier shipped as ``src/inverity/data/kind_model.json``.

The classifier is a small one-hidden-layer MLP (16 tanh units; ``--model logreg`` for a multinomial logistic
regression) on the standardised features of ``inverity.analyse.features``; inference is numpy-only (see
``inverity.analyse._classify``), fitting uses scipy's L-BFGS (no scikit-learn). Labelled examples come from:

==========  =================================================================================================
kind        sources (each *source image* is one group: crops of one source never straddle train and test)
==========  =================================================================================================
photo       ``shared/datasets/train`` (416 photos); skimage coffee/chelsea/rocket/coins/motorcycle
medical     pydicom test files (CT, MR, NM, US, OT); skimage retina, microaneurysms, cell, moon,
            hubble_deep_field, immunohistochemistry, shepp_logan_phantom; synthesised CT-like phantoms,
            fluorescence micrographs and star fields
drawing     ``shared/datasets/ood/drawing`` (6 comic covers); synthesised engineering drawings, hatching,
            comic panels, charts (clean and "scanned"), photographed/scanned documents (print, handwriting)
screen      synthesised UIs: windows, menus, dialogs, text rendered with Pillow's default font, code editors,
            terminals, web pages with photo thumbnails
aerial      ``shared/datasets/ood/aerial`` (4 USC-SIPI aerials)
texture     ``shared/datasets/ood/texture`` (8 Brodatz); skimage brick, grass, gravel
synthetic   ``shared/datasets/ood/synthetic`` (4 Waterloo); skimage checkerboard, colorwheel, binary_blobs;
            synthesised geometric test patterns (shapes, zone plates, ramps, colour bars)
==========  =================================================================================================

Kodak is never used. astronaut, camera, page and text from skimage, and pydicom's CT_small, are held out
(the tests use them). Tiny folders get many random crops/rescales (and some JPEG re-compression and gray
conversion), all crops of one source sharing a group. Accuracy is reported by grouped k-fold cross-validation
(split by source image), then the final model is fitted on everything.

Usage::

    python scripts/fit_kind.py [--shared ../shared/datasets] [--out src/inverity/data/kind_model.json]
                               [--cache /tmp/kind_features.npz] [--folds 4] [--seed 0]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image as PILImage, ImageDraw, ImageFilter, ImageFont

from inverity.analyse import FEATURE_NAMES, KINDS, features
from inverity.image import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT_OUT = ROOT / "src" / "inverity" / "data" / "kind_model.json"

#: features fed to a log transform before standardising (heavy right tails)
LOG_FEATURES = ("noise_sigma", "flat_frac", "colour_ratio", "flat_block_frac", "edge_density", "hist_peak",
                "dark_frac", "bright_frac", "chroma_max_frac", "row_cv", "col_cv", "hf_ratio")
#: held out of fitting: the tests use them
HELD_OUT = ("astronaut", "camera", "page", "text", "CT_small")


# ----------------------------------------------------------------------------------------------------------
# Synthesisers (seeded; one seed = one source image)
# ----------------------------------------------------------------------------------------------------------
_FONT_FILES = sorted(glob.glob("/usr/share/fonts/truetype/**/*.ttf", recursive=True))
_WORDS = ("FILE EDIT VIEW HELP OPEN SAVE CANCEL OK APPLY SETTINGS PROFILE ACCOUNT Search results Inbox Draft "
          "Total 42.00 def return import class width height error warning status ready loading 1024 768 "
          "Name Size Modified Type Folder Document Image Report 2024-03-01 user@example.com").split()


def _font(rng: np.random.Generator, size: int) -> ImageFont.ImageFont:
    if _FONT_FILES and rng.random() < 0.5:
        return ImageFont.truetype(_FONT_FILES[int(rng.integers(len(_FONT_FILES)))], size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(_WORDS[int(rng.integers(len(_WORDS)))] for _ in range(n))


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def _scan(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make a clean render look scanned/printed: slight blur, paper tint, sensor noise."""
    im = PILImage.fromarray(arr).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.2))))
    a = np.asarray(im).astype(np.float32)
    tint = rng.uniform(0.85, 1.0, 3 if a.ndim == 3 else 1)
    a = a * tint + rng.normal(0, rng.uniform(1, 5), a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def synth_drawing(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(400, 900)), int(rng.integers(300, 800))
    style = seed % 4
    bg = (255, 255, 255) if rng.random() < 0.8 else _colour(rng, 220, 256)
    im = PILImage.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    ink = (0, 0, 0) if rng.random() < 0.7 else _colour(rng, 0, 90)
    if style == 0:  # engineering drawing: frame, shapes, centre lines, dimensions, title block
        d.rectangle([5, 5, w - 6, h - 6], outline=ink, width=2)
        for _ in range(int(rng.integers(3, 9))):
            x, y, r = int(rng.integers(40, w - 40)), int(rng.integers(40, h - 40)), int(rng.integers(15, 120))
            if rng.random() < 0.5:
                d.ellipse([x - r, y - r, x + r, y + r], outline=ink, width=int(rng.integers(1, 3)))
            else:
                d.rectangle([x - r, y - r // 2, x + r, y + r // 2], outline=ink, width=int(rng.integers(1, 3)))
            d.line([x - r - 10, y, x + r + 10, y], fill=ink, width=1)
            d.line([x, y - r - 10, x, y + r + 10], fill=ink, width=1)
        for _ in range(int(rng.integers(2, 6))):  # dimension lines with arrows and numbers
            x0, x1 = sorted(int(v) for v in rng.integers(20, w - 20, 2))
            y = int(rng.integers(20, h - 20))
            d.line([x0, y, x1, y], fill=ink)
            d.polygon([(x0, y), (x0 + 8, y - 3), (x0 + 8, y + 3)], fill=ink)
            d.polygon([(x1, y), (x1 - 8, y - 3), (x1 - 8, y + 3)], fill=ink)
            d.text(((x0 + x1) // 2, y - 14), f"{rng.uniform(5, 500):.1f}", fill=ink, font=_font(rng, 11))
        d.rectangle([w - 200, h - 60, w - 8, h - 8], outline=ink, width=2)
        d.text((w - 195, h - 50), _text(rng, 3), fill=ink, font=_font(rng, 12))
    elif style == 1:  # hatching and technical shading
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            x1, y1 = x0 + int(rng.integers(40, 300)), y0 + int(rng.integers(40, 300))
            step, ang = int(rng.integers(4, 12)), int(rng.choice([1, -1]))
            hatch = PILImage.new("L", (x1 - x0, y1 - y0), 0)
            hd = ImageDraw.Draw(hatch)
            for k in range(-(y1 - y0), x1 - x0 + (y1 - y0), step):
                hd.line([(k, 0), (k + ang * (y1 - y0), y1 - y0)], fill=255, width=1)
            im.paste(ink, (x0, y0), mask=hatch)
            d.rectangle([x0, y0, x1, y1], outline=ink, width=2)
        for _ in range(int(rng.integers(5, 30))):
            pts = [tuple(int(v) for v in (rng.integers(0, w), rng.integers(0, h))) for _ in range(2)]
            d.line(pts, fill=ink, width=int(rng.integers(1, 4)))
    elif style == 2:  # comic panels: flat fills, black outlines, speech bubbles, screentone
        cols = int(rng.integers(1, 3)); rows = int(rng.integers(2, 4))
        for i in range(cols):
            for j in range(rows):
                x0, y0 = 10 + i * (w - 20) // cols, 10 + j * (h - 20) // rows
                x1, y1 = x0 + (w - 20) // cols - 8, y0 + (h - 20) // rows - 8
                d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0), width=3)
                if rng.random() < 0.5:  # screentone dots
                    sp = int(rng.integers(4, 8))
                    for yy in range(y0 + 4, y1 - 4, sp):
                        for xx in range(x0 + 4 + (yy // sp % 2) * sp // 2, x1 - 4, sp):
                            d.ellipse([xx, yy, xx + 1, yy + 1], fill=(0, 0, 0))
                for _ in range(int(rng.integers(1, 4))):
                    cx, cy = int(rng.integers(x0, x1)), int(rng.integers(y0, y1))
                    r = int(rng.integers(10, 60))
                    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_colour(rng), outline=(0, 0, 0), width=2)
                if rng.random() < 0.7:
                    bx, by = int(rng.integers(x0, max(x0 + 1, x1 - 100))), int(rng.integers(y0, max(y0 + 1, y1 - 40)))
                    d.ellipse([bx, by, bx + 100, by + 40], fill=(255, 255, 255), outline=(0, 0, 0), width=2)
                    d.text((bx + 15, by + 12), _text(rng, 2)[:12], fill=(0, 0, 0), font=_font(rng, 12))
    else:  # charts and plots
        x0, y0, x1, y1 = 60, 30, w - 30, h - 50
        d.line([x0, y1, x1, y1], fill=ink, width=2)
        d.line([x0, y0, x0, y1], fill=ink, width=2)
        for k in range(6):
            yy = y1 - k * (y1 - y0) // 6
            d.line([x0 - 5, yy, x0, yy], fill=ink)
            d.text((10, yy - 6), f"{k * 20}", fill=ink, font=_font(rng, 11))
            if rng.random() < 0.5:
                d.line([x0, yy, x1, yy], fill=(200, 200, 200))
        if rng.random() < 0.5:
            n = int(rng.integers(4, 15))
            bw = (x1 - x0) // n
            for k in range(n):
                bh = int(rng.uniform(0.1, 1) * (y1 - y0))
                d.rectangle([x0 + k * bw + 3, y1 - bh, x0 + (k + 1) * bw - 3, y1 - 1], fill=_colour(rng),
                            outline=ink)
        else:
            for _ in range(int(rng.integers(1, 4))):
                xs = np.linspace(x0, x1, 100)
                ys = (y0 + y1) / 2 + (y1 - y0) / 3 * np.sin(xs / rng.uniform(20, 100) + rng.uniform(0, 6))
                d.line(list(zip(xs.tolist(), ys.tolist())), fill=_colour(rng, 0, 200), width=2)
        d.text((x0 + 20, y0 - 20), _text(rng, 4), fill=ink, font=_font(rng, 14))
    a = np.asarray(im)
    if rng.random() < 0.3:
        a = _scan(a, rng)
    if rng.random() < 0.3:
        a = np.asarray(PILImage.fromarray(a).convert("L"))[:, :, None].repeat(3, axis=2)
    return a


def synth_document(seed: int) -> np.ndarray:
    """A photographed or scanned document: printed paragraphs or handwritten formulas on paper, with uneven
    lighting, perspective, blur, noise and often JPEG — line art captured by a camera (labelled drawing)."""
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(300, 700)), int(rng.integers(160, 500))
    paper = int(rng.integers(170, 250))
    ink = int(rng.integers(0, 90))
    im = PILImage.new("L", (w, h), paper)
    d = ImageDraw.Draw(im)
    if seed % 2 == 0:  # printed text: heading, paragraphs, maybe a code line and a rule
        y = int(rng.integers(5, 30))
        size = int(rng.integers(16, 34))
        d.text((15, y), _text(rng, 3), fill=ink, font=_font(rng, size + 6))
        y += size + 16
        while y < h - size:
            d.text((15, y), _text(rng, int(rng.integers(6, 14))), fill=ink, font=_font(rng, size))
            y += int(size * rng.uniform(1.2, 1.6))
            if rng.random() < 0.1:
                d.line([15, y, w - 15, y], fill=ink, width=1)
                y += 8
    else:  # handwriting: pen strokes (random smooth curves) in lines, ruled paper
        if rng.random() < 0.5:
            for yy in range(20, h, int(rng.integers(25, 45))):
                d.line([0, yy, w, yy], fill=max(0, paper - 40), width=1)
        y = int(rng.integers(20, 50))
        while y < h - 30:
            x = int(rng.integers(10, 60))
            while x < w - 60:
                pts = np.cumsum(rng.normal(0, 6, (int(rng.integers(6, 14)), 2)), axis=0) + (x, y)
                d.line([tuple(p) for p in pts.tolist()], fill=ink, width=int(rng.integers(2, 5)), joint="curve")
                x += int(rng.integers(30, 90))
            y += int(rng.integers(35, 70))
    a = np.asarray(im).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1 + rng.uniform(-0.35, 0.1) * (xx / w) + rng.uniform(-0.35, 0.1) * (yy / h)
    a = a * light
    im = PILImage.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:  # camera perspective / rotation
        im = im.rotate(float(rng.uniform(-20, 20)), resample=PILImage.BILINEAR, expand=False, fillcolor=paper)
    im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.1))))
    a = np.asarray(im).astype(np.float32) + rng.normal(0, rng.uniform(1, 6), (h, w))
    a = np.clip(a, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        a = np.stack([a, a, a], axis=2) * rng.uniform(0.9, 1.0, 3)   # warm paper tint
        return np.clip(a, 0, 255).astype(np.uint8)
    return a[:, :, None].repeat(3, axis=2)


def _photo_patch(rng: np.random.Generator, w: int, h: int, photos: list[np.ndarray]) -> np.ndarray:
    src = photos[int(rng.integers(len(photos)))]
    return np.asarray(PILImage.fromarray(src).resize((max(w, 1), max(h, 1)), PILImage.BILINEAR))


def synth_screen(seed: int, photos: list[np.ndarray]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = int(rng.choice([640, 800, 1024, 1280])), int(rng.choice([400, 480, 600, 720]))
    style = seed % 4
    dark = rng.random() < 0.3
    bg = _colour(rng, 20, 50) if dark else _colour(rng, 225, 256)
    fg = (220, 220, 220) if dark else (20, 20, 20)
    im = PILImage.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    size = int(rng.integers(10, 16))
    if style == 0:  # desktop windows with title bars, buttons, lists
        d.rectangle([0, h - 30, w, h], fill=_colour(rng, 30, 90))
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            x1, y1 = x0 + int(rng.integers(250, w // 2 + 200)), y0 + int(rng.integers(150, h // 2 + 100))
            d.rectangle([x0, y0, x1, y1], fill=(240, 240, 240) if not dark else (45, 45, 48), outline=(90, 90, 90))
            d.rectangle([x0, y0, x1, y0 + 24], fill=_colour(rng, 40, 200))
            d.text((x0 + 8, y0 + 5), _text(rng, 3), fill=(255, 255, 255), font=_font(rng, size))
            for k, c in enumerate([(230, 80, 70), (240, 190, 60), (90, 200, 90)]):
                d.ellipse([x1 - 70 + k * 20, y0 + 6, x1 - 58 + k * 20, y0 + 18], fill=c)
            yy = y0 + 34
            while yy < y1 - 40:
                d.text((x0 + 12, yy), _text(rng, int(rng.integers(2, 7))), fill=fg, font=_font(rng, size))
                yy += size + 8
            d.rectangle([x1 - 90, y1 - 34, x1 - 10, y1 - 10], fill=(50, 110, 220), outline=(30, 60, 160))
            d.text((x1 - 70, y1 - 29), "OK", fill=(255, 255, 255), font=_font(rng, size))
    elif style == 1:  # code editor / terminal
        d.rectangle([0, 0, w, 28], fill=_colour(rng, 30, 70))
        d.rectangle([0, 28, 40, h], fill=_colour(rng, 30, 60) if dark else (235, 235, 235))
        yy, ln = 34, 1
        font = _font(rng, size)
        while yy < h - size:
            d.text((6, yy), f"{ln:3d}", fill=(130, 130, 130), font=font)
            x = 50 + 16 * int(rng.integers(0, 4))
            for _ in range(int(rng.integers(1, 6))):
                word = _WORDS[int(rng.integers(len(_WORDS)))]
                d.text((x, yy), word, fill=_colour(rng, 80, 256) if dark else _colour(rng, 0, 160), font=font)
                x += int(d.textlength(word, font=font)) + 8
            yy += size + 5
            ln += 1
    elif style == 2:  # web page: nav bar, headline, photo thumbnails, paragraphs, buttons
        d.rectangle([0, 0, w, 50], fill=_colour(rng))
        d.text((20, 15), _text(rng, 4), fill=(255, 255, 255), font=_font(rng, size + 4))
        yy = 70
        while yy < h - 60:
            if rng.random() < 0.4 and photos:
                tw, th = int(rng.integers(100, 260)), int(rng.integers(70, 170))
                im.paste(PILImage.fromarray(_photo_patch(rng, tw, th, photos)), (20, yy))
                for k in range(th // (size + 6)):
                    d.text((tw + 40, yy + k * (size + 6)), _text(rng, 6), fill=fg, font=_font(rng, size))
                yy += th + 20
            else:
                for _ in range(int(rng.integers(2, 6))):
                    d.text((20, yy), _text(rng, int(rng.integers(5, 12))), fill=fg, font=_font(rng, size))
                    yy += size + 6
                bx = int(rng.integers(20, w - 150))
                d.rounded_rectangle([bx, yy, bx + 120, yy + 30], radius=6, fill=_colour(rng, 0, 200))
                yy += 45
    else:  # spreadsheet / table / settings form
        cw, rh = int(rng.integers(70, 140)), size + 10
        for r in range(0, h, rh):
            d.line([0, r, w, r], fill=(200, 200, 200) if not dark else (70, 70, 70))
        for c in range(0, w, cw):
            d.line([c, 0, c, h], fill=(200, 200, 200) if not dark else (70, 70, 70))
        d.rectangle([0, 0, w, rh], fill=_colour(rng, 180, 230))
        for r in range(rh, h - rh, rh):
            for c in range(0, w - cw, cw):
                if rng.random() < 0.8:
                    t = f"{rng.uniform(0, 1e4):.2f}" if rng.random() < 0.5 else _WORDS[int(rng.integers(len(_WORDS)))]
                    d.text((c + 4, r + 4), t, fill=fg, font=_font(rng, size))
        for _ in range(int(rng.integers(0, 6))):
            x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            d.rectangle([x, y, x + 16, y + 16], fill=_colour(rng))
    return np.asarray(im)


def synth_synthetic(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rng.choice([256, 384, 512]))
    style = seed % 5
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    if style == 0:  # flat geometric shapes on a flat background (Waterloo-like)
        im = PILImage.new("L", (n, n), int(rng.integers(0, 256)))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 8))):
            x, y, r = (int(v) for v in rng.integers(0, n, 3))
            r = r // 3 + 5
            shape = rng.integers(3)
            g = int(rng.integers(0, 256))
            if shape == 0:
                d.ellipse([x - r, y - r, x + r, y + r], fill=g)
            elif shape == 1:
                d.rectangle([x - r, y - r, x + r, y + r], fill=g)
            else:
                d.line([x - r, y - r, x + r, y + r], fill=g, width=int(rng.integers(1, 5)))
        a = np.asarray(im)
    elif style == 1:  # zone plate / chirp
        k = rng.uniform(0.2, 1.0) * np.pi / n
        a = 127.5 + 127.5 * np.cos(k * ((xx - n / 2) ** 2 + (yy - n / 2) ** 2))
    elif style == 2:  # ramps and colour bars
        if rng.random() < 0.5:
            a = np.stack([xx / n * 255, yy / n * 255, np.full_like(xx, rng.uniform(0, 255))], axis=2)
        else:
            bars = rng.integers(0, 256, (int(rng.integers(4, 12)), 3))
            a = bars[(xx / n * len(bars)).astype(int)].astype(np.float32)
    elif style == 3:  # checkerboards and gratings
        p = int(rng.integers(4, 64))
        a = (((xx // p) + (yy // p)) % 2) * 255.0 if rng.random() < 0.5 else \
            127.5 + 127.5 * np.sign(np.sin(xx * 2 * np.pi / p * rng.uniform(0.5, 1.5) + yy * rng.uniform(0, 0.3)))
    else:  # crosses / line patterns on dark background with a few gray levels
        im = PILImage.new("L", (n, n), int(rng.integers(0, 60)))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(3, 20))):
            p = [int(v) for v in rng.integers(0, n, 4)]
            d.line(p, fill=int(rng.integers(150, 256)), width=int(rng.integers(1, 3)))
        a = np.asarray(im)
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None].repeat(3, axis=2)
    return a


def synth_medical(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rng.choice([256, 384, 512]))
    style = seed % 3
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5
    if style == 0:  # CT/MR-like: nested ellipses of tissue densities, blur, noise, dark surround
        a = np.zeros((n, n), np.float32)
        for k in range(int(rng.integers(4, 12))):
            cx, cy = rng.normal(0, 0.08, 2)
            ax_, ay_ = rng.uniform(0.05, 0.45, 2) * (1.0 if k else 1.0)
            th = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
            v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
            a += (u * u / ax_**2 + v * v / ay_**2 < 1) * rng.uniform(-0.3, 0.6)
        a = np.asarray(PILImage.fromarray(np.clip(a * 180 + 40, 0, 255).astype(np.uint8))
                       .filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2))), np.float32)
        a += rng.normal(0, rng.uniform(2, 12), a.shape)
        a = a[:, :, None].repeat(3, axis=2)
    elif style == 1:  # fluorescence micrograph: bright blobs on black, one or two colour channels
        a = np.zeros((n, n, 3), np.float32)
        for ch in rng.choice(3, int(rng.integers(1, 3)), replace=False):
            m = np.zeros((n, n), np.float32)
            for _ in range(int(rng.integers(10, 80))):
                cx, cy = rng.integers(0, n, 2)
                r = rng.uniform(2, 15)
                m += np.exp(-(((xx * n - cx + n / 2) ** 2 + (yy * n - cy + n / 2) ** 2) / (2 * r * r))) \
                    * rng.uniform(80, 255)
            a[:, :, ch] = m
        a += rng.normal(0, rng.uniform(1, 6), a.shape) + rng.uniform(0, 15)
    else:  # astronomy: star field with a few extended sources
        a = rng.normal(rng.uniform(5, 30), rng.uniform(1, 5), (n, n)).astype(np.float32)
        for _ in range(int(rng.integers(30, 300))):
            cx, cy = rng.integers(0, n, 2)
            r = rng.uniform(0.5, 2.5)
            a += np.exp(-(((xx * n - cx + n / 2) ** 2 + (yy * n - cy + n / 2) ** 2) / (2 * r * r))) \
                * rng.uniform(30, 255)
        a = a[:, :, None].repeat(3, axis=2)
        if rng.random() < 0.5:
            a = a * rng.uniform(0.7, 1.0, 3)
    return np.clip(a, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Source:
    group: str
    kind: str
    load: Callable[[], np.ndarray]
    crops: int


def _rgb8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
        a = np.clip((a - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if a.shape[2] == 1:
        a = a.repeat(3, axis=2)
    return np.ascontiguousarray(a)


def _imread(path: Path) -> np.ndarray:
    return _rgb8(np.asarray(PILImage.open(path).convert("RGB")))


def _dicom(name: str, frame: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import pydicom

        path = Path(pydicom.data.__file__).parent / "test_files" / name
        ds = pydicom.dcmread(path)
        a = ds.pixel_array
        if frame is not None:
            a = a[frame]
        # pydicom 3's pixel_array already converts YBR to RGB; a palette needs its lookup table applied
        if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            a = apply_color_lut(a, ds)
        return _rgb8(a)
    return load


def _sk(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        a = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            a = a[0]
        return _rgb8(a)
    return load


def collect_sources(shared: Path | None, photos_for_screens: list[np.ndarray]) -> list[Source]:
    src: list[Source] = []
    if shared is not None and (shared / "train").is_dir():
        for p in sorted((shared / "train").iterdir()):
            src.append(Source(f"train/{p.name}", "photo", lambda p=p: _imread(p), 2))
        for kind in ("drawing", "aerial", "texture", "synthetic"):
            folder = shared / "ood" / kind
            per = {"drawing": 18, "aerial": 40, "texture": 16, "synthetic": 16}[kind]
            for p in sorted(folder.glob("*.png")):
                src.append(Source(f"ood/{kind}/{p.name}", kind, lambda p=p: _imread(p), per))
    for n in ("coffee", "chelsea", "rocket", "coins", "stereo_motorcycle", "cat"):
        src.append(Source(f"skimage/{n}", "photo", _sk(n), 6))
    for n in ("retina", "microaneurysms", "cell", "moon", "hubble_deep_field", "immunohistochemistry",
              "shepp_logan_phantom"):
        src.append(Source(f"skimage/{n}", "medical", _sk(n), 10))
    for n in ("brick", "grass", "gravel"):
        src.append(Source(f"skimage/{n}", "texture", _sk(n), 16))
    for n in ("checkerboard", "colorwheel", "binary_blobs"):
        src.append(Source(f"skimage/{n}", "synthetic", _sk(n), 8))
    for name, frame in (("693_J2KI.dcm", None), ("J2K_pixelrep_mismatch.dcm", None), ("MR_small.dcm", None),
                        ("examples_overlay.dcm", None), ("JPEG2000.dcm", None), ("examples_rgb_color.dcm", None),
                        ("examples_palette.dcm", None), ("examples_jpeg2k.dcm", None),
                        ("examples_ybr_color.dcm", 5), ("image_dfl.dcm", None)):
        src.append(Source(f"pydicom/{name}", "medical", _dicom(name, frame), 10))
    for s in range(60):
        src.append(Source(f"synth/medical/{s}", "medical", lambda s=s: synth_medical(1000 + s), 3))
    for s in range(100):
        src.append(Source(f"synth/drawing/{s}", "drawing", lambda s=s: synth_drawing(2000 + s), 3))
    for s in range(60):
        src.append(Source(f"synth/document/{s}", "drawing", lambda s=s: synth_document(5000 + s), 3))
    for s in range(120):
        src.append(Source(f"synth/screen/{s}", "screen",
                          lambda s=s: synth_screen(3000 + s, photos_for_screens), 3))
    for s in range(60):
        src.append(Source(f"synth/synthetic/{s}", "synthetic", lambda s=s: synth_synthetic(4000 + s), 3))
    return src


def augment(a: np.ndarray, n: int, rng: np.random.Generator, kind: str) -> list[np.ndarray]:
    """``n`` random crops/rescales of ``a`` (the first is the whole image, maybe downscaled)."""
    out = []
    h, w = a.shape[:2]
    for i in range(n):
        if i == 0:
            c = a
        else:
            frac = rng.uniform(0.35, 1.0)
            ch, cw = max(48, int(h * frac)), max(48, int(w * frac * rng.uniform(0.7, 1.3)))
            ch, cw = min(ch, h), min(cw, w)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            c = a[y:y + ch, x:x + cw]
        if rng.random() < 0.4 and min(c.shape[:2]) > 128:
            s = rng.uniform(0.5, 1.0)
            c = np.asarray(PILImage.fromarray(c).resize((max(64, int(c.shape[1] * s)), max(64, int(c.shape[0] * s))),
                                                         PILImage.LANCZOS))
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if kind in ("photo", "aerial") and rng.random() < 0.15:
            c = np.asarray(PILImage.fromarray(c).convert("L"))[:, :, None].repeat(3, axis=2)
        if rng.random() < 0.2:  # JPEG re-compression: real-world inputs often went through it
            buf = io.BytesIO()
            PILImage.fromarray(np.ascontiguousarray(c)).save(buf, "JPEG", quality=int(rng.integers(70, 96)))
            c = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        if c.shape[2] == 3 and np.all(c[:, :, 0] == c[:, :, 1]) and np.all(c[:, :, 1] == c[:, :, 2]) \
                and rng.random() < 0.5:
            c = c[:, :, :1]  # gray inputs arrive as 1 channel as often as 3
        out.append(np.ascontiguousarray(c))
    return out


def build_dataset(sources: list[Source], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    X, y, groups, names = [], [], [], []
    t0 = time.time()
    for i, s in enumerate(sources):
        try:
            a = s.load()
        except Exception as exc:  # noqa: BLE001 - report and continue: a package may lack one file
            print(f"  skip {s.group}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        for c in augment(a, s.crops, rng, s.kind):
            f = features(Image(c))
            X.append([f[n] for n in FEATURE_NAMES])
            y.append(KINDS.index(s.kind))
            groups.append(s.group)
        names.append(s.group)
        if i % 100 == 0:
            print(f"  {i}/{len(sources)} sources, {len(X)} examples, {time.time() - t0:.0f}s", file=sys.stderr)
    return np.array(X), np.array(y), np.array(groups), names


# ----------------------------------------------------------------------------------------------------------
# Multinomial logistic regression (L-BFGS on the class-balanced, L2-regularised cross-entropy)
# ----------------------------------------------------------------------------------------------------------
def transform(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    for n in LOG_FEATURES:
        j = FEATURE_NAMES.index(n)
        X[:, j] = np.log10(np.maximum(X[:, j], 0) + 1e-3)
    return X


def fit_logreg(X: np.ndarray, y: np.ndarray, k: int, l2: float) -> dict[str, np.ndarray]:
    from scipy.optimize import minimize

    Xt = transform(X)
    mean, scale = Xt.mean(axis=0), Xt.std(axis=0) + 1e-6
    Z = np.clip((Xt - mean) / scale, -8, 8)
    n, d = Z.shape
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sw = (n / (k * np.maximum(counts, 1)))[y]         # balanced: every kind weighs the same in total
    Y = np.eye(k)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: k * d].reshape(k, d), theta[k * d:]
        logits = Z @ W.T + b
        logits -= logits.max(axis=1, keepdims=True)
        P = np.exp(logits)
        P /= P.sum(axis=1, keepdims=True)
        nll = -(sw * np.log(np.maximum((P * Y).sum(axis=1), 1e-300))).sum() / n
        G = (P - Y) * sw[:, None] / n
        gW = G.T @ Z + l2 * W
        gb = G.sum(axis=0)
        return nll + 0.5 * l2 * float((W * W).sum()), np.concatenate([gW.ravel(), gb])

    res = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    W, b = res.x[: k * d].reshape(k, d), res.x[k * d:]
    return {"mean": mean, "scale": scale, "coef": W, "intercept": b}


def fit_mlp(X: np.ndarray, y: np.ndarray, k: int, l2: float, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """One tanh hidden layer, softmax output; same balanced, L2-regularised loss, L-BFGS."""
    from scipy.optimize import minimize

    Xt = transform(X)
    mean, scale = Xt.mean(axis=0), Xt.std(axis=0) + 1e-6
    Z = np.clip((Xt - mean) / scale, -8, 8)
    n, d = Z.shape
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sw = (n / (k * np.maximum(counts, 1)))[y]
    Y = np.eye(k)[y]
    shapes = [(hidden, d), (hidden,), (k, hidden), (k,)]

    def unpack(t: np.ndarray) -> list[np.ndarray]:
        out, i = [], 0
        for s in shapes:
            m = int(np.prod(s))
            out.append(t[i:i + m].reshape(s))
            i += m
        return out

    def loss(t: np.ndarray) -> tuple[float, np.ndarray]:
        W1, b1, W2, b2 = unpack(t)
        A = np.tanh(Z @ W1.T + b1)
        L = A @ W2.T + b2
        L -= L.max(axis=1, keepdims=True)
        P = np.exp(L)
        P /= P.sum(axis=1, keepdims=True)
        nll = -(sw * np.log(np.maximum((P * Y).sum(axis=1), 1e-300))).sum() / n
        G = (P - Y) * sw[:, None] / n
        dA = (G @ W2) * (1 - A * A)
        grads = [dA.T @ Z + l2 * W1, dA.sum(axis=0), G.T @ A + l2 * W2, G.sum(axis=0)]
        return nll + 0.5 * l2 * float((W1 * W1).sum() + (W2 * W2).sum()), np.concatenate([g.ravel() for g in grads])

    rng = np.random.default_rng(seed)
    t0 = np.concatenate([rng.normal(0, 1 / math.sqrt(d), hidden * d), np.zeros(hidden),
                         rng.normal(0, 1 / math.sqrt(hidden), k * hidden), np.zeros(k)])
    res = minimize(loss, t0, jac=True, method="L-BFGS-B", options={"maxiter": 1500})
    W1, b1, W2, b2 = unpack(res.x)
    return {"mean": mean, "scale": scale, "hidden_coef": W1, "hidden_intercept": b1, "coef": W2, "intercept": b2}


def predict(model: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    Z = np.clip((transform(X) - model["mean"]) / model["scale"], -8, 8)
    if "hidden_coef" in model:
        Z = np.tanh(Z @ model["hidden_coef"].T + model["hidden_intercept"])
    logits = Z @ model["coef"].T + model["intercept"]
    return logits.argmax(axis=1)


def grouped_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold id per example: every source image's crops in one fold, sources of each kind spread evenly."""
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for k in np.unique(y):
        gs = sorted(set(groups[y == k]))
        rng.shuffle(gs)
        for i, g in enumerate(gs):
            fold_of[g] = i % folds
    return np.array([fold_of[g] for g in groups])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cache", type=Path, default=None, help="reuse/store the feature matrix here")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=("mlp", "logreg"), default="mlp")
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--l2", type=float, default=None, help="L2 weight (default 1e-2)")
    a = ap.parse_args(argv)
    shared = a.shared if a.shared.is_dir() else None
    if a.cache and a.cache.is_file():
        z = np.load(a.cache, allow_pickle=False)
        if list(z["feature_names"]) != list(FEATURE_NAMES):
            raise SystemExit(f"{a.cache}: cached with other features; delete it")
        X, y, groups = z["X"], z["y"], z["groups"]
    else:
        photos = []
        if shared is not None:
            photos = [_imread(p) for p in sorted((shared / "train").iterdir())[::20]]
        sources = collect_sources(shared, photos)
        X, y, groups, _ = build_dataset(sources, a.seed)
        if a.cache:
            np.savez(a.cache, X=X, y=y, groups=groups, feature_names=np.array(FEATURE_NAMES))
    k = len(KINDS)
    l2 = a.l2 if a.l2 is not None else 1e-2

    def fit(Xf: np.ndarray, yf: np.ndarray) -> dict[str, np.ndarray]:
        if a.model == "mlp":
            return fit_mlp(Xf, yf, k, l2, a.hidden, a.seed)
        return fit_logreg(Xf, yf, k, l2)

    # grouped cross-validation: held-out sources only
    fold = grouped_folds(y, groups, a.folds, a.seed)
    conf = np.zeros((k, k), np.int64)
    for f in range(a.folds):
        tr, te = fold != f, fold == f
        m = fit(X[tr], y[tr])
        for t, p in zip(y[te], predict(m, X[te])):
            conf[t, p] += 1
    acc = float(np.trace(conf) / conf.sum())
    bal = float(np.mean([conf[i, i] / max(conf[i].sum(), 1) for i in range(k)]))
    print(f"grouped {a.folds}-fold CV (by source image): accuracy {acc:.3f}, balanced {bal:.3f}")
    print("rows = true, cols = predicted: " + " ".join(f"{c[:5]:>6s}" for c in KINDS))
    for i, c in enumerate(KINDS):
        print(f"{c:>10s} " + " ".join(f"{v:6d}" for v in conf[i]))

    final = fit(X, y)
    train_acc = float((predict(final, X) == y).mean())
    kinds_count = {c: int((y == i).sum()) for i, c in enumerate(KINDS)}
    sources_count = {c: len(set(groups[y == i])) for i, c in enumerate(KINDS)}
    group_prefixes = sorted({g.rsplit("/", 1)[0] for g in groups})
    model = {
        "format": "inverity-kind-model/1",
        "type": ("one-hidden-layer tanh MLP, softmax output" if a.model == "mlp"
                 else "multinomial logistic regression") + " (class-balanced cross-entropy, L2, L-BFGS)",
        "classes": list(KINDS),
        "features": list(FEATURE_NAMES),
        "log_features": list(LOG_FEATURES),
        "log_eps": 1e-3,
        "clip": 8.0,
        "mean": final["mean"].round(8).tolist(),
        "scale": final["scale"].round(8).tolist(),
        "coef": final["coef"].round(8).tolist(),
        "intercept": final["intercept"].round(8).tolist(),
        **({"hidden_coef": final["hidden_coef"].round(8).tolist(),
            "hidden_intercept": final["hidden_intercept"].round(8).tolist()} if "hidden_coef" in final else {}),
        "provenance": {
            "script": "scripts/fit_kind.py",
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seed": a.seed, "l2": l2, "model": a.model, "hidden": a.hidden if a.model == "mlp" else None,
            "examples_per_kind": kinds_count, "source_images_per_kind": sources_count,
            "source_collections": group_prefixes,
            "held_out_of_fitting": list(HELD_OUT) + ["shared/datasets/kodak", "shared/datasets/validation"],
            "cv": {"folds": a.folds, "split": "by source image", "accuracy": round(acc, 4),
                   "balanced_accuracy": round(bal, 4), "confusion_rows_true_cols_pred": conf.tolist()},
            "train_accuracy": round(train_acc, 4),
            "fitting_software": {"numpy": np.__version__, "scipy": __import__("scipy").__version__},
        },
    }
    from inverity._atomic import atomic_write_text

    atomic_write_text(a.out, json.dumps(model, indent=1) + "\n")
    print(f"wrote {a.out} ({len(X)} examples from {len(set(groups))} sources; train accuracy {train_acc:.3f})")


if __name__ == "__main__":
    main()
