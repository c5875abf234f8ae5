"""Verification: does a reconstruction meet the floors? The heart of "fail legibly".

A :class:`Floors` value holds every threshold (``None`` = not checked); :func:`verify` compares an original with
a reconstruction and returns a :class:`Verdict` whose ``reasons`` a person can act on — one per check, passed
or failed::

    ssimulacra2 81.4 >= 70
    window at (y=224, x=96) 16×16: signal-to-error 2.1 dB < 9 dB floor (error 62% of the local signal)
    window at (y=96, x=40) 16×16: structure displaced (≈1.1 px; dy +0.0, dx -1.1); structured signal-to-error
        4.3 dB < 13 dB floor
    band 0.35–0.50 cycles/px keeps 21% of its energy < 35% floor
    tile (3,7) at x=224, y=96: 38 of 52 edge pixels of the original missing (73% > 35%), most displaced by ≤ 4 px

Why more than PSNR and SSIMULACRA 2: a learned codec fails *locally and plausibly* — a lesion smoothed away, a
line moved by two pixels, text softened, texture swapped — and a global average hides a local failure. So
besides the global metrics the verifier looks at

* **worst tile** — PSNR of each ``tile``×``tile`` tile, so a local failure is not averaged away;
* **local signal-to-error** — error energy in overlapping windows against how much structure the original has
  there (its variance plus a floor). Codec noise hides in texture and stays small in flat areas; a removed
  spot, a moved line or a replaced patch makes the error as large as the local signal (≈ 0 dB);
* **local structure** — the same ratio for the part of the error that is a coherent displacement or blur of the
  original's own structure (regressed on its gradients and a difference of Gaussians): quantisation noise is
  nearly orthogonal to those, a line moved by one pixel or a softened word is not;
* **spectral retention** — per radial frequency band, the share of the original's energy the reconstruction
  keeps and the energy it invents, globally and per window (a learned codec's spectral bias quietly drops bands
  it rarely saw in training);
* **edges** — strong edges of the original with no edge within ``edge_tolerance`` px in the reconstruction
  (missing or displaced), and strong edges the original does not have (invented), counted per tile.

Structure checks run on luma: chroma subsampling (JPEG 4:2:0) legitimately drops chroma detail.

**Content window.** Every perceptual and structural check — PSNR floor, SSIMULACRA 2, MS-SSIM, tile PSNR, local
signal-to-error and structure, band energy, edges — judges high-bit-depth content on the range the *original*
actually uses (:func:`inverity.metrics.content_window`: its 0.1/99.9 percentiles), applied identically to both
images. A CT slice stored in 16 bits with a signed offset spans ≈ 3% of 0–65535; relative to 65535 a 99-byte
JPEG XL of it scored PSNR 46 dB and SSIMULACRA 2 73 and had no edge or band strong enough to judge, so it passed.
The verdict then carries a note (``16-bit content spans 32914–34756 of 0–65535 (3%): checks use that window``),
``checks["window"]`` and ``checks["psnr_window"]``; ``checks["psnr"]`` stays relative to the nominal peak and
``max_abs_error`` stays in the image's units. 8-bit images, floats and content spanning at least half of its
nominal range are judged exactly as before.

Examples
--------
>>> import numpy as np
>>> a = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
>>> verify(a, a, Floors.lossless_only()).passed
True
>>> b = a.copy(); b[20:28, 20:28] = 255
>>> v = verify(a, b, Floors.controlled())
>>> v.passed, "local_snr" in v.failures
(False, True)
>>> print(v.reasons[1])
window at (y=16, x=16) 16×16: signal-to-error -12.1 dB < 9 dB floor (error 16× larger than the local signal; 9 windows below the floor)
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Union

import numpy as np

from . import metrics as M
from .errors import PolicyError
from .image import Image

__all__ = ["Floors", "Verdict", "verify", "PRESETS"]

ImageLike = Union[Image, np.ndarray]


@dataclass(frozen=True)
class Floors:
    """Thresholds a reconstruction must meet; ``None`` means "not checked".

    Global: ``lossless`` (bit-exact), ``max_abs_error`` (in the image's units), ``psnr`` (dB; over the content
    window where one applies, see the module docstring), ``ssimulacra2``, ``ms_ssim``.
    Local fidelity: ``worst_tile_psnr`` (dB, over ``tile``×``tile`` tiles); ``local_snr`` (dB, the minimum over
    ``local_window`` windows stepping by half a window of 10·log10((variance of the original + floor²) / MSE),
    with ``local_signal_floor`` on the 0..1 scale); ``local_structure`` (dB, the same ratio for the part of the
    error that is a coherent displacement or blur of the original's structure, see
    :func:`inverity.metrics.local_error_maps`).
    Spectral: ``band_kept`` (minimum share of a radial band's energy kept, whole image), ``band_invented``
    (maximum share of invented energy), ``tile_band_kept`` (the minimum kept share in ``band_window`` windows);
    only bands whose RMS amplitude in the original is at least ``band_min_rms`` (0..1 scale) are judged.
    Edges: ``edge_missing`` / ``edge_invented`` (maximum fraction per tile of the original's strong edge pixels —
    contrast ≥ ``edge_threshold`` — that have no edge within ``edge_tolerance`` px in the reconstruction, or of
    strong reconstruction edges with none in the original); a tile is judged once it has
    ``edge_min_pixels`` such pixels.

    Every "0..1 scale" is the nominal range (0..255 for 8-bit) or, for high-bit-depth content using little of
    it, the original's content window.
    """

    lossless: bool = False
    max_abs_error: float | None = None
    psnr: float | None = None
    ssimulacra2: float | None = None
    ms_ssim: float | None = None
    tile: int = 32
    worst_tile_psnr: float | None = None
    local_snr: float | None = None
    local_structure: float | None = None
    local_window: int = 16
    local_signal_floor: float = 0.03
    band_kept: float | None = None
    band_invented: float | None = None
    tile_band_kept: float | None = None
    band_window: int = 64
    band_min_rms: float = 0.01
    edge_missing: float | None = None
    edge_invented: float | None = None
    edge_threshold: float = 0.12
    edge_tolerance: int = 1
    edge_min_pixels: int = 16

    def __post_init__(self) -> None:
        for name in ("tile", "local_window", "band_window"):
            if int(getattr(self, name)) < 4:
                raise PolicyError(f"floors: {name} must be at least 4 px, got {getattr(self, name)}")
        if self.edge_tolerance < 0 or self.edge_min_pixels < 1:
            raise PolicyError("floors: edge_tolerance must be >= 0 and edge_min_pixels >= 1")
        for name in ("band_kept", "tile_band_kept", "edge_missing", "ms_ssim"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise PolicyError(f"floors: {name} must be in 0..1, got {v}")

    # -- presets ---------------------------------------------------------------------------------------------
    @classmethod
    def lossless_only(cls) -> "Floors":
        """Bit-exact round trip (archive, diagnostic)."""
        return cls(lossless=True)

    @classmethod
    def bounded(cls, n: float) -> "Floors":
        """Every sample within ``n`` of the original (near-lossless, e.g. JPEG-LS ``near=n``)."""
        return cls(max_abs_error=n)

    @classmethod
    def delivery(cls) -> "Floors":
        """A perceptual floor for standard lossy formats, plus a lenient guard against one ruined window
        (error as large as half the local signal)."""
        return cls(ssimulacra2=70.0, local_snr=3.0)

    @classmethod
    def controlled(cls) -> "Floors":
        """Delivery's perceptual floor plus the structure checks the learned stage is verified with.

        Calibrated (never on Kodak) so that JPEG q90–98 (4:4:4, 4:2:0), JPEG XL d ≤ 1 and WebP q90–98 pass and the
        planted edits of :mod:`inverity.bench.planted` fail: see ``benchmarks/legibility.py``. No PSNR or
        absolute tile-PSNR floor: on dense line art and screen tones a good JPEG scores below 30 dB, while the
        activity-normalised local checks judge every content kind on the same scale.
        """
        return cls(ssimulacra2=70.0, local_snr=9.0, local_structure=13.0, band_kept=0.35, band_invented=0.5,
                   tile_band_kept=0.1, edge_missing=0.35, edge_invented=0.5)

    # -- (de)serialisation -----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Floors":
        """Build from a mapping (e.g. a policy TOML's ``[floors]`` table); unknown keys are refused.

        Examples
        --------
        >>> Floors.from_dict({"psnr": 40, "ssimulacra2": 80}).psnr
        40.0
        >>> Floors.from_dict({"psrn": 40})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inverity.errors.PolicyError: floors: unknown key 'psrn'; known: band_invented, band_kept, ...
        """
        if not isinstance(data, dict):
            raise PolicyError(f"floors must be a table/mapping, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise PolicyError(f"floors: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(u) for u in unknown)}; known: {', '.join(sorted(known))}")
        kw: dict[str, Any] = {}
        for k, v in data.items():
            default = known[k].default
            if v is None:
                kw[k] = None
            elif isinstance(default, bool):
                if not isinstance(v, bool):
                    raise PolicyError(f"floors: {k} must be true or false, got {v!r}")
                kw[k] = v
            elif isinstance(default, int) and not isinstance(default, bool):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v:
                    raise PolicyError(f"floors: {k} must be an integer, got {v!r}")
                kw[k] = int(v)
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise PolicyError(f"floors: {k} must be a number, got {v!r}")
                kw[k] = float(v)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """All fields (JSON-ready); ``from_dict(to_dict())`` round-trips."""
        return asdict(self)

    def checked(self) -> list[str]:
        """Names of the floors that are set."""
        return [f.name for f in fields(self) if f.name in _CHECK_FIELDS and getattr(self, f.name) not in (None, False)]


_CHECK_FIELDS = ("lossless", "max_abs_error", "psnr", "ssimulacra2", "ms_ssim", "worst_tile_psnr", "local_snr",
                 "local_structure",
                 "band_kept", "band_invented", "tile_band_kept", "edge_missing", "edge_invented")

#: named presets, for policies and the CLI fallback
PRESETS: dict[str, Floors] = {
    "lossless": Floors.lossless_only(),
    "delivery": Floors.delivery(),
    "controlled": Floors.controlled(),
}


@dataclass
class Verdict:
    """The outcome: ``passed``, one human-readable reason per check (failures first; after them a note when the
    checks used the original's content window), the measured numbers in ``checks`` (for the decision record) and
    the names of the failed checks in ``failures``."""

    passed: bool
    reasons: list[str]
    checks: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; infinite values (identical pixels) become ``null``."""
        return {"passed": self.passed, "reasons": list(self.reasons), "failures": list(self.failures),
                "checks": _jsonable(self.checks)}

    def __bool__(self) -> bool:
        return self.passed


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if not math.isfinite(f) else round(f, 4)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _band_label(lo: float, hi: float) -> str:
    return f"{lo:.2f}–{hi:.2f}"


class _Checker:
    """Collects results: ``ok(name, value, reason)`` / ``fail(name, value, reason)``."""

    def __init__(self) -> None:
        self.checks: dict[str, Any] = {}
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.failures: list[str] = []

    def record(self, name: str, good: bool, reason: str) -> None:
        if good:
            self.passed.append(reason)
        else:
            self.failed.append(reason)
            self.failures.append(name)


def _fmt(x: float, nd: int = 1) -> str:
    return "inf" if math.isinf(x) else f"{x:.{nd}f}"


def verify(original: ImageLike, reconstruction: ImageLike, floors: Floors | None = None) -> Verdict:
    """Check ``reconstruction`` against ``original`` under ``floors`` (default :meth:`Floors.controlled`).

    Never raises for a bad reconstruction: a shape, channel or dtype mismatch is a failed verdict with its
    reason. Costs ≈ 100–150 ms for a 768×512 RGB pair with every check on (SSIMULACRA 2 is most of it).
    """
    floors = Floors.controlled() if floors is None else floors
    t0 = time.perf_counter()
    with M._SingleThreadBlas():  # many small products: threaded BLAS only spins (and fights a worker pool)
        return _verify(original, reconstruction, floors, t0)


def _verify(original: ImageLike, reconstruction: ImageLike, floors: Floors, t0: float) -> Verdict:
    pa, ma = M._pixels(original)
    pb, _ = M._pixels(reconstruction)
    if pa.shape != pb.shape or pa.dtype != pb.dtype:
        what = []
        if pa.shape[:2] != pb.shape[:2]:
            what.append(f"size {pb.shape[1]}×{pb.shape[0]} != {pa.shape[1]}×{pa.shape[0]}")
        if pa.shape[2:] != pb.shape[2:]:
            what.append(f"{pb.shape[2]} channels != {pa.shape[2]}")
        if pa.dtype != pb.dtype:
            what.append(f"dtype {pb.dtype} != {pa.dtype}")
        return Verdict(False, [f"reconstruction does not match the original: {'; '.join(what)}"],
                       {"shape_match": False}, ["shape"])
    c = _Checker()
    chk = c.checks
    identical = bool(np.array_equal(pa, pb))
    chk["lossless"] = identical
    if floors.lossless:
        if identical:
            c.record("lossless", True, "bit-exact: every sample identical")
        else:
            diff = pa.astype(np.int64) - pb.astype(np.int64) if pa.dtype.kind in "ui" else pa - pb
            n = int(np.count_nonzero(diff))
            c.record("lossless", False, f"not bit-exact: {n} of {pa.size} samples differ, "
                                        f"max abs error {M.max_abs_error(pa, pb)}")
    if identical:  # every other floor is met trivially; skip the work
        chk.update({"psnr": math.inf, "max_abs_error": 0})
        for name in floors.checked():
            if name != "lossless":
                c.record(name, True, f"{name}: identical pixels")
        return _finish(c, t0)

    m = ma
    se = M._squared_error(pa, pb, m)          # once, for PSNR (and the tiles, without a content window)
    mae = M.max_abs_error(pa, pb)
    chk["max_abs_error"] = mae
    if floors.max_abs_error is not None:
        c.record("max_abs_error", mae <= floors.max_abs_error,
                 f"max abs error {mae} {'<=' if mae <= floors.max_abs_error else '>'} {floors.max_abs_error:g}")
    p = M._psnr_of_mse(float(se.sum(dtype=np.float64)) / pa.size)
    chk["psnr"] = p
    # the yardstick comes from the original alone: a reconstruction must not widen the window it is judged in
    win = M.content_window(original)
    if win is None:
        qa, qb, qm, qse, pq = pa, pb, m, se, p
        psnr_what = ""
    else:
        qa, qb, qm = win.apply(pa), win.apply(pb), 1.0
        qse = M._squared_error(qa, qb, qm)
        pq = M._psnr_of_mse(float(qse.sum(dtype=np.float64)) / pa.size)
        chk["window"] = win.to_dict()
        chk["psnr_window"] = pq
        psnr_what = f" over the content window ({_fmt(p, 2)} dB over 0–{win.nominal:g})"
        if any(n not in ("lossless", "max_abs_error") for n in floors.checked()):
            c.passed.insert(0, f"{win.describe()}: checks use that window")
    if floors.psnr is not None:
        c.record("psnr", pq >= floors.psnr, f"PSNR {_fmt(pq, 2)} dB{psnr_what} {'>=' if pq >= floors.psnr else '<'} "
                                            f"{floors.psnr:g} dB")
    if floors.ssimulacra2 is not None:
        if min(pa.shape[:2]) >= 8:
            s2 = M.ssimulacra2(qa, qb, max_value=qm)
            chk["ssimulacra2"] = s2
            c.record("ssimulacra2", s2 >= floors.ssimulacra2,
                     f"ssimulacra2 {s2:.1f} {'>=' if s2 >= floors.ssimulacra2 else '<'} {floors.ssimulacra2:g}")
        else:
            c.record("ssimulacra2", False, f"ssimulacra2 cannot be computed below 8×8 ({pa.shape[1]}×{pa.shape[0]})")
    if floors.ms_ssim is not None:
        v = M.ms_ssim(qa, qb, max_value=qm)
        chk["ms_ssim"] = v
        c.record("ms_ssim", v >= floors.ms_ssim, f"MS-SSIM {v:.4f} {'>=' if v >= floors.ms_ssim else '<'} "
                                                 f"{floors.ms_ssim:g}")
    # -- local fidelity ------------------------------------------------------------------------------------------
    tp = M._tile_psnr(qse, floors.tile, pa.shape[2])
    ty, tx = np.unravel_index(int(np.argmin(tp)), tp.shape)
    chk["worst_tile_psnr"] = float(tp[ty, tx])
    chk["worst_tile"] = [int(ty), int(tx)]
    if floors.worst_tile_psnr is not None:
        ok = tp[ty, tx] >= floors.worst_tile_psnr
        where = f"tile ({ty},{tx}) at x={tx * floors.tile}, y={ty * floors.tile}"
        if ok:
            c.record("worst_tile_psnr", True, f"worst {floors.tile}px tile PSNR {_fmt(tp[ty, tx])} dB >= "
                                              f"{floors.worst_tile_psnr:g} dB ({where})")
        else:
            nbad = int(np.count_nonzero(tp < floors.worst_tile_psnr))
            more = f" (and {nbad - 1} more tile{'s' if nbad > 2 else ''})" if nbad > 1 else ""
            c.record("worst_tile_psnr", False, f"{where}: PSNR {_fmt(tp[ty, tx])} dB < {floors.worst_tile_psnr:g} "
                                               f"dB floor{more}")
    need_luma = any(getattr(floors, n) is not None for n in
                    ("local_snr", "local_structure", "band_kept", "band_invented", "tile_band_kept", "edge_missing",
                     "edge_invented"))
    if need_luma:
        la, lb = M.luma(qa, qm), M.luma(qb, qm)
        if floors.local_snr is not None or floors.local_structure is not None:
            _check_local(c, la, lb, 1.0, floors)
        if any(getattr(floors, n) is not None for n in ("band_kept", "band_invented", "tile_band_kept")):
            _check_bands(c, la, lb, floors)
        if floors.edge_missing is not None or floors.edge_invented is not None:
            _check_edges(c, la, lb, floors)
    return _finish(c, t0)


def _finish(c: _Checker, t0: float) -> Verdict:
    c.checks["verify_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return Verdict(not c.failed, c.failed + c.passed, c.checks, c.failures)


def _check_local(c: _Checker, pa: np.ndarray, pb: np.ndarray, m: float, floors: Floors) -> None:
    w = floors.local_window
    maps = M.local_error_maps(pa, pb, w, signal_floor=floors.local_signal_floor, max_value=m)
    ys, xs = maps["rows"], maps["cols"]
    snr = maps["snr"]
    iy, ix = np.unravel_index(int(np.argmin(snr)), snr.shape)
    v = float(snr[iy, ix])
    y, x = int(ys[iy]), int(xs[ix])
    c.checks["local_snr"] = v
    c.checks["local_snr_at"] = [y, x]
    if floors.local_snr is not None:
        share = 100.0 * 10 ** (-v / 10) if math.isfinite(v) else 0.0
        if v >= floors.local_snr:
            c.record("local_snr", True, f"worst local signal-to-error {_fmt(v)} dB >= {floors.local_snr:g} dB "
                                        f"({w}×{w} window at y={y}, x={x})")
        else:
            nbad = int(np.count_nonzero(snr < floors.local_snr))
            more = f"; {nbad} windows below the floor" if nbad > 1 else ""
            size = (f"{share:.0f}% of" if share < 100 else f"{share / 100:.0f}× larger than" if share < 1e4
                    else "far larger than")
            c.record("local_snr", False, f"window at (y={y}, x={x}) {w}×{w}: signal-to-error {_fmt(v)} dB < "
                                         f"{floors.local_snr:g} dB floor (error {size} the local signal{more})")
    st = maps["structured_snr"]
    iy, ix = np.unravel_index(int(np.argmin(st)), st.shape)
    v = float(st[iy, ix])
    y, x = int(ys[iy]), int(xs[ix])
    c.checks["local_structure"] = v
    c.checks["local_structure_at"] = [y, x]
    if floors.local_structure is None:
        return
    if v >= floors.local_structure:
        c.record("local_structure", True, f"no coherent local shift or blur: worst structured signal-to-error "
                                          f"{_fmt(v)} dB >= {floors.local_structure:g} dB")
        return
    share = float(maps["shift_share"][iy, ix])
    dy, dx = (float(t) for t in maps["shift_px"][iy, ix])
    if share >= 0.5 and math.hypot(dy, dx) <= 4:  # the linear model only measures small displacements
        what = f"structure displaced (≈{math.hypot(dy, dx):.1f} px; dy {dy:+.1f}, dx {dx:+.1f})"
    elif share >= 0.5:
        what = "structure moved or replaced"
    else:
        what = "structure blurred/smoothed"
    nbad = int(np.count_nonzero(st < floors.local_structure))
    more = f"; {nbad} windows below the floor" if nbad > 1 else ""
    c.record("local_structure", False, f"window at (y={y}, x={x}) {w}×{w}: {what}; structured signal-to-error "
                                       f"{_fmt(v)} dB < {floors.local_structure:g} dB floor{more}")


def _check_bands(c: _Checker, la: np.ndarray, lb: np.ndarray, floors: Floors) -> None:
    bands = M.DEFAULT_BANDS
    g = M.band_retention(la, lb, bands=bands)
    judged = g["rms"] >= floors.band_min_rms
    kept = np.where(judged, g["kept"], np.inf)
    inv = np.where(judged, g["invented"], -np.inf)
    c.checks["band_kept"] = {_band_label(*b): round(float(k), 4) for b, k in zip(bands, g["kept"])}
    c.checks["band_invented"] = {_band_label(*b): round(float(k), 4) for b, k in zip(bands, g["invented"])}
    if floors.band_kept is not None:
        if not judged.any():
            c.record("band_kept", True, "no frequency band carries enough energy to judge retention")
        else:
            i = int(np.argmin(kept))
            lo, hi = bands[i]
            ok = kept[i] >= floors.band_kept
            c.record("band_kept", bool(ok),
                     f"band {_band_label(lo, hi)} cycles/px keeps {100 * kept[i]:.0f}% of its energy "
                     f"{'>=' if ok else '<'} {100 * floors.band_kept:.0f}%" + ("" if ok else " floor"))
    if floors.band_invented is not None and judged.any():
        i = int(np.argmax(inv))
        lo, hi = bands[i]
        ok = inv[i] <= floors.band_invented
        c.record("band_invented", bool(ok),
                 f"band {_band_label(lo, hi)} cycles/px: invented energy {100 * inv[i]:.0f}% of the original's "
                 f"{'<=' if ok else '>'} {100 * floors.band_invented:.0f}%" + ("" if ok else " ceiling"))
    elif floors.band_invented is not None:
        c.record("band_invented", True, "no frequency band carries enough energy to judge invented energy")
    if floors.tile_band_kept is not None:
        t = M.band_retention(la, lb, bands=bands, window=floors.band_window)
        judged_t = t["rms"] >= floors.band_min_rms
        kept_t = np.where(judged_t, t["kept"], np.inf)
        if not judged_t.any():
            c.record("tile_band_kept", True, "no window carries enough band energy to judge local retention")
            return
        iy, ix, ib = np.unravel_index(int(np.argmin(kept_t)), kept_t.shape)
        v = float(kept_t[iy, ix, ib])
        y, x = int(t["rows"][iy]), int(t["cols"][ix])
        c.checks["tile_band_kept"] = v
        c.checks["tile_band_kept_at"] = [y, x, _band_label(*bands[ib])]
        w = floors.band_window
        if v >= floors.tile_band_kept:
            c.record("tile_band_kept", True, f"every {w}px window keeps >= {100 * floors.tile_band_kept:.0f}% of "
                                             f"each band (worst {100 * v:.0f}% at y={y}, x={x})")
        else:
            c.record("tile_band_kept", False, f"window at (y={y}, x={x}) {w}×{w}: band {_band_label(*bands[ib])} "
                                              f"cycles/px keeps {100 * v:.0f}% of its energy < "
                                              f"{100 * floors.tile_band_kept:.0f}% floor")


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.view(np.uint8), size=2 * r + 1, mode="constant").view(bool)


def _tile_counts(mask: np.ndarray, tile: int) -> np.ndarray:
    h, w = mask.shape
    ny, nx = -(-h // tile), -(-w // tile)
    p = np.zeros((ny * tile, nx * tile), np.int32)
    p[:h, :w] = mask
    return p.reshape(ny, tile, nx, tile).sum(axis=(1, 3))


def _check_edges(c: _Checker, la: np.ndarray, lb: np.ndarray, floors: Floors) -> None:
    t, tol, tile, nmin = floors.edge_threshold, floors.edge_tolerance, floors.tile, floors.edge_min_pixels
    ga, gb = M.gradient_magnitude(la), M.gradient_magnitude(lb)
    strong_a, strong_b = ga >= t, gb >= t
    # hysteresis: an original edge counts as kept if the reconstruction has at least a weaker edge nearby
    weak_a, weak_b = ga >= 0.5 * t, gb >= 0.5 * t
    missing = strong_a & ~_dilate(weak_b, tol)
    invented = strong_b & ~_dilate(weak_a, tol)
    n_a = _tile_counts(strong_a, tile)
    n_miss = _tile_counts(missing, tile)
    n_inv = _tile_counts(invented, tile)
    base = np.maximum(n_a, nmin)
    # a tile is judged only when enough pixels are involved; otherwise its fraction is 0
    frac_miss = np.where(n_a >= nmin, n_miss / base, 0.0)
    frac_inv = np.where(n_inv >= nmin, n_inv / base, 0.0)
    c.checks["edge_pixels"] = int(strong_a.sum())
    for name, frac, counts, floor, word in (("edge_missing", frac_miss, n_miss, floors.edge_missing, "missing"),
                                            ("edge_invented", frac_inv, n_inv, floors.edge_invented, "invented")):
        iy, ix = np.unravel_index(int(np.argmax(frac)), frac.shape)
        v = float(frac[iy, ix])
        c.checks[name] = v
        c.checks[name + "_tile"] = [int(iy), int(ix)]
        if floor is None:
            continue
        if v <= floor:
            c.record(name, True, f"edges {word}: worst tile {100 * v:.0f}% <= {100 * floor:.0f}% "
                                 f"(tolerance {tol} px)")
            continue
        y0, x0 = iy * tile, ix * tile
        nbad = int(np.count_nonzero(frac > floor))
        more = f"; {nbad} tiles over" if nbad > 1 else ""
        if word == "missing":
            # displaced or gone? look for a reconstruction edge a little farther away
            sl = (slice(y0, y0 + tile), slice(x0, x0 + tile))
            near = _dilate(weak_b, 4)[sl] & missing[sl]
            moved = int(near.sum())
            how = (f", most displaced by ≤ 4 px" if moved * 2 >= counts[iy, ix] else ", most gone (no edge within 4 px)")
            c.record(name, False, f"tile ({iy},{ix}) at x={x0}, y={y0}: {counts[iy, ix]} of {n_a[iy, ix]} edge "
                                  f"pixels of the original missing ({100 * v:.0f}% > {100 * floor:.0f}%){how}{more}")
        else:
            rel = (f"{100 * v:.0f}% of its {n_a[iy, ix]}" if n_a[iy, ix] >= nmin
                   else f"it has {n_a[iy, ix]} there")
            c.record(name, False, f"tile ({iy},{ix}) at x={x0}, y={y0}: {counts[iy, ix]} edge pixels not in the "
                                  f"original ({rel}; > {100 * floor:.0f}%){more}")
