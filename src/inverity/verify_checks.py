"""The verifier's checks, one class each: ``applies(floors)`` says whether it runs, ``run(ctx)`` returns a
:class:`CheckResult` — judged or measured only, with its reason and the window where it is worst.

:data:`CHECKS` is the order they run in, which is the order of their reasons in a verdict (failures first, then
passes). A check that needs expensive shared work (luma, the local error maps, the global band retention, the
edge maps) asks the :class:`Context` for it; the context computes it once for every check that asks. Adding a
check is one class and one entry in :data:`CHECKS`; :func:`inverity.verify.verify` is a loop over them.

Examples
--------
>>> [c.name for c in CHECKS][:5]
['lossless', 'max_abs_error', 'psnr', 'ssimulacra2', 'ms_ssim']
>>> from inverity.verify import Floors
>>> [c.name for c in CHECKS if c.applies(Floors.delivery())]
['max_abs_error', 'psnr', 'ssimulacra2', 'worst_tile_psnr', 'local_snr', 'local_structure']
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics as M
from .verify_types import Box

if TYPE_CHECKING:
    from .verify import Floors

__all__ = ["CheckResult", "Context", "Check", "CHECKS", "local_snr_failed", "local_fine_failed", "fine_window",
           "check_names"]


@dataclass
class CheckResult:
    """What one check found.

    ``passed`` is ``None`` when the check only measured (its floor is not set: the number still goes in the
    decision record); ``value`` is its headline number; ``reason`` is the sentence for the verdict (empty when
    not judged); ``where`` the window where it is worst, in the original's pixels; ``measured`` the entries it
    adds to ``checks``.
    """

    name: str
    passed: bool | None
    value: float | None = None
    reason: str = ""
    where: Box | None = None
    measured: dict[str, Any] = field(default_factory=dict)


def _fmt(x: float, nd: int = 1) -> str:
    return "inf" if math.isinf(x) else f"{x:.{nd}f}"


def _band_label(lo: float, hi: float) -> str:
    return f"{lo:.2f}–{hi:.2f}"


def _box(name: str, value: float, x: int, y: int, w: int, h: int, shape: tuple[int, ...]) -> Box | None:
    """The window (pixels of the original, clipped to it) where check ``name`` is worst."""
    return Box(int(x), int(y), int(w), int(h), name, float(value)).clip(int(shape[0]), int(shape[1]))


class Context:
    """The pair under test and the work several checks share, each piece computed once on first use.

    ``pa``/``pb`` are the pixels (H×W×C) with nominal peak ``m``; ``qa``/``qb``/``qm`` the same on the content
    window where one applies (else the very same arrays); ``se``/``qse`` the squared errors; ``p``/``pq`` the
    PSNR over the nominal range and over the content window.
    """

    def __init__(self, pa: np.ndarray, pb: np.ndarray, m: float, original: Any, floors: "Floors") -> None:
        self.pa, self.pb, self.m, self.floors = pa, pb, m, floors
        self.se = M.squared_error(pa, pb, m)  # once, for PSNR (and the tiles, without a content window)
        self.mae = M.max_abs_error(pa, pb)
        self.p = M.psnr_of_mse(float(self.se.sum(dtype=np.float64)) / pa.size)
        # the yardstick comes from the original alone: a reconstruction must not widen the window it is judged in
        self.window = M.content_window(original)
        if self.window is None:
            self.qa, self.qb, self.qm, self.qse, self.pq = pa, pb, m, self.se, self.p
        else:
            self.qa, self.qb, self.qm = self.window.apply(pa), self.window.apply(pb), 1.0
            self.qse = M.squared_error(self.qa, self.qb, self.qm)
            self.pq = M.psnr_of_mse(float(self.qse.sum(dtype=np.float64)) / pa.size)

    @cached_property
    def luma(self) -> tuple[np.ndarray, np.ndarray]:
        """Structure checks run on luma: chroma subsampling legitimately drops chroma detail."""
        return M.luma(self.qa, self.qm), M.luma(self.qb, self.qm)

    @cached_property
    def local_luma(self) -> tuple[np.ndarray, np.ndarray]:
        """The luma pair the local checks judge: the original's luma and a reconstruction whose error at each
        pixel is the smaller of its luma error and its constant-luminance error (:func:`inverity.metrics.luminance`).

        JPEG keeps luma exactly, so chroma subsampling leaves it alone but moves constant luminance at colour
        edges; a codec's error in the dark channels of a saturated colour (JPEG XL d1 on a deep red dress) moves
        luma by several levels but the light that reaches the eye by almost nothing. A moved line, a removed spot
        or a replaced patch changes both.
        """
        la, lb = self.luma
        if self.qa.shape[2] < 3:
            return la, lb
        e1 = lb - la
        e2 = M.luminance(self.qb, self.qm) - M.luminance(self.qa, self.qm)
        return la, la + np.where(np.abs(e1) <= np.abs(e2), e1, e2)

    @cached_property
    def local_maps(self) -> dict[str, np.ndarray]:
        la, lb = self.local_luma
        return M.local_error_maps(la, lb, self.floors.local_window, signal_floor=self.floors.local_signal_floor,
                                  max_value=1.0)

    @cached_property
    def local_peak(self) -> np.ndarray:
        """Peak absolute luma error (0..1 scale) per local window, on the grid of :attr:`local_maps`."""
        la, lb = self.local_luma
        e = np.abs(lb - la)
        blk = max(2, self.floors.local_window // 2)
        h, w = e.shape
        ny, nx = -(-h // blk), -(-w // blk)
        p = np.zeros((ny * blk, nx * blk), e.dtype)
        p[:h, :w] = e
        m = p.reshape(ny, blk, nx, blk).max(axis=(1, 3))
        if m.shape[0] > 1:
            m = np.maximum(m[:-1], m[1:])
        if m.shape[1] > 1:
            m = np.maximum(m[:, :-1], m[:, 1:])
        return m

    @cached_property
    def fine_maps(self) -> dict[str, np.ndarray]:
        """:func:`inverity.metrics.fine_error_maps` on windows of half ``local_window`` (at least 4 px)."""
        la, lb = self.local_luma
        f = self.floors
        return M.fine_error_maps(la, lb, fine_window(f), signal_floor=f.local_signal_floor,
                                 visible=f.local_fine_visible, max_value=1.0)

    @cached_property
    def bands(self) -> dict[str, np.ndarray]:
        la, lb = self.luma
        return M.band_retention(la, lb, bands=M.DEFAULT_BANDS)

    @cached_property
    def edges(self) -> dict[str, np.ndarray]:
        f = self.floors
        la, lb = self.luma
        t, tol, tile, nmin = f.edge_threshold, f.edge_tolerance, f.tile, f.edge_min_pixels
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
        return {"strong_a": strong_a, "weak_b": weak_b, "missing": missing, "n_a": n_a, "n_miss": n_miss,
                "n_inv": n_inv, "frac_missing": np.where(n_a >= nmin, n_miss / base, 0.0),
                "frac_invented": np.where(n_inv >= nmin, n_inv / base, 0.0)}


class Check:
    """One check: its floor's ``name``, when it runs, what it finds, and how its value reads.

    ``stricter``: ``"higher"`` when a higher floor is stricter (the value must reach it), ``"lower"`` when a
    lower one is, ``None`` for a switch (``lossless``). ``unit``: ``"dB"``, ``"share"`` (0..1, read as a
    percentage) or ``""``. ``structure``: one of "the structure checks" the learned stage is verified with.
    Policies, the report and the review read these here (:func:`check_names`), not from lists of their own.
    """

    name: str = ""
    stricter: str | None = None
    unit: str = ""
    structure: bool = False

    def applies(self, floors: "Floors") -> bool:
        """Whether :meth:`run` is called (to judge or only to measure) under ``floors``."""
        return getattr(floors, self.name) is not None

    def run(self, ctx: Context) -> CheckResult:
        raise NotImplementedError

    def floor(self, ctx: Context) -> Any:
        return getattr(ctx.floors, self.name)


class Lossless(Check):
    name = "lossless"

    def applies(self, floors: "Floors") -> bool:
        return bool(floors.lossless)

    def run(self, ctx: Context) -> CheckResult:
        # only reached for differing pixels: identical ones are settled before any check runs
        pa, pb = ctx.pa, ctx.pb
        diff = pa.astype(np.int64) - pb.astype(np.int64) if pa.dtype.kind in "ui" else pa - pb
        n = int(np.count_nonzero(diff))
        return CheckResult(self.name, False, float(n), f"not bit-exact: {n} of {pa.size} samples differ, "
                                                       f"max abs error {M.max_abs_error(pa, pb)}")


class MaxAbsError(Check):
    name = "max_abs_error"
    stricter = "lower"

    def applies(self, floors: "Floors") -> bool:
        return True  # always measured: the record carries it

    def run(self, ctx: Context) -> CheckResult:
        mae, floor = ctx.mae, ctx.floors.max_abs_error
        out = CheckResult(self.name, None, float(mae), measured={"max_abs_error": mae})
        if floor is not None:
            out.passed = bool(mae <= floor)
            out.reason = f"max abs error {mae} {'<=' if mae <= floor else '>'} {floor:g}"
        return out


class Psnr(Check):
    name = "psnr"
    stricter, unit = "higher", "dB"

    def applies(self, floors: "Floors") -> bool:
        return True  # always measured

    def run(self, ctx: Context) -> CheckResult:
        out = CheckResult(self.name, None, ctx.pq, measured={"psnr": ctx.p})
        what = ""
        if ctx.window is not None:
            out.measured.update(window=ctx.window.to_dict(), psnr_window=ctx.pq)
            what = f" over the content window ({_fmt(ctx.p, 2)} dB over 0–{ctx.window.nominal:g})"
        floor = ctx.floors.psnr
        if floor is not None:
            out.passed = bool(ctx.pq >= floor)
            out.reason = f"PSNR {_fmt(ctx.pq, 2)} dB{what} {'>=' if ctx.pq >= floor else '<'} {floor:g} dB"
        return out


class Ssimulacra2(Check):
    name = "ssimulacra2"
    stricter = "higher"

    def run(self, ctx: Context) -> CheckResult:
        floor = ctx.floors.ssimulacra2
        if min(ctx.pa.shape[:2]) < 8:
            return CheckResult(self.name, False, None, f"ssimulacra2 cannot be computed below 8×8 "
                                                       f"({ctx.pa.shape[1]}×{ctx.pa.shape[0]})")
        s2 = M.ssimulacra2(ctx.qa, ctx.qb, max_value=ctx.qm)
        return CheckResult(self.name, bool(s2 >= floor), s2, f"ssimulacra2 {s2:.1f} {'>=' if s2 >= floor else '<'} "
                                                             f"{floor:g}", measured={"ssimulacra2": s2})


class MsSsim(Check):
    name = "ms_ssim"
    stricter = "higher"

    def run(self, ctx: Context) -> CheckResult:
        floor = ctx.floors.ms_ssim
        v = M.ms_ssim(ctx.qa, ctx.qb, max_value=ctx.qm)
        return CheckResult(self.name, bool(v >= floor), v, f"MS-SSIM {v:.4f} {'>=' if v >= floor else '<'} {floor:g}",
                           measured={"ms_ssim": v})


class WorstTilePsnr(Check):
    name = "worst_tile_psnr"
    stricter, unit = "higher", "dB"

    def applies(self, floors: "Floors") -> bool:
        return True  # always measured, and always located

    def run(self, ctx: Context) -> CheckResult:
        tile, floor = ctx.floors.tile, ctx.floors.worst_tile_psnr
        tp = M.tile_psnr(ctx.qse, tile, ctx.pa.shape[2])
        ty, tx = np.unravel_index(int(np.argmin(tp)), tp.shape)
        v = float(tp[ty, tx])
        out = CheckResult(self.name, None, v, where=_box(self.name, v, tx * tile, ty * tile, tile, tile, ctx.pa.shape),
                          measured={"worst_tile_psnr": v})
        if floor is None:
            return out
        where = f"tile ({ty},{tx}) at x={tx * tile}, y={ty * tile}"
        out.passed = bool(v >= floor)
        if out.passed:
            out.reason = f"worst {tile}px tile PSNR {_fmt(v)} dB >= {floor:g} dB ({where})"
        else:
            nbad = int(np.count_nonzero(tp < floor))
            more = f" (and {nbad - 1} more tile{'s' if nbad > 2 else ''})" if nbad > 1 else ""
            out.reason = f"{where}: PSNR {_fmt(v)} dB < {floor:g} dB floor{more}"
        return out


class _Local(Check):
    """Both local checks run (and are recorded) when either floor is set: one computation of the maps."""

    def applies(self, floors: "Floors") -> bool:
        return floors.local_snr is not None or floors.local_structure is not None


def local_snr_failed(snr: np.ndarray, floor: float, peak: np.ndarray | None = None, visible: float = 0.0,
                     hard: float | None = None) -> bool:
    """The local signal-to-error decision (a two-tier, JND-style rule).

    A window below ``hard`` dB (capped at ``floor``) fails outright: its error is a large share of the local
    signal. A window between ``hard`` and ``floor`` fails only when its error is *visible*: its peak luma error
    ``peak`` (0..1 scale, same window grid as ``snr``) reaches ``visible``. Benign high-quality codec noise on
    unseen content (JPEG XL d1 on a manga page, JPEG q90 on an aerial photo) sits a hair under the floor with
    peak errors ≤ 24 of 255 levels; a moved line or a removed spot at the same ratio changes pixels by 30–200
    levels. ``visible=0`` (or no ``peak``) makes every window below ``floor`` fail: the single-window rule.

    Examples
    --------
    >>> m = np.array([[8.8, 20.0], [30.0, 25.0]])
    >>> low, high = np.full((2, 2), 0.04), np.full((2, 2), 0.3)
    >>> local_snr_failed(m, 9.0), local_snr_failed(m, 9.0, low, 0.1), local_snr_failed(m, 9.0, high, 0.1)
    (True, False, True)
    >>> local_snr_failed(m - 4, 9.0, low, 0.1, hard=6.0)
    True
    """
    below = snr < floor
    if peak is not None and visible > 0:
        below &= peak >= visible
    return bool(below.any() or (hard is not None and (snr < min(hard, floor)).any()))


class LocalSnr(_Local):
    name = "local_snr"
    stricter, unit = "higher", "dB"

    def run(self, ctx: Context) -> CheckResult:
        f = ctx.floors
        maps, w, floor = ctx.local_maps, f.local_window, f.local_snr
        snr = maps["snr"]
        iy, ix = np.unravel_index(int(np.argmin(snr)), snr.shape)
        v = float(snr[iy, ix])
        y, x = int(maps["rows"][iy]), int(maps["cols"][ix])
        out = CheckResult(self.name, None, v, where=_box(self.name, v, x, y, w, w, ctx.pa.shape),
                          measured={"local_snr": v})
        if floor is None:
            return out
        share = 100.0 * 10 ** (-v / 10) if math.isfinite(v) else 0.0
        nbad = int(np.count_nonzero(snr < floor))
        vis, hard = f.local_snr_visible, f.local_snr_hard
        peak = ctx.local_peak if vis > 0 else None
        out.passed = not local_snr_failed(snr, floor, peak, vis, hard)
        if peak is not None:
            out.measured["local_peak_error"] = float(peak[iy, ix])
        if out.passed:
            few = (f"; {nbad} window{'s' if nbad > 1 else ''} below {floor:g} dB, none with a visible error (peak "
                   f"< {vis:g} of the range) and none below {min(hard, floor):g} dB" if nbad and peak is not None
                   else "")
            out.reason = (f"worst local signal-to-error {_fmt(v)} dB{'' if nbad else f' >= {floor:g} dB'} ({w}×{w} "
                          f"window at y={y}, x={x}){few}")
        else:
            below = floor
            if peak is not None:
                # report the worst window below the floor with a visible error; else the one under the hard floor
                bad = np.where((snr < floor) & (peak >= vis), snr, np.inf)
                if np.isfinite(bad).any():
                    iy, ix = np.unravel_index(int(np.argmin(bad)), bad.shape)
                    v = float(snr[iy, ix])
                    y, x = int(maps["rows"][iy]), int(maps["cols"][ix])
                    out.where = _box(self.name, v, x, y, w, w, ctx.pa.shape)
                    share = 100.0 * 10 ** (-v / 10)
                else:
                    below = min(hard, floor)
            more = f"; {nbad} windows below the floor" if nbad > 1 else ""
            size = (f"{share:.0f}% of" if share < 100 else f"{share / 100:.0f}× larger than" if share < 1e4
                    else "far larger than")
            out.reason = (f"window at (y={y}, x={x}) {w}×{w}: signal-to-error {_fmt(v)} dB < {below:g} dB floor "
                          f"(error {size} the local signal{more})")
        return out


class LocalStructure(_Local):
    name = "local_structure"
    stricter, unit, structure = "higher", "dB", True

    def run(self, ctx: Context) -> CheckResult:
        maps, w, floor = ctx.local_maps, ctx.floors.local_window, ctx.floors.local_structure
        st = maps["structured_snr"]
        iy, ix = np.unravel_index(int(np.argmin(st)), st.shape)
        v = float(st[iy, ix])
        y, x = int(maps["rows"][iy]), int(maps["cols"][ix])
        out = CheckResult(self.name, None, v, where=_box(self.name, v, x, y, w, w, ctx.pa.shape),
                          measured={"local_structure": v})
        if floor is None:
            return out
        out.passed = bool(v >= floor)
        if out.passed:
            out.reason = (f"no coherent local shift or blur: worst structured signal-to-error {_fmt(v)} dB >= "
                          f"{floor:g} dB")
            return out
        share = float(maps["shift_share"][iy, ix])
        dy, dx = (float(t) for t in maps["shift_px"][iy, ix])
        if share >= 0.5 and math.hypot(dy, dx) <= 4:  # the linear model only measures small displacements
            what = f"structure displaced (≈{math.hypot(dy, dx):.1f} px; dy {dy:+.1f}, dx {dx:+.1f})"
        elif share >= 0.5:
            what = "structure moved or replaced"
        else:
            what = "structure blurred/smoothed"
        nbad = int(np.count_nonzero(st < floor))
        more = f"; {nbad} windows below the floor" if nbad > 1 else ""
        out.reason = (f"window at (y={y}, x={x}) {w}×{w}: {what}; structured signal-to-error {_fmt(v)} dB < "
                      f"{floor:g} dB floor{more}")
        return out


def fine_window(floors: "Floors") -> int:
    """The window of :class:`LocalFine`: half the local window, at least 4 px."""
    return max(4, floors.local_window // 2)


def local_fine_failed(snr: np.ndarray, visible: np.ndarray, floor: float, pixels: int) -> np.ndarray:
    """The windows the JND-style small-window decision fails: masked signal-to-error below ``floor`` dB *and* at
    least ``pixels`` pixels with a visible error (``visible`` counts them per window, see
    :func:`inverity.metrics.fine_error_maps`).

    Examples
    --------
    >>> snr = np.array([[4.0, 4.0], [20.0, 12.0]]); vis = np.array([[1, 5], [9, 0]])
    >>> local_fine_failed(snr, vis, 9.0, 2).tolist()
    [[False, True], [False, False]]
    """
    return (snr < floor) & (visible >= pixels)


class LocalFine(Check):
    """Small windows (half the local window), a two-part, JND-style decision.

    A 16-px window averages a 1-px shift of an 8-px structure (a vessel in a 64×64 MR slice, a line on a smooth
    ramp) with its calm surround, and the error stays under the local floor. On windows half that size the same
    edit is as large as the local signal; but so, now and then, is one ringing pixel of a good codec. So a window
    fails only when both hold: the error is large against the contrast that masks it (signal-to-error below
    ``local_fine`` dB, the original's variance plus ``local_signal_floor``², as for ``local_snr``), and it is
    visible on several pixels (at least ``local_fine_pixels`` pixels whose luma error reaches
    ``local_fine_visible`` of the range). Fitted leave-one-source-out in ``benchmarks/verifier_calibration.py``.
    """

    name = "local_fine"
    stricter, unit = "higher", "dB"

    def run(self, ctx: Context) -> CheckResult:
        f = ctx.floors
        maps, w, floor = ctx.fine_maps, fine_window(f), f.local_fine
        snr, vis = maps["snr"], maps["visible"]
        # the worst window is the lowest ratio among those with visible pixels (else the lowest overall)
        judged = vis >= f.local_fine_pixels
        score = np.where(judged, snr, np.inf) if judged.any() else snr
        iy, ix = np.unravel_index(int(np.argmin(score)), score.shape)
        v = float(snr[iy, ix])
        y, x = int(maps["rows"][iy]), int(maps["cols"][ix])
        out = CheckResult(self.name, None, v, where=_box(self.name, v, x, y, w, w, ctx.pa.shape),
                          measured={"local_fine": v, "local_fine_visible": int(vis[iy, ix])})
        if floor is None:
            return out
        bad = local_fine_failed(snr, vis, floor, f.local_fine_pixels)
        out.passed = not bool(bad.any())
        step = f"{100 * f.local_fine_visible:.0f}% of the range"
        if out.passed:
            worst = (f"worst such {_fmt(v)} dB at y={y}, x={x}" if judged.any()
                     else f"no window has {f.local_fine_pixels} such pixels")
            out.reason = (f"no {w}×{w} window with a visible error (≥ {f.local_fine_pixels} px off by ≥ {step}) "
                          f"below {floor:g} dB signal-to-error ({worst})")
            return out
        nbad = int(np.count_nonzero(bad))
        more = f"; {nbad} windows fail" if nbad > 1 else ""
        la, lb = ctx.local_luma
        peak = float(np.abs(lb[y:y + w, x:x + w] - la[y:y + w, x:x + w]).max())
        out.reason = (f"window at (y={y}, x={x}) {w}×{w}: {int(vis[iy, ix])} pixels off by ≥ {step}, "
                      f"signal-to-error {_fmt(v)} dB < {floor:g} dB floor (peak error {100 * peak:.0f}% of the "
                      f"range){more}")
        return out


class _GlobalBands(Check):
    """The global band numbers are recorded whenever any band floor is set."""

    def applies(self, floors: "Floors") -> bool:
        return any(getattr(floors, n) is not None for n in ("band_kept", "band_invented", "tile_band_kept"))

    def judged(self, ctx: Context) -> np.ndarray:
        return ctx.bands["rms"] >= ctx.floors.band_min_rms


class BandKept(_GlobalBands):
    name = "band_kept"
    stricter, structure = "higher", True

    def run(self, ctx: Context) -> CheckResult:
        g, bands, floor = ctx.bands, M.DEFAULT_BANDS, ctx.floors.band_kept
        out = CheckResult(self.name, None, measured={
            "band_kept": {_band_label(*b): round(float(k), 4) for b, k in zip(bands, g["kept"])}})
        if floor is None:
            return out
        judged = self.judged(ctx)
        if not judged.any():
            out.passed, out.reason = True, "no frequency band carries enough energy to judge retention"
            return out
        kept = np.where(judged, g["kept"], np.inf)
        i = int(np.argmin(kept))
        ok = bool(kept[i] >= floor)
        out.passed, out.value = ok, float(kept[i])
        out.reason = (f"band {_band_label(*bands[i])} cycles/px keeps {100 * kept[i]:.0f}% of its energy "
                      f"{'>=' if ok else '<'} {100 * floor:.0f}%" + ("" if ok else " floor"))
        return out


class BandInvented(_GlobalBands):
    name = "band_invented"
    stricter, structure = "lower", True

    def run(self, ctx: Context) -> CheckResult:
        g, bands, floor = ctx.bands, M.DEFAULT_BANDS, ctx.floors.band_invented
        out = CheckResult(self.name, None, measured={
            "band_invented": {_band_label(*b): round(float(k), 4) for b, k in zip(bands, g["invented"])}})
        if floor is None:
            return out
        judged = self.judged(ctx)
        if not judged.any():
            out.passed, out.reason = True, "no frequency band carries enough energy to judge invented energy"
            return out
        inv = np.where(judged, g["invented"], -np.inf)
        i = int(np.argmax(inv))
        ok = bool(inv[i] <= floor)
        out.passed, out.value = ok, float(inv[i])
        out.reason = (f"band {_band_label(*bands[i])} cycles/px: invented energy {100 * inv[i]:.0f}% of the "
                      f"original's {'<=' if ok else '>'} {100 * floor:.0f}%" + ("" if ok else " ceiling"))
        return out


class TileBandKept(Check):
    name = "tile_band_kept"
    stricter, unit, structure = "higher", "share", True

    def run(self, ctx: Context) -> CheckResult:
        f, bands = ctx.floors, M.DEFAULT_BANDS
        la, lb = ctx.luma
        t = M.band_retention(la, lb, bands=bands, window=f.band_window)
        judged = t["rms"] >= f.band_min_rms
        if not judged.any():
            return CheckResult(self.name, True, None, "no window carries enough band energy to judge local retention")
        kept = np.where(judged, t["kept"], np.inf)
        iy, ix, ib = np.unravel_index(int(np.argmin(kept)), kept.shape)
        v = float(kept[iy, ix, ib])
        y, x, w = int(t["rows"][iy]), int(t["cols"][ix]), f.band_window
        out = CheckResult(self.name, bool(v >= f.tile_band_kept), v, where=_box(self.name, v, x, y, w, w, la.shape),
                          measured={"tile_band_kept": v})
        if out.passed:
            out.reason = (f"every {w}px window keeps >= {100 * f.tile_band_kept:.0f}% of each band (worst "
                          f"{100 * v:.0f}% at y={y}, x={x})")
        else:
            out.reason = (f"window at (y={y}, x={x}) {w}×{w}: band {_band_label(*bands[ib])} cycles/px keeps "
                          f"{100 * v:.0f}% of its energy < {100 * f.tile_band_kept:.0f}% floor")
        return out


class _Edges(Check):
    """Missing and invented edges share one edge analysis; both are recorded when either floor is set."""

    word = ""

    def applies(self, floors: "Floors") -> bool:
        return floors.edge_missing is not None or floors.edge_invented is not None

    def run(self, ctx: Context) -> CheckResult:
        e, f = ctx.edges, ctx.floors
        tile, tol, nmin, floor = f.tile, f.edge_tolerance, f.edge_min_pixels, self.floor(ctx)
        frac, counts, n_a = e["frac_" + self.word], e["n_miss" if self.word == "missing" else "n_inv"], e["n_a"]
        iy, ix = np.unravel_index(int(np.argmax(frac)), frac.shape)
        v = float(frac[iy, ix])
        la = ctx.luma[0]
        # no tile judged (or none with a missing/invented edge): nothing to point at
        where = _box(self.name, v, ix * tile, iy * tile, tile, tile, la.shape) if v > 0 else None
        out = CheckResult(self.name, None, v, where=where, measured={"edge_pixels": int(e["strong_a"].sum()),
                                                                      self.name: v})
        if floor is None:
            return out
        out.passed = bool(v <= floor)
        if out.passed:
            out.reason = f"edges {self.word}: worst tile {100 * v:.0f}% <= {100 * floor:.0f}% (tolerance {tol} px)"
            return out
        y0, x0 = iy * tile, ix * tile
        nbad = int(np.count_nonzero(frac > floor))
        more = f"; {nbad} tiles over" if nbad > 1 else ""
        if self.word == "missing":
            # displaced or gone? look for a reconstruction edge a little farther away
            sl = (slice(y0, y0 + tile), slice(x0, x0 + tile))
            moved = int((_dilate(e["weak_b"], 4)[sl] & e["missing"][sl]).sum())
            how = (", most displaced by ≤ 4 px" if moved * 2 >= counts[iy, ix] else ", most gone (no edge within 4 px)")
            out.reason = (f"tile ({iy},{ix}) at x={x0}, y={y0}: {counts[iy, ix]} of {n_a[iy, ix]} edge pixels of the "
                          f"original missing ({100 * v:.0f}% > {100 * floor:.0f}%){how}{more}")
        else:
            rel = f"{100 * v:.0f}% of its {n_a[iy, ix]}" if n_a[iy, ix] >= nmin else f"it has {n_a[iy, ix]} there"
            out.reason = (f"tile ({iy},{ix}) at x={x0}, y={y0}: {counts[iy, ix]} edge pixels not in the original "
                          f"({rel}; > {100 * floor:.0f}%){more}")
        return out


class EdgeMissing(_Edges):
    name, word = "edge_missing", "missing"
    stricter, unit, structure = "lower", "share", True


class EdgeInvented(_Edges):
    name, word = "edge_invented", "invented"
    stricter, unit, structure = "lower", "share", True


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


#: every check, in the order it runs and its reason is listed
CHECKS: tuple[Check, ...] = (Lossless(), MaxAbsError(), Psnr(), Ssimulacra2(), MsSsim(), WorstTilePsnr(),
                             LocalSnr(), LocalStructure(), LocalFine(), BandKept(), BandInvented(), TileBandKept(),
                             EdgeMissing(), EdgeInvented())


def check_names(*, stricter: str | None = None, unit: str | None = None,
                structure: bool | None = None) -> tuple[str, ...]:
    """Names of the checks (in :data:`CHECKS` order) with the given properties; ``None`` matches any.

    >>> check_names(structure=True)
    ('local_structure', 'band_kept', 'band_invented', 'tile_band_kept', 'edge_missing', 'edge_invented')
    >>> check_names(stricter="lower")
    ('max_abs_error', 'band_invented', 'edge_missing', 'edge_invented')
    """
    return tuple(c.name for c in CHECKS if (stricter is None or c.stricter == stricter)
                 and (unit is None or c.unit == unit) and (structure is None or c.structure == structure))
