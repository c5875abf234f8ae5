"""Separable Gaussian blur as batched matrix products (SSIMULACRA 2, local error maps), and the single-thread
BLAS guard the metrics run their small products under."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np


def _gauss1d(sigma: float, radius: int) -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


@lru_cache(maxsize=16)
def _band_matrix(block: int, radius: int, sigma: float) -> np.ndarray:
    """(block, block+2r) matrix whose rows are the Gaussian taps shifted by one each: a blur as a matmul."""
    k = _gauss1d(sigma, radius)
    t = np.zeros((block, block + 2 * radius), np.float32)
    for j in range(block):
        t[j, j:j + 2 * radius + 1] = k
    return t


class SingleThreadBlas:
    """Limit BLAS to one thread while blurring: the products are small, and in a pool of verifying processes
    (or on a busy machine) threaded BLAS spins and runs several times slower. No-op without threadpoolctl."""

    _controller: Any = None

    def __enter__(self) -> None:
        self._ctx = None
        try:
            if SingleThreadBlas._controller is None:
                from threadpoolctl import ThreadpoolController

                SingleThreadBlas._controller = ThreadpoolController()
            self._ctx = SingleThreadBlas._controller.limit(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover - optional dependency
            pass

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)


_ROW_BLOCK, _COL_BLOCK = 8, 32


def _blur_stack(planes: list[Any], h: int, w: int, *, sigma: float = 1.5, radius: int | None = None,
                mirror_rows: bool = False) -> np.ndarray:
    """Separable Gaussian blur of P planes (each an H×W array, or a callable writing one into ``out``).

    Both passes are batched matrix products with a banded (block × block+2r) tap matrix, which BLAS runs far
    faster than a per-pixel loop. Outside the image is zero (libjxl's recursive Gaussian), or, with
    ``mirror_rows``, rows are mirrored (half-sample symmetric) and columns zero — what the PyPI ``ssimulacra2``
    package does, since it blurs a transposed image with zero padding along one axis and reflection along the
    other.
    """
    r = int(round(3.33 * sigma)) if radius is None else radius
    p = len(planes)
    rb, cb = _ROW_BLOCK, _COL_BLOCK
    nr, nc = -(-h // rb), -(-w // cb)
    src = np.zeros((p, nr * rb + 2 * r, w), np.float32)
    for i, plane in enumerate(planes):
        if callable(plane):
            plane(src[i, r:r + h])
        else:
            src[i, r:r + h] = plane
    if mirror_rows:
        if h >= r:
            src[:, :r] = src[:, 2 * r - 1:r - 1:-1]
            src[:, r + h:2 * r + h] = src[:, r + h - 1:h - 1:-1]
        else:  # tiny image: repeated reflection, as scipy.ndimage does
            src[:, :h + 2 * r] = np.pad(src[:, r:r + h], ((0, 0), (r, r), (0, 0)), mode="symmetric")
    mid = np.zeros((p, nr * rb, nc * cb + 2 * r), np.float32)
    out = np.empty((p, nr * rb, nc * cb), np.float32)
    with SingleThreadBlas():
        t = _band_matrix(rb, r, sigma)
        for b in range(nr):  # vertical pass, written straight into the horizontally padded buffer
            np.matmul(t, src[:, b * rb:b * rb + rb + 2 * r], out=mid[:, b * rb:(b + 1) * rb, r:r + w])
        # One product per plane (a stacked matmul), never one product over all planes' rows: BLAS kernels may
        # round a row differently by its place in the product (OpenBLAS's Haswell sgemm does), so a plane must
        # blur to the same bits whatever else is in the stack — SSIMULACRA 2 blurs the original's planes once
        # per asset (metrics._ssimulacra2.S2Reference) and a probe's planes on their own.
        tt = np.ascontiguousarray(_band_matrix(cb, r, sigma).T)
        for b in range(nc):
            np.matmul(mid[:, :, b * cb:b * cb + cb + 2 * r], tt, out=out[:, :, b * cb:(b + 1) * cb])
    return out[:, :h, :w]


def gaussian_blur(x: np.ndarray, sigma: float = 1.5, radius: int | None = None) -> np.ndarray:
    """Separable Gaussian blur of the last two axes of a (…, H, W) array, zero outside (float32).

    ``radius`` defaults to round(3.33 σ), the reference's truncation (11 taps at σ = 1.5).

    Examples
    --------
    >>> z = np.zeros((11, 11), np.float32); z[5, 5] = 1
    >>> b = gaussian_blur(z); round(float(b.sum()), 5), round(float(b[5, 5]), 4)
    (1.0, 0.0708)
    """
    x = np.asarray(x, np.float32)
    shape = x.shape
    x3 = x.reshape(-1, shape[-2], shape[-1])
    return _blur_stack(list(x3), shape[-2], shape[-1], sigma=sigma, radius=radius).reshape(shape)
