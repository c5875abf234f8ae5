"""Fit the quality and rate predictors of the search (``src/inverity/data/search_model.json``).

For every lossy stage and floor set the search asks "at which quality does this image first pass the floors?"
before encoding anything, then confirms with a verified encode (:mod:`inverity.search`). This script measures,
on training images, what the answer was, and fits

* a **quality model** per (stage, floor set): linear quantile regressions (pinball loss, solved exactly as a
  linear programme with scipy's HiGHS; a small L1 penalty) of the first passing quality on standardised analysis
  features plus one indicator per content kind, at several quantiles τ — the search's first probe at the τ
  quantile passes with probability ≈ τ. Kinds with too few examples keep a zero offset (the pooled model);
* a **rate model** per stage: least squares of log(bytes per pixel) on the features, the quality and their
  products (lossless stages: features only), with the residual spread, so the search can order candidates by
  predicted bytes and skip those whose lower bound cannot beat the best passing size;
* **slopes**: per stage and check, the median change of the check's value per quality step near the floor,
  the first step of the search's secant.

Data: a seeded subsample of ``shared/datasets/train`` (photos) and every ``shared/datasets/ood/*`` image
(aerial, drawing, texture, synthetic); never Kodak or validation. Each is box-downscaled to at most
``--max-mp`` megapixels (the machine this ran on was shared; the features describe the downscaled pixels, as
they will describe the full-size ones at run time). Per image and lossy stage the quality grid is encoded,
decoded and verified (delivery floors everywhere; the controlled floors' structure checks on a subset), and
each lossless stage is encoded once. Measurements go to a JSONL cache first (``--cache``; a rerun resumes), so
the fit itself takes seconds: ``--fit-only`` refits from the cache.

Usage::

    python scripts/fit_search.py [--shared ../shared/datasets] [--train 60] [--controlled 16] [--max-mp 0.2]
                                 [--cache /tmp/search_fit.jsonl] [--out src/inverity/data/search_model.json]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from inverity.analyse import KINDS, analyse
from inverity.image import Image, load
from inverity.search import (FLOOR_SETS, MODEL_FEATURES, LOG_FEATURES, feature_vector, floor_set_floors,
                             CHECK_DIRECTION)
from inverity.stages.base import get_stage
from inverity.verify import Floors, verify

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT_OUT = ROOT / "src" / "inverity" / "data" / "search_model.json"

LOSSY = ("avif", "webp", "jpeg", "jxl")
GRID = (30, 45, 58, 70, 80, 88, 95)
LOSSLESS = (("png", {}), ("webp-lossless", {}), ("jxl-lossless", {}), ("jpegls", {}), ("jpegls", {"near": 2}),
            ("jpeg2000", {}))
QUANTILES = (0.1, 0.5, 0.7, 0.8, 0.9)
#: scalar checks the rows keep (the verdict's measured numbers)
CHECKS = ("ssimulacra2", "psnr", "local_snr", "local_structure", "tile_band_kept", "edge_missing", "edge_invented",
          "band_kept_min", "band_invented_max")


# ----------------------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------------------
def _downscale(img: Image, max_mp: float) -> Image:
    mp = img.width * img.height / 1e6
    if mp <= max_mp:
        return img
    from PIL import Image as PILImage

    f = math.sqrt(max_mp / mp)
    size = (max(8, int(img.width * f)), max(8, int(img.height * f)))
    px = img.pixels
    if px.dtype != np.uint8:
        return img
    pil = PILImage.fromarray(px[:, :, 0] if px.shape[2] == 1 else px)
    small = np.asarray(pil.resize(size, PILImage.Resampling.BOX))
    return Image(small[:, :, None] if small.ndim == 2 else small)


def _scalar_checks(checks: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in CHECKS:
        v = checks.get(k)
        if isinstance(v, (int, float)) and v is not None:
            out[k] = float(v) if math.isfinite(float(v)) else (1e3 if float(v) > 0 else -1e3)
    for name, src, fn in (("band_kept_min", "band_kept", min), ("band_invented_max", "band_invented", max)):
        d = checks.get(src)
        if isinstance(d, dict) and d:
            out[name] = float(fn(d.values()))
    return out


def measure(path: Path, source: str, max_mp: float, controlled: bool) -> dict[str, Any]:
    img = _downscale(load(path.read_bytes(), name=str(path)), max_mp)
    prof = analyse(img)
    row: dict[str, Any] = {"image": f"{source}/{path.name}", "source": source, "kind": prof.kind,
                           "width": img.width, "height": img.height, "channels": img.channels,
                           "features": prof.features, "lossy": {}, "lossless": {}}
    floors = Floors.controlled() if controlled else Floors.delivery()
    row["controlled"] = controlled
    for cid in LOSSY:
        pts = []
        for q in GRID:
            try:
                st = get_stage(cid, quality=q)
                t0 = time.perf_counter()
                data = st.encode(img)
                ms = (time.perf_counter() - t0) * 1e3
                rec = st.decode(data)
            except Exception:  # noqa: BLE001 - the stage cannot take this image (gray AVIF/WebP)
                break
            v = verify(img, rec, floors)
            pts.append({"q": q, "bytes": len(data), "encode_ms": round(ms, 1), **_scalar_checks(v.checks)})
        if pts:
            row["lossy"][cid] = pts
    for cid, opts in LOSSLESS:
        label = cid + "".join(f"?{k}={v}" for k, v in opts.items())
        try:
            t0 = time.perf_counter()
            data = get_stage(cid, **opts).encode(img)
            row["lossless"][label] = {"bytes": len(data), "encode_ms": round((time.perf_counter() - t0) * 1e3, 1)}
        except Exception:  # noqa: BLE001
            continue
    return row


def image_list(shared: Path, n_train: int, seed: int) -> list[tuple[Path, str]]:
    train = sorted((shared / "train").iterdir())
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(train), size=min(n_train, len(train)), replace=False))
    out = [(train[i], "train") for i in pick]
    for d in sorted((shared / "ood").iterdir()):
        if d.is_dir():
            out += [(p, f"ood/{d.name}") for p in sorted(d.iterdir()) if p.is_file()]
    return out


def collect(shared: Path, cache: Path, n_train: int, n_controlled: int, max_mp: float, seed: int) -> list[dict]:
    rows: dict[str, dict] = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[r["image"]] = r
    items = image_list(shared, n_train, seed)
    # the controlled subset: every k-th image, so photos and every ood folder are represented
    step = max(1, len(items) // max(1, n_controlled))
    with cache.open("a") as fh:
        for i, (p, src) in enumerate(items):
            key = f"{src}/{p.name}"
            if key in rows:
                continue
            t0 = time.perf_counter()
            r = measure(p, src, max_mp, controlled=(i % step == 0 and n_controlled > 0))
            r["seconds"] = round(time.perf_counter() - t0, 2)
            rows[key] = r
            fh.write(json.dumps(r) + "\n")
            fh.flush()
            print(f"[{i + 1}/{len(items)}] {key} {r['kind']} {r['width']}x{r['height']} "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return [rows[f"{src}/{p.name}"] for p, src in items if f"{src}/{p.name}" in rows]


def quality_classes() -> dict[str, Any]:
    """Per lossy stage, the runs of qualities that give one bitstream (libavif maps 0–100 onto 64 quantisers:
    q60 and q61 are the same file), checked on three unrelated images and kept only when all three agree; with
    the library version they were measured with (the search uses them only under that version)."""
    from skimage import data

    imgs = [data.chelsea()[:64, :64], data.astronaut()[100:164, 100:164], data.coffee()[:48, :80]]
    out: dict[str, Any] = {}
    for cid in LOSSY:
        parts = []
        for px in imgs:
            img = Image(np.ascontiguousarray(px))
            prev, runs = None, []
            for q in range(101):
                h = hashlib.sha256(get_stage(cid, quality=q).encode(img)).digest()
                if h == prev:
                    runs[-1][1] = q
                else:
                    runs.append([q, q])
                prev = h
            parts.append([r for r in runs if r[1] > r[0]])
        if parts[0] and all(p == parts[0] for p in parts):
            out[cid] = {"library": get_stage(cid).library_version(), "runs": parts[0]}
    return out


# ----------------------------------------------------------------------------------------------------------
# fitting
# ----------------------------------------------------------------------------------------------------------
def _crossing(qs: np.ndarray, vals: np.ndarray, thr: float, higher_better: bool) -> float:
    """The quality where ``vals`` first meets ``thr`` (linear between grid points; extrapolated one grid step
    at either end, clipped to 1..100)."""
    m = (vals - thr) if higher_better else (thr - vals)
    ok = m >= 0
    if ok.all():
        if len(qs) >= 2 and m[1] > m[0] > 0:
            return float(max(1.0, qs[0] - m[0] * (qs[1] - qs[0]) / (m[1] - m[0])))
        return float(max(1.0, qs[0] - (qs[1] - qs[0])))
    if not ok[-1]:
        return 101.0          # fails even at the top of the grid: censored above
    k = int(np.nonzero(~ok)[0][-1])   # last failing point (passing is treated as monotone)
    a, b = m[k], m[k + 1]
    return float(qs[k] + (qs[k + 1] - qs[k]) * (-a) / (b - a if b != a else 1.0))


def pass_quality(pts: list[dict], floors: Floors) -> float | None:
    qs = np.array([p["q"] for p in pts], float)
    worst = 1.0
    for name, thr in floors_thresholds(floors).items():
        if not all(name in p for p in pts):
            return None
        hb = CHECK_DIRECTION[name] > 0
        worst = max(worst, _crossing(qs, np.array([p[name] for p in pts], float), thr, hb))
    return worst


def floors_thresholds(floors: Floors) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in CHECK_DIRECTION:
        src = {"band_kept_min": "band_kept", "band_invented_max": "band_invented"}.get(name, name)
        v = getattr(floors, src, None)
        if v is not None and not isinstance(v, bool):
            out[name] = float(v)
    return out


def quantile_fit(X: np.ndarray, y: np.ndarray, tau: float, l1: float, free: int) -> np.ndarray:
    """min Σ pinball_τ(y - Xβ) + l1·Σ|β_j| (the first ``free`` columns unpenalised), as a linear programme."""
    from scipy.optimize import linprog

    n, p = X.shape
    pen = np.full(p, l1)
    pen[:free] = 0.0
    # variables: β+ (p), β- (p), u+ (n), u- (n);  Xβ+ - Xβ- + u+ - u- = y
    c = np.concatenate([pen, pen, np.full(n, tau), np.full(n, 1 - tau)])
    A = np.hstack([X, -X, np.eye(n), -np.eye(n)])
    res = linprog(c, A_eq=A, b_eq=y, bounds=(0, None), method="highs")
    if not res.success:
        raise RuntimeError(f"quantile fit failed: {res.message}")
    return res.x[:p] - res.x[p:2 * p]


def standardise(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    F = np.array([feature_vector(r["features"], None) for r in rows])
    mean, scale = F.mean(0), F.std(0)
    scale[scale < 1e-9] = 1.0
    return (F - mean) / scale, mean, scale


#: floor sets fitted on few images are predicted from these (fitted on every image)
BASE_SET = {"controlled": "delivery", "controlled_line_art": "line_art"}


def _predict(m: dict[str, Any], z: np.ndarray, kind: str, tau: float) -> float:
    x = np.concatenate([[1.0], z, [1.0 if kind == k else 0.0 for k in m["kinds"]]])
    return float(x @ np.asarray(m["coef"][str(tau)]))


def fit(rows: list[dict], *, l1: float, min_kind: int, min_full: int = 40) -> dict[str, Any]:
    Z, mean, scale = standardise(rows)
    spec = {"features": list(MODEL_FEATURES), "log_features": list(LOG_FEATURES), "mean": mean.round(6).tolist(),
            "scale": scale.round(6).tolist()}
    kinds = [r["kind"] for r in rows]
    quality: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    for cid in LOSSY:
        quality[cid] = {}
        for fs in FLOOR_SETS:
            floors = floor_set_floors(fs)
            idx, y = [], []
            for i, r in enumerate(rows):
                pts = r["lossy"].get(cid)
                if not pts or (fs.startswith("controlled") and not r.get("controlled")):
                    continue
                qp = pass_quality(pts, floors)
                if qp is not None:
                    idx.append(i)
                    y.append(qp)
            if len(idx) < 8:
                continue
            yv = np.minimum(np.array(y), 100.0)
            counts = {k: sum(1 for i in idx if kinds[i] == k) for k in KINDS}
            base = BASE_SET.get(fs)
            if len(idx) < min_full and base in quality[cid]:
                # few examples (the controlled subset): the quality is the base floor set's median prediction
                # plus an offset and a gain, per quantile
                bm = quality[cid][base]
                X = np.array([[1.0, _predict(bm, Z[i], kinds[i], 0.5)] for i in idx])
                entry: dict[str, Any] = {"form": "offset", "base": base, "kinds": []}
            else:
                own = [k for k in KINDS if counts[k] >= min_kind and k != "photo"]
                X = np.hstack([np.ones((len(idx), 1)), Z[idx]] +
                              [np.array([[1.0 if kinds[i] == k else 0.0] for i in idx]) for k in own])
                entry = {"form": "linear", "kinds": own}
            pen = l1 * len(idx) if entry["form"] == "linear" else 0.0
            coefs = {str(t): quantile_fit(X, yv, t, pen, free=1).round(5).tolist() for t in QUANTILES}
            # coverage: in sample, and 5-fold cross-validated (each fold's model predicts the held-out images)
            cover = {t: float(np.mean(yv <= X @ np.array(b))) for t, b in coefs.items()}
            folds = np.arange(len(idx)) % 5
            cv = {str(t): 0.0 for t in QUANTILES}
            for f in range(5):
                tr, te = folds != f, folds == f
                for t in QUANTILES:
                    bt = quantile_fit(X[tr], yv[tr], t, pen * tr.mean(), free=1)
                    cv[str(t)] += float(np.sum(yv[te] <= X[te] @ bt)) / len(idx)
            quality[cid][fs] = {**entry, "n": len(idx), "coef": coefs, "kind_counts": counts}
            report[f"{cid}/{fs}"] = {"n": len(idx), "form": entry["form"],
                                     "coverage_in_sample": {k: round(v, 3) for k, v in cover.items()},
                                     "coverage_cv5": {k: round(v, 3) for k, v in cv.items()},
                                     "median_pass_q": round(float(np.median(yv)), 1)}
    # rate: log bpp ~ [1, z, t, t², z·t], t = (q - 60) / 40
    rate: dict[str, Any] = {}
    for cid in LOSSY:
        Xs, ys = [], []
        for i, r in enumerate(rows):
            for p in r["lossy"].get(cid, []):
                t = (p["q"] - 60) / 40
                Xs.append(np.concatenate([[1.0], Z[i], [t, t * t], Z[i] * t]))
                ys.append(math.log(8 * p["bytes"] / (r["width"] * r["height"])))
        if len(ys) < 20:
            continue
        X, yv = np.array(Xs), np.array(ys)
        beta = np.linalg.solve(X.T @ X + 1e-2 * np.eye(X.shape[1]), X.T @ yv)
        res = yv - X @ beta
        rate[cid] = {"form": "lossy", "coef": beta.round(5).tolist(), "sigma": round(float(res.std()), 4),
                     "resid_p05": round(float(np.quantile(res, 0.05)), 4)}
    for label in sorted({lab for r in rows for lab in r["lossless"]}):
        idx = [i for i, r in enumerate(rows) if label in r["lossless"]]
        X = np.hstack([np.ones((len(idx), 1)), Z[idx]])
        yv = np.array([math.log(8 * rows[i]["lossless"][label]["bytes"] / (rows[i]["width"] * rows[i]["height"]))
                       for i in idx])
        beta = np.linalg.solve(X.T @ X + 1e-2 * np.eye(X.shape[1]), X.T @ yv)
        res = yv - X @ beta
        rate[label] = {"form": "lossless", "coef": beta.round(5).tolist(), "sigma": round(float(res.std()), 4),
                       "resid_p05": round(float(np.quantile(res, 0.05)), 4)}
    # slopes of each check per quality step around the floors (median over images of the local secant)
    slopes: dict[str, dict[str, float]] = {}
    for cid in LOSSY:
        slopes[cid] = {}
        for name in CHECK_DIRECTION:
            d = []
            for r in rows:
                pts = r["lossy"].get(cid, [])
                for a, b in zip(pts, pts[1:]):
                    if name in a and name in b and abs(a[name]) < 500 and abs(b[name]) < 500:
                        d.append((b[name] - a[name]) / (b["q"] - a["q"]))
            if len(d) >= 10:
                slopes[cid][name] = round(float(np.median(d)), 5)
    return {"spec": spec, "quality": quality, "rate": rate, "slopes": slopes, "report": report}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/search_fit.jsonl"))
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--controlled", type=int, default=16)
    ap.add_argument("--max-mp", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--l1", type=float, default=0.02)
    ap.add_argument("--min-kind", type=int, default=4)
    ap.add_argument("--fit-only", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.fit_only:
        rows = [json.loads(x) for x in a.cache.read_text().splitlines() if x.strip()]
    else:
        rows = collect(a.shared, a.cache, a.train, a.controlled, a.max_mp, a.seed)
    model = fit(rows, l1=a.l1, min_kind=a.min_kind)
    import scipy

    model = {"format": "inverity-search-model/1",
             "type": "linear quantile regressions of the first passing quality per (stage, floor set, kind "
                     "offset); log-linear rate models per stage; median check slopes per quality step",
             **{k: model[k] for k in ("spec", "quality", "rate", "slopes")},
             "same_bitstream": quality_classes(),
             "provenance": {
                 "script": "scripts/fit_search.py",
                 "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "seed": a.seed, "train_images": a.train, "controlled_subset": a.controlled, "max_mp": a.max_mp,
                 "l1": a.l1, "min_kind_examples": a.min_kind, "grid": list(GRID), "quantiles": list(QUANTILES),
                 "images": len(rows), "kinds": {k: sum(r["kind"] == k for r in rows) for k in KINDS},
                 "sources": sorted({r["source"] for r in rows}),
                 "held_out_of_fitting": ["shared/datasets/kodak", "shared/datasets/validation"],
                 "fit_report": model["report"],
                 "fitting_software": {"numpy": np.__version__, "scipy": scipy.__version__},
                 "seconds": round(time.perf_counter() - t0, 1), "fit_only": a.fit_only,
                 "measure_seconds": (round(sum(r["seconds"] for r in rows), 1)
                                     if all("seconds" in r for r in rows) else None)}}
    a.out.write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {a.out} ({len(rows)} images)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
