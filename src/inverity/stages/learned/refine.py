"""Encoder-side latent refinement: spend encode time to shrink the stream, decoder and format untouched.

An amortised encoder (g_a, h_a) predicts latents that are good *on average*; for one given image, the
latents that minimise the rate–distortion loss ``λ·255²·MSE + bpp`` under the fixed decoder and prior are
slightly different. Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression" (NeurIPS 2020,
arXiv 2006.04240) optimise them per image with **stochastic Gumbel annealing** (SGA)::

    x ──g_a──► y₀ ─┐                          (init)
                  ├─► y, z  (free variables, Adam)
    y₀ ──h_a──► z₀ ┘
        each step:  ẑ~ = SGA(z, τ)                μ, σ = h_s(ẑ~)
                    ŷ~ = SGA(y − μ, τ) + μ        x̂ = g_s(ŷ~ · inv_gain)
                    loss = λ·255²·MSE(x̂, x) + (−log₂ p(ŷ~ | μ, σ) − log₂ p(ẑ~)) / pixels
        end:        ẑ = round(z), then the ordinary coder: s = round(y − μ(ẑ))  (LatentCodec.encode_latents)

SGA replaces hard rounding by a relaxed random choice between ⌊v⌋ and ⌈v⌉ whose logits are
``−atanh(distance)/τ``; as the temperature τ anneals towards 0 the sample becomes the hard rounding, so the
optimiser sees the discretisation it will finally get, with useful gradients along the way (straight-through
rounding instead gained only 2–3 % and diverged by 500 steps in our scratch runs). The temperature follows the
paper's exponential schedule (``τ(t) = min(0.5, 0.5·exp(−r·(t − t₀)))``, 2000 steps with t₀ = 700,
r = 10⁻³) compressed to the step budget: t₀ = 0.35·N, r = 1.3 / (0.65·N), so the same final τ ≈ 0.136 is
reached after N steps. Adam, learning rate 5·10⁻³ on y and z, as in the paper.

What the decoder sees is an ordinary stream: integers ẑ and s coded with the stock tables, decoded by the stock
float64 decoder. The ``.inv`` format, its header and the decoder are unchanged; only the encoder is slower.
Refinement is kept only when it lowers the hard-rounded RD loss of the unrefined latents (a safeguard for
very short budgets), so ``refine=N`` never makes the loss worse than ``refine=0``.

Deterministic given ``seed`` on one machine and thread count: the Gumbel noise comes from a seeded
``torch.Generator``; float32 convolutions may differ across thread counts or CPUs, which can change the
chosen latents but never the decodability (the encoder still decodes its own stream and pins the hash).

Examples
--------
>>> [round(temperature(t, 100), 3) for t in (0, 35, 100)]
[0.5, 0.5, 0.136]
>>> resolve_steps("max") == EFFORT_STEPS["max"], resolve_steps(0)
(True, 0)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .entropy import LatentCodec
from .model import LIKELIHOOD_MIN, ScaleHyperprior, gaussian_likelihood

__all__ = ["EFFORT_STEPS", "MAX_STEPS", "LR", "RefineResult", "temperature", "sga_round", "resolve_steps",
           "rd_terms", "refine_latents", "encode_refined"]

#: refinement steps per named effort. ``fast``/``balanced`` keep today's single-pass encode; ``max`` spends
#: ≈ 230 s/MP on one core for ≈ −9 % bytes at equal PSNR (Kodak crops, 256² and 512²); 50 steps gave about
#: half of that for a quarter of the time, already ~200× today's encode (benchmarks/results/learned.md)
EFFORT_STEPS: dict[str, int] = {"fast": 0, "balanced": 0, "max": 200}
#: the largest step count accepted (≈ 10 min per megapixel on this class of machine)
MAX_STEPS = 5000
#: Adam learning rate on y and z (the paper's)
LR = 5e-3
_TAU_MAX = 0.5
_T0_FRACTION = 0.35          # the paper's 700 warm-up steps of 2000
_DECAY_TOTAL = 1.3           # r·(T − t₀) of the paper's schedule: 1e-3 · 1300
_ATANH_EPS = 1e-5


def resolve_steps(refine: Any) -> int:
    """Step count for an option value: an integer 0..MAX_STEPS or an effort name (:data:`EFFORT_STEPS`).

    Examples
    --------
    >>> resolve_steps(50), resolve_steps("fast")
    (50, 0)
    >>> resolve_steps(-1)
    Traceback (most recent call last):
    ...
    ValueError: learned: option refine=-1 is invalid; expected an integer in 0..5000 or one of 'fast', 'balanced', 'max'
    """
    if isinstance(refine, str) and refine in EFFORT_STEPS:
        return EFFORT_STEPS[refine]
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= MAX_STEPS:
        names = ", ".join(repr(k) for k in EFFORT_STEPS)
        raise ValueError(f"learned: option refine={refine!r} is invalid; expected an integer in 0..{MAX_STEPS} "
                         f"or one of {names}")
    return int(refine)


def temperature(step: int, steps: int) -> float:
    """SGA temperature at ``step`` of ``steps``: the paper's exponential schedule compressed to ``steps``."""
    t0 = _T0_FRACTION * steps
    r = _DECAY_TOTAL / max((1.0 - _T0_FRACTION) * steps, 1e-9)
    return float(min(_TAU_MAX, _TAU_MAX * math.exp(-r * (step - t0))))


