"""Checkerboard spatial context on top of the frozen mean-scale hyperprior (the ``hp-ctx`` model).

After He et al., "Checkerboard context model for efficient learned image compression" (CVPR 2021,
arXiv 2103.15306): the latent positions are split like a chessboard. *Anchors* ((i + j) even) are coded
first, with the hyperprior's (μ, σ) exactly as the context-free model codes them; *non-anchors*
((i + j) odd) are coded second, with (μ, σ) that also see the decoded anchors around them through a masked
5×5 convolution. Both passes are fully parallel (two network evaluations, not one per position as in the
autoregressive models), so decoding stays about as fast as without context.

Dataflow (the transforms g_a, g_s, h_a, h_s and the gains are the ``hp-gain`` model's, frozen)::

    ẑ ──h_s──► (μ_h, σ_h) ──────────────────────────────┬──► anchors:  s_a = round(y'−μ_h), σ_h
                                                          │
    s_a (anchor residuals, 0 elsewhere) ──ctx 5×5 masked──┤
                                                          ▼
                            entropy parameters (1×1 convs) on [μ_h, σ_h, ctx] ──► (Δμ, Δlog σ)
                            non-anchors:  μ = μ_h + Δμ,  σ = max(σ_h, 0.11)·exp(Δlog σ),  s = round(y'−μ)

The context sees the anchors' *residuals* s_a (integers: the part of each anchor the hyperprior did not
predict), which makes its input exact on both sides of the channel. Its last layer starts at zero, so an
untrained context codes exactly like ``hp-gain``; training (:mod:`.train_ctx`) only moves the non-anchor
rate, because ŷ and therefore the distortion cannot change.

Determinism is that of h_s (:mod:`.entropy`): the context network runs on CPU in float64, single-threaded,
oneDNN off, and σ enters the coder only as an index into ``SCALE_TABLE``.

Stream (one range-coder queue): ẑ and its escapes as in ``hp-gain``, then the anchor residuals (channel,
then raster order over anchor positions) with their escapes, then the non-anchor residuals likewise.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .entropy import (LatentCodec, ZTables, decode_y, deterministic_cpu, encode_y, encode_z, finish, new_encoder,
                      scale_indexes)
from .model import SCALE_MIN, ScaleHyperprior

__all__ = ["CONTEXT_KIND", "CheckerboardContext", "CheckerboardCodec", "anchor_mask", "context_params",
           "SecondPass", "decode_two_pass", "hyper_indexes", "hyper_params", "nonanchor_indexes", "nonanchor_params"]

#: the ``architecture.context`` value of models with this context (registry and weights file)
CONTEXT_KIND = "checkerboard"
#: state-dict prefix of the context parameters inside a weights file
PREFIX = "context."


def anchor_mask(h: int, w: int) -> np.ndarray:
    """Boolean h×w mask of the anchor positions ((i + j) even).

    Examples
    --------
    >>> anchor_mask(2, 3).astype(int).tolist()
    [[1, 0, 1], [0, 1, 0]]
    """
    i, j = np.indices((h, w))
    return (i + j) % 2 == 0


class CheckerboardContext(nn.Module):
    """Masked 5×5 context over anchor residuals + 1×1 entropy-parameter network (He et al. 2021).

    ``forward(hyper, s_anchor)`` takes the h_s output ``hyper`` (B×2M×h×w: μ_h then σ_h) and the anchor
    residuals (B×M×h×w, zero at non-anchors) and returns (Δμ, Δlog σ), meaningful at non-anchor positions.
    The kernel mask keeps only taps at odd offsets (dy + dx odd), i.e. the anchors seen from a non-anchor.
    """

    def __init__(self, M: int) -> None:
        super().__init__()
        self.M = M
        self.context = nn.Conv2d(M, 2 * M, 5, padding=2)
        dy, dx = np.indices((5, 5))
        self.register_buffer("mask", torch.from_numpy(((dy + dx) % 2 == 1).astype(np.float32))[None, None])
        hid1, hid2 = 10 * M // 3, 8 * M // 3
        self.entropy = nn.Sequential(
            nn.Conv2d(4 * M, hid1, 1), nn.LeakyReLU(), nn.Conv2d(hid1, hid2, 1), nn.LeakyReLU(),
            nn.Conv2d(hid2, 2 * M, 1))
        last = self.entropy[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)  # untrained = the hyperprior's parameters exactly
        nn.init.zeros_(last.bias)

    def forward(self, hyper: Tensor, s_anchor: Tensor) -> tuple[Tensor, Tensor]:
        ctx = nn.functional.conv2d(s_anchor, self.context.weight * self.mask, self.context.bias, padding=2)
        d_mu, d_log_sigma = self.entropy(torch.cat([hyper, ctx], dim=1)).chunk(2, dim=1)
        return d_mu, d_log_sigma


def context_params(ctx: CheckerboardContext, hyper: Tensor, s_anchor: Tensor) -> tuple[Tensor, Tensor]:
    """Non-anchor (μ, σ) from the h_s output and the anchor residuals (any dtype/device the inputs share).

    σ keeps the hyperprior's lower bound (``SCALE_MIN``) as its base, so Δ = 0 reproduces ``hp-gain``.
    """
    means_h, scales_h = hyper.chunk(2, dim=1)
    d_mu, d_ls = ctx(hyper, s_anchor)
    return means_h + d_mu, scales_h.clamp_min(SCALE_MIN) * torch.exp(d_ls)


class CheckerboardCodec(LatentCodec):
    """:class:`~.entropy.LatentCodec` with two-pass checkerboard coding of y (see the module docstring).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> from .entropy import tabulate_z
    >>> model = ScaleHyperprior(8, 8).eval()
    >>> ctx = CheckerboardContext(8).eval()
    >>> _ = nn.init.normal_(ctx.entropy[-1].weight, std=0.1)
    >>> codec = CheckerboardCodec(model, tabulate_z(model.prior), ctx)
    >>> px = (np.arange(40 * 70 * 3) % 251).astype(np.uint8).reshape(40, 70, 3)
    >>> payload = codec.encode(px, 2)
    >>> out = codec.decode(payload, 2, 40, 70)
    >>> out.shape, np.array_equal(out, codec.decode(payload, 2, 40, 70))
    ((40, 70, 3), True)
    """

    def __init__(self, model: ScaleHyperprior, z_tables: ZTables, context: CheckerboardContext) -> None:
        super().__init__(model, z_tables)
        self.context = context.eval()
        self._ctx = copy.deepcopy(context).double().eval()

    def _hyper(self, z_hat: np.ndarray) -> Tensor:
        with deterministic_cpu(1):
            return hyper_params(self._h_s, z_hat)

    def _second_pass(self, hyper: Tensor, s: np.ndarray, anchors: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Non-anchor μ (float64, M×n) and scale indexes (M×n), n = non-anchor positions in raster order."""
        with deterministic_cpu(1):
            return nonanchor_indexes(self._ctx, hyper, s, anchors)

    def encode_latents(self, y: Tensor, z_hat: np.ndarray) -> bytes:
        m = self.model.M
        hyper = self._hyper(z_hat)
        idx_h = hyper_indexes(hyper)
        y64 = y.detach().double()[0]
        anchors = anchor_mask(*y.shape[-2:])
        s_a = torch.round(y64 - hyper[0, :m]).numpy().astype(np.int64)
        s_a[:, ~anchors] = 0
        means_c, idx_c = self._second_pass(hyper, s_a, anchors)
        s_n = torch.round(y64[:, torch.from_numpy(~anchors)] - means_c).numpy().astype(np.int64)
        enc = new_encoder()
        encode_z(enc, z_hat, self.tables)
        encode_y(enc, s_a[:, anchors], idx_h[:, anchors])
        encode_y(enc, s_n, idx_c)
        return finish(enc)

    def _decode_y(self, dec: Any, z_hat: np.ndarray) -> Tensor:
        hyper = self._hyper(z_hat)
        return decode_two_pass(dec, hyper, self._second_pass, anchor_mask(*hyper.shape[-2:]))


