"""Widen a trained :class:`~inverity.stages.learned.model.ScaleHyperprior` to more latent channels, keeping
its function (Net2Net, Chen, Goodfellow & Shlens, ICLR 2016, in its "zero the outgoing weights" form).

Used to start a high-rate model (e.g. ``hp-high``, M=192) from the committed ``hp-gain`` (M=96) instead of from
scratch: at step 0 the wide model reproduces the narrow one's reconstruction exactly (and the old channels'
rate: z, μ and σ of the old latents are unchanged; the new latents add their own bits), and training only has
to learn what the new channels add. Which weights go where::

    g_a last conv   rows 0..M0-1 = old; new rows random (1/4 scale) -> y_new small but not all rounded to zero
    g_s first deconv  inputs 0..M0-1 = old; new inputs zero         -> x̂ unchanged; their gradient is ŷ_new ≠ 0
    h_a first conv  inputs 0..M0-1 = old; new inputs zero            -> z unchanged
    h_s hidden units  old units copied; new units: random in, zero out -> (μ, σ) of the old channels unchanged
    h_s last conv   new μ rows zero (μ_new = 0); new σ rows zero weight, bias ``sigma_new`` -> σ_new constant
    gain units      new channels get the mean of the old channels' gains per quality

(New latents so small that they all round to zero would be a dead saddle, measured: 1,000 steps from
analysis rows at 1e-3 scale left every new latent at zero — the synthesis weights' gradient is ŷ_new = 0 and
the rate term pulls y_new to zero. So the new latents start nonzero and cost some rate instead.)
The hyper-latent z keeps its ``N`` channels, so the factorized prior is copied.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .model import ScaleHyperprior

__all__ = ["widen_state", "widen_synthesis"]

_PEDESTAL = 2.0 ** -36  # GDN's reparametrisation: a parameter of sqrt(pedestal) is an effective weight of 0


def _rand(shape: tuple[int, ...], like: Tensor, scale: float, gen: torch.Generator) -> Tensor:
    """Uniform in ±scale·RMS(``like``): new weights on the scale of the trained ones."""
    rms = float(like.pow(2).mean().sqrt()) or 1.0
    return (torch.rand(shape, generator=gen) * 2 - 1) * rms * scale


def _new_rows(old: Tensor, rows: int, scale: float, gen: torch.Generator) -> Tensor:
    """``rows`` new leading-dim slices shaped like ``old``'s (see :func:`_rand`)."""
    return _rand((rows, *old.shape[1:]), old, scale, gen)


def widen_state(old: dict[str, Tensor], N: int, M0: int, M: int, lambdas: tuple[float, ...], *,
                ga_scale: float = 0.25, sigma_new: float = 0.5,
                seed: int = 0) -> dict[str, Tensor]:
    """State dict of a ``ScaleHyperprior(N, M, lambdas)`` that computes what ``old`` (``N``, ``M0``) computes.

    ``old``'s gain rows must already match ``lambdas`` (see :func:`~inverity.stages.learned.train.remap_gains`).
    ``ga_scale`` sizes the new analysis rows relative to the old ones (0.25: the new latents' spread is ~1/14 of
    the old ones', so they cost a few bits where they are nonzero); ``sigma_new`` is the new channels' constant σ.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> small = ScaleHyperprior(8, 12, (0.01, 0.02))
    >>> big = ScaleHyperprior(8, 24, (0.01, 0.02))
    >>> big.load_state_dict(widen_state(small.state_dict(), 8, 12, 24, (0.01, 0.02)))
    <All keys matched successfully>
    >>> x = torch.rand(1, 3, 64, 64); q = torch.tensor([1])
    >>> _ = small.eval(), big.eval()
    >>> a, b = small(x, q), big(x, q)
    >>> bool(torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5))  # the reconstruction; the new latents add bits
    True
    """
    if M <= M0:
        raise ValueError(f"widening needs M > {M0}, got {M}")
    if old["log_gain"].shape != (len(lambdas), M0):
        raise ValueError(f"gain rows {tuple(old['log_gain'].shape)} do not match {len(lambdas)} λ × M0={M0}")
    gen = torch.Generator().manual_seed(seed)
    ref = ScaleHyperprior(N, M, lambdas).state_dict()  # shapes (and defaults for nothing-to-copy tensors)
    out = {k: v.clone() for k, v in old.items()}
    extra = M - M0
    hs0, hs = M0 * 3 // 2, M * 3 // 2

    # g_a's last conv: new output channels, tiny so the new latents quantise to zero
    w, b = old["g_a.6.weight"], old["g_a.6.bias"]
    out["g_a.6.weight"] = torch.cat([w, _new_rows(w, extra, ga_scale, gen)])
    out["g_a.6.bias"] = torch.cat([b, torch.zeros(extra)])
    # g_s's first deconv (weight: in × out × k × k): new inputs start at zero, so x̂ is unchanged
    w = old["g_s.0.weight"]
    out["g_s.0.weight"] = torch.cat([w, torch.zeros(extra, *w.shape[1:])])
    # h_a's first conv (out × in × k × k): the new latents do not reach z
    w = old["h_a.0.weight"]
    out["h_a.0.weight"] = torch.cat([w, torch.zeros(w.shape[0], extra, *w.shape[2:])], dim=1)
    # h_s.0: deconv N -> M (in × out): new hidden units with random inputs
    w, b = old["h_s.0.weight"], old["h_s.0.bias"]
    out["h_s.0.weight"] = torch.cat([w, _rand((w.shape[0], extra, *w.shape[2:]), w, 1.0, gen)], dim=1)
    out["h_s.0.bias"] = torch.cat([b, torch.zeros(extra)])
    # h_s.2: deconv M -> 1.5M (in × out): old units read only old units; new units read everything
    w, b = old["h_s.2.weight"], old["h_s.2.bias"]
    w2 = torch.zeros(M, hs, *w.shape[2:])
    w2[:M0, :hs0] = w
    w2[:, hs0:] = _rand((M, hs - hs0, *w.shape[2:]), w, 1.0, gen)
    out["h_s.2.weight"] = w2
    out["h_s.2.bias"] = torch.cat([b, torch.zeros(hs - hs0)])
    # h_s.4: conv 1.5M -> 2M (out × in): outputs are [μ (M), σ (M)]; old ones read only old units
    w, b = old["h_s.4.weight"], old["h_s.4.bias"]
    w4 = torch.zeros(2 * M, hs, *w.shape[2:])
    w4[:M0, :hs0] = w[:M0]
    w4[M:M + M0, :hs0] = w[M0:]
    b4 = torch.zeros(2 * M)
    b4[:M0] = b[:M0]
    b4[M:M + M0] = b[M0:]
    b4[M + M0:] = sigma_new
    out["h_s.4.weight"] = w4
    out["h_s.4.bias"] = b4
    for key in ("log_gain", "log_inv_gain"):
        g = old[key]
        out[key] = torch.cat([g, g.mean(dim=1, keepdim=True).expand(-1, extra)], dim=1)
    for k, v in ref.items():
        if out[k].shape != v.shape:
            raise ValueError(f"widening produced {k} {tuple(out[k].shape)}, expected {tuple(v.shape)}")
    return out


