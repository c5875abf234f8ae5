"""The benchmark figures (matplotlib, Agg backend, small PNGs meant for committing).

Each function takes plain data (dicts of label → arrays), writes one PNG atomically and returns its path; none
reads files or runs codecs. matplotlib is imported inside the functions so importing this module is free.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._atomic import atomic_write_bytes

__all__ = ["plot_rd", "plot_rd_panels", "plot_spectrum_maps", "plot_radial", "plot_matrix"]

#: fixed colours per codec so every figure agrees
CODEC_COLOURS: dict[str, str] = {"jpeg": "#1f77b4", "webp": "#ff7f0e", "avif": "#2ca02c", "jxl": "#d62728",
                                 "learned": "#9467bd", "input": "#7f7f7f"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _colour(label: str) -> str | None:
    return CODEC_COLOURS.get(label.split(" ")[0].split(":")[0])


def _draw_rd(ax: Any, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
             anchors: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None) -> None:
    for label, (x, y) in curves.items():
        order = np.argsort(np.asarray(x, dtype=float))
        ax.plot(np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order], marker="o", ms=3,
                label=label, color=_colour(label))
    for label, (x, y) in (anchors or {}).items():
        ax.plot(x, y, ls="--", lw=1, marker=".", ms=3, label=f"{label} (published)", alpha=0.7)
    ax.grid(True, alpha=0.3)


def plot_rd(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike[str], *,
            title: str = "", xlabel: str = "bits per pixel", ylabel: str = "PSNR (dB)",
            anchors: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
            xlim: tuple[float, float] | None = None) -> Path:
    """One rate-distortion figure: ``curves`` (solid, measured) and optional ``anchors`` (dashed, published)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    _draw_rd(ax, curves, anchors)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xlim:
        ax.set_xlim(*xlim)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_rd_panels(panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
                   path: str | os.PathLike[str], *, title: str = "", xlabel: str = "bits per pixel",
                   ylabel: str = "PSNR (dB)") -> Path:
    """Several small RD plots side by side (e.g. one per severity), one legend."""
    plt = _plt()
    n = max(1, len(panels))
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.4 * rows), squeeze=False, sharey=True)
    for ax, (name, curves) in zip(axes.ravel(), panels.items()):
        _draw_rd(ax, curves, None)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=10, y=1.02)
    return _save(fig, path)


def plot_spectrum_maps(maps: Mapping[str, np.ndarray], path: str | os.PathLike[str], *, title: str = "",
                       cols: int | None = None, shared_scale: bool = True) -> Path:
    """Heat maps of 2-D mean error spectra (log10 |E|, DC at the centre, axes in cycles/pixel)."""
    plt = _plt()
    n = max(1, len(maps))
    cols = cols or min(n, 5)
    rows = math.ceil(n / cols)
    logs = {k: np.log10(np.maximum(v, 1e-3)) for k, v in maps.items()}
    finite = [v[np.isfinite(v)] for v in logs.values() if np.isfinite(v).any()]
    vmin = float(np.percentile(np.concatenate(finite), 1)) if finite and shared_scale else None
    vmax = float(np.percentile(np.concatenate(finite), 99.5)) if finite and shared_scale else None
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.5 * rows + 0.4), squeeze=False)
    im = None
    for ax, (name, v) in zip(axes.ravel(), logs.items()):
        im = ax.imshow(v, cmap="magma", origin="lower", extent=(-0.5, 0.5, -0.5, 0.5), vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(logs):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="log10 |FFT(x̂ − x)|")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_radial(profiles: Mapping[str, np.ndarray], freqs: np.ndarray, path: str | os.PathLike[str], *,
                title: str = "", bands: Sequence[float] = (0.125, 0.25)) -> Path:
    """Radially averaged error spectra (RMS |E| against cycles/pixel, log scale), band edges dotted."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, prof in profiles.items():
        ax.semilogy(freqs, prof, label=label, color=_colour(label))
    for b in bands:
        ax.axvline(b, ls=":", color="k", lw=0.8)
    ax.axvline(0.5, ls="--", color="grey", lw=0.8)
    ax.set_xlabel("radial frequency (cycles/pixel; 0.5 = Nyquist)")
    ax.set_ylabel("RMS |FFT(x̂ − x)|")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_matrix(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | os.PathLike[str], *,
                title: str = "", fmt: str = "{:+.0f}", cmap: str = "RdYlGn_r", centre: float | None = 0.0,
                label: str = "") -> Path:
    """A labelled heat-map table (e.g. BD-rate % per corruption × codec); NaN cells are left blank."""
    plt = _plt()
    v = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.6, 0.3 * len(rows) + 1.4))
    finite = v[np.isfinite(v)]
    if finite.size:
        span = float(np.max(np.abs(finite - (centre or 0.0)))) or 1.0
        vmin, vmax = ((centre - span, centre + span) if centre is not None
                      else (float(finite.min()), float(finite.max())))
    else:
        vmin, vmax = -1.0, 1.0
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
