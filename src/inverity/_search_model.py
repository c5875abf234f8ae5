"""The quality search's fitted predictors: the model file (``data/search_model.json``, fitted by
``scripts/fit_search.py``), the features it reads, the floor sets it is fitted for, and :class:`Predictor`, which
turns one image's features into a first quality, predicted bytes and per-check slopes. :mod:`inverity.search`
re-exports the public names; see its docstring for how the search uses them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .verify import Floors

#: features the predictors read (from :func:`inverity.analyse.features`), and which of them enter as logs
MODEL_FEATURES: tuple[str, ...] = (
    "log_colours", "luma_std", "colourfulness", "edge_density", "grad_mean", "grad_p99", "flat_block_frac",
    "flat_frac", "noise_sigma", "band3", "band4", "band5", "band6", "hf_ratio", "slope_native", "crop_std",
)
LOG_FEATURES: tuple[str, ...] = ("noise_sigma", "flat_frac", "edge_density", "hf_ratio", "flat_block_frac")
_LOG_EPS = 1e-3

#: +1: a check whose value must be at least its floor; -1: at most (the verdict's ``checks`` names)
CHECK_DIRECTION: dict[str, int] = {
    "ssimulacra2": 1, "psnr": 1, "local_snr": 1, "local_structure": 1, "tile_band_kept": 1, "band_kept_min": 1,
    "edge_missing": -1, "edge_invented": -1, "band_invented_max": -1, "max_abs_error": -1, "ms_ssim": 1,
    "worst_tile_psnr": 1,
}
#: a check's change per quality step when the model has none (rough medians over the lossy stages)
DEFAULT_SLOPE: dict[str, float] = {"ssimulacra2": 0.5, "psnr": 0.12, "local_snr": 0.15, "local_structure": 0.15,
                                    "worst_tile_psnr": 0.12, "ms_ssim": 0.002}
#: the floor sets the predictors are fitted for (user floors are mapped onto the nearest, see floor_set_key)
FLOOR_SETS: tuple[str, ...] = ("delivery", "line_art", "controlled", "controlled_line_art")
#: global (whole-image) floors, checked first; everything else is a "structure" floor (local maps, bands, edges)
GLOBAL_FLOORS = ("lossless", "max_abs_error", "psnr", "ssimulacra2", "ms_ssim")
STRUCTURE_FLOORS = ("worst_tile_psnr", "local_snr", "local_structure", "band_kept", "band_invented", "tile_band_kept",
              "edge_missing", "edge_invented")


def floor_set_floors(name: str) -> Floors:
    """The :class:`Floors` of a named floor set (the ones the predictors are fitted for)."""
    line_art = {"ssimulacra2": 80.0}
    return {"delivery": Floors.delivery(), "line_art": dataclasses.replace(Floors.delivery(), **line_art),
            "controlled": Floors.controlled(),
            "controlled_line_art": dataclasses.replace(Floors.controlled(), **line_art)}[name]


def thresholds(floors: Any) -> dict[str, float]:
    vals = {n: getattr(floors, n, None) for n in GLOBAL_FLOORS[1:] + STRUCTURE_FLOORS}
    return {n: float(v) for n, v in vals.items() if v is not None and not isinstance(v, bool)}


def floor_set_key(floors: Any) -> tuple[str, float] | None:
    """(the fitted floor set these floors match, the SSIMULACRA 2 shift) or None when none fits.

    Floors equal to a fitted set (ignoring the SSIMULACRA 2 threshold) map to it; the quality model's answer is
    then shifted by the SSIMULACRA 2 difference over its slope (the line-art sets cover 80, the others 70).

    Examples
    --------
    >>> floor_set_key(Floors.delivery())
    ('delivery', 0.0)
    >>> floor_set_key(Floors(ssimulacra2=75.0, local_snr=3.0))
    ('delivery', 5.0)
    >>> floor_set_key(Floors(lossless=True)) is None
    True
    """
    if not isinstance(floors, Floors) or floors.lossless:
        return None
    mine = thresholds(floors)
    if "ssimulacra2" not in mine:
        return None
    best: tuple[str, float] | None = None
    for name in FLOOR_SETS:
        ref = thresholds(floor_set_floors(name))
        if {k: v for k, v in ref.items() if k != "ssimulacra2"} != {k: v for k, v in mine.items()
                                                                    if k != "ssimulacra2"}:
            continue
        shift = mine["ssimulacra2"] - ref["ssimulacra2"]
        if best is None or abs(shift) < abs(best[1]):
            best = (name, shift)
    return best


def feature_vector(feats: Mapping[str, Any], spec: Mapping[str, Any] | None) -> np.ndarray:
    """The predictors' input: :data:`MODEL_FEATURES` (logs where listed), standardised by ``spec`` if given."""
    x = np.array([float(feats.get(n, 0.0) or 0.0) for n in MODEL_FEATURES])
    for i, n in enumerate(MODEL_FEATURES):
        if n in LOG_FEATURES:
            x[i] = math.log(max(x[i], 0.0) + _LOG_EPS)
    if spec is not None:
        x = (x - np.asarray(spec["mean"], float)) / np.asarray(spec["scale"], float)
    return np.clip(x, -6.0, 6.0) if spec is not None else x


