"""Rate-distortion benchmark of inverity's stages on clean and corrupted images, with BD-rate tables.

For every image of a dataset, every codec and every quality of its grid, the image's pixels are encoded with
``inverity.stages.base.get_stage(codec, quality=q)`` and decoded again, and one row is recorded: the real size
of the stream (bytes → bits per pixel), encode and decode time, and the quality of the reconstruction (PSNR,
MS-SSIM, SSIMULACRA 2 from :mod:`inverity.metrics`). Only pixels are coded (no ICC/EXIF), so the bytes are the
codec's alone.

With a corrupted dataset (the layout ``bench corruptions`` writes: ``<corruption>/<severity>/<name>.png``) the
same is done for each corrupted image, and the reconstruction is scored twice, as Lieberman et al. (NeurIPS 2023)
do: against the **clean original** (how much of the true scene survives corruption plus coding — the paper's
measure) and against the **corrupted input** (how faithfully the codec kept what it was given).

Curves are the mean over images at each quality (bpp and each metric averaged per image, as CompressAI does for
its published Kodak results). BD-rate and BD-PSNR (:mod:`inverity.bench.bdrate`) of every codec are computed
against JPEG, per condition. Error spectra (:mod:`inverity.bench.spectral`) are accumulated on the way.

Outputs in ``OUT``: ``points.csv`` (one row per image × codec × quality × condition), ``summary.csv`` (means),
``bd.csv``, ``spectral_bands.csv``, ``rd.json`` (everything), ``rd.md`` (the readable summary) and PNG figures.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .._atomic import atomic_write_text
from ..errors import InputError, UnknownIdError
from . import _data
from ._tables import fmt, json_safe, md_table, to_csv
from .bdrate import bd_psnr, bd_rate
from .spectral import BANDS, SpectrumAccumulator

__all__ = ["DEFAULT_CODECS", "DEFAULT_QUALITIES", "QUICK_QUALITIES", "METRICS", "RDResult", "run_rd",
           "summarise", "bd_table", "load_anchors", "parse_qualities", "msssim_db"]

DEFAULT_CODECS: tuple[str, ...] = ("jpeg", "webp", "avif", "jxl", "learned")
#: quality grids: libjpeg/libwebp/libavif/libjxl 0–100 scales; the learned stage's quality indices 1..7 (hp-gain v3 and later)
DEFAULT_QUALITIES: dict[str, tuple[int, ...]] = {
    "jpeg": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "avif": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "jxl": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "learned": (1, 2, 3, 4, 5, 6, 7),
}
#: sparser grids for --quick (BD-rate needs at least 4 points)
QUICK_QUALITIES: dict[str, tuple[int, ...]] = {
    "jpeg": (25, 50, 75, 90), "webp": (25, 50, 75, 90), "avif": (25, 50, 75, 90), "jxl": (25, 50, 75, 90),
    "learned": (1, 3, 5, 7),
}
METRICS: tuple[str, ...] = ("psnr", "ms_ssim", "ssimulacra2")
#: BD-rate is not reported when the two curves overlap by less than this (dB of PSNR, or metric units)
MIN_OVERLAP = 0.25
#: a curve whose quality drops by more than this between consecutive rates is not compared
MONOTONE_SLACK = 0.1
ANCHOR = "jpeg"

Progress = Callable[[int, int, str], None]


def parse_qualities(spec: str | Sequence[str] | None, codecs: Sequence[str],
                    base: Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple[int, ...]]:
    """Quality grids from ``"jpeg=10,50,90;learned=1,3,6"`` or ``"10,50,90"`` (for every classical codec);
    codecs not named keep their grid from ``base`` (default :data:`DEFAULT_QUALITIES`).

    Examples
    --------
    >>> parse_qualities("jpeg=10,50,90;learned=1,3", ["jpeg", "webp", "learned"])["jpeg"]
    (10, 50, 90)
    >>> parse_qualities("30,60", ["jpeg", "learned"])
    {'jpeg': (30, 60), 'learned': (1, 2, 3, 4, 5, 6, 7)}
    """
    base = base or DEFAULT_QUALITIES
    grids = {c: tuple(base.get(c, DEFAULT_QUALITIES.get(c, DEFAULT_QUALITIES["jpeg"]))) for c in codecs}
    if not spec:
        return grids
    parts = [spec] if isinstance(spec, str) else list(spec)
    for part in (p.strip() for chunk in parts for p in chunk.split(";")):
        if not part:
            continue
        try:
            if "=" in part:
                name, vals = part.split("=", 1)
                grids[name.strip()] = tuple(int(v) for v in vals.split(",") if v.strip())
            else:
                vals_t = tuple(int(v) for v in part.split(",") if v.strip())
                for c in codecs:
                    if c != "learned":
                        grids[c] = vals_t
        except ValueError:
            raise InputError(f"bad --qualities {part!r}; use e.g. 'jpeg=10,50,90;learned=1,3,6'") from None
    return {c: grids[c] for c in codecs}


def msssim_db(v: float) -> float:
    """MS-SSIM on a dB scale, −10·log10(1 − v): spreads the crowded top end, for BD computations.

    Examples
    --------
    >>> round(msssim_db(0.99), 6)
    20.0
    """
    return -10.0 * math.log10(max(1.0 - v, 1e-10)) if np.isfinite(v) else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# metrics (inverity.metrics, imported lazily; an unknown name is an error)


def _metric_functions(names: Sequence[str]) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    from .. import metrics as m

    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}
    for n in names:
        f = getattr(m, n, None) if n in m.__all__ else None
        if f is None:
            raise UnknownIdError(f"unknown metric {n!r}; available: {', '.join(sorted(m.__all__))}")
        fns[n] = f
    return fns


# ---------------------------------------------------------------------------------------------------------------
# one measurement


@dataclass
class _Codec:
    name: str
    qualities: tuple[int, ...]
    stages: dict[int, Any]
    version: str


def _build_codecs(codecs: Sequence[str], grids: Mapping[str, Sequence[int]], notes: list[str]) -> list[_Codec]:
    from ..stages.base import get_stage, stage_class

    out = []
    for c in codecs:
        try:
            cls = stage_class(c)
            stages = {int(q): get_stage(c, quality=int(q)) for q in grids[c]}
            version = str(cls.library_version())
        except Exception as exc:  # noqa: BLE001 - a stage still being written, or a missing model, is a note
            notes.append(f"codec {c} skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        out.append(_Codec(c, tuple(int(q) for q in grids[c]), stages, version))
    return out


def _score(fns: Mapping[str, Callable[[np.ndarray, np.ndarray], float]], ref: np.ndarray, rec: np.ndarray,
           suffix: str, row: dict[str, Any], notes: list[str]) -> None:
    for n, f in fns.items():
        try:
            v = float(f(ref, rec))
        except Exception as exc:  # noqa: BLE001 - e.g. MS-SSIM on an image too small for 5 scales
            msg = f"metric {n} failed on {row['image']} ({str(exc).splitlines()[0] if str(exc) else exc!r})"
            if msg not in notes:
                notes.append(msg)
            v = float("nan")
        row[n + suffix] = v


def _measure(stage: Any, px: np.ndarray) -> tuple[bytes, np.ndarray, float, float]:
    from ..image import Image

    img = Image(px)
    t0 = time.perf_counter()
    data = stage.encode(img)
    t1 = time.perf_counter()
    rec = stage.decode(data)
    t2 = time.perf_counter()
    out = np.asarray(rec.pixels)
    if out.shape != px.shape:
        if out.ndim == 3 and px.ndim == 3 and out.shape[:2] == px.shape[:2] and out.shape[2] > px.shape[2]:
            out = out[:, :, :px.shape[2]]
        else:
            raise ValueError(f"reconstruction shape {out.shape} differs from input {px.shape}")
    return data, out, t1 - t0, t2 - t1


# ---------------------------------------------------------------------------------------------------------------
# aggregation


def summarise(points: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean over images per (condition, codec, quality): bpp, every metric column, times; ``n`` images."""
    groups: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["condition"], p["codec"], int(p["quality"])), []).append(p)
    skip = {"condition", "corruption", "severity", "codec", "quality", "image", "bytes", "width", "height"}
    out = []
    for (cond, codec, q), rows in groups.items():
        s: dict[str, Any] = {"condition": cond, "corruption": rows[0]["corruption"],
                             "severity": rows[0]["severity"], "codec": codec, "quality": q, "n": len(rows)}
        for k in rows[0]:
            if k in skip:
                continue
            vals = np.array([float(r.get(k, float("nan"))) for r in rows], dtype=float)
            vals = vals[np.isfinite(vals)]
            s[k] = float(vals.mean()) if vals.size else float("nan")
        out.append(s)
    out.sort(key=lambda r: (r["condition"] != "clean", r["condition"], r["codec"], r["quality"]))
    return out


