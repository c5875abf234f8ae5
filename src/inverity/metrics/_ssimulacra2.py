"""SSIMULACRA 2 (libjxl ``tools/ssimulacra2.cc``, April 2023 weights); see :mod:`inverity.metrics`."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import InputError
from ._blur import _blur_stack
from ._prep import ContentWindow, ImageLike, _pair


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