# -- the decoder's steps, on whatever device and dtype the modules are (CPU float64 in the codec; another
#    device in :mod:`.crossdevice`, which must run the same steps to say whether that device agrees)
def hyper_params(h_s: nn.Module, z_hat: np.ndarray) -> Tensor:
    """h_s output (1×2M×h×w: μ_h then σ_h) for integer ẑ (N×h'×w'), on the device and dtype of ``h_s``."""
    p = next(h_s.parameters())
    return h_s(torch.from_numpy(z_hat.astype(np.float64))[None].to(p.device, p.dtype)).contiguous()


def hyper_indexes(hyper: Tensor) -> np.ndarray:
    """Scale indexes (M×h×w) of the hyperprior's σ_h in ``hyper`` (any device/dtype; indexed in float64 on CPU).

    Examples
    --------
    >>> hyper_indexes(torch.tensor([0.0, 1.0], dtype=torch.float64).reshape(1, 2, 1, 1)).tolist()
    [[[18]]]
    """
    m = hyper.shape[1] // 2
    return scale_indexes(hyper[0, m:].to("cpu", torch.float64).numpy())


def nonanchor_indexes(ctx: CheckerboardContext, hyper: Tensor, s: np.ndarray,
                      anchors: np.ndarray) -> tuple[Tensor, np.ndarray]:
    """Non-anchor μ (M×n, on ``hyper``'s device/dtype) and scale indexes (M×n) from the anchor residuals
    ``s`` (M×h×w integers; only anchors are read) — :func:`nonanchor_params` run with ``ctx``, which must
    share ``hyper``'s device and dtype."""
    means, scales = nonanchor_params(ctx, hyper[0], torch.from_numpy(s.astype(np.float64)).to(hyper), anchors)
    return means, scale_indexes(scales.to("cpu", torch.float64).numpy())