def search_model_path() -> Path:
    """The shipped predictors (``src/inverity/data/search_model.json``)."""
    return Path(__file__).resolve().parent / "data" / "search_model.json"


@lru_cache(maxsize=4)
def read_model(path: str, mtime_ns: int) -> dict[str, Any] | None:  # mtime in the key: a refit is picked up
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("format") == "inverity-search-model/1" else None


class Predictor:
    """Quality, bytes and slope predictions for one image (its analysis features and content kind)."""

    def __init__(self, model: Mapping[str, Any] | None, features: Mapping[str, Any] | None, kind: str | None,
                 pixels: int) -> None:
        self.model = model or {}
        self.kind = kind
        self.pixels = max(1, int(pixels))
        self.z = (feature_vector(features, self.model["spec"]) if self.model and features else None)

    def quality(self, codec_id: str, floors: Any, tau: float) -> float | None:
        """The quality at which ``codec_id`` passes ``floors`` with probability ≈ ``tau`` (None: no model)."""
        key = floor_set_key(floors)
        if self.z is None or key is None:
            return None
        q = self._quality(codec_id, key[0], tau)
        if q is None or not key[1]:
            return q
        return q + key[1] / max(self.slope(codec_id, "ssimulacra2"), 0.1)

    def _quality(self, codec_id: str, floor_set: str, tau: float) -> float | None:
        m = (self.model.get("quality", {}).get(codec_id) or {}).get(floor_set)
        if not m or self.z is None:
            return None
        t = min(m["coef"], key=lambda x: abs(float(x) - tau))
        coef = np.asarray(m["coef"][t], float)
        if m.get("form") == "offset":        # few examples: an offset and gain on the base set's median
            base = self._quality(codec_id, m["base"], 0.5)
            return None if base is None else float(coef[0] + coef[1] * base)
        x = np.concatenate([[1.0], self.z, [1.0 if self.kind == k else 0.0 for k in m.get("kinds", [])]])
        return float(x @ coef[: len(x)])

    def bytes(self, label: str, quality: float | None) -> float | None:
        """Predicted output size of candidate ``label`` (``codec_id`` plus ``?opt=v``) at ``quality``."""
        m = self.model.get("rate", {}).get(label)
        if self.z is None or not m:
            return None
        coef = np.asarray(m["coef"], float)
        if m["form"] == "lossless":
            x = np.concatenate([[1.0], self.z])
        else:
            if quality is None:
                return None
            t = (min(max(quality, 0.0), 100.0) - 60.0) / 40.0
            x = np.concatenate([[1.0], self.z, [t, t * t], self.z * t])
        return math.exp(float(x @ coef)) * self.pixels / 8.0

    def bytes_lower(self, label: str, quality: float | None) -> float | None:
        """A lower bound on the size (the prediction less two residual spreads)."""
        b = self.bytes(label, quality)
        if b is None:
            return None
        return b * math.exp(-2.0 * float(self.model["rate"][label]["sigma"]))

    def same_bitstream(self, codec_id: str, library: str | None) -> list[tuple[int, int]]:
        """Runs of qualities ``(lo, hi)`` that give one bitstream, as measured under ``library`` (else none)."""
        m = self.model.get("same_bitstream", {}).get(codec_id)
        if not m or library is None or m.get("library") != library:
            return []
        return [(int(a), int(b)) for a, b in m["runs"]]

    def slope(self, codec_id: str, check: str) -> float:
        """How much ``check`` improves per quality step for ``codec_id`` (always positive)."""
        s = (self.model.get("slopes", {}).get(codec_id) or {}).get(check)
        if s is None:
            s = DEFAULT_SLOPE.get(check)
        if s is None:
            return 0.0
        return abs(float(s))


def load_predictor(features: Mapping[str, Any] | None, kind: str | None, pixels: int,
                   path: str | Path | None = None) -> Predictor:
    """A :class:`Predictor` for one image; the model file is read once per process (and again after a refit)."""
    p = Path(path) if path is not None else search_model_path()
    try:
        model = read_model(str(p), p.stat().st_mtime_ns)
    except OSError:
        model = None
    return Predictor(model, features, kind, pixels)
