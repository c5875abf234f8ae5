"""Build the audit page: records → per-asset views (images written beside the page) → one HTML file.

The page must stand alone (an auditor may open it from a copied folder, offline): no external resources, CSS and
JS inline, every image a file in ``assets/`` next to ``index.html``. Every string from a record goes through
Jinja2's autoescape, and no record data is ever placed inside ``<script>``.

Kept small: previews and maps are WebP at screen size (≤ ``DISPLAY_MAX_SIDE`` px on the long side; lossless where
that is cheap, q90 otherwise), the spectral map ≤ ``SPECTRUM_MAX_SIDE``; only the crops around the verifier's
worst windows are full-resolution PNG. The demo's two pages (7 + 7 assets) went from 12.3 MB to about 3 MB.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

import numpy as np

from .._atomic import atomic_write_bytes, atomic_write_text
from ..errors import InputError, InverityError, RecordError
from ..image import Image
from ..record import DecisionRecord
from ..verify_checks import check_names
from ..verify_types import Box, boxes_from_checks
from . import _maps
from ._why import CheckRow, Why, attempt_label, check_rows, chosen_attempt, explain, fmt, human_bytes, main_reasons, \
    verdict_of

__all__ = ["build_report", "load_catalog_records", "read_records_file", "resolve_input", "resolve_output",
           "verdict_of", "ASSETS_DIR"]

#: the folder, next to the page, that holds its images
ASSETS_DIR = "assets"
#: the 1:1 crops around a worst window: at least this much context, at most this large, at most this many
CROP_MIN = 64
CROP_MAX = 256
MAX_CROPS = 3
#: lossy WebP quality of previews that do not compress well losslessly (photos), and of the heat maps
PREVIEW_QUALITY = 90
MAP_QUALITY = 80
#: the maps sit in a grid cell a third of the page wide: this is plenty (the error map keeps each block's
#: largest error, so one wrong pixel still shows); the spectral map is a global picture and smaller still
MAP_MAX_SIDE = 512
SPECTRUM_MAX_SIDE = 384
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
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{p}: every record must be a JSON object")
    for i, r in enumerate(records, 1):   # one type reads them all: a malformed record is refused, not drawn
        try:
            DecisionRecord.from_dict(r)
        except RecordError as exc:
            raise InputError(f"{p}: record {i}: {exc}") from None
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


# -- verdicts and summaries (the words live in _why) ---------------------------------------------------------------
def _slug(i: int, name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip("-.")[:40] or "asset"
    return f"a{i:03d}-{stem}"


#: unit of each localising check's value, for the labels of its window
_UNITS = {name: " dB" for name in check_names(unit="dB")}
#: which windows get 1:1 crops first (after the failed ones)
_CROP_ORDER = ("worst_tile_psnr", "local_snr", "local_structure", "edge_missing", "edge_invented", "tile_band_kept")


def _box_label(b: Box) -> str:
    if b.value is None:
        return b.check
    if b.check in _UNITS:
        return f"{b.check} {b.value:.1f}{_UNITS[b.check]}"
    return f"{b.check} {100 * b.value:.0f}%"


@dataclass
class WindowView:
    """One worst window as the verifier recorded it (clipped to the image), with the checks that point at it."""

    box: Box
    labels: list[str]
    failed: bool
    pct: dict[str, str]
    crop: dict[str, str] = field(default_factory=dict)
    crop_rect: tuple[int, int, int, int] = (0, 0, 0, 0)
    label_below: bool = False  # its top-left corner is another window's: put its number at the bottom

    @property
    def data(self) -> str:
        return f"{self.box.x},{self.box.y},{self.box.w},{self.box.h}"

    @property
    def title(self) -> str:
        return "; ".join(self.labels)


def _windows(boxes: list[Box], failures: set[str], height: int, width: int) -> list[WindowView]:
    """Group the verifier's boxes by rectangle (two checks often point at the same window), failed ones first."""
    groups: dict[tuple[int, int, int, int], list[Box]] = {}
    for b in boxes:
        c = b.clip(height, width)
        if c is not None:
            groups.setdefault((c.x, c.y, c.w, c.h), []).append(c)
    out = []
    for (x, y, w, h), bs in groups.items():
        out.append(WindowView(bs[0], [_box_label(b) for b in bs], any(b.check in failures for b in bs),
                              {"left": f"{100 * x / width:.4f}%", "top": f"{100 * y / height:.4f}%",
                               "width": f"{100 * w / width:.4f}%", "height": f"{100 * h / height:.4f}%"}))

    def rank(v: WindowView) -> tuple[int, int]:
        first = min((_CROP_ORDER.index(lb.split()[0]) if lb.split()[0] in _CROP_ORDER else 99) for lb in v.labels)
        return (0 if v.failed else 1, first)

    ordered = sorted(out, key=rank)
    corners: set[tuple[int, int]] = set()
    for v in ordered:
        v.label_below = (v.box.x, v.box.y) in corners
        corners.add((v.box.x, v.box.y))
    return ordered