#: the context pass: (h_s output, residuals with the anchors decoded, anchor mask) → non-anchor (μ, indexes)
SecondPass = Callable[[Tensor, np.ndarray, np.ndarray], tuple[Tensor, np.ndarray]]


def decode_two_pass(dec: Any, hyper: Tensor, second_pass: SecondPass, anchors: np.ndarray,
                    indexes: list[np.ndarray] | None = None) -> Tensor:
    """ŷ' = s + μ (1×M×h×w, on ``hyper``'s device/dtype): the y part of the stream read from ``dec`` in the
    checkerboard's two passes, given the h_s output ``hyper``.

    Anchors are read with σ_h's indexes; ``second_pass`` (:func:`nonanchor_indexes` with a context net,
    e.g. ``functools.partial(nonanchor_indexes, ctx)``) then gives the non-anchors' μ and indexes. Each
    pass's scale indexes (anchors M×n_a, then non-anchors M×n_n) are appended to ``indexes`` as soon as they
    are known, so a caller still has them when the range decoder then fails (the exception propagates).
    """
    m = hyper.shape[1] // 2
    idx_a = hyper_indexes(hyper)[:, anchors]
    if indexes is not None:
        indexes.append(idx_a)
    s = np.zeros((m, *anchors.shape), dtype=np.int64)
    s[:, anchors] = decode_y(dec, idx_a)
    means_c, idx_c = second_pass(hyper, s, anchors)
    if indexes is not None:
        indexes.append(idx_c)
    s[:, ~anchors] = decode_y(dec, idx_c)
    means = hyper[0, :m].clone()
    means[:, torch.from_numpy(~anchors).to(hyper.device)] = means_c
    return torch.from_numpy(s.astype(np.float64)).to(hyper)[None] + means[None]


def nonanchor_params(ctx: CheckerboardContext, hyper: Tensor, s: Tensor, anchors: np.ndarray) -> tuple[Tensor, Tensor]:
    """(μ, σ) at the non-anchor positions only (each M×n, raster order) — what :func:`context_params` gives
    there, computed without the half of the work the checkerboard makes useless.

    ``hyper`` is the h_s output (2M×h×w), ``s`` the residuals (M×h×w; only anchors are read). The masked 5×5
    convolution becomes one matrix product over the 12 anchor taps gathered at the n non-anchor positions
    (≈ 4× fewer operations than the dense convolution), and the 1×1 entropy network runs on those n positions
    only. The decoder and the encoder both run this function, so its float64 reduction order is the one that
    matters for the stream; training uses the dense form, equal to ~1e-7.
    """
    m = s.shape[0]
    ii, jj = (torch.from_numpy(v).to(s.device) for v in np.nonzero(~anchors))
    sp = nn.functional.pad(s, (2, 2, 2, 2))
    taps = [(ky, kx) for ky in range(5) for kx in range(5) if (ky + kx) % 2 == 1]
    cols = torch.cat([sp[:, ii + ky, jj + kx] for ky, kx in taps])                       # (12·M, n)
    weight = torch.cat([ctx.context.weight[:, :, ky, kx] for ky, kx in taps], dim=1)   # (2M, 12·M)
    feat = weight @ cols + ctx.context.bias[:, None]
    hyp = hyper[:, ii, jj]
    d_mu, d_ls = ctx.entropy(torch.cat([hyp, feat])[None, :, None, :])[0, :, 0].chunk(2)
    return hyp[:m] + d_mu, hyp[m:].clamp_min(SCALE_MIN) * torch.exp(d_ls)
