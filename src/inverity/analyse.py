"""Cheap content analysis: what kind of image is this, and is it like what our learned codec was trained on?

``analyse(image) -> Profile`` runs before routing, on every asset, so it must cost a small fraction of one
encode (target ≤ 20 ms for a 768×512 photo on one core; ``benchmarks/analyse.py`` measures it). It reads::

    Image ──► metadata rules (DICOM → medical; 16-bit gray → medical/scientific; alpha, bit depth, channels)
      │
      ├──► nearest-neighbour subsample (≤ 256 px) ──► colour statistics (palette size, saturation, histogram)
      ├──► box-downscaled luma (≤ 256 px) ───────────► gradients (edge density, orientation), flat blocks,
      │                                                 coarse power-spectrum slope, row/column text rhythm
      └──► up to 4 native-resolution 128² luma crops ─► radially averaged power spectrum in octave bands,
                                                        exact-flat fraction, noise σ (robust Immerkær)
                 │
                 ├──► kind classifier (multinomial logistic regression, numpy; ``data/kind_model.json``)
                 └──► OOD gate: Mahalanobis distance of a feature subset to the learned model's training set
                      (``stages/learned/weights/<model>.ood.json``), threshold fitted on the training set only

The gate has two parts (gate v2). The *spectral* part above runs in every ``analyse`` call. The *model* part
asks the learned model itself (``stages/learned/evidence.py``: latent bits/pixel under its prior, PSNR, its rate
against JPEG at equal PSNR, per-channel latent energy, on a ≤ 256 px copy) and re-scores the image on spectral
+ model features together. It needs torch and costs tens of milliseconds, so it is *lazy*: only the router calls
it (:meth:`Profile.learned_gate`), and only when a policy could use the learned stage on a photo — ``auto`` and
``delivery`` analysis never pay for it.

The native-resolution crops matter for the gate: a learned codec allocates its capacity to the frequency
bands that dominate its training data (spectral bias), and it sees pixels at native resolution, so the
spectrum is measured there. The kind classifier and the gate statistics are fitted by ``scripts/fit_kind.py``
and ``scripts/fit_ood.py``; their JSON files record where the numbers came from.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .image import Image

__all__ = ["KINDS", "FEATURE_NAMES", "Profile", "analyse", "features", "kind_model_path", "ood_stats_file",
           "default_model_name"]

#: the content kinds the router distinguishes (order is the classifier's class order)
KINDS = ("photo", "medical", "drawing", "screen", "aerial", "texture", "synthetic")

#: analysis works on at most this many pixels on the longest side (plus native crops)
_MAX_SIDE = 256
_CROP = 128

#: octave bands (cycles/pixel) of the native-resolution power spectrum: [lo, hi)
_BANDS = ((1 / 128, 1 / 64), (1 / 64, 1 / 32), (1 / 32, 1 / 16), (1 / 16, 1 / 8), (1 / 8, 1 / 4), (1 / 4, 0.5))

#: every feature ``features()`` computes, in a fixed order (the kind model and OOD stats name theirs)
FEATURE_NAMES: tuple[str, ...] = (
    # colour and histogram (nearest-neighbour subsample, palette-exact)
    "log_colours", "colour_ratio", "top8_coverage", "sat_mean", "sat_p90", "colourfulness", "chroma_max_frac",
    "hist_entropy", "hist_empty_frac", "hist_peak", "dark_frac", "bright_frac", "luma_mean", "luma_std",
    # structure (box-downscaled luma)
    "edge_density", "axis_frac", "orient_entropy", "grad_mean", "grad_p99", "grad_sparsity", "flat_block_frac",
    "row_cv", "col_cv", "slope_coarse", "cell_grad_cv", "vert_asym", "paper_frac", "ink_frac",
    # native resolution crops
    "flat_frac", "noise_sigma", "band1", "band2", "band3", "band4", "band5", "band6", "slope_native",
    "hf_ratio", "crop_std", "crop_hf_spread",
)

_PACKAGE = Path(__file__).resolve().parent


def kind_model_path() -> Path:
    """The shipped kind classifier (``src/inverity/data/kind_model.json``)."""
    return _PACKAGE / "data" / "kind_model.json"


def default_model_name() -> str:
    """The learned model whose training set defines "in distribution" (the zoo's default, else ``hp-gain``)."""
    try:
        from .stages.learned import zoo

        return str(zoo.default_model())
    except Exception:  # noqa: BLE001 - zoo absent or registry unreadable: fall back to the documented name
        return "hp-gain"


def ood_stats_file(model_name: str | None = None) -> Path:
    """Where the OOD statistics of ``model_name`` live (via the zoo, else ``weights/<name>.ood.json``)."""
    name = model_name or default_model_name()
    try:
        from .stages.learned import zoo

        return Path(zoo.ood_stats_path(name))
    except Exception:  # noqa: BLE001
        return _PACKAGE / "stages" / "learned" / "weights" / f"{name}.ood.json"


# ----------------------------------------------------------------------------------------------------------
# The profile
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Profile:
    """What the router needs to know about one image.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    kind_confidence : float
        Probability of ``kind`` (1.0 when metadata decided it, e.g. a DICOM dataset).
    kind_source : str
        ``"metadata"`` or ``"classifier"`` (or ``"fallback"`` when no classifier is installed).
    ood_score, ood_threshold : float or None
        Mahalanobis distance of the image's signature to the learned model's training set, and the gate's
        threshold; ``None`` when no statistics exist for the model.
    in_distribution : bool or None
        ``ood_score <= ood_threshold``; ``None`` when the model has no statistics (the router then refuses
        the learned stage: unknown is not "in").
    flags : list of str
        ``text``, ``line_art``, ``noisy``, ``alpha``, ``high_bit_depth``, ``grayscale``, ``dicom``, ...
    drivers : list of dict
        The features that pushed the OOD score most (largest |z| against the training set).
    ood_gate : str or None
        Which gate produced ``ood_score``: ``"spectral"`` (cheap part only, as after :func:`analyse`) or
        ``"spectral+model"`` (after :meth:`learned_gate` added the model's own evidence).
    evidence : dict
        The model's evidence (``lat_*`` features) once :meth:`learned_gate` ran; ``evidence_ms`` its cost.
    """

    kind: str
    kind_confidence: float
    kind_source: str = "classifier"
    kind_probabilities: dict[str, float] = field(default_factory=dict)
    ood_score: float | None = None
    ood_threshold: float | None = None
    in_distribution: bool | None = None
    ood_model: str | None = None
    flags: list[str] = field(default_factory=list)
    drivers: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    channels: int = 0
    bit_depth: int = 8
    modality: str | None = None
    metadata_keys: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    cost_ms: float = 0.0
    ood_gate: str | None = None
    evidence: dict[str, float] = field(default_factory=dict)
    evidence_ms: float | None = None
    #: what the lazy model part needs: the pixels (a reference, not a copy) and the gate statistics
    _source: Any = field(default=None, repr=False, compare=False)
    _stats: Any = field(default=None, repr=False, compare=False)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (plain floats, lists, no numpy types).

        Examples
        --------
        >>> import json
        >>> json.loads(json.dumps(Profile("photo", 0.9).to_dict()))["kind"]
        'photo'
        """
        def clean(v: Any) -> Any:
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (bool, np.bool_)):
                return bool(v)
            if isinstance(v, (int, np.integer)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                f = float(v)
                return round(f, 6) if math.isfinite(f) else None
            return v

        return clean({
            "kind": self.kind, "kind_confidence": self.kind_confidence, "kind_source": self.kind_source,
            "kind_probabilities": self.kind_probabilities, "ood_score": self.ood_score,
            "ood_threshold": self.ood_threshold, "in_distribution": self.in_distribution,
            "ood_model": self.ood_model, "flags": list(self.flags), "drivers": self.drivers,
            "width": self.width, "height": self.height, "channels": self.channels, "bit_depth": self.bit_depth,
            "megapixels": self.megapixels, "modality": self.modality, "metadata_keys": list(self.metadata_keys),
            "reasons": list(self.reasons),
            "features": self.features, "cost_ms": self.cost_ms,
            "ood_gate": self.ood_gate, "evidence": self.evidence, "evidence_ms": self.evidence_ms,
        })

    def learned_gate(self) -> bool | None:
        """The full OOD gate: add the learned model's own evidence, re-score, return ``in_distribution``.

        Computed once (later calls return the cached verdict) and only when the statistics file has a model
        part; otherwise the spectral verdict stands. Updates ``ood_score``, ``ood_threshold``,
        ``in_distribution``, ``drivers``, ``evidence``, ``evidence_ms``, ``ood_gate`` and ``reasons``. When the
        statistics were fitted for other weights than the installed ones, the verdict becomes ``None``
        (unknown, which the router treats as out) with the command that refits them.
        """
        stats, src = self._stats, self._source
        if self.ood_gate != "spectral" or not stats or src is None or "model_evidence" not in stats:
            return self.in_distribution
        spec = stats["model_evidence"]
        t0 = time.perf_counter()
        self.ood_gate = "spectral+model"
        self._source = None
        try:
            from .stages.learned import evidence, zoo

            minfo = zoo.model_info(self.ood_model)
            installed = minfo.sha256
            # a decoder fine-tune shares its base's encoder and training set: judge with the base's evidence
            seen = {minfo.name}
            while (minfo.delta_of and minfo.delta_of not in seen
                   and spec.get("weights_sha256") not in (minfo.sha256, minfo.transforms_sha256)):
                minfo = zoo.model_info(minfo.delta_of)
                seen.add(minfo.name)
            # a context model (hp-ctx) runs its base's frozen transforms: the base's statistics are its own
            if spec.get("weights_sha256") not in (minfo.sha256, minfo.transforms_sha256):
                self.in_distribution = None
                self.reasons.append(
                    f"OOD model statistics were fitted for weights {str(spec.get('weights_sha256'))[:12]}…, "
                    f"installed {self.ood_model} has {installed[:12]}…: in_distribution unknown "
                    f"(refit: python scripts/fit_ood.py --model {self.ood_model})")
                return None
            ev, energy = evidence.model_evidence(src, minfo.name, float(spec["lambda"]))
        except Exception as exc:  # noqa: BLE001 - no torch, no weights: the model cannot vouch, so unknown
            self.in_distribution = None
            self.reasons.append(f"model evidence unavailable ({type(exc).__name__}: {exc}): in_distribution unknown")
            return None
        score, drivers, values = _ood_model(self.features, ev, energy, stats)
        self.evidence = {k: round(v, 4) for k, v in values.items() if k.startswith("lat_")}
        self.evidence["spectral_score"] = round(float(self.ood_score or 0.0), 4)
        self.ood_score, self.ood_threshold = score, float(spec["threshold"])
        self.in_distribution = score <= self.ood_threshold
        self.drivers = drivers
        self.evidence_ms = round((time.perf_counter() - t0) * 1000.0, 1)
        self.reasons.append(f"OOD gate with model evidence: score {score:.2f} "
                            f"{'<=' if self.in_distribution else '>'} {self.ood_threshold:.2f} "
                            f"({self.evidence_ms:.0f} ms)")
        return self.in_distribution


# ----------------------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------------------
def _as_u8(px: np.ndarray, bit_depth: int) -> np.ndarray:
    """8-bit view of the colour channels (16-bit scaled by the significant bit depth)."""
    if px.dtype == np.uint8:
        return px
    maxv = float((1 << max(1, min(16, bit_depth))) - 1)
    return np.clip(px.astype(np.float32) * (255.0 / maxv) + 0.5, 0, 255).astype(np.uint8)


def _colour_part(px: np.ndarray) -> np.ndarray:
    """Drop alpha: gray+alpha → gray, RGBA → RGB."""
    c = px.shape[2]
    return px[:, :, :1] if c in (1, 2) else px[:, :, :3]


def _luma_int(rgb: np.ndarray) -> np.ndarray:
    """Integer BT.601 luma of uint8 H×W×{1,3} as float32 (exact integers, so "flat" means truly flat)."""
    if rgb.shape[2] == 1:
        return rgb[:, :, 0].astype(np.float32)
    r, g, b = (rgb[:, :, i].astype(np.uint16) for i in range(3))
    return ((r * 77 + g * 150 + b * 29 + 128) >> 8).astype(np.float32)


@lru_cache(maxsize=8)
def _radial_index(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an n×n rfft2 grid: flat radial bin index per cell, bin centre frequency, band id per cell."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    r = np.sqrt(fy * fy + fx * fx)
    nb = n // 2
    idx = np.minimum((r * n).astype(np.int64), nb).ravel()    # bin k covers [k/n, (k+1)/n)
    centres = (np.arange(nb + 1) + 0.5) / n
    band = np.full(r.shape, -1, np.int64)
    for i, (lo, hi) in enumerate(_BANDS):
        band[(r >= lo) & (r < hi)] = i
    return idx, centres, band.ravel()


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    w = np.hanning(n).astype(np.float32)
    return np.outer(w, w)


def _spectrum(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed power spectra of k×n×n crops: mean radial profile, bin centres, and band powers per crop (k×6),
    in luma² per pixel."""
    n = crops.shape[-1]
    w = _hann(n)
    x = (crops - crops.mean(axis=(1, 2), keepdims=True)) * w
    p = np.abs(np.fft.rfft2(x)) ** 2
    p[:, :, 1:-1] *= 2.0                      # rfft keeps half the plane: count the mirrored half
    p = p.reshape(len(crops), -1) / float((w * w).sum())
    idx, centres, band = _radial_index(n)
    counts = np.bincount(idx, minlength=len(centres)).astype(np.float64)
    radial = np.bincount(idx, weights=p.mean(axis=0), minlength=len(centres)) / np.maximum(counts, 1)
    nb = len(_BANDS)
    bcount = np.bincount(band[band >= 0], minlength=nb).astype(np.float64)
    bands = np.stack([np.bincount(band[band >= 0], weights=pc[band >= 0], minlength=nb) for pc in p])
    return radial, centres, bands / np.maximum(bcount, 1)


def _slope(radial: np.ndarray, centres: np.ndarray, lo: float, hi: float) -> float:
    """Least-squares slope of log10 power vs log10 frequency over [lo, hi] (≈ −2 for natural images)."""
    m = (centres >= lo) & (centres <= hi) & (radial > 0)
    if m.sum() < 3:
        return 0.0
    x, y = np.log10(centres[m]), np.log10(radial[m])
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / max((x * x).sum(), 1e-12))


