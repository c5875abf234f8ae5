"""Build the audit page: records → per-asset views (images written beside the page) → one HTML file.

The page must stand alone (an auditor may open it from a copied folder, offline): no external resources, CSS and
JS inline, every image a PNG file next to ``index.html``. Every string from a record goes through Jinja2's
autoescape, and no record data is ever placed inside ``<script>``.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

import numpy as np

from .._atomic import atomic_write_bytes, atomic_write_text
from ..errors import InputError, InverityError
from ..image import Image
from . import _maps

__all__ = ["build_report", "load_catalog_records", "read_records_file", "resolve_input", "resolve_output",
           "verdict_of", "ASSETS_DIR"]

#: the folder, next to the page, that holds its images
ASSETS_DIR = "assets"
#: largest side of the 1:1 worst-tile crops
CROP_MAX = 256
ERROR_CMAP = "inferno"
SPECTRUM_CMAP = "magma"


# -- reading records ---------------------------------------------------------------------------------------------
def load_catalog_records(outdir: Path) -> list[dict[str, Any]]:
    """The decision records of ``outdir/inverity.sqlite`` (opened read-only), in catalog order."""
    from ..catalog import CATALOG_NAME, Catalog

    path = outdir / CATALOG_NAME
    if not path.is_file():
        raise InputError(f"{outdir}: no catalog {CATALOG_NAME} (run 'inverity compress ... -o {outdir}' first)")
    cat = Catalog(path, readonly=True)
    try:
        return [dict(r) for r in cat.records()]
    finally:
        cat.close()


def read_records_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Decision records from a file: JSON Lines (``inverity compress --json`` output) or one JSON list.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"input": "a.png"}\\n\\n{"input": "b.png"}\\n')
    >>> [r["input"] for r in read_records_file(p)]
    ['a.png', 'b.png']
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot read records ({exc.strerror or exc})") from None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not JSON Lines or a JSON list of decision records ({exc.msg}, line {exc.lineno})") \
            from None
    if not all(isinstance(r, dict) for r in records):
        raise InputError(f"{p}: every record must be a JSON object")
    return records


# -- paths -------------------------------------------------------------------------------------------------------
def _first_file(candidates: Iterable[Path]) -> Path | None:
    seen: set[Path] = set()
    for c in candidates:
        if c in seen:
            continue
        seen.add(c)
        try:
            if c.is_file():
                return c
        except OSError:  # e.g. a name too long for the file system
            continue
    return None


def resolve_input(record: Mapping[str, Any], outdir: Path, roots: Iterable[Path] = ()) -> Path | None:
    """Find the original of a record, or ``None``.

    The pipeline stores ``input`` relative to the directory it walked, and a record may also carry an absolute
    ``input_path`` or a ``root``. Tried in order: an absolute path as it is; then ``input`` under each given root,
    the record's ``root``, the current directory and the output directory's parent. Never a file inside the
    output directory itself: an output often has its input's very name (``a.png`` → ``OUTDIR/a.png``), and
    comparing an output with itself would certify anything.
    """
    names = [record.get(k) for k in ("input_path", "source", "input")]
    bases = [Path(r) for r in roots] + ([Path(record["root"])] if record.get("root") else []) + \
        [Path.cwd(), outdir.parent]
    out_real = outdir.resolve()
    output = resolve_output(record, outdir)
    output_real = output.resolve() if output is not None else None
    cands: list[Path] = []
    for n in names:
        if not n:
            continue
        p = Path(str(n)).expanduser()
        cands.extend([p] if p.is_absolute() else [b / p for b in bases])
    for c in cands:
        found = _first_file([c])
        if found is None:
            continue
        real = found.resolve()
        if real == output_real or out_real in real.parents:
            continue
        return found
    return None


def resolve_output(record: Mapping[str, Any], outdir: Path) -> Path | None:
    """Find the output file of a record: ``output_rel`` under ``outdir``, else ``output`` (absolute, relative to
    the current directory, to ``outdir`` or to its parent)."""
    cands: list[Path] = []
    if record.get("output_rel"):
        cands.append(outdir / str(record["output_rel"]))
    if record.get("output"):
        p = Path(str(record["output"])).expanduser()
        cands.extend([p] if p.is_absolute() else [Path.cwd() / p, outdir / p, outdir.parent / p])
    return _first_file(cands)


# -- reading images ----------------------------------------------------------------------------------------------
def _read_image(path: Path) -> Image:
    """An original or an output, through :func:`inverity.image.load` like every other reader (``.inv`` too)."""
    from ..image import load

    return load(path)


def _try_read(path: Path | None, what: str) -> tuple[Image | None, str | None]:
    if path is None:
        return None, None
    try:
        return _read_image(path), None
    except (InverityError, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"the {what} {path.name} could not be decoded: {msg}"
    except Exception as exc:  # noqa: BLE001 - a codec bug must show on the page, not abort the whole report
        return None, f"the {what} {path.name} could not be decoded: {type(exc).__name__}: {exc}"


# -- verdicts and summaries --------------------------------------------------------------------------------------
def _chosen(attempts: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The attempt whose output was written: flagged ``chosen`` by the pipeline, else the last one."""
    return next((a for a in attempts if a.get("chosen")), attempts[-1] if attempts else None)