def _crop_rect(b: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """A 1:1 crop around a window: at least ``CROP_MIN`` a side for context, at most ``CROP_MAX``, centred."""
    cw = min(max(b.w, CROP_MIN), CROP_MAX, width)
    ch = min(max(b.h, CROP_MIN), CROP_MAX, height)
    cx = min(max(0, b.x + b.w // 2 - cw // 2), width - cw)
    cy = min(max(0, b.y + b.h // 2 - ch // 2), height - ch)
    return cx, cy, cw, ch


# -- per-asset view ----------------------------------------------------------------------------------------------
@dataclass
class RejectedView:
    """A rejected attempt re-encoded for a preview (never delivered)."""

    label: str
    reasons: list[str]
    bytes_h: str = ""
    src: str | None = None
    error_src: str | None = None
    windows: list[WindowView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None


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
    why: Why = field(default_factory=Why)
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
    error_vmax: str = ""
    error_max: str = ""
    spectrum_caption: str = ""
    windows: list[WindowView] = field(default_factory=list)
    side_by_side: bool = False  # original and reconstruction cannot be overlaid (different sizes)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    all_reasons: list[str] = field(default_factory=list)
    rejected_preview: RejectedView | None = None
    record_json: str = ""

    @property
    def windows_data(self) -> str:
        return ";".join(w.data for w in self.windows)


def _encode_display(pixels: np.ndarray, lossless: bool | None, quality: int = PREVIEW_QUALITY) -> tuple[bytes, str]:
    """An 8-bit display image as WebP: lossless when asked, lossy (``quality``) when not, and with ``None``
    whichever is reasonable — lossless unless it is more than 1.5× the lossy size (photos), so flat drawings and
    sparse error maps stay exact."""
    import imagecodecs

    c = pixels.shape[2] if pixels.ndim == 3 else 1
    arr = pixels.reshape(pixels.shape[0], pixels.shape[1], c)
    if c in (1, 2):  # WebP has no grey: replicate luma (keep alpha)
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
    arr = np.ascontiguousarray(arr)
    if lossless:
        return bytes(imagecodecs.webp_encode(arr, lossless=True, method=2)), "webp"
    lossy = bytes(imagecodecs.webp_encode(arr, level=quality, lossless=False))
    if lossless is None:
        exact = bytes(imagecodecs.webp_encode(arr, lossless=True, method=2))
        if len(exact) <= 1.5 * len(lossy):
            return exact, "webp"
    return lossy, "webp"


def _png(pixels: np.ndarray) -> bytes:
    import imagecodecs

    arr = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(arr), level=6))


class _Writer:
    """Writes the page's images (atomically) under ``assets/`` and hands back their relative URLs: screen-size
    previews and maps as WebP, 1:1 crops as PNG (the exact pixels a reviewer zooms into)."""

    def __init__(self, page_dir: Path) -> None:
        self.page_dir = page_dir
        self.written: list[Path] = []

    def png(self, name: str, pixels: np.ndarray) -> str:
        rel = f"{ASSETS_DIR}/{name}.png"
        self.written.append(atomic_write_bytes(self.page_dir / rel, _png(pixels)))
        return rel

    def webp(self, name: str, pixels: np.ndarray, lossless: bool | None = None,
             quality: int = PREVIEW_QUALITY) -> str:
        data, ext = _encode_display(pixels, lossless, quality)
        rel = f"{ASSETS_DIR}/{name}.{ext}"
        self.written.append(atomic_write_bytes(self.page_dir / rel, data))
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


def _record_boxes(record: Mapping[str, Any], view: AssetView) -> list[Box]:
    """The verifier's worst windows of the written output, exactly as recorded (never recomputed here)."""
    checks = record.get("checks") or {}
    try:
        boxes = boxes_from_checks(checks)
    except ValueError as exc:
        view.problems.append(f"the record's worst windows are malformed ({exc}); none drawn")
        return []
    if not boxes and "worst_windows" not in checks:
        view.notes.append("the record has no worst windows (written by a verifier that did not record them): "
                          "no window is marked; re-run compress to get them")
    return boxes


def _chosen_failures(record: Mapping[str, Any]) -> set[str]:
    chosen = chosen_attempt([a for a in record.get("attempts") or [] if isinstance(a, Mapping)])
    return {str(f) for f in (chosen or {}).get("failures") or []}


class _Shower:
    """Renders display images of one asset: one tone map and one preview size for everything it shows."""

    def __init__(self, writer: _Writer, slug: str, tone: _maps.ToneMap, size: tuple[int, int]) -> None:
        self.writer, self.slug, self.tone, self.size = writer, slug, tone, size

    def preview(self, px: np.ndarray, name: str) -> str:
        return self.writer.webp(f"{self.slug}-{name}", _maps.resize_display(_maps.to_display(px, self.tone),
                                                                             self.size))

    def crop(self, px: np.ndarray, name: str) -> str:
        return self.writer.png(f"{self.slug}-{name}", _maps.to_display(px, self.tone))


def _show_maps(view: AssetView, record: Mapping[str, Any], o: np.ndarray, rpx: np.ndarray, orig: Image,
               show: _Shower) -> None:
    """Error and spectral maps, the verifier's worst windows on them, and 1:1 crops around those windows."""
    err = _maps.abs_error(o, rpx)
    # the error scale's floor is relative to what the page displays: the tone-map window of a deep image (a
    # 12-bit CT in uint16 spans a few hundred of 65535 levels), the full range of an 8-bit one
    full_scale = show.tone.high - show.tone.low if show.tone.note else float(orig.max_value)
    emap, vmax = _maps.error_map(err, full_scale, _maps.preview_size(*err.shape, MAP_MAX_SIDE), ERROR_CMAP)
    view.error_src = show.writer.webp(f"{show.slug}-error", emap, quality=MAP_QUALITY)
    view.error_vmax = fmt(float(vmax))
    view.error_max = fmt(float(err.max()))
    smap, view.spectrum_caption = _maps.spectral_map(o, rpx, size_cap=SPECTRUM_MAX_SIDE, cmap=SPECTRUM_CMAP)
    view.spectrum_src = show.writer.webp(f"{show.slug}-spectrum", smap, quality=MAP_QUALITY)
    if not err.any():  # identical pixels: there is no worst window to point at
        view.notes.append("the reconstruction is pixel-identical to the original")
        return
    view.windows = _windows(_record_boxes(record, view), _chosen_failures(record), orig.height, orig.width)
    for k, w in enumerate(view.windows[:MAX_CROPS]):
        x, y, cw, ch = w.crop_rect = _crop_rect(w.box, orig.height, orig.width)
        sl = (slice(y, y + ch), slice(x, x + cw))
        w.crop = {"original": show.crop(o[sl], f"w{k}-orig"), "reconstruction": show.crop(rpx[sl], f"w{k}-recon"),
                  "error": show.writer.png(f"{show.slug}-w{k}-err",
                                           _maps.error_map(err[sl], full_scale, (ch, cw), ERROR_CMAP, vmax=vmax)[0])}


def _show_rejected(view: AssetView, record: Mapping[str, Any], orig: Image, show: _Shower) -> None:
    """Re-encode the best rejected learned attempt and show it, with its own worst windows, as not delivered."""
    from . import _rejected

    attempt = _rejected.pick_rejected(record)
    if attempt is None:
        return
    rv = RejectedView(label=attempt_label(attempt), reasons=[str(r) for r in attempt.get("reasons") or []][:4])
    view.rejected_preview = rv
    try:
        prev = _rejected.reencode(record, attempt, orig)
    except Exception as exc:  # noqa: BLE001 - a missing model or codec shows on the page, it does not abort it
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rv.problem = f"could not re-encode {rv.label} for a preview: {msg}"
        return
    rpx, notes = _comparable(orig, prev.reconstruction)
    rv.notes = prev.notes + notes
    rv.bytes_h = human_bytes(prev.bytes)
    if rpx is None:
        rv.problem = "the re-encoded reconstruction cannot be compared with the original"
        return
    rv.src = show.preview(rpx, f"rejected-{attempt.get('stage')}")
    err = _maps.abs_error(orig.pixels, rpx)
    full_scale = show.tone.high - show.tone.low if show.tone.note else float(orig.max_value)
    rmap = _maps.error_map(err, full_scale, _maps.preview_size(*err.shape, MAP_MAX_SIDE), ERROR_CMAP)[0]
    rv.error_src = show.writer.webp(f"{show.slug}-rejected-error", rmap, quality=MAP_QUALITY)
    rv.windows = _windows(prev.windows, set(prev.failures), orig.height, orig.width)


def _asset_view(i: int, record: dict[str, Any], outdir: Path, page_dir: Path, roots: list[Path],
                writer: _Writer, preview_rejected: bool = False) -> AssetView:
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
        quality=fmt(record.get("quality")), bytes_h=human_bytes(record.get("bytes")), ratio="—", bpp="—",
        reasons=main_reasons(record), why=explain(record),
        attempts=[dict(a, bytes_h=human_bytes(a.get("bytes")) if a.get("bytes") is not None else "")
                  for a in record.get("attempts") or [] if isinstance(a, Mapping)],
        checks=check_rows(checks),
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
                          "the error map keeps the largest error of each block, the crops around the worst windows "
                          "are 1:1)")
    show = _Shower(writer, slug, tone, size)
    if orig is not None:
        view.original_src = show.preview(orig.pixels, "original")
        if preview_rejected:
            _show_rejected(view, record, orig, show)
    if recon is None:
        return view
    rpx, cmp_notes = (recon.pixels, []) if orig is None else _comparable(orig, recon)
    view.notes.extend(cmp_notes)
    if rpx is None:  # not comparable: show both side by side, each with its own tone map
        rtone = _maps.tone_map_for(recon.pixels, recon.bit_depth)
        rsize = _maps.preview_size(recon.height, recon.width)
        view.recon_src = writer.webp(f"{slug}-reconstruction",
                                     _maps.resize_display(_maps.to_display(recon.pixels, rtone), rsize))
        view.side_by_side = True
        return view
    view.recon_src = show.preview(rpx, "reconstruction")
    if orig is not None:
        # -- the maps: what changed, where (the verifier's own windows), and at which frequencies
        _show_maps(view, record, orig.pixels, rpx, orig, show)
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


def _review_context(outdir: Path, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The review section (verdict export, reviewers' feedback); ``None`` when the review tables cannot be read."""
    from .. import review

    try:
        return review.audit_context(outdir, records)
    except Exception:  # noqa: BLE001 - a page without its review section beats no page
        return None


def build_report(outdir: Path, records: list[dict[str, Any]], page: Path, roots: list[Path], *,
                 preview_rejected: bool = False) -> Path:
    """Render ``records`` into ``page`` (an ``.html`` path); images go to ``page.parent / assets``."""
    page_dir = page.parent
    writer = _Writer(page_dir)
    views = [_asset_view(i, dict(r), outdir, page_dir, roots, writer, preview_rejected)
             for i, r in enumerate(records, 1)]
    counts: dict[str, int] = {}
    for v in views:
        counts[v.verdict_class] = counts.get(v.verdict_class, 0) + 1
    # totals over the assets that have both sizes, so a failed asset does not inflate the ratio
    sized = [v for v in views if isinstance(v.record.get("input_bytes"), int) and isinstance(v.record.get("bytes"), int)
             and v.verdict_class != "failed"]
    in_total = sum(int(v.record["input_bytes"]) for v in sized)
    out_total = sum(int(v.record["bytes"]) for v in sized)
    fallbacks = sum(1 for v in views if v.why.rejected and v.verdict_class in ("verified", "lossless"))
    summary = {
        "assets": len(views),
        "passed": counts.get("verified", 0) + counts.get("lossless", 0),
        "lossless": counts.get("lossless", 0),
        "failed": counts.get("failed", 0),
        "unverified": counts.get("unverified", 0),
        "fallbacks": fallbacks,
        "in_bytes": human_bytes(in_total) if in_total else "—",
        "out_bytes": human_bytes(out_total) if out_total else "—",
        "ratio": f"{in_total / out_total:.2f}×" if in_total and out_total else "—",
    }
    html = _environment().get_template("index.html.j2").render(
        title=f"inverity audit — {outdir.name or outdir}", outdir=str(outdir), views=views, summary=summary,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), version=_version(),
        error_gradient=_maps.gradient_css(ERROR_CMAP), spectrum_gradient=_maps.gradient_css(SPECTRUM_CMAP),
        review=_review_context(outdir, records),
    )
    return atomic_write_text(page, html)