def _curve(summary: Sequence[Mapping[str, Any]], cond: str, codec: str, metric: str) -> tuple[list[float], list[float]]:
    rows = sorted((r for r in summary if r["condition"] == cond and r["codec"] == codec),
                  key=lambda r: r["bpp"])
    xs, ys = [], []
    for r in rows:
        v = r.get(metric, float("nan"))
        if metric.startswith("ms_ssim"):
            v = msssim_db(v)
        if np.isfinite(r["bpp"]) and np.isfinite(v):
            xs.append(float(r["bpp"]))
            ys.append(float(v))
    return xs, ys


def _bd(xa: Sequence[float], ya: Sequence[float], xt: Sequence[float], yt: Sequence[float]) -> tuple[float | None, float | None, str]:
    """(BD-rate %, BD-metric, note); None where the curves cannot be compared."""
    if len(xa) < 4 or len(xt) < 4:
        return None, None, "fewer than 4 points"
    for name, ys in (("anchor", ya), ("test", yt)):
        # Bjøntegaard assumes quality rises with rate; PSNR against the clean original of a noisy input falls
        # as the codec keeps more of the noise, and a cubic through such points gives nonsense (±10⁴ %)
        if np.any(np.diff(ys) < -MONOTONE_SLACK):
            return None, None, f"{name} curve is not monotone (quality falls as the rate rises)"
    overlap = min(max(ya), max(yt)) - max(min(ya), min(yt))
    if overlap < MIN_OVERLAP:
        return None, None, f"quality ranges overlap by {overlap:.2f} < {MIN_OVERLAP}"
    try:
        r = bd_rate(xa, ya, xt, yt)
    except ValueError as exc:
        return None, None, str(exc)
    try:
        d: float | None = bd_psnr(xa, ya, xt, yt)
    except ValueError:
        d = None
    if d is not None and ((r < -1 and d < -0.05) or (r > 1 and d > 0.05)):
        # fewer bits *and* lower quality (or the reverse) at once: the cubic fits of a saturating curve
        # disagree with each other, so neither number means anything
        return None, None, f"unreliable: BD-rate {r:+.1f}% and BD-PSNR {d:+.2f} dB disagree (saturating curve)"
    return r, d, ""


