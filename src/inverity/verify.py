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
* **small windows** (``local_fine``) — the signal-to-error ratio on windows half the size (8 px), failing only
  where several pixels carry a visible error: a 1–2 px shift of a small structure (a vessel in a 64×64 MR slice,
  a line on a smooth ramp) that 16-px windows average away;
* **spectral retention** — per radial frequency band, the share of the original's energy the reconstruction
  keeps and the energy it invents, globally and per window (a learned codec's spectral bias quietly drops bands
  it rarely saw in training);
* **edges** — strong edges of the original with no edge within ``edge_tolerance`` px in the reconstruction
  (missing or displaced), and strong edges the original does not have (invented), counted per tile.

Structure checks run on luma: chroma subsampling (JPEG 4:2:0) legitimately drops chroma detail. The local checks
(signal-to-error, structure, small windows) count at each pixel the smaller of the luma error and the
constant-luminance error (:attr:`~inverity.verify_checks.Context.local_luma`): JPEG keeps luma exactly, and a
codec's error in the dark channels of a saturated colour moves luma but hardly the light.

**Where.** Every check that localises records the window where it is worst as a :class:`Box` in the original's
pixels — ``checks["worst_windows"]``, a list of ``{"x", "y", "w", "h", "check", "value"}`` (worst tile PSNR on
the ``tile`` grid, local signal-to-error and structure windows, the worst band-retention window, the worst edge
tiles) — whether or not the check is judged under the floors. The audit page draws exactly these boxes.

**Checks.** Each check is one class in :mod:`inverity.verify_checks` (``applies(floors)``, ``run(ctx) ->
CheckResult(passed, value, reason, where)``); :func:`verify` settles shape mismatches and identical pixels, then
runs :data:`~inverity.verify_checks.CHECKS` in order over one shared :class:`~inverity.verify_checks.Context`.

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

import functools
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any, Union

import numpy as np

from . import metrics as M
from .errors import PolicyError
from .image import Image
from .verify_checks import CHECKS, Context
from .verify_types import Box

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject pins tomli for 3.10
    import tomli as tomllib

__all__ = ["Floors", "Verdict", "verify", "PRESETS", "Box"]

ImageLike = Union[Image, np.ndarray]


@dataclass(frozen=True)
class Floors:
    """Thresholds a reconstruction must meet; ``None`` means "not checked".

    Global: ``lossless`` (bit-exact), ``max_abs_error`` (in the image's units), ``psnr`` (dB; over the content
    window where one applies, see the module docstring), ``ssimulacra2``, ``ms_ssim``.
    Local fidelity: ``worst_tile_psnr`` (dB, over ``tile``×``tile`` tiles); ``local_snr`` (dB, the minimum over
    ``local_window`` windows stepping by half a window of 10·log10((variance of the original + floor²) / MSE),
    with ``local_signal_floor`` on the 0..1 scale; a window below it fails only if its peak luma error reaches
    ``local_snr_visible`` (share of the range; 0 = always), and any window below ``local_snr_hard`` dB fails, see
    :func:`inverity.verify_checks.local_snr_failed`); ``local_structure`` (dB, the same ratio for the part of the
    error that is a coherent displacement or blur of the original's structure, see
    :func:`inverity.metrics.local_error_maps`); ``local_fine`` (dB, the same signal-to-error ratio on windows half
    the size, ``local_window // 2`` px: a window below it fails when at least ``local_fine_pixels`` of its pixels
    have a luma error of at least ``local_fine_visible`` (share of the range), see
    :class:`inverity.verify_checks.LocalFine`).
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
    local_snr_visible: float = 0.0
    local_snr_hard: float = 0.0
    local_fine: float | None = None
    local_fine_visible: float = 0.08
    local_fine_pixels: int = 4
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
        if self.local_fine_pixels < 1:
            raise PolicyError(f"floors: local_fine_pixels must be at least 1, got {self.local_fine_pixels}")
        if self.edge_tolerance < 0 or self.edge_min_pixels < 1:
            raise PolicyError("floors: edge_tolerance must be >= 0 and edge_min_pixels >= 1")
        for name in ("band_kept", "tile_band_kept", "edge_missing", "ms_ssim", "local_snr_visible",
                     "local_fine_visible"):
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
        (error as large as half the local signal). The numbers are the ``[floors]`` of the built-in policy file
        ``policies/builtin/delivery.toml`` (one place: the policy and this preset cannot disagree)."""
        return _builtin_floors("delivery")

    @classmethod
    def controlled(cls) -> "Floors":
        """Delivery's perceptual floor plus the structure checks the learned stage is verified with.

        Calibrated (never on Kodak) so that JPEG q90–98 (4:4:4, 4:2:0), JPEG XL d ≤ 1 and WebP q90–98 pass and the
        planted edits of :mod:`inverity.bench.planted` fail: see ``benchmarks/legibility.py``. No PSNR or
        absolute tile-PSNR floor: on dense line art and screen tones a good JPEG scores below 30 dB, while the
        activity-normalised local checks judge every content kind on the same scale.

        The local signal-to-error floor is two-tier (``local_snr_visible``, ``local_snr_hard``): a 16-px window
        under 9 dB fails only if its peak luma error is visible (≥ 10% of the range, ≈ 26 of 255 levels), and any
        window under 7 dB fails. The small-window check ``local_fine`` fails an 8-px window under 11 dB with at
        least 4 pixels off by ≥ 8% of the range (≈ 20 levels): a 1–2 px shift of a small structure that 16-px
        windows average away. Fitted leave-one-source-out over train/ and ood/
        (``benchmarks/verifier_calibration.py``: 248 benign JPEG q90/q95, JPEG XL d0.5/d1 pairs, 1520 planted
        edits): held-out benign flagged 1.6% (was 2.8%; every remaining flag comes from ``ssimulacra2`` or
        ``local_structure``), planted detection ≥ 98% for every edit type and content kind (medical 92.6% →
        98.3%, line shift 94.7% → 98.7%).

        The numbers are the ``[floors]`` of the built-in policy file ``policies/builtin/controlled.toml``.
        """
        return _builtin_floors("controlled")

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