def _rejections(attempts: list[Mapping[str, Any]], chosen: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """Failed attempts of *other* stages (fallbacks). Failed quality probes of the chosen stage are steps of
    its quality search, not rejections."""
    stage = chosen.get("stage") if chosen is not None else None
    return [a for a in attempts if a.get("passed") is False and (stage is None or a.get("stage") != stage)]


def verdict_of(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(css class, label)`` of a record: failed, lossless, verified, unverified.

    Examples
    --------
    >>> verdict_of({"status": "failed", "error": "x"})
    ('failed', 'failed')
    >>> verdict_of({"attempts": [{"stage": "learned", "passed": False}, {"stage": "jpeg", "passed": True}],
    ...             "checks": {"lossless": False}})
    ('verified', 'verified after 1 rejected attempt')
    >>> verdict_of({"attempts": [{"stage": "avif", "quality": 60, "passed": True, "chosen": True},
    ...                          {"stage": "avif", "quality": 55, "passed": False}], "checks": {}})
    ('verified', 'verified')
    >>> verdict_of({"attempts": [{"passed": True}], "checks": {"lossless": True}})
    ('lossless', 'bit-exact')
    """
    if record.get("status") == "failed" or record.get("error"):
        return "failed", "failed"
    attempts = [a for a in record.get("attempts") or [] if isinstance(a, Mapping)]
    chosen = _chosen(attempts)
    if chosen is not None and not chosen.get("passed", True):
        return "unverified", "not verified"
    rejected = len(_rejections(attempts, chosen))
    extra = f" after {rejected} rejected attempt{'s' if rejected != 1 else ''}" if rejected else ""
    if (record.get("checks") or {}).get("lossless") is True:
        return "lossless", "bit-exact" + extra
    if not attempts:
        return "unverified", "no verification recorded"
    return "verified", "verified" + extra


def _attempt_label(a: Mapping[str, Any]) -> str:
    q = a.get("quality")
    return f"{a.get('stage', '?')}" + (f" q{q}" if q is not None else "")


def main_reasons(record: Mapping[str, Any], limit: int = 3) -> list[str]:
    """The few lines that explain a record in the summary table: the error, then rejected stages, then why
    the chosen stage and quality were accepted."""
    out: list[str] = []
    if record.get("error"):
        out.append(str(record["error"]))
    attempts = [a for a in record.get("attempts") or [] if isinstance(a, Mapping)]
    chosen = _chosen(attempts)
    for a in _rejections(attempts, chosen):
        why = "; ".join(str(r) for r in (a.get("reasons") or [])[:2]) or "failed"
        out.append(f"{_attempt_label(a)} rejected: {why}")
    if chosen is not None and chosen.get("passed") and chosen.get("reasons"):
        out.append(f"{_attempt_label(chosen)}: {chosen['reasons'][0]}")
    out.extend(str(r) for r in record.get("reasons") or [] if " rejected: " not in str(r))
    # the same line can reach us twice (a rejected attempt is also summarised in the record's reasons)
    return list(dict.fromkeys(out))[:limit]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if math.isnan(v):
            return "n/a"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    if v is None:
        return "—"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _human_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _slug(i: int, name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip("-.")[:40] or "asset"
    return f"a{i:03d}-{stem}"


def _record_tile(checks: Mapping[str, Any]) -> _maps.Tile | None:
    """The worst tile as the verifier recorded it, if it did: a dict with x, y and w/h (or width/height, or
    x0, y0, x1, y1), or a 4-list ``[x, y, w, h]``, under ``worst_tile``, ``worst_tile_box`` or
    ``worst_tile_xywh``."""
    psnr = checks.get("worst_tile_psnr")
    psnr = float(psnr) if isinstance(psnr, (int, float)) and not isinstance(psnr, bool) else None
    for key in ("worst_tile", "worst_tile_box", "worst_tile_xywh"):
        t = checks.get(key)
        try:
            if isinstance(t, Mapping):
                if {"x0", "y0", "x1", "y1"} <= t.keys():
                    x, y = int(t["x0"]), int(t["y0"])
                    return _maps.Tile(x, y, int(t["x1"]) - x, int(t["y1"]) - y, psnr, "record")
                w, h = t.get("w", t.get("width")), t.get("h", t.get("height"))
                if w is not None and h is not None:
                    return _maps.Tile(int(t["x"]), int(t["y"]), int(w), int(h),
                                      float(t["psnr"]) if isinstance(t.get("psnr"), (int, float)) else psnr, "record")
            elif isinstance(t, (list, tuple)) and len(t) == 4:
                x, y, w, h = (int(v) for v in t)
                return _maps.Tile(x, y, w, h, psnr, "record")
        except (KeyError, TypeError, ValueError):
            continue
    return None


# -- per-asset view ----------------------------------------------------------------------------------------------
@dataclass
class AssetView:
    """Everything the template shows for one asset (strings are escaped by the template, never here)."""

    index: int
    slug: str
    record: dict[str, Any]
    label: str
    verdict_class: str
    verdict: str
    kind: str
    ood: bool
    policy: str
    stage: str
    quality: str
    bytes_h: str
    ratio: str
    bpp: str
    reasons: list[str]
    input_path: str | None = None
    output_path: str | None = None
    output_href: str | None = None
    width: int | None = None
    height: int | None = None
    preview_w: int | None = None
    preview_h: int | None = None
    original_src: str | None = None
    recon_src: str | None = None
    error_src: str | None = None
    spectrum_src: str | None = None
    crop_srcs: dict[str, str] = field(default_factory=dict)
    crop_w: int = 0
    crop_h: int = 0
    error_vmax: str = ""
    error_max: str = ""
    spectrum_caption: str = ""
    tile: _maps.Tile | None = None
    tile_pct: dict[str, str] = field(default_factory=dict)
    side_by_side: bool = False  # original and reconstruction cannot be overlaid (different sizes)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)
    all_reasons: list[str] = field(default_factory=list)
    record_json: str = ""

    @property
    def tile_psnr(self) -> str:
        p = None if self.tile is None else self.tile.psnr
        return "" if p is None else ("∞ (identical)" if math.isinf(p) else f"{p:.2f} dB")

    @property
    def tile_data(self) -> str:
        t = self.tile
        return "" if t is None else f"{t.x},{t.y},{t.w},{t.h}"


def _png(pixels: np.ndarray) -> bytes:
    import imagecodecs

    arr = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(arr), level=6))


class _Writer:
    """Writes the page's images (atomically) under ``assets/`` and hands back their relative URLs."""

    def __init__(self, page_dir: Path) -> None:
        self.page_dir = page_dir
        self.written: list[Path] = []

    def png(self, name: str, pixels: np.ndarray) -> str:
        rel = f"{ASSETS_DIR}/{name}.png"
        self.written.append(atomic_write_bytes(self.page_dir / rel, _png(pixels)))
        return rel


def _comparable(orig: Image, recon: Image) -> tuple[np.ndarray | None, list[str]]:
    """The reconstruction's pixels in the original's code values and channels, or ``None`` with the reason."""
    notes: list[str] = []
    o, r = orig.pixels, recon.pixels
    if o.shape[:2] != r.shape[:2]:
        return None, [f"the reconstruction is {r.shape[1]}×{r.shape[0]} but the original is {o.shape[1]}×{o.shape[0]}:"
                      " no pixel-by-pixel comparison is possible"]
    if r.shape[2] != o.shape[2]:
        oc, rc = o.shape[2] - (o.shape[2] in (2, 4)), r.shape[2] - (r.shape[2] in (2, 4))
        notes.append(f"channels differ (original {orig.colour}, reconstruction {recon.colour}); colour channels compared")
        if rc == oc:
            r = r[..., :rc]
        elif rc == 1 and oc == 3:
            r = np.repeat(r[..., :1], 3, axis=2)
        elif rc == 3 and oc == 1:
            r = r[..., :3].astype(np.float32).mean(axis=2, keepdims=True).round().astype(r.dtype)
        else:
            return None, notes + ["cannot match the channels"]
        if o.shape[2] != r.shape[2]:  # the original has alpha the reconstruction lacks: compare colour only
            o = o[..., :oc]
    if r.dtype != o.dtype or recon.max_value != orig.max_value:
        notes.append(f"bit depths differ (original {orig.bit_depth}-bit, reconstruction {recon.bit_depth}-bit); "
                     "the reconstruction is rescaled for comparison")
        r = np.clip(np.round(r.astype(np.float64) * (orig.max_value / recon.max_value)), 0,
                    np.iinfo(o.dtype).max).astype(o.dtype)
    # the comparison keeps the original's channel count where it was reduced above
    if o.shape[2] != orig.pixels.shape[2]:
        return np.concatenate([r, orig.pixels[..., o.shape[2]:]], axis=2), notes
    return r, notes


def _asset_view(i: int, record: dict[str, Any], outdir: Path, page_dir: Path, roots: list[Path],
                writer: _Writer) -> AssetView:
    prof = record.get("profile") or {}
    checks = record.get("checks") or {}
    vclass, vlabel = verdict_of(record)
    kind = str(prof.get("kind") or "—")
    if isinstance(prof.get("kind_confidence"), (int, float)):
        kind += f" ({prof['kind_confidence']:.2f})"
    label = str(record.get("input") or record.get("input_path") or f"asset {i}")
    slug = _slug(i, label)
    policy = str(record.get("policy") or "—")
    if record.get("policy_resolved") and record.get("policy_resolved") != record.get("policy"):
        policy += f" → {record['policy_resolved']}"
    view = AssetView(
        index=i, slug=slug, record=record, label=label, verdict_class=vclass, verdict=vlabel, kind=kind,
        ood=prof.get("in_distribution") is False, policy=policy, stage=str(record.get("stage") or "—"),
        quality=_fmt(record.get("quality")), bytes_h=_human_bytes(record.get("bytes")), ratio="—", bpp="—",
        reasons=main_reasons(record),
        attempts=[dict(a) for a in record.get("attempts") or [] if isinstance(a, Mapping)],
        checks=[(str(k), _fmt(v)) for k, v in checks.items()],
        all_reasons=[str(r) for r in record.get("reasons") or []],
        record_json=json.dumps(record, indent=2, default=str, ensure_ascii=False),
    )
    if record.get("error"):
        view.problems.append(str(record["error"]))

    in_path = resolve_input(record, outdir, roots)
    out_path = resolve_output(record, outdir) if vclass != "failed" or record.get("output") else None
    view.input_path = str(in_path) if in_path else None
    if out_path is not None:
        view.output_path = str(out_path)
        # percent-encoded: a file name may hold '#', '?' or '%', which would otherwise change the link
        view.output_href = quote(Path(os.path.relpath(out_path.resolve(), page_dir.resolve())).as_posix())
    elif record.get("output"):
        view.problems.append(f"the output {record['output']} was not found")
    if in_path is None:
        view.notes.append(f"original not found ({label}); pass the input directory with --root to show it")

    orig, err_o = _try_read(in_path, "original")
    recon, err_r = _try_read(out_path, "output")
    view.problems.extend(e for e in (err_o, err_r) if e)

    in_bytes = record.get("input_bytes")
    if not isinstance(in_bytes, int) and in_path is not None:
        in_bytes = in_path.stat().st_size
    out_bytes = record.get("bytes")
    if not isinstance(out_bytes, int) and out_path is not None:
        out_bytes = out_path.stat().st_size
    if isinstance(in_bytes, int) and isinstance(out_bytes, int) and out_bytes > 0:
        view.ratio = f"{in_bytes / out_bytes:.2f}×"
    ref = orig or recon
    h = record.get("height") or (ref.height if ref is not None else None)
    w = record.get("width") or (ref.width if ref is not None else None)
    if isinstance(out_bytes, int) and h and w:
        view.bpp = f"{8 * out_bytes / (int(h) * int(w)):.3g}"
    if ref is None:
        return view

    view.width, view.height = ref.width, ref.height
    size = _maps.preview_size(ref.height, ref.width)
    view.preview_h, view.preview_w = size
    tone = _maps.tone_map_for(ref.pixels, ref.bit_depth)
    if tone.note:
        view.notes.append(tone.note)
    if size != (ref.height, ref.width):
        view.notes.append(f"{ref.width}×{ref.height} image shown at {size[1]}×{size[0]} (previews are downscaled; "
                          "the error map keeps the largest error of each block, the worst-tile crops are 1:1)")

    def show(px: np.ndarray, name: str) -> str:
        return writer.png(f"{slug}-{name}", _maps.resize_display(_maps.to_display(px, tone), size))

    if orig is not None:
        view.original_src = show(orig.pixels, "original")
    if recon is None:
        return view
    rpx, cmp_notes = (recon.pixels, []) if orig is None else _comparable(orig, recon)
    view.notes.extend(cmp_notes)
    if rpx is None:  # not comparable: show both side by side, each with its own tone map
        rtone = _maps.tone_map_for(recon.pixels, recon.bit_depth)
        rsize = _maps.preview_size(recon.height, recon.width)
        view.recon_src = writer.png(f"{slug}-reconstruction",
                                    _maps.resize_display(_maps.to_display(recon.pixels, rtone), rsize))
        view.side_by_side = True
        return view
    view.recon_src = show(rpx, "reconstruction")
    if orig is None:
        return view

    # -- the maps: what changed, where, and at which frequencies
    o = orig.pixels
    err = _maps.abs_error(o, rpx)
    # the error scale's floor is relative to what the page displays: the tone-map window of a deep image (a
    # 12-bit CT in uint16 spans a few hundred of 65535 levels), the full range of an 8-bit one
    full_scale = tone.high - tone.low if tone.note else float(orig.max_value)
    bits = record.get("bit_depth")
    peak = (1 << bits) - 1 if isinstance(bits, int) and 1 <= bits <= 8 * o.dtype.itemsize else orig.max_value
    emap, vmax = _maps.error_map(err, full_scale, size, ERROR_CMAP)
    view.error_src = writer.png(f"{slug}-error", emap)
    view.error_vmax = _fmt(float(vmax))
    view.error_max = _fmt(float(err.max()))
    smap, view.spectrum_caption = _maps.spectral_map(o, rpx, cmap=SPECTRUM_CMAP)
    view.spectrum_src = writer.png(f"{slug}-spectrum", smap)

    if not err.any():  # identical pixels: there is no worst tile to point at
        view.notes.append("the reconstruction is pixel-identical to the original")
        return view
    tile = _record_tile(checks)
    tile = tile.clip(orig.height, orig.width) if tile is not None else None
    if tile is None:
        tile = _maps.worst_tile(o, rpx, peak)
    view.tile = tile
    view.tile_pct = {"left": f"{100 * tile.x / orig.width:.4f}%", "top": f"{100 * tile.y / orig.height:.4f}%",
                     "width": f"{100 * tile.w / orig.width:.4f}%", "height": f"{100 * tile.h / orig.height:.4f}%"}
    # 1:1 crops of the worst tile (centred, at most CROP_MAX a side): the pixels a downscaled preview hides
    cw, ch = min(tile.w, CROP_MAX), min(tile.h, CROP_MAX)
    cx, cy = tile.x + (tile.w - cw) // 2, tile.y + (tile.h - ch) // 2
    sl = (slice(cy, cy + ch), slice(cx, cx + cw))
    view.crop_w, view.crop_h = cw, ch
    view.crop_srcs = {
        "original": writer.png(f"{slug}-worst-tile-orig", _maps.to_display(o[sl], tone)),
        "reconstruction": writer.png(f"{slug}-worst-tile-recon", _maps.to_display(rpx[sl], tone)),
        "error": writer.png(f"{slug}-worst-tile-err", _maps.error_map(err[sl], full_scale, (ch, cw), ERROR_CMAP,
                                                                 vmax=vmax)[0]),
    }
    return view


# -- the page ----------------------------------------------------------------------------------------------------
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("inverity.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("inverity")
    except Exception:  # noqa: BLE001 - not installed (running from a source tree)
        return "unknown"


def build_report(outdir: Path, records: list[dict[str, Any]], page: Path, roots: list[Path]) -> Path:
    """Render ``records`` into ``page`` (an ``.html`` path); images go to ``page.parent / assets``."""
    page_dir = page.parent
    writer = _Writer(page_dir)
    views = [_asset_view(i, dict(r), outdir, page_dir, roots, writer) for i, r in enumerate(records, 1)]
    counts: dict[str, int] = {}
    for v in views:
        counts[v.verdict_class] = counts.get(v.verdict_class, 0) + 1
    # totals over the assets that have both sizes, so a failed asset does not inflate the ratio
    sized = [v for v in views if isinstance(v.record.get("input_bytes"), int) and isinstance(v.record.get("bytes"), int)
             and v.verdict_class != "failed"]
    in_total = sum(int(v.record["input_bytes"]) for v in sized)
    out_total = sum(int(v.record["bytes"]) for v in sized)
    fallbacks = sum(1 for v in views if any(a.get("passed") is False for a in v.attempts) and v.verdict_class
                    in ("verified", "lossless"))
    summary = {
        "assets": len(views),
        "passed": counts.get("verified", 0) + counts.get("lossless", 0),
        "lossless": counts.get("lossless", 0),
        "failed": counts.get("failed", 0),
        "unverified": counts.get("unverified", 0),
        "fallbacks": fallbacks,
        "in_bytes": _human_bytes(in_total) if in_total else "—",
        "out_bytes": _human_bytes(out_total) if out_total else "—",
        "ratio": f"{in_total / out_total:.2f}×" if in_total and out_total else "—",
    }
    html = _environment().get_template("index.html.j2").render(
        title=f"inverity audit — {outdir.name or outdir}", outdir=str(outdir), views=views, summary=summary,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), version=_version(),
        error_gradient=_maps.gradient_css(ERROR_CMAP), spectrum_gradient=_maps.gradient_css(SPECTRUM_CMAP),
    )
    return atomic_write_text(page, html)