def bd_table(summary: Sequence[Mapping[str, Any]], *, anchor: str = ANCHOR,
             metrics: Sequence[str] = ("psnr", "ms_ssim", "ssimulacra2"),
             extra_curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]] | None = None
             ) -> list[dict[str, Any]]:
    """BD-rate (%) and BD-metric of every codec against ``anchor`` per condition and distortion column.

    Distortion columns are every ``metric`` and, for corrupted conditions, ``metric + "_input"``. MS-SSIM is
    compared in dB (:func:`msssim_db`). ``extra_curves[condition][label] = (bpp, psnr)`` adds published curves
    (e.g. the CompressAI anchors) to the PSNR comparison of that condition.
    """
    out: list[dict[str, Any]] = []
    conds = list(dict.fromkeys(r["condition"] for r in summary))
    for cond in conds:
        codecs = list(dict.fromkeys(r["codec"] for r in summary if r["condition"] == cond))
        if anchor not in codecs:
            continue
        cols = [m for m in metrics] + ([m + "_input" for m in metrics] if cond != "clean" else [])
        for col in cols:
            xa, ya = _curve(summary, cond, anchor, col)
            if not xa:
                continue
            tests: dict[str, tuple[list[float], list[float]]] = {
                c: _curve(summary, cond, c, col) for c in codecs if c != anchor}
            if col == "psnr" and extra_curves and cond in extra_curves:
                tests.update({k: (list(v[0]), list(v[1])) for k, v in extra_curves[cond].items()})
            for c, (xt, yt) in tests.items():
                if not xt:
                    continue
                r, d, note = _bd(xa, ya, xt, yt)
                out.append({"condition": cond, "distortion": col, "anchor": anchor, "codec": c,
                            "bd_rate": r, "bd_metric": d, "note": note})
    return out