@functools.lru_cache(maxsize=None)
def _builtin_floors(policy: str) -> Floors:
    """The ``[floors]`` table of a built-in policy file (package data), parsed once (``Floors`` is frozen)."""
    path = resources.files("inverity").joinpath("policies", "builtin", f"{policy}.toml")
    with path.open("rb") as f:
        return Floors.from_dict(tomllib.load(f)["floors"])


_CHECK_FIELDS = ("lossless", "max_abs_error", "psnr", "ssimulacra2", "ms_ssim", "worst_tile_psnr", "local_snr",
                 "local_structure", "local_fine",
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
    checks used the original's content window), the measured numbers in ``checks`` (for the decision record;
    ``checks["worst_windows"]`` holds where each localising check is worst, as :class:`Box` dicts) and the names
    of the failed checks in ``failures``."""

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


def verify(original: ImageLike, reconstruction: ImageLike, floors: Floors | None = None) -> Verdict:
    """Check ``reconstruction`` against ``original`` under ``floors`` (default :meth:`Floors.controlled`).

    Never raises for a bad reconstruction: a shape, channel or dtype mismatch is a failed verdict with its
    reason. Costs ≈ 100–150 ms for a 768×512 RGB pair with every check on (SSIMULACRA 2 is most of it).
    """
    floors = Floors.controlled() if floors is None else floors
    t0 = time.perf_counter()
    with M.SingleThreadBlas():  # many small products: threaded BLAS only spins (and fights a worker pool)
        return _verify(original, reconstruction, floors, t0)


def _verify(original: ImageLike, reconstruction: ImageLike, floors: Floors, t0: float) -> Verdict:
    pa, ma = M.pixels(original)
    pb, _ = M.pixels(reconstruction)
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
    identical = bool(np.array_equal(pa, pb))
    checks: dict[str, Any] = {"lossless": identical}
    if identical:  # every floor is met trivially; skip the work
        checks.update({"psnr": math.inf, "max_abs_error": 0})
        passed = [f"{n}: identical pixels" if n != "lossless" else "bit-exact: every sample identical"
                  for n in floors.checked()]
        return _finish(Verdict(True, passed, checks, []), [], t0)
    ctx = Context(pa, pb, ma, original, floors)
    results = [chk.run(ctx) for chk in CHECKS if chk.applies(floors)]
    failed = [r for r in results if r.passed is False]
    passed = [r.reason for r in results if r.passed]
    if ctx.window is not None and any(n not in ("lossless", "max_abs_error") for n in floors.checked()):
        passed.insert(0, f"{ctx.window.describe()}: checks use that window")
    for r in results:
        checks.update(r.measured)
    verdict = Verdict(not failed, [r.reason for r in failed] + passed, checks, [r.name for r in failed])
    return _finish(verdict, [r.where for r in results if r.where is not None], t0)


def _finish(verdict: Verdict, windows: list[Box], t0: float) -> Verdict:
    verdict.checks["worst_windows"] = [b.to_dict() for b in windows]
    verdict.checks["verify_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return verdict