def sga_round(v: Tensor, tau: float, generator: torch.Generator) -> Tensor:
    """One SGA sample of ``v``: a relaxed choice between ⌊v⌋ and ⌈v⌉ (differentiable in ``v``).

    Two-class Concrete (Gumbel-softmax) with logits ``−atanh(v − ⌊v⌋)/τ`` (down) and ``−atanh(⌈v⌉ − v)/τ``
    (up); the difference of two Gumbel variables is logistic, so one uniform draw per element suffices.
    """
    lo = torch.floor(v.detach())
    frac = v - lo
    down = -torch.atanh(frac.clamp(-1 + _ATANH_EPS, 1 - _ATANH_EPS)) / tau
    up = -torch.atanh((1.0 - frac).clamp(-1 + _ATANH_EPS, 1 - _ATANH_EPS)) / tau
    u = torch.rand(v.shape, generator=generator, dtype=v.dtype).clamp_(1e-7, 1 - 1e-7)
    noise = torch.log(u) - torch.log1p(-u)
    return lo + torch.sigmoid((up - down + noise) / tau)


@dataclass(frozen=True)
class RefineResult:
    """Refined latents and what the refinement bought (estimated from the likelihoods, float32)."""

    y: Tensor                 #: gained latent y' (1×M×h×w, float32), to be coded as round(y' − μ)
    z_hat: np.ndarray         #: integer ẑ (N×h/4×w/4)
    steps: int
    seconds: float
    bits_before: float
    bits_after: float
    mse_before: float         #: on 0..255 pixels, uint8-rounded reconstruction, real region only
    mse_after: float
    kept: bool                #: False when the safeguard kept the unrefined latents

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": round(self.seconds, 3), "bits_before": round(self.bits_before, 1),
                "bits_after": round(self.bits_after, 1), "mse_before": round(self.mse_before, 4),
                "mse_after": round(self.mse_after, 4), "kept": self.kept}


def _bits(model: ScaleHyperprior, y_hat: Tensor, z_hat: Tensor, means: Tensor, scales: Tensor) -> Tensor:
    y_lik = gaussian_likelihood(y_hat, means, scales).clamp_min(LIKELIHOOD_MIN)
    z_lik = model.prior.likelihood(z_hat).clamp_min(LIKELIHOOD_MIN)
    return -(torch.log2(y_lik).sum() + torch.log2(z_lik).sum())


@torch.no_grad()
def rd_terms(model: ScaleHyperprior, x: Tensor, y: Tensor, z: Tensor, q: int, height: int,
             width: int) -> tuple[float, float]:
    """(estimated bits, MSE on 0..255) of *hard-rounded* latents, as the coder and decoder will see them.

    ``x`` is the padded input in [0, 1] (1×3×H×W); distortion is measured on the real ``height × width``
    region of the uint8-rounded reconstruction (what the decoder outputs).
    """
    z_hat = torch.round(z)
    means, scales = model.hyper_params(z_hat)
    y_hat = torch.round(y - means) + means
    bits = _bits(model, y_hat, z_hat, means, scales)
    inv_gain = torch.exp(model.log_inv_gain[q])[None, :, None, None]
    x_hat = torch.round(model.g_s(y_hat * inv_gain).clamp(0, 1) * 255.0)
    err = x_hat[..., :height, :width] - torch.round(x[..., :height, :width] * 255.0)
    return float(bits), float((err * err).mean())