def load_anchors(folder: str | os.PathLike[str], names: Sequence[str] | None = None
                 ) -> dict[str, dict[str, list[float]]]:
    """Published RD points (CompressAI result JSON files: ``{"name", "results": {"bpp", "psnr-rgb", ...}}``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: anchors folder not found")
    out = {}
    for f in sorted(folder.glob("*.json")):
        if names and f.stem not in names:
            continue
        try:
            d = json.loads(f.read_text())
            res = d["results"]
            label = d.get("name", f.stem) + (" (cpu)" if f.stem.endswith("_cpu") else "")
            out[label] = {"bpp": list(map(float, res["bpp"])), "psnr": list(map(float, res["psnr-rgb"])),
                          "ms_ssim": list(map(float, res.get("ms-ssim-rgb", [])))}
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{f}: not a CompressAI results file ({exc})") from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class RDResult:
    """What :func:`run_rd` measured (also written to ``OUT``)."""

    points: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    bd: list[dict[str, Any]]
    spectral: list[dict[str, Any]]
    notes: list[str]
    config: dict[str, Any]
    files: list[str] = field(default_factory=list)


def _conditions(corrupted: Path, corruptions: Sequence[str] | None, severities: Sequence[int] | None
                ) -> list[tuple[str, int]]:
    from .corruptions import CORRUPTIONS

    if not corrupted.is_dir():
        raise InputError(f"{corrupted}: corrupted dataset folder not found")
    names = list(corruptions) if corruptions else [n for n in CORRUPTIONS if (corrupted / n).is_dir()]
    sevs = [int(s) for s in severities] if severities else [1, 2, 3, 4, 5]
    conds = [(n, s) for n in names for s in sevs if (corrupted / n / str(s)).is_dir()]
    if not conds:
        raise InputError(f"{corrupted}: no <corruption>/<severity>/ folders found (write them with "
                         "'inverity bench corruptions')")
    return conds


def run_rd(data: str | os.PathLike[str], out: str | os.PathLike[str], *,
           codecs: Sequence[str] = DEFAULT_CODECS, qualities: Mapping[str, Sequence[int]] | None = None,
           limit: int | None = None, corrupted: str | os.PathLike[str] | None = None,
           corruptions: Sequence[str] | None = None, severities: Sequence[int] | None = None,
           corrupted_qualities: Mapping[str, Sequence[int]] | None = None, corrupted_limit: int | None = None,
           metrics: Sequence[str] = METRICS, corrupted_metrics: Sequence[str] | None = None,
           anchors: str | os.PathLike[str] | None = None, spectral: bool = True, spectral_bpp: float = 0.5,
           plots: bool = True, progress: Progress | None = None) -> RDResult:
    """Measure RD curves on ``data`` (and optionally its corrupted copies) and write the tables and figures.

    Parameters
    ----------
    data
        Folder of clean images (walked recursively).
    out
        Output folder (created).
    codecs, qualities
        Stage ids and their quality grids (default :data:`DEFAULT_QUALITIES`); a codec whose stage cannot be
        built (not registered yet, model missing) is skipped with a note.
    limit
        Use only the first ``limit`` images (sorted by name).
    corrupted, corruptions, severities
        A folder written by ``bench corruptions``; which corruptions/severities of it to use (default: all found).
    corrupted_qualities, corrupted_limit, corrupted_metrics
        Grids, image count and metrics for the corrupted conditions (default: as for clean data).
    anchors
        A folder of CompressAI result JSON files to overlay on the clean PSNR plot and to compare by BD-rate
        against the JPEG measured here (meaningful on Kodak only).
    spectral, spectral_bpp
        Accumulate error spectra; 2-D maps are kept for each codec's quality whose clean mean bpp is closest to
        ``spectral_bpp`` (radial profiles and band tables for every quality).
    progress
        ``progress(done, total, label)`` after each encode/decode.
    """
    root, out_p = Path(data), Path(out)
    notes: list[str] = []
    files = _data.list_images(root, limit)
    if not files:
        raise InputError(f"{root}: no images found")
    grids = dict(qualities) if qualities else {c: DEFAULT_QUALITIES.get(c, DEFAULT_QUALITIES["jpeg"]) for c in codecs}
    for c in codecs:
        grids.setdefault(c, DEFAULT_QUALITIES.get(c, DEFAULT_QUALITIES["jpeg"]))
    built = _build_codecs(codecs, grids, notes)
    if not built:
        raise InputError("no codec could be built: " + "; ".join(notes))
    fns = _metric_functions(metrics)
    cfns = _metric_functions(corrupted_metrics, []) if corrupted_metrics is not None else fns
    conds = _conditions(Path(corrupted), corruptions, severities) if corrupted else []
    cgrids = {c.name: tuple(int(q) for q in (corrupted_qualities or {}).get(c.name, c.qualities)) for c in built}
    cfiles = files[:corrupted_limit] if corrupted_limit else files
    total = len(files) * sum(len(c.qualities) for c in built) + \
        len(conds) * len(cfiles) * sum(len(cgrids[c.name]) for c in built)
    run = _Run(notes, total, progress, spectral)

    clean_px = _run_clean(run, files, root, built, fns)
    spectral_q = _spectral_qualities(summarise(run.points), built, spectral_bpp)
    if corrupted and conds:
        _run_corrupted(run, conds, cfiles, root, Path(corrupted), built, cgrids, clean_px, cfns, spectral_q)

    summary = summarise(run.points)
    anchor_curves = load_anchors(anchors) if anchors else {}
    extra = {"clean": {f"anchor:{k}": (v["bpp"], v["psnr"]) for k, v in anchor_curves.items()}} if anchor_curves else None
    metric_names = list(fns)
    bd = bd_table(summary, metrics=metric_names, extra_curves=extra)
    spec_rows = _spectral_rows(run.acc, summary, spectral_q) if spectral else []
    config = {
        "data": str(root), "images": len(files), "codecs": {c.name: {"qualities": list(c.qualities),
                                                                     "library": c.version} for c in built},
        "corrupted": str(corrupted) if corrupted else None, "conditions": [f"{n}/{s}" for n, s in conds],
        "corrupted_images": len(cfiles) if conds else 0,
        "corrupted_qualities": {k: list(v) for k, v in cgrids.items()} if conds else {},
        "metrics": metric_names, "spectral_quality": spectral_q, "spectral_bpp": spectral_bpp,
        "anchors": str(anchors) if anchors else None, "machine": f"{platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} CPU(s), Python {platform.python_version()}", "date": time.strftime("%Y-%m-%d"),
    }
    res = RDResult(run.points, summary, bd, spec_rows, notes, config)
    _write(res, out_p, run.acc, anchor_curves, spectral_q, plots)
    return res


@dataclass
class _Run:
    """What one :func:`run_rd` accumulates: the measured rows, notes, error spectra and progress."""

    notes: list[str]
    total: int
    progress: Progress | None
    spectral: bool
    acc: SpectrumAccumulator = field(default_factory=SpectrumAccumulator)
    points: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0

    def tick(self, label: str) -> None:
        """Count one encode/decode (measured or skipped) and report progress."""
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, label)

    def run_one(self, codec: _Codec, q: int, px: np.ndarray, key: str, cond: str, corruption: str, severity: int,
                clean: np.ndarray | None, mfns: Mapping[str, Callable[..., float]], keep_map: bool) -> None:
        """Encode/decode ``px`` with ``codec`` at ``q`` and add its row (metrics against ``clean`` if given, and
        against the input); a stage that refuses the image adds a note instead."""
        row: dict[str, Any] = {"condition": cond, "corruption": corruption, "severity": severity, "image": key,
                               "codec": codec.name, "quality": q, "width": px.shape[1], "height": px.shape[0]}
        try:
            data_b, rec, te, td = _measure(codec.stages[q], px)
        except Exception as exc:  # noqa: BLE001 - a refusal (e.g. alpha, 16-bit) is a note, not a crash
            msg = f"{codec.name} q{q} failed on {key}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            self.notes.append(msg)
            return
        row.update({"bytes": len(data_b), "bpp": 8.0 * len(data_b) / (px.shape[0] * px.shape[1]),
                    "enc_ms": te * 1e3, "dec_ms": td * 1e3})
        _score(mfns, clean if clean is not None else px, rec, "", row, self.notes)
        if clean is not None:
            _score(mfns, px, rec, "_input", row, self.notes)
        if self.spectral:
            self.acc.add((cond, codec.name, q), px, rec, keep_map=keep_map)
        self.points.append(row)


def _run_clean(run: _Run, files: Sequence[Path], root: Path, built: Sequence[_Codec],
               fns: Mapping[str, Callable[..., float]]) -> dict[str, np.ndarray]:
    """Every codec and quality on every clean image; returns the clean pixels by image key."""
    clean_px: dict[str, np.ndarray] = {}
    for f in files:
        key = _data.image_key(f, root)
        px = _data.read_pixels(f)
        clean_px[key] = px
        for codec in built:
            for q in codec.qualities:
                run.run_one(codec, q, px, key, "clean", "", 0, None, fns, True)
                run.tick(f"clean {codec.name} q{q} {key}")
    return clean_px


def _spectral_qualities(summary: Sequence[Mapping[str, Any]], built: Sequence[_Codec],
                        spectral_bpp: float) -> dict[str, int]:
    """Per codec, the quality whose clean mean bpp is closest to ``spectral_bpp`` (its 2-D maps are kept)."""
    spectral_q: dict[str, int] = {}
    for codec in built:
        rows = [r for r in summary if r["condition"] == "clean" and r["codec"] == codec.name]
        if rows:
            spectral_q[codec.name] = int(min(rows, key=lambda r: abs(r["bpp"] - spectral_bpp))["quality"])
    return spectral_q


def _run_corrupted(run: _Run, conds: Sequence[tuple[str, int]], cfiles: Sequence[Path], root: Path,
                   corrupted: Path, built: Sequence[_Codec], cgrids: Mapping[str, Sequence[int]],
                   clean_px: Mapping[str, np.ndarray], cfns: Mapping[str, Callable[..., float]],
                   spectral_q: Mapping[str, int]) -> None:
    """Every codec on every corrupted copy, scored against the clean original (and against its input)."""
    for corruption, sev in conds:
        cond = f"{corruption}/{sev}"
        for f in cfiles:
            key = _data.image_key(f, root)
            cpath = _data.corrupted_path(corrupted, corruption, sev, key)
            if not cpath.exists():
                msg = f"{cond}: {cpath.name} missing; skipped"
                run.notes.append(msg)
                for codec in built:
                    for _ in cgrids[codec.name]:
                        run.tick(cond)
                continue
            cpx = _data.read_pixels(cpath)
            clean = clean_px[key]
            if cpx.shape != clean.shape:
                run.notes.append(f"{cond}: {key} has shape {cpx.shape}, clean {clean.shape}; skipped")
                continue
            if run.spectral:
                run.acc.add((cond, "input", 0), clean, cpx, keep_map=True)
            for codec in built:
                for q in cgrids[codec.name]:
                    run.run_one(codec, q, cpx, key, cond, corruption, sev, clean, cfns,
                                keep_map=q == spectral_q.get(codec.name))
                    run.tick(f"{cond} {codec.name} q{q} {key}")


def _spectral_rows(acc: SpectrumAccumulator, summary: Sequence[Mapping[str, Any]],
                   spectral_q: Mapping[str, int]) -> list[dict[str, Any]]:
    by_key = {(r["condition"], r["codec"], int(r["quality"])): r for r in summary}
    rows = []
    for key in acc.keys():
        assert isinstance(key, tuple)
        cond, codec, q = key
        s = by_key.get((cond, codec, q), {})
        row: dict[str, Any] = {"condition": cond, "codec": codec, "quality": q,
                               "spectral_quality": codec == "input" or spectral_q.get(codec) == q,
                               "n": acc.count(key), "bpp": s.get("bpp", float("nan")),
                               "psnr": s.get("psnr", float("nan")), "psnr_input": s.get("psnr_input", float("nan"))}
        for b, v in acc.band_share(key).items():
            row[f"share_{b}"] = v
        for b, v in acc.band_rms(key).items():
            row[f"rms_{b}"] = v
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# writing


def _write(res: RDResult, out: Path, acc: SpectrumAccumulator, anchors: Mapping[str, Mapping[str, list[float]]],
           spectral_q: Mapping[str, int], plots: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, rows in (("points.csv", res.points), ("summary.csv", res.summary), ("bd.csv", res.bd),
                       ("spectral_bands.csv", res.spectral)):
        if rows:
            files.append(str(atomic_write_text(out / name, to_csv(rows))))
    if plots:
        files += [str(p) for p in _plots(res, out, acc, anchors, spectral_q)]
    res.files = [os.path.relpath(f, out) for f in files] + ["rd.md", "rd.json"]
    atomic_write_text(out / "rd.md", render_markdown(res))
    atomic_write_text(out / "rd.json", json.dumps(json_safe({
        "config": res.config, "notes": res.notes, "summary": res.summary, "bd": res.bd, "spectral": res.spectral,
        "points": res.points, "files": res.files}), indent=1))


def _plots(res: RDResult, out: Path, acc: SpectrumAccumulator, anchors: Mapping[str, Mapping[str, list[float]]],
           spectral_q: Mapping[str, int]) -> list[Path]:
    from . import plots as pl
    from .spectral import radial_frequencies

    written: list[Path] = []
    codecs = list(res.config["codecs"])
    labels = {"psnr": "PSNR (dB, RGB)", "ms_ssim": "MS-SSIM (dB: −10·log10(1 − MS-SSIM))",
              "ssimulacra2": "SSIMULACRA 2"}
    n = res.config["images"]
    for m in res.config["metrics"]:
        curves = {c: _curve(res.summary, "clean", c, m) for c in codecs}
        curves = {k: v for k, v in curves.items() if v[0]}
        if not curves:
            continue
        anc = None
        if anchors and m in ("psnr", "ms_ssim"):
            anc = {}
            for k, v in anchors.items():
                ys = v["psnr"] if m == "psnr" else [msssim_db(x) for x in v.get("ms_ssim", [])]
                if len(ys) == len(v["bpp"]):
                    anc[k] = (v["bpp"], ys)
        xmax = max(max(x) for x, _ in curves.values())
        written.append(pl.plot_rd(curves, out / f"rd_clean_{m}.png", anchors=anc, ylabel=labels.get(m, m),
                                  title=f"{Path(res.config['data']).name}: clean, mean of {n} images",
                                  xlim=(0, xmax * 1.05)))
    conds = res.config["conditions"]
    if conds:
        corr = list(dict.fromkeys(c.split("/")[0] for c in conds))
        for ref, suffix in (("clean original", "psnr"), ("corrupted input", "psnr_input")):
            for cname in corr:
                panels = {}
                for cond in [c for c in conds if c.startswith(cname + "/")]:
                    cur = {c: _curve(res.summary, cond, c, suffix) for c in codecs}
                    panels[f"severity {cond.split('/')[1]}"] = {k: v for k, v in cur.items() if v[0]}
                if any(panels.values()):
                    written.append(pl.plot_rd_panels(panels, out / f"rd_{cname}_{suffix}.png",
                                                     title=f"{cname}: PSNR against the {ref}"))
        # BD-rate matrix per (corruption/severity) × codec, against JPEG, both references
        for dist in ("psnr", "psnr_input"):
            rows_l = ["clean"] + conds if dist == "psnr" else conds
            cols = [c for c in codecs if c != ANCHOR]
            if not cols:
                continue
            mat = np.full((len(rows_l), len(cols)), np.nan)
            for r in res.bd:
                col_name = r["distortion"] if r["condition"] != "clean" else "psnr"
                if col_name == dist and r["condition"] in rows_l and r["codec"] in cols and r["bd_rate"] is not None:
                    mat[rows_l.index(r["condition"]), cols.index(r["codec"])] = r["bd_rate"]
            if np.isfinite(mat).any():
                ref = "clean original" if dist == "psnr" else "corrupted input"
                written.append(pl.plot_matrix(mat, rows_l, cols, out / f"bd_matrix_{dist}.png",
                                              title=f"BD-rate vs JPEG (%), PSNR against the {ref}",
                                              label="BD-rate % (negative = fewer bits)"))
    # spectra
    maps = {f"{c} q{spectral_q[c]}": acc.mean_map(("clean", c, spectral_q[c]))
            for c in codecs if c in spectral_q and acc.has_map(("clean", c, spectral_q[c]))}
    if maps:
        written.append(pl.plot_spectrum_maps(maps, out / "spectrum_clean.png",
                                             title=f"mean error spectrum, clean, ≈{res.config['spectral_bpp']} bpp"))
        freqs = radial_frequencies()
        prof = {k: acc.radial_rms(("clean", k.split(" q")[0], int(k.split(" q")[1]))) for k in maps}
        written.append(pl.plot_radial(prof, freqs, out / "radial_clean.png",
                                      title=f"radial error spectrum, clean, ≈{res.config['spectral_bpp']} bpp"))
    if conds:
        # one figure per corruption: rows = severities; columns = the corruption itself, then each codec
        corr = list(dict.fromkeys(c.split("/")[0] for c in conds))
        for cname in corr:
            cmaps: dict[str, np.ndarray] = {}
            for cond in [c for c in conds if c.startswith(cname + "/")]:
                sev = cond.split("/")[1]
                if acc.has_map((cond, "input", 0)):
                    cmaps[f"s{sev} corruption"] = acc.mean_map((cond, "input", 0))
                for c in codecs:
                    mk = (cond, c, spectral_q.get(c, -1))
                    if acc.has_map(mk):
                        cmaps[f"s{sev} {c}"] = acc.mean_map(mk)
            if cmaps:
                written.append(pl.plot_spectrum_maps(cmaps, out / f"spectrum_{cname}.png", cols=len(codecs) + 1,
                                                     title=f"{cname}: error spectra (corruption: corrupted − clean;"
                                                           f" codecs: x̂ − corrupted input)"))
    return written


def _find(rows: Iterable[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    """The first row whose fields equal ``match``."""
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def render_markdown(res: RDResult) -> str:
    """The human-readable summary of a run (``rd.md``)."""
    cfg = res.config
    L: list[str] = [f"# Rate–distortion: {Path(cfg['data']).name}", ""]
    L.append(f"{cfg['images']} images from `{cfg['data']}`; {cfg['date']}; {cfg['machine']}. "
             "Curves are means over images per quality setting; bpp from the real stream size "
             "(pixels only, no metadata). PSNR over RGB, peak 255. BD-rate: cubic Bjøntegaard fit of log-rate "
             "over quality on the overlapping range, against JPEG (negative = fewer bits for the same quality); "
             "MS-SSIM compared in dB (−10·log10(1 − MS-SSIM)).")
    L.append("")
    L.append(md_table(["codec", "library", "qualities"],
                      [[c, v["library"], ", ".join(map(str, v["qualities"]))] for c, v in cfg["codecs"].items()]))
    L += ["", "## Clean images", ""]
    ms = cfg["metrics"]
    hdr = ["codec", "quality", "bpp"] + [m for m in ms] + ["encode ms", "decode ms"]
    rows = []
    for r in res.summary:
        if r["condition"] != "clean":
            continue
        rows.append([r["codec"], r["quality"], fmt(r.get("bpp"), 3)] +
                    [fmt(r.get(m), 4 if m == "ms_ssim" else 2) for m in ms] +
                    [fmt(r.get("enc_ms"), 0), fmt(r.get("dec_ms"), 0)])
    L.append(md_table(hdr, rows))
    L += ["", "### BD-rate against JPEG (clean)", ""]
    cods = list(dict.fromkeys(r["codec"] for r in res.bd if r["condition"] == "clean"))
    bd_rows = []
    for c in cods:
        cells = [c]
        for m in ms:
            hit = _find(res.bd, condition="clean", codec=c, distortion=m)
            cells.append(fmt(hit["bd_rate"], 1) + " %" if hit and hit["bd_rate"] is not None else "n/a")
            if m == "psnr":
                cells.append(fmt(hit["bd_metric"], 2) + " dB" if hit and hit["bd_metric"] is not None else "n/a")
        bd_rows.append(cells)
    hdr_bd = ["codec"] + sum(([f"BD-rate ({m})", "BD-PSNR"] if m == "psnr" else [f"BD-rate ({m})"] for m in ms), [])
    L.append(md_table(hdr_bd, bd_rows))
    if cfg.get("anchors"):
        L += ["", "Rows `anchor:*` are CompressAI's published Kodak curves (`"
              f"{cfg['anchors']}`) compared with the JPEG measured here — meaningful only when the data is Kodak.", ""]
    conds = cfg["conditions"]
    if conds:
        L += ["", "## Corrupted images", "",
              f"{cfg['corrupted_images']} images per condition from `{cfg['corrupted']}`; qualities "
              + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in cfg["corrupted_qualities"].items()) + ".",
              "BD-rate against JPEG with PSNR measured against the clean original (the paper's measure) and "
              "against the corrupted input (fidelity to what the codec was given). `n/a`: the curves overlap by "
              f"less than {MIN_OVERLAP} dB, one is not monotone (PSNR against the clean original saturates, "
              "or falls with rate as a codec keeps more of the noise), or BD-rate and BD-PSNR disagree in sign "
              "(a saturating curve the cubic fits cannot follow); see the RD figures and `bd.csv` notes.",
              ""]
        codecs = [c for c in cfg["codecs"] if c != ANCHOR]
        for dist, ref in (("psnr", "clean original"), ("psnr_input", "corrupted input")):
            L += [f"### BD-rate vs JPEG, PSNR against the {ref}", ""]
            rows = []
            for cond in conds:
                cells = [cond]
                for c in codecs:
                    hit = _find(res.bd, condition=cond, codec=c, distortion=dist)
                    cells.append(fmt(hit["bd_rate"], 1) if hit and hit["bd_rate"] is not None else "n/a")
                rows.append(cells)
            L += [md_table(["condition"] + codecs, rows), ""]
        L += ["### Mean PSNR at each codec's middle quality", ""]
        rows = []
        for cond in conds:
            for c in cfg["codecs"]:
                qs = cfg["corrupted_qualities"].get(c, [])
                if not qs:
                    continue
                q = qs[len(qs) // 2]
                hit = _find(res.summary, condition=cond, codec=c, quality=q)
                if hit:
                    rows.append([cond, c, q, fmt(hit.get("bpp"), 3), fmt(hit.get("psnr")),
                                 fmt(hit.get("psnr_input"))])
        L += [md_table(["condition", "codec", "quality", "bpp", "PSNR vs clean", "PSNR vs input"], rows), ""]
    if res.spectral:
        L += ["", "## Error spectra", "",
              "Share of the error energy |FFT(x̂ − x)|² in radial bands (low < 1/8, mid < 1/4, high ≥ 1/4 "
              "cycles/pixel) and the RMS error each band carries (8-bit levels; squares add up to the MSE), at "
              f"each codec's quality nearest {cfg['spectral_bpp']} bpp on clean data "
              f"({', '.join(f'{k} q{v}' for k, v in cfg['spectral_quality'].items())}). For corrupted conditions "
              "x is the corrupted input; the `input` rows are the corruption itself (corrupted − clean). White "
              "noise would give 5 / 15 / 80 %.", ""]
        rows = []
        for r in res.spectral:
            if not r["spectral_quality"]:
                continue
            rows.append([r["condition"], r["codec"], r["quality"] if r["codec"] != "input" else "",
                         fmt(r.get("bpp"), 3)] +
                        [fmt(100 * r[f"share_{b}"], 1) for b, _, _ in BANDS] +
                        [fmt(r[f"rms_{b}"], 2) for b, _, _ in BANDS])
        L.append(md_table(["condition", "codec", "q", "bpp", "low %", "mid %", "high %", "rms low", "rms mid",
                           "rms high"], rows))
    figs = [f for f in res.files if f.endswith(".png")]
    if figs:
        L += ["", "## Figures", ""] + [f"- [{f}]({f})" for f in figs]
    if res.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in dict.fromkeys(res.notes)][:60]
        if len(set(res.notes)) > 60:
            L.append(f"- … and {len(set(res.notes)) - 60} more (see rd.json)")
    return "\n".join(L) + "\n"
