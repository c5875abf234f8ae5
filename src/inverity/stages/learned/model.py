"""Variable-rate mean-scale hyperprior model (the learned stage's network).

Architecture after Ballé et al., "Variational image compression with a scale hyperprior" (ICLR 2018) and
Minnen et al., "Joint autoregressive and hierarchical priors for learned image compression" (NeurIPS 2018),
*without* the autoregressive context model (which decodes sequentially and ~100x slower). One model serves
all rates through gain units (Cui et al., "Asymmetric gained deep image compression with continuous rate
adaptation", CVPR 2021): a per-quality, per-channel gain scales the latent before quantisation and an inverse
gain undoes it before synthesis.

Dataflow::

    x ──g_a──► y ──×gain[q]──► y' ──round(y'−μ)+μ──► ŷ' ──×inv_gain[q]──► ŷ ──g_s──► x̂
                               │                      ▲
                               └──h_a──► z ──round──► ẑ ──h_s──► (μ, σ)   (Gaussian conditional for y')
                                                      │
                                          factorized prior p(ẑ) (per-channel learned CDF)

Training uses additive uniform noise for the rate term and straight-through rounding for the distortion
path ("mixed" quantisation), so the synthesis sees the same ŷ at training and at coding time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GDN", "FactorizedPrior", "ScaleHyperprior", "LAMBDAS", "SCALE_MIN", "LIKELIHOOD_MIN"]

#: λ per quality index (q = 1..K): CompressAI's MSE schedule 0.0018..0.0483, plus 0.0007 below it so the
#: lowest quality reaches the ~0.15–0.2 bpp the product is asked to cover on Kodak.
LAMBDAS: tuple[float, ...] = (0.0007, 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)
SCALE_MIN = 0.11
LIKELIHOOD_MIN = 1e-9


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x back above the bound."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    return _LowerBound.apply(x, bound)


def ste_round(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016); ``inverse=True`` gives IGDN."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self._pedestal = 2.0**-36
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        self.gamma = nn.Parameter(torch.sqrt(0.1 * torch.eye(channels) + self._pedestal))

    def forward(self, x: Tensor) -> Tensor:
        beta = lower_bound(self.beta, (1e-6 + self._pedestal) ** 0.5) ** 2 - self._pedestal
        gamma = lower_bound(self.gamma, self._pedestal**0.5) ** 2 - self._pedestal
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def _conv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


class FactorizedPrior(nn.Module):
    """Per-channel learned univariate density for z (Ballé et al. 2018, appendix 6.1).

    ``logits_cdf(v)`` is a monotone function per channel; ``sigmoid`` of it is the CDF. The coder
    tabulates the probability of every integer in a per-channel range (see ``entropy.py``).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: Tensor) -> Tensor:
        """``v``: (C, 1, n) values per channel -> (C, 1, n) logits of the CDF."""
        h = v
        for i in range(len(self.matrices)):
            h = torch.matmul(F.softplus(self.matrices[i]), h) + self.biases[i]
            if i < len(self.factors):
                h = h + torch.tanh(self.factors[i]) * torch.tanh(h)
        return h

    def likelihood(self, z: Tensor) -> Tensor:
        """Probability mass of the unit interval around each value of ``z`` (B, C, H, W)."""
        b, c, hh, ww = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.reshape(c, b, hh, ww).permute(1, 0, 2, 3)


def gaussian_likelihood(y: Tensor, means: Tensor, scales: Tensor) -> Tensor:
    scales = lower_bound(scales, SCALE_MIN)
    v = torch.abs(y - means)
    # Φ(a) - Φ(b) written through the upper tail for numerical accuracy
    upper = 0.5 * torch.erfc(-(0.5 - v) / scales / math.sqrt(2))
    lower = 0.5 * torch.erfc(-(-0.5 - v) / scales / math.sqrt(2))
    return upper - lower


class ScaleHyperprior(nn.Module):
    """Mean-scale hyperprior with gain units; ``K = len(lambdas)`` rate points in one network.

    Parameters
    ----------
    N, M:
        channels of the transforms and of the latent ``y``; ``z`` has ``N`` channels.
    Ns:
        hidden channels of the synthesis g_s (default ``N``): a wider decoder for the same bitstream
        (:func:`~inverity.stages.learned.widen.widen_synthesis`, :mod:`~inverity.stages.learned.train_dec`).
    lambdas:
        the rate-distortion trade-off per quality index (0-based internally, 1-based in the CLI).
    """

    def __init__(self, N: int = 64, M: int = 96, lambdas: tuple[float, ...] = LAMBDAS, Ns: int | None = None) -> None:
        super().__init__()
        self.N, self.M, self.Ns = N, M, Ns or N
        S = self.Ns
        self.lambdas = tuple(lambdas)
        self.g_a = nn.Sequential(
            _conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M)
        )
        self.g_s = nn.Sequential(
            _deconv(M, S), GDN(S, True), _deconv(S, S), GDN(S, True), _deconv(S, S), GDN(S, True),
            _deconv(S, 3),
        )
        self.h_a = nn.Sequential(
            _conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), _conv(N, N), nn.LeakyReLU(inplace=True), _conv(N, N)
        )
        hs_mid = M * 3 // 2
        self.h_s = nn.Sequential(
            _deconv(N, M), nn.LeakyReLU(inplace=True), _deconv(M, hs_mid), nn.LeakyReLU(inplace=True),
            _conv(hs_mid, 2 * M, 3, 1),
        )
        self.prior = FactorizedPrior(N)
        k = len(self.lambdas)
        mid = self.lambdas[k // 2]
        init = torch.tensor([0.5 * math.log(lam / mid) for lam in self.lambdas])
        # log-gains keep gains positive; quality q scales all channels of y before rounding
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.log_inv_gain = nn.Parameter((-init)[:, None].repeat(1, M).clone())

    @property
    def num_qualities(self) -> int:
        return len(self.lambdas)

    def gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Gain and inverse gain for 0-based quality indices ``q`` (B,) -> (B, M, 1, 1) each."""
        return (torch.exp(self.log_gain[q])[:, :, None, None], torch.exp(self.log_inv_gain[q])[:, :, None, None])

    def hyper_params(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means, scales

    def forward(self, x: Tensor, q: Tensor) -> dict[str, Tensor]:
        """Training/eval pass. ``x`` in [0, 1], (B, 3, H, W) with H, W multiples of 64; ``q`` (B,) 0-based.

        Returns the reconstruction and the per-sample likelihood-based rate in bits.
        """
        gain, inv_gain = self.gains(q)
        y = self.g_a(x) * gain
        z = self.h_a(y)
        if self.training:
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            z_hat = ste_round(z)
        else:
            z_noisy = z_hat = torch.round(z)
        z_lik = self.prior.likelihood(z_noisy).clamp_min(LIKELIHOOD_MIN)
        means, scales = self.hyper_params(z_hat)
        if self.training:
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_noisy = torch.round(y - means) + means
        y_lik = gaussian_likelihood(y_noisy, means, scales).clamp_min(LIKELIHOOD_MIN)
        y_hat = ste_round(y - means) + means
        x_hat = self.g_s(y_hat * inv_gain)
        bits = -(torch.log2(y_lik).sum(dim=(1, 2, 3)) + torch.log2(z_lik).sum(dim=(1, 2, 3)))
        return {"x_hat": x_hat, "bits": bits}