def _quantile_u8(values: np.ndarray, q: float) -> float:
    """Quantile of values in 0..255 from a 256-bin histogram (cheaper than a sort)."""
    cdf = np.cumsum(np.bincount(values.astype(np.int64).ravel(), minlength=256))
    return float(np.searchsorted(cdf, q * cdf[-1]))


def _crop_positions(h: int, w: int, n: int) -> list[tuple[int, int]]:
    """Up to 4 crops centred in the image quadrants (1 when the image is small)."""
    if h < 2 * n or w < 2 * n:
        return [((h - n) // 2, (w - n) // 2)]
    ys = (h // 4 - n // 2, 3 * h // 4 - n // 2)
    xs = (w // 4 - n // 2, 3 * w // 4 - n // 2)
    return [(y, x) for y in ys for x in xs]


def features(image: Image) -> dict[str, float]:
    """The content features of ``image`` (names in :data:`FEATURE_NAMES`), all finite floats.

    Luma is in 8-bit units (16-bit images are scaled by their significant bit depth); frequencies are in
    cycles/pixel; ``band1..band6`` are log10 mean power in octave bands from 1/128 to 1/2 cycles/pixel of
    up to four 128×128 native-resolution crops.

    Examples
    --------
    >>> import numpy as np
    >>> from inverity.image import Image
    >>> f = features(Image(np.zeros((64, 64, 3), np.uint8)))
    >>> f["flat_frac"], f["log_colours"]
    (1.0, 0.0)
    """
    px = _colour_part(image.pixels)          # 16-bit stays 16-bit here: only the samples used get converted
    bd = image.bit_depth
    h, w = px.shape[:2]
    f: dict[str, float] = {}
    step = max(1, math.ceil(max(h, w) / _MAX_SIDE))
    sub = _as_u8(px[::step, ::step], bd)      # nearest-neighbour subsample: keeps the palette exact
    f.update(_colour_features(sub))
    f.update(_structure_features(px, bd, sub, step))
    f.update(_crop_features(px, bd))

    return {k: (float(f[k]) if math.isfinite(f[k]) else 0.0) for k in FEATURE_NAMES}




def _colour_features(sub: np.ndarray) -> dict[str, float]:
    """Colour and luma-histogram features of the 8-bit subsample ``sub``."""
    f: dict[str, float] = {}
    # -- colour & histogram on a nearest-neighbour subsample: keeps the palette exact ------------------------
    n = sub.shape[0] * sub.shape[1]
    if sub.shape[2] == 3:
        r, g, b = sub[:, :, 0], sub[:, :, 1], sub[:, :, 2]
        packed = (r.astype(np.uint32) << 16) | (g.astype(np.uint32) << 8) | b
        chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)   # uint8, no overflow
        rf, gf, bf = (ch.astype(np.float32) for ch in (r, g, b))
        rg = rf - gf
        yb = 0.5 * (rf + gf) - bf
        # Hasler & Süsstrunk (2003) colourfulness
        colourfulness = math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(float(rg.mean()),
                                                                                        float(yb.mean()))
        ys = _luma_int(sub)
    else:
        packed = sub[:, :, 0]
        chroma = np.zeros(packed.shape, np.uint8)
        colourfulness = 0.0
        ys = sub[:, :, 0].astype(np.float32)
    _, counts = np.unique(packed.ravel(), return_counts=True)
    f["log_colours"] = math.log10(len(counts)) if len(counts) > 1 else 0.0
    f["colour_ratio"] = len(counts) / n
    k = min(8, len(counts))
    f["top8_coverage"] = float(np.partition(counts, len(counts) - k)[-k:].sum() / n)
    f["sat_mean"] = float(chroma.mean() / 255.0)
    f["sat_p90"] = _quantile_u8(chroma, 0.9) / 255.0
    f["colourfulness"] = colourfulness / 255.0
    f["chroma_max_frac"] = float((chroma > 8).mean())
    hist = np.bincount(ys.astype(np.int64).ravel(), minlength=256).astype(np.float64) / n
    nz = hist[hist > 0]
    f["hist_entropy"] = float(-(nz * np.log2(nz)).sum()) + 0.0   # + 0.0: no "-0.0" for a flat image
    lo_v, hi_v = int(ys.min()), int(ys.max())
    f["hist_empty_frac"] = float((hist[lo_v:hi_v + 1] == 0).mean()) if hi_v > lo_v else 1.0
    f["hist_peak"] = float(hist.max())
    f["dark_frac"] = float(hist[:16].sum())
    f["bright_frac"] = float(hist[240:].sum())
    f["luma_mean"] = float(ys.mean() / 255.0)
    f["luma_std"] = float(ys.std() / 255.0)

    return f


def _structure_features(px: np.ndarray, bd: int, sub: np.ndarray, step: int) -> dict[str, float]:
    """Gradient, layout and coarse-spectrum features on a box-downscaled luma of ``px``."""
    f: dict[str, float] = {}
    h, w = px.shape[:2]
    # -- structure on a box-downscaled luma (anti-aliased, so gradients and the coarse spectrum mean something)
    hh, ww = h // step * step, w // step * step
    if step > 1 and hh and ww:
        # block sums by strided adds (much faster than a 6-d reshape reduction)
        wide = px.dtype == np.uint16 or step > 16
        acc = np.zeros((hh // step, ww // step, px.shape[2]), np.uint32 if wide else np.uint16)
        for i in range(step):
            for j in range(step):
                np.add(acc, px[i:hh:step, j:ww:step], out=acc, casting="unsafe")
        scale = 255.0 / float((1 << max(1, min(16, bd))) - 1) if px.dtype == np.uint16 else 1.0
        small = acc.astype(np.float32) * (scale / (step * step))
    else:  # no downscale needed, or a sliver thinner than one block: use the subsample
        small = sub.astype(np.float32)
    if small.shape[2] == 3:
        L = small[:, :, 0] * 0.299 + small[:, :, 1] * 0.587 + small[:, :, 2] * 0.114
    else:
        L = small[:, :, 0]
    gx = L[1:-1, 2:] - L[1:-1, :-2]
    gy = L[2:, 1:-1] - L[:-2, 1:-1]
    ax, ay = np.abs(gx), np.abs(gy)
    mag = np.sqrt(gx * gx + gy * gy)
    strong = mag > 40.0                                  # 2× a 20-level step (central difference)
    f["edge_density"] = float(strong.mean()) if mag.size else 0.0
    if strong.sum() >= 16:
        sx, sy = ax[strong], ay[strong]
        f["axis_frac"] = float((np.minimum(sx, sy) < 0.2 * np.maximum(sx, sy)).mean())
        ang = np.arctan2(gy[strong], gx[strong]) % np.pi
        oh = np.bincount((ang / np.pi * 8).astype(np.int64) % 8, weights=mag[strong], minlength=8)
        oh = oh / max(oh.sum(), 1e-12)
        onz = oh[oh > 0]
        f["orient_entropy"] = float(-(onz * np.log2(onz)).sum() / 3.0)
    else:
        f["axis_frac"], f["orient_entropy"] = 0.0, 0.0
    f["grad_mean"] = float(mag.mean() / 255.0) if mag.size else 0.0
    f["grad_p99"] = float(np.percentile(mag, 99) / 255.0) if mag.size else 0.0
    rms = float(np.sqrt((mag * mag).mean())) if mag.size else 0.0
    f["grad_sparsity"] = float(mag.mean() / rms) if rms > 0 else 0.0   # low = few strong edges, rest flat
    bh, bw = L.shape[0] // 4 * 4, L.shape[1] // 4 * 4
    if bh and bw:
        b = L[:bh, :bw].reshape(bh // 4, 4, bw // 4, 4)
        f["flat_block_frac"] = float(((b.max(axis=(1, 3)) - b.min(axis=(1, 3))) < 1.0).mean())
    else:
        f["flat_block_frac"] = 0.0
    # documents: most pixels are paper (near the local maximum, whatever the lighting), a few are ink (far below)
    if bh and bw:
        bmax = b.max(axis=(1, 3), keepdims=True)
        f["paper_frac"] = float((b >= bmax - 12.0).mean())
        f["ink_frac"] = float((b < bmax - 60.0).mean())
    else:
        f["paper_frac"] = f["ink_frac"] = 0.0
    em = ax + ay
    if em.size:
        rows, cols = em.mean(axis=1), em.mean(axis=0)
        f["row_cv"] = float(rows.std() / (rows.mean() + 1e-6))
        f["col_cv"] = float(cols.std() / (cols.mean() + 1e-6))
    else:
        f["row_cv"] = f["col_cv"] = 0.0
    # stationarity: photos mix flat sky/blurred background with sharp subjects; textures and aerials do not
    gh, gw = mag.shape[0] // 4, mag.shape[1] // 4
    if gh and gw:
        cells = mag[:gh * 4, :gw * 4].reshape(4, gh, 4, gw).mean(axis=(1, 3))
        f["cell_grad_cv"] = float(cells.std() / (cells.mean() + 1e-6))
    else:
        f["cell_grad_cv"] = 0.0
    t3 = max(1, L.shape[0] // 3)
    f["vert_asym"] = float((L[:t3].mean() - L[-t3:].mean()) / 255.0) if L.size else 0.0   # sky above, ground below
    m = min(L.shape[0], L.shape[1], 128)
    if m >= 16:
        m = 1 << int(math.log2(m))
        y0, x0 = (L.shape[0] - m) // 2, (L.shape[1] - m) // 2
        rad, cen, _ = _spectrum(L[None, y0:y0 + m, x0:x0 + m])
        f["slope_coarse"] = _slope(rad, cen, 2.0 / m, 0.45)
    else:
        f["slope_coarse"] = 0.0

    return f


def _crop_features(px: np.ndarray, bd: int) -> dict[str, float]:
    """Flatness, noise and octave-band features of native-resolution crops (the scale the codecs see)."""
    f: dict[str, float] = {}
    h, w = px.shape[:2]
    # -- native-resolution crops: the scale the codecs see -----------------------------------------------
    c = min(_CROP, h, w)
    c = 1 << int(math.log2(c)) if c >= 8 else c
    if c >= 8:
        crops = np.stack([_luma_int(_as_u8(px[y:y + c, x:x + c], bd)) for y, x in _crop_positions(h, w, c)])
        dx = crops[:, :, 1:] == crops[:, :, :-1]
        dy = crops[:, 1:, :] == crops[:, :-1, :]
        f["flat_frac"] = float((dx[:, 1:, :] & dy[:, :, 1:]).mean())
        lap = (crops[:, :-2, :-2] - 2 * crops[:, :-2, 1:-1] + crops[:, :-2, 2:]
               - 2 * crops[:, 1:-1, :-2] + 4 * crops[:, 1:-1, 1:-1] - 2 * crops[:, 1:-1, 2:]
               + crops[:, 2:, :-2] - 2 * crops[:, 2:, 1:-1] + crops[:, 2:, 2:])
        # Immerkær's mask has Σm² = 36; the median makes it robust to edges (median|N(0,σ)| = 0.6745σ)
        f["noise_sigma"] = float(np.median(np.abs(lap)) / (0.6745 * 6.0))
        rad, cen, crop_bands = _spectrum(crops)
        bands = crop_bands.mean(axis=0)
        for i, p in enumerate(bands):
            f[f"band{i + 1}"] = float(math.log10(p + 1e-3))
        f["slope_native"] = _slope(rad, cen, 2.0 / c, 0.45)
        tot = float(rad[1:].sum())
        f["hf_ratio"] = float(rad[cen >= 0.25].sum() / tot) if tot > 0 else 0.0
        f["crop_std"] = float(crops.std(axis=(1, 2)).mean() / 255.0)
        if len(crops) > 1:  # how much the fine-scale energy differs between the quadrants (stationarity)
            f["crop_hf_spread"] = float(np.log10(crop_bands[:, 3:].mean(axis=1) + 1e-3).std())
        else:
            f["crop_hf_spread"] = 0.0
    else:
        for k2 in ("flat_frac", "noise_sigma", "slope_native", "hf_ratio", "crop_std", "crop_hf_spread"):
            f[k2] = 0.0
        for i in range(len(_BANDS)):
            f[f"band{i + 1}"] = -3.0
        f["flat_frac"] = 1.0 if px.size and int(px.max()) == int(px.min()) else 0.0
    return f


# ----------------------------------------------------------------------------------------------------------
# Models (JSON, numpy-only inference)
# ----------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _load_json(path: str, mtime_ns: int) -> dict[str, Any] | None:  # mtime in the key: refits are picked up
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _read_model(path: Path) -> dict[str, Any] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _load_json(str(path), st.st_mtime_ns)


def _vector(feats: dict[str, float], names: list[str], spec: dict[str, Any] | None = None) -> np.ndarray:
    """The named features as a vector, with the model's log transform (``log_features``, ``log_eps``)."""
    x = np.array([feats[n] for n in names], np.float64)
    if spec and spec.get("log_features"):
        logs = set(spec["log_features"])
        eps = float(spec.get("log_eps", 1e-3))
        for i, n in enumerate(names):
            if n in logs:
                x[i] = math.log10(max(x[i], 0.0) + eps)
    return x


def _classify(feats: dict[str, float], model: dict[str, Any]) -> dict[str, float]:
    """Class probabilities of the classifier stored in ``model`` (logistic regression or a one-hidden-layer MLP)."""
    x = (_vector(feats, model["features"], model) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    x = np.clip(x, -model.get("clip", 8.0), model.get("clip", 8.0))    # an outlier must not dominate a logit
    if "hidden_coef" in model:  # one tanh hidden layer (scripts/fit_kind.py --model mlp)
        x = np.tanh(np.asarray(model["hidden_coef"]) @ x + np.asarray(model["hidden_intercept"]))
    logits = np.asarray(model["coef"]) @ x + np.asarray(model["intercept"])
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return {k: float(v) for k, v in zip(model["classes"], p)}


def _ood(feats: dict[str, float], stats: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """Mahalanobis distance and the top-3 drivers (largest |z| per feature)."""
    names = stats["features"]
    return _mahalanobis(_vector(feats, names, stats), names, stats)


def _mahalanobis(x: np.ndarray, names: list[str], block: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """Distance of ``x`` from a fitted block's ``mean`` under its ``precision``, and the top-3 drivers (largest
    |z| against its ``std``)."""
    mu = np.asarray(block["mean"])
    d = x - mu
    score = float(math.sqrt(max(0.0, float(d @ np.asarray(block["precision"]) @ d))))
    z = d / np.asarray(block["std"])
    order = np.argsort(-np.abs(z))[:3]
    drivers = [{"feature": names[i], "z": round(float(z[i]), 2), "value": round(float(x[i]), 4),
                "train_mean": round(float(mu[i]), 4)} for i in order]
    return score, drivers


def model_vector(feats: dict[str, float], ev: dict[str, float], energy: np.ndarray,
                 stats: dict[str, Any]) -> dict[str, float]:
    """Named values of the gate-v2 vector: the spectral features (log-transformed as the stats say), the scalar
    model evidence and the projections of the latent channel energies on the training set's principal axes."""
    spec = stats["model_evidence"]
    names = list(stats["features"])
    out = dict(zip(names, _vector(feats, names, stats).tolist()))
    out.update({k: float(ev[k]) for k in spec["scalar_features"]})
    comps = np.asarray(spec["energy_components"])
    proj = comps @ (np.asarray(energy, np.float64) - np.asarray(spec["energy_mean"]))
    out.update({f"lat_energy_pc{i + 1}": float(v) for i, v in enumerate(proj)})
    return out


def _ood_model(feats: dict[str, float], ev: dict[str, float], energy: np.ndarray,
               stats: dict[str, Any]) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    """Mahalanobis distance of the gate-v2 vector, its top-3 drivers and the named values."""
    spec = stats["model_evidence"]
    values = model_vector(feats, ev, energy, stats)
    names = spec["features"]
    score, drivers = _mahalanobis(np.array([values[n] for n in names]), names, spec)
    return score, drivers, values


def _dicom_modality(image: Image) -> str | None:
    ds = image.metadata.get("dicom")
    if ds is None:
        return None
    try:
        mod = ds.get("Modality", None)
    except AttributeError:
        mod = getattr(ds, "Modality", None)
    return str(mod) if mod else "unknown"


# ----------------------------------------------------------------------------------------------------------
# analyse
# ----------------------------------------------------------------------------------------------------------
def analyse(image: Image, *, model_name: str | None = None) -> Profile:
    """Profile ``image``: kind (metadata first, then the learned classifier), flags, and the OOD gate.

    Parameters
    ----------
    image
        Any :class:`~inverity.image.Image` (gray/RGB, alpha, 8/16-bit, DICOM).
    model_name
        The learned model whose training-set statistics decide ``in_distribution`` (default: the zoo's
        default model).

    Returns
    -------
    Profile

    Examples
    --------
    >>> import numpy as np
    >>> from inverity.image import Image
    >>> p = analyse(Image(np.full((32, 32, 1), 1000, np.uint16), bit_depth=12))
    >>> p.kind, p.kind_source, "high_bit_depth" in p.flags
    ('medical', 'metadata', True)
    """
    t0 = time.perf_counter()
    feats = features(image)
    prof = Profile(kind="photo", kind_confidence=0.0, width=image.width, height=image.height,
                   channels=image.channels, bit_depth=image.bit_depth, features=feats,
                   metadata_keys=sorted(k for k, v in image.metadata.items() if v is not None and v != b""))
    flags: list[str] = []
    modality = _dicom_modality(image)
    high_bit = image.pixels.dtype == np.uint16
    gray = image.channels in (1, 2) or feats["chroma_max_frac"] < 0.002
    if modality is not None:
        flags.append("dicom")
    if high_bit:
        flags.append("high_bit_depth")
    if gray:
        flags.append("grayscale")
    if image.has_alpha:
        flags.append("alpha")
        a = image.pixels[:, :, -1]
        if int(a.min()) == (int(np.iinfo(a.dtype).max) if a.dtype == np.uint16 else 255):
            flags.append("alpha_opaque")
    if feats["noise_sigma"] > 4.0:
        flags.append("noisy")

    # metadata first: a DICOM dataset or a 16-bit gray frame is medical/scientific whatever its pixels look like
    probs: dict[str, float] = {}
    model = _read_model(kind_model_path())
    if model is not None:
        probs = _classify(feats, model)
    if modality is not None:
        prof.kind, prof.kind_confidence, prof.kind_source = "medical", 1.0, "metadata"
        prof.modality = modality
        prof.reasons.append(f"DICOM dataset (modality {modality}) -> medical")
    elif high_bit and image.channels in (1, 2):
        prof.kind, prof.kind_confidence, prof.kind_source = "medical", 0.9, "metadata"
        prof.reasons.append(f"{image.bit_depth}-bit grayscale -> medical/scientific")
    elif probs:
        best = max(probs, key=probs.__getitem__)
        prof.kind, prof.kind_confidence, prof.kind_source = best, probs[best], "classifier"
        prof.reasons.append(f"classifier: {best} p={probs[best]:.2f}")
    else:
        prof.kind, prof.kind_confidence, prof.kind_source = "photo", 0.0, "fallback"
        prof.reasons.append(f"no kind model at {kind_model_path()}: assuming photo with confidence 0")
    prof.kind_probabilities = {k: round(v, 4) for k, v in probs.items()}

    # heuristic flags (documented thresholds, not learned): text rhythm and line art
    line_like = feats["top8_coverage"] > 0.6 and feats["edge_density"] > 0.01
    if line_like and feats["row_cv"] > 0.6 and prof.kind in ("screen", "drawing", "synthetic"):
        flags.append("text")
    if line_like and prof.kind in ("drawing", "synthetic", "screen"):
        flags.append("line_art")
    prof.flags = flags

    # the OOD gate
    name = model_name or default_model_name()
    prof.ood_model = name
    stats = _read_model(ood_stats_file(name))
    if stats is not None:
        score, drivers = _ood(feats, stats)
        prof.ood_score, prof.ood_threshold = score, float(stats["threshold"])
        prof.in_distribution = score <= prof.ood_threshold
        prof.drivers = drivers
        prof.ood_gate = "spectral"
        if "model_evidence" in stats:   # the model part waits for learned_gate(): no copy, no torch here
            prof._source, prof._stats = image.pixels, stats
    else:
        prof.reasons.append(f"no OOD statistics for model {name!r}: in_distribution unknown")
    prof.cost_ms = (time.perf_counter() - t0) * 1000.0
    return prof
