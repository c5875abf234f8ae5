"""The learned model's own evidence about an image, for the OOD gate (``inverity.analyse``, gate v2).

The spectral signature says whether an image *looks* like the training photos; the model can say whether it
*codes* like them. On a small box-downscaled copy (≤ :data:`SIDE` px on the longest side, so the cost is a
few tens of milliseconds whatever the input size) and at one fixed rate point (the quality whose λ is
nearest :data:`LAMBDA`, read from the model's own ladder, so a longer ladder changes nothing), it measures::

    x ──g_a──► y ──round──► ŷ ──g_s──► x̂          lat_bpp     log10 bits/pixel of ŷ and ẑ under the prior
         └─h_a──► ẑ ──h_s──► (μ, σ)                 lat_psnr    PSNR of x̂ (float32 synthesis)
                                                    lat_zshare  share of the bits spent on the hyperprior ẑ
    JPEG at the same PSNR (bisection on quality) ─► lat_vs_jpeg log2(learned bpp / JPEG bpp): the model's
                                                                advantage over a classical codec, ≈ −0.6 on
                                                                photos; content it was not trained on loses it
    PNG (lossless, zlib level 1) of the copy ─────► lat_vs_png  log2(learned bpp / PNG bpp): ≈ −4.8 on photos,
                                                                −1.5 on line art and charts (few colours, flat)
    per-channel log energy of y ─────────────────► chan_energy (M values; the gate projects them on the
                                                                principal axes of the training set)

Everything runs in float32 with torch's current threads, under ``no_grad``: nothing here reaches a bitstream.

Examples
--------
>>> import numpy as np
>>> px = (np.arange(48 * 80 * 3) % 251).astype(np.uint8).reshape(48, 80, 3)
>>> ev, energy = model_evidence(px)                       # doctest: +SKIP
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import zoo
from .model import LIKELIHOOD_MIN, gaussian_likelihood

__all__ = ["SIDE", "LAMBDA", "SCALAR_NAMES", "evidence_pixels", "quality_index", "jpeg_bpp_at",
           "model_evidence"]

#: longest side of the copy the model looks at
SIDE = 256
#: the rate point: the quality whose λ is nearest this (mid-ladder on every ladder the zoo has shipped)
LAMBDA = 0.0067
#: the scalar evidence features, in order
SCALAR_NAMES: tuple[str, ...] = ("lat_bpp", "lat_psnr", "lat_zshare", "lat_vs_jpeg", "lat_vs_png")


def evidence_pixels(pixels: np.ndarray, side: int = SIDE) -> np.ndarray:
    """uint8 RGB copy, box-downscaled by an integer factor to ≤ ``side`` px (gray → 3 channels, alpha dropped,
    16-bit scaled by its dtype range).

    Examples
    --------
    >>> evidence_pixels(np.zeros((600, 300, 1), np.uint16)).shape
    (200, 100, 3)
    """
    px = pixels if pixels.ndim == 3 else pixels[:, :, None]
    px = px[:, :, :1] if px.shape[2] in (1, 2) else px[:, :, :3]
    h, w = px.shape[:2]
    step = max(1, math.ceil(max(h, w) / side))
    hh, ww = max(step, h // step * step), max(step, w // step * step)
    a = px[:hh, :ww].astype(np.float32)
    if step > 1:
        a = a.reshape(hh // step, step, ww // step, step, a.shape[2]).mean(axis=(1, 3))
    if px.dtype == np.uint16:
        a = a * (255.0 / 65535.0)
    a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)


def quality_index(lambdas: tuple[float, ...] | list[float], lam: float = LAMBDA) -> int:
    """0-based index of the λ nearest ``lam`` on a log scale.

    >>> quality_index((0.0007, 0.0018, 0.0035, 0.0067, 0.013))
    3
    """
    return int(np.argmin([abs(math.log(v / lam)) for v in lambdas]))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-6))


def jpeg_bpp_at(px: np.ndarray, target_psnr: float) -> float:
    """JPEG (libjpeg-turbo via imagecodecs, 4:2:0) bits/pixel at ``target_psnr``: bisection on the quality,
    log-linear interpolation between the bracketing settings, ~6 dB per doubling outside 5..98."""
    import imagecodecs

    n = px.shape[0] * px.shape[1]

    def point(q: int) -> tuple[float, float]:
        data = imagecodecs.jpeg8_encode(px, level=q)
        return 8.0 * len(data) / n, _psnr(px, imagecodecs.jpeg8_decode(data))

    lo, hi = 5, 98
    (blo, plo), (bhi, phi) = point(lo), point(hi)
    if target_psnr <= plo:
        return blo * 2.0 ** ((target_psnr - plo) / 6.0)
    if target_psnr >= phi:
        return bhi * 2.0 ** ((target_psnr - phi) / 6.0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        bm, pm = point(mid)
        if pm < target_psnr:
            lo, blo, plo = mid, bm, pm
        else:
            hi, bhi, phi = mid, bm, pm
        if hi - lo <= 4:
            break
    t = (target_psnr - plo) / max(phi - plo, 1e-9)
    return math.exp(math.log(blo) + t * (math.log(bhi) - math.log(blo)))


@torch.no_grad()
def model_evidence(pixels: np.ndarray, model_name: str | None = None,
                   lam: float = LAMBDA) -> tuple[dict[str, float], np.ndarray]:
    """(scalar evidence by :data:`SCALAR_NAMES`, per-channel log10 energy of y) for an image.

    ``pixels`` may be any size and bit depth; the model sees :func:`evidence_pixels` of it. Only the latents
    that cover the real image (not the replicate padding to a multiple of 64) are counted.
    """
    import imagecodecs

    small = evidence_pixels(pixels)
    codec, info = zoo.load_codec(model_name)
    model = codec.model
    q = quality_index(info.lambdas, lam)
    h, w = small.shape[:2]
    x = torch.from_numpy(small).permute(2, 0, 1)[None].float().div_(255.0)
    x = F.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
    y = model.g_a(x) * torch.exp(model.log_gain[q])[None, :, None, None]
    z_hat = torch.round(model.h_a(y))
    means, scales = model.hyper_params(z_hat)
    y_hat = torch.round(y - means) + means
    hy, wy, hz, wz = -(-h // 16), -(-w // 16), -(-h // 64), -(-w // 64)
    bits_y = -torch.log2(gaussian_likelihood(y_hat, means, scales).clamp_min(LIKELIHOOD_MIN))[..., :hy, :wy]
    bits_z = -torch.log2(model.prior.likelihood(z_hat).clamp_min(LIKELIHOOD_MIN))[..., :hz, :wz]
    total = float(bits_y.sum() + bits_z.sum())
    bpp = max(total, 1.0) / (h * w)
    x_hat = model.g_s(y_hat * torch.exp(model.log_inv_gain[q])[None, :, None, None])
    rec = torch.round(x_hat[0, :, :h, :w].clamp(0, 1) * 255.0).permute(1, 2, 0).numpy()
    psnr = _psnr(small, rec)
    ev: dict[str, Any] = {
        "lat_bpp": math.log10(bpp),
        "lat_psnr": psnr,
        "lat_zshare": float(bits_z.sum()) / max(total, 1.0),
        "lat_vs_jpeg": math.log2(bpp / max(jpeg_bpp_at(small, psnr), 1e-6)),
        "lat_vs_png": math.log2(bpp / max(8.0 * len(imagecodecs.png_encode(small, level=1)) / (h * w), 1e-6)),
    }
    energy = (y[..., :hy, :wy] ** 2).mean(dim=(0, 2, 3)).clamp_min(1e-6).log10().numpy().astype(np.float64)
    return {k: float(v) for k, v in ev.items()}, energy