def refine_latents(model: ScaleHyperprior, x: Tensor, y0: Tensor, q: int, steps: int, *, height: int,
                   width: int, seed: int = 0, lr: float = LR) -> RefineResult:
    """Optimise (y, z) for one image by SGA for ``steps`` Adam steps (see the module docstring).

    Parameters
    ----------
    model
        The trained model (its parameters are not changed; gradients flow to the latents only).
    x
        Padded input in [0, 1], 1×3×H×W (H, W multiples of 64).
    y0
        The encoder's gained latent ``g_a(x)·gain[q]`` (the starting point).
    q
        0-based quality index; λ is ``model.lambdas[q]`` (the training ladder, whatever its length).
    height, width
        The real image size inside the padding (distortion is measured there only).
    """
    t_start = time.perf_counter()
    lam = float(model.lambdas[q])
    pixels = float(height * width)
    with torch.no_grad():
        z0 = model.h_a(y0)
    bits0, mse0 = rd_terms(model, x, y0, z0, q, height, width)
    if steps <= 0:
        return RefineResult(y0.detach(), torch.round(z0)[0].numpy().astype(np.int64), 0, 0.0, bits0, bits0,
                            mse0, mse0, False)
    gen = torch.Generator().manual_seed(int(seed))
    y = y0.detach().clone().requires_grad_(True)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y, z], lr=lr)
    inv_gain = torch.exp(model.log_inv_gain[q].detach())[None, :, None, None]
    target = x[..., :height, :width]
    for t in range(steps):
        tau = temperature(t, steps)
        z_t = sga_round(z, tau, gen)
        means, scales = model.hyper_params(z_t)
        y_t = sga_round(y - means, tau, gen) + means
        x_hat = model.g_s(y_t * inv_gain)[..., :height, :width]
        mse = ((x_hat - target) ** 2).mean()
        loss = lam * 255.0**2 * mse + _bits(model, y_t, z_t, means, scales) / pixels
        # gradients for the latents only: the shared (cached) model is neither changed nor flagged, so
        # concurrent encodes cannot see each other's state, and no weight gradients are computed
        y.grad, z.grad = torch.autograd.grad(loss, [y, z])
        opt.step()
    y1, z1 = y.detach(), z.detach()
    bits1, mse1 = rd_terms(model, x, y1, z1, q, height, width)
    # safeguard: the objective on hard-rounded latents (what will be coded) must not get worse
    kept = lam * mse1 + bits1 / pixels <= lam * mse0 + bits0 / pixels
    if not kept:
        y1, z1, bits1, mse1 = y0.detach(), z0, bits0, mse0
    return RefineResult(y1, torch.round(z1)[0].numpy().astype(np.int64), steps, time.perf_counter() - t_start,
                        bits0, bits1, mse0, mse1, kept)


def encode_refined(codec: LatentCodec, pixels: np.ndarray, q: int, steps: int, *,
                   seed: int = 0) -> tuple[bytes, RefineResult]:
    """Payload of ``pixels`` (uint8 H×W×3) at 0-based quality ``q`` after ``steps`` SGA steps.

    ``steps = 0`` gives exactly :meth:`LatentCodec.encode`'s bytes. The payload is an ordinary stream for the
    stock decoder (:meth:`LatentCodec.decode`).
    """
    h, w = pixels.shape[:2]
    x, y0 = codec.analysis(pixels, q)
    if steps <= 0:
        with torch.no_grad():
            z_hat = torch.round(codec.model.h_a(y0))[0].numpy().astype(np.int64)
        res = RefineResult(y0, z_hat, 0, 0.0, math.nan, math.nan, math.nan, math.nan, False)
    else:
        with torch.enable_grad():
            res = refine_latents(codec.model, x, y0, q, steps, height=h, width=w, seed=seed)
    return codec.encode_latents(res.y, res.z_hat), res
