"""Fit the OOD gate of a learned model: training-set signature statistics and the validation threshold.

What "in distribution" means for *our* learned codec is defined by *its* training set (LEARNED.md: spectral
bias). This script computes, over exactly the images the shipped model was trained on (the same file list and
``list_hash`` as ``inverity.stages.learned.train``), the mean and a Ledoit–Wolf-shrunk covariance of a
signature vector from ``inverity.analyse.features``:

* log power in six octave bands of the native-resolution spectrum, spectral slopes (native and coarse),
  high-frequency share, noise σ;
* gradient statistics (mean, sparsity, edge density), flat-region fractions (exact and block);
* colour statistics (colourfulness, saturation, share of chromatic pixels, palette concentration),
  histogram entropy, local contrast.

The OOD score of an image is its Mahalanobis distance to that distribution; the threshold is the 99th
percentile of the distances of the *validation* set (``datasets/validation``, never used for fitting the
statistics). The result goes to ``zoo.ood_stats_path(model)`` (``weights/<model>.ood.json``); re-run this
script after retraining the model. Kodak is never used here (``benchmarks/analyse.py`` reports on it).

Usage::

    python scripts/fit_ood.py [--model hp-gain] [--train ../shared/datasets/train]
                              [--validation ../shared/datasets/validation] [--out PATH] [--force]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import numpy as np

from inverity._atomic import atomic_write_text
from inverity.analyse import _vector, features
from inverity.image import Image
from inverity.stages.learned import zoo
from inverity.stages.learned.train import list_hash, load_folder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

#: the signature: spectral, gradient, flatness, colour (see the module docstring)
OOD_FEATURES = ("band1", "band2", "band3", "band4", "band5", "band6", "slope_native", "slope_coarse", "hf_ratio",
                "noise_sigma", "flat_frac", "flat_block_frac", "grad_mean", "grad_sparsity", "edge_density",
                "colourfulness", "sat_mean", "chroma_max_frac", "top8_coverage", "hist_entropy", "crop_std")
#: heavy right tails: compared in log10(x + eps)
OOD_LOG = ("noise_sigma", "flat_frac", "flat_block_frac", "edge_density", "hf_ratio", "chroma_max_frac",
           "top8_coverage")
LOG_EPS = 1e-3
PERCENTILE = 99.0


def ledoit_wolf(Z: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf (2004) shrinkage of the covariance of centred rows ``Z`` towards a scaled identity."""
    n, p = Z.shape
    S = Z.T @ Z / n
    mu = np.trace(S) / p
    delta = ((S - mu * np.eye(p)) ** 2).sum() / p
    beta = sum(((np.outer(z, z) - S) ** 2).sum() for z in Z) / (n * n) / p
    shrink = float(min(beta, delta) / delta) if delta > 0 else 1.0
    return shrink * mu * np.eye(p) + (1 - shrink) * S, shrink


def signatures(arrays: list[np.ndarray], spec: dict) -> np.ndarray:
    return np.array([_vector(features(Image(a)), list(OOD_FEATURES), spec) for a in arrays])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="learned model name (default: the zoo's default)")
    ap.add_argument("--train", type=Path, default=SHARED / "train")
    ap.add_argument("--validation", type=Path, default=SHARED / "validation")
    ap.add_argument("--out", type=Path, default=None, help="default: zoo.ood_stats_path(model)")
    ap.add_argument("--force", action="store_true", help="write even if the training-list hash differs from the "
                    "model's provenance")
    a = ap.parse_args(argv)
    name = a.model or zoo.default_model()
    out = a.out or zoo.ood_stats_path(name)

    train, train_names = load_folder(a.train)        # exactly the trainer's list (sorted, 8-bit RGB)
    train_hash = list_hash(a.train, train_names)
    model_hash = None
    try:
        model_hash = zoo.model_info(name).provenance.get("train_list_sha256")
    except Exception as exc:  # noqa: BLE001 - model not registered yet: stats can still be prepared
        print(f"note: model {name!r} not in the zoo ({exc}); cannot cross-check its training list", file=sys.stderr)
    if model_hash and model_hash != train_hash and not a.force:
        raise SystemExit(f"training list {train_hash[:12]}… differs from model {name!r}'s provenance "
                         f"{model_hash[:12]}…: these are not the images it was trained on (--force to override)")
    val, val_names = load_folder(a.validation)
    spec = {"log_features": list(OOD_LOG), "log_eps": LOG_EPS}
    Xt = signatures(train, spec)
    Xv = signatures(val, spec)

    mean, std = Xt.mean(axis=0), Xt.std(axis=0) + 1e-9
    C, shrink = ledoit_wolf((Xt - mean) / std)
    prec_std = np.linalg.inv(C)
    precision = prec_std / np.outer(std, std)       # in feature units: d² = (x-μ)ᵀ P (x-μ)

    def dist(X: np.ndarray) -> np.ndarray:
        D = X - mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", D, precision, D), 0))

    dv, dt = dist(Xv), dist(Xt)
    threshold = float(np.percentile(dv, PERCENTILE))
    stats = {
        "format": "inverity-ood-stats/1",
        "model": name,
        "score": "Mahalanobis distance (Ledoit-Wolf shrunk covariance of standardised features)",
        "features": list(OOD_FEATURES),
        "log_features": list(OOD_LOG),
        "log_eps": LOG_EPS,
        "mean": mean.round(10).tolist(),
        "std": std.round(10).tolist(),
        "precision": precision.tolist(),
        "shrinkage": round(shrink, 6),
        "threshold": round(threshold, 6),
        "threshold_rule": f"{PERCENTILE:g}th percentile of the validation set's distances",
        "train": {"dir": a.train.name, "images": len(train_names), "list_sha256": train_hash,
                  "model_train_list_sha256": model_hash,
                  "in_distribution_fraction": round(float((dt <= threshold).mean()), 4),
                  "distance_percentiles": {str(q): round(float(np.percentile(dt, q)), 3) for q in (50, 90, 99)}},
        "validation": {"dir": a.validation.name, "images": len(val_names),
                       "list_sha256": list_hash(a.validation, val_names),
                       "distance_percentiles": {str(q): round(float(np.percentile(dv, q)), 3)
                                                for q in (50, 90, 95, 99, 100)}},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "script": "scripts/fit_ood.py",
    }
    atomic_write_text(out, json.dumps(stats, indent=1) + "\n")
    print(f"wrote {out}: {len(train_names)} training images (list sha256 {train_hash[:12]}…), "
          f"threshold {threshold:.2f} (p{PERCENTILE:g} of {len(val_names)} validation distances), "
          f"train in-distribution {float((dt <= threshold).mean()):.3f}, shrinkage {shrink:.3f}")


if __name__ == "__main__":
    main()