def _gdn_wide(beta: Tensor, gamma: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """An (I)GDN of ``n`` channels whose first channels normalise exactly as before: new channels get the
    default initialisation (β = 1, γ = 0.1 on the diagonal) and no cross terms in either direction."""
    n0 = beta.shape[0]
    b = torch.cat([beta, torch.full((n - n0,), (1.0 + _PEDESTAL) ** 0.5)])
    g = torch.full((n, n), _PEDESTAL ** 0.5)
    g[:n0, :n0] = gamma
    idx = torch.arange(n0, n)
    g[idx, idx] = (0.1 + _PEDESTAL) ** 0.5
    return b, g


def widen_synthesis(old: dict[str, Tensor], Ns: int, *, scale: float = 0.25, seed: int = 0) -> dict[str, Tensor]:
    """``old``'s tensors with the synthesis g_s widened from its hidden width to ``Ns`` channels, same function.

    New hidden units read everything (random weights at ``scale`` × the trained ones' RMS) but nothing reads
    them yet (zero weights into the old units and into the output), so x̂ is unchanged at step 0 and a decoder
    fine-tune (:mod:`.train_dec`) only has to learn what they add. Nothing outside g_s changes: the widened
    model decodes the same bitstream.

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> small = ScaleHyperprior(8, 12, (0.01, 0.02)).eval()
    >>> wide = ScaleHyperprior(8, 12, (0.01, 0.02), Ns=16).eval()
    >>> wide.load_state_dict(widen_synthesis(small.state_dict(), 16))
    <All keys matched successfully>
    >>> y = torch.randn(1, 12, 4, 4)
    >>> bool(torch.allclose(small.g_s(y), wide.g_s(y), atol=1e-6))
    True
    """
    n0 = old["g_s.0.weight"].shape[1]
    if Ns <= n0:
        raise ValueError(f"widening the synthesis needs Ns > {n0}, got {Ns}")
    gen = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in old.items()}
    w = old["g_s.0.weight"]                                   # deconv M -> N: (in M, out N, k, k)
    out["g_s.0.weight"] = torch.cat([w, _rand((w.shape[0], Ns - n0, *w.shape[2:]), w, scale, gen)], dim=1)
    out["g_s.0.bias"] = torch.cat([old["g_s.0.bias"], torch.zeros(Ns - n0)])
    for i in (2, 4):                                          # deconv N -> N: old outputs read old inputs only
        w = old[f"g_s.{i}.weight"]
        w2 = torch.zeros(Ns, Ns, *w.shape[2:])
        w2[:n0, :n0] = w
        w2[:, n0:] = _rand((Ns, Ns - n0, *w.shape[2:]), w, scale, gen)
        out[f"g_s.{i}.weight"] = w2
        out[f"g_s.{i}.bias"] = torch.cat([old[f"g_s.{i}.bias"], torch.zeros(Ns - n0)])
    for i in (1, 3, 5):
        out[f"g_s.{i}.beta"], out[f"g_s.{i}.gamma"] = _gdn_wide(old[f"g_s.{i}.beta"], old[f"g_s.{i}.gamma"], Ns)
    w = old["g_s.6.weight"]                                   # deconv N -> 3: the new units start unread
    out["g_s.6.weight"] = torch.cat([w, torch.zeros(Ns - n0, *w.shape[1:])])
    return out
