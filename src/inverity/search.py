"""The quality search: predict where an image passes its floors, then confirm with as few verified encodes as
possible. Shared by the pipeline (:func:`inverity.pipeline.compress_one`) and the routing benchmark's oracle.

Routing gives a list of candidate stages; for a lossy stage with ``search`` the pipeline needs the quality that
meets the floors at the fewest bytes. Encoding and verifying is the expensive part (an AVIF encode of a 0.4 MP
photo ≈ 0.2–0.5 s, the controlled floors' structure checks ≈ 0.5 s), so the search spends as few as it can::

    profile.features ─► quality model (stage, floor set, kind) ─► q_τ: passes with probability ≈ τ
                      └► rate model (stage) ─────────────────────► predicted bytes, and a lower bound
    group of candidates, in predicted-bytes order
      for each: skip it if its bytes lower bound cannot beat the best passing size so far
        probe q_τ ─► attempt(): encode ─► same bitstream seen? reuse its verdict (memo: quality → sha256)
                                 │ bytes ≥ best passing size? stop here: it cannot win (not verified)
                                 ▼
                      decode ─► global floors (SSIMULACRA 2, PSNR) — on a ½-scale copy first for large images,
                                 a clear failure exits early — then the structure floors (local, bands, edges)
        then step by the margin over the floor ÷ the check's slope (secant once a probe on each side exists)
    the smallest passing attempt of the group wins; it was always verified in full at full resolution

``effort`` (a policy field) trades encodes for bytes: ``max`` is the exhaustive reference — the bisection over
the stage's whole quality range that the pipeline always ran, every candidate of a group searched, one full
verification per probe; ``balanced`` (the default) and ``fast`` predict, confirm and stop early, and ask the
codecs for faster settings (:data:`EFFORT_OPTIONS`: ``balanced`` AVIF speed 7, ``fast`` more). Never does any
effort start at the top of a quality range (AVIF q=100 is its lossless mode: the slowest, largest encode), probe
one bitstream twice, or ship a prediction: the chosen output always passed a full verification.

The predictors are fitted by ``scripts/fit_search.py`` on ``shared/datasets/train`` and ``ood/*`` (never Kodak
or validation) and shipped as ``data/search_model.json`` with their provenance; without that file, or for a
stage, floor set or content the file does not cover, the search falls back to the prior-free bisection.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ._search_model import (CHECK_DIRECTION, DEFAULT_SLOPE, GLOBAL_FLOORS, STRUCTURE_FLOORS, Predictor, floor_set_key,
                            load_predictor, search_model_path, thresholds)
# the predictors' inputs and floor sets, for scripts/fit_search.py (explicit re-exports)
from ._search_model import FLOOR_SETS as FLOOR_SETS, LOG_FEATURES as LOG_FEATURES, MODEL_FEATURES as MODEL_FEATURES
from ._search_model import feature_vector as feature_vector, floor_set_floors as floor_set_floors
from . import _promises as promises
from .errors import CodecError
from .formats import LazyView, dicom_transfer_syntaxes
from .outputs import DicomStages
from .record import DecisionRecord, jsonable
from .verify import Floors, Verdict

if TYPE_CHECKING:
    from .image import Image
    from .pipeline import Toolkit
    from .route import Candidate

__all__ = ["EFFORTS", "EFFORT_OPTIONS", "Attempt", "Predictor", "attempt", "search_quality", "search_group",
           "search_grid", "choose", "groups", "ChoiceError", "load_predictor", "search_model_path", "floor_set_key",
           "Memo", "quality_bounds", "size_floor"]

#: search effort levels, cheapest first (``Policy.effort``)
EFFORTS: tuple[str, ...] = ("fast", "balanced", "max")

#: codec speed settings per effort — applied where the candidate does not set the option itself. ``max`` keeps
#: each stage's defaults (its bytes are the reference); ``balanced`` encodes AVIF at speed 7, half the CPU of
#: speed 6 for ≈ 0.5% more bytes at the same quality and ≤ 1.6 points less SSIMULACRA 2 (0.4 MP photos, line art,
#: aerials: ``benchmarks/results/routing_speed.md``); ``fast`` trades ≈ 2–7% bytes for 2–4× faster encodes
#: (AVIF speed 6 → 8, JPEG XL effort 5 → 3, WebP method 4 → 2). AVIF dominates the search's time: a JPEG, WebP
#: or JPEG XL encode of the same image costs a tenth to a third of it, so their defaults stay for ``balanced``.
EFFORT_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {"avif": {"speed": 8}, "jxl": {"effort": 3}, "webp": {"method": 2}},
    "balanced": {"avif": {"speed": 7}},
    # the learned stage's encoder-side latent refinement (SGA, 200 steps; the stream and decoder are unchanged)
    # is an effort knob: only the exhaustive effort spends that encode time (issue #15)
    "max": {"learned": {"refine": "max"}},
}


@dataclass(frozen=True)
class _Effort:
    tau: float            # quantile of the first probe: it passes with probability ≈ tau
    refine: int           # probes allowed after the first pass (to step down towards the floor)
    predict: bool         # use the predictors (order, first probe, early stop)
    staged: bool          # cheap checks first, structure checks only for a probe that can win


_EFFORT: dict[str, _Effort] = {
    "fast": _Effort(tau=0.9, refine=1, predict=True, staged=True),
    "balanced": _Effort(tau=0.7, refine=3, predict=True, staged=True),
    "max": _Effort(tau=0.5, refine=100, predict=False, staged=False),
}

#: structure floors that only guard against one ruined window (delivery's ``local_snr`` 3 dB): while searching,
#: a probe that passes the global floors is taken as passing, and these are checked only on the probe that wins
#: (:func:`_confirm`); binding structure floors (the controlled set) are checked on every probe
_GUARDS = ("local_snr",)
#: the ½-scale screen (images of at least this many pixels): SSIMULACRA 2 of a ½-scale copy is higher than at
#: full resolution (downscaling hides codec artefacts: 5–34 points, median 13, over 25 AVIF/JPEG XL/WebP/JPEG
#: encodes of 1 MP manga, aerial and texture pages; the gap shrinks towards 100), so a probe whose ½-scale score
#: is already below the floor fails at full resolution too; its full-resolution score is taken as at most the
#: ½-scale one less the smallest gap seen
_SCREEN_MIN_PIXELS = 600_000
_SCREEN_GAP = 5.0




# --------------------------------------------------------------------------------------------------------------
# One attempt
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Attempt:
    """One (stage, quality) tried: ``entry`` is its decision-record line; ``payload`` is None when the stage
    could not encode; ``verified`` is ``full`` only for a verdict over every floor at full resolution."""

    passed: bool
    entry: dict[str, Any]
    payload: bytes | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    stage: Any = None
    verified: str = "full"
    recon: Any = field(default=None, repr=False)   # kept while the structure checks are deferred


@dataclass
class Memo:
    """Per asset: (stage, options, sha256 of the bitstream) → the attempt that verified it, so one bitstream is
    never decoded and verified twice; and every quality's attempt, so a quality is never encoded twice."""

    by_hash: dict[tuple[str, str, str], Attempt] = field(default_factory=dict)
    by_quality: dict[tuple[str, str, Any], Attempt] = field(default_factory=dict)
    encodes: int = 0
    screen: dict[int, Any] = field(default_factory=dict)


def _jsonable(x: Any) -> Any:
    return jsonable(x)   # one definition: the decision record's JSON view


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)


def _checks(verdict: Verdict) -> dict[str, Any]:
    """The verdict's measured numbers, JSON-ready (the decision record's view of a verdict)."""
    return dict(verdict.to_dict()["checks"])


def stage_options(cand: Any, effort: str) -> dict[str, Any]:
    """The candidate's options plus the effort's codec speed settings (the candidate's own win)."""
    return {**EFFORT_OPTIONS.get(effort, {}).get(cand.codec_id, {}), **dict(getattr(cand, "options", None) or {})}


def _split(floors: Floors) -> tuple[Floors, Floors | None]:
    """(global floors, structure floors or None): each is the full set with the other half switched off."""
    off_struct = {n: None for n in STRUCTURE_FLOORS}
    off_global: dict[str, Any] = {n: None for n in GLOBAL_FLOORS if n != "lossless"}
    off_global["lossless"] = False
    glob = dataclasses.replace(floors, **off_struct)
    has_struct = any(getattr(floors, n) is not None for n in STRUCTURE_FLOORS)
    return glob, (dataclasses.replace(floors, **off_global) if has_struct else None)


def _merge(a: Verdict, b: Verdict) -> Verdict:
    """Two verdicts on one pair (global, structure) as one: failures first, every measured number kept."""
    fail_a, fail_b = a.reasons[: len(a.failures)], b.reasons[: len(b.failures)]
    rest = a.reasons[len(a.failures):] + b.reasons[len(b.failures):]
    checks = {**b.checks, **{k: v for k, v in a.checks.items() if k != "verify_ms"}}
    checks["verify_ms"] = round(float(a.checks.get("verify_ms", 0)) + float(b.checks.get("verify_ms", 0)), 1)
    return Verdict(a.passed and b.passed, fail_a + fail_b + rest, checks, a.failures + b.failures)


def _half(px: np.ndarray) -> np.ndarray:
    h, w = (px.shape[0] // 2) * 2, (px.shape[1] // 2) * 2
    p = px[:h, :w].astype(np.float32)
    out = (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) * 0.25
    return np.rint(out).astype(px.dtype)


def _screen(tk: Any, image: Any, recon: Any, glob: Floors, memo: Memo) -> Verdict | None:
    """SSIMULACRA 2 on a ½-scale copy: a failed verdict when even that misses the floor (a quarter of the cost
    of the full-resolution check), else None (see :data:`_SCREEN_GAP`)."""
    px = getattr(image, "pixels", None)
    if (px is None or px.shape[0] * px.shape[1] < _SCREEN_MIN_PIXELS or glob.lossless
            or glob.ssimulacra2 is None):
        return None
    if id(image) not in memo.screen:
        memo.screen = {id(image): image.with_pixels(_half(px))}
    v = tk.verify(memo.screen[id(image)], recon.with_pixels(_half(recon.pixels)),
                  Floors(ssimulacra2=glob.ssimulacra2))
    if v.passed:
        return None
    s2 = float(v.checks.get("ssimulacra2", 0.0))
    return Verdict(False, [f"½-scale screen: {v.reasons[0]} (at full resolution it is lower still)"],
                   {"ssimulacra2": s2 - _SCREEN_GAP, "screen_ssimulacra2": s2}, ["ssimulacra2"])


def attempt(tk: Any, image: Any, cand: Any, quality: int | None, *, effort: str = "max", search: bool = False,
            memo: Memo | None = None, cannot_win_at: int | None = None, defer: bool = False) -> Attempt:
    """Encode, decode and verify one (stage, quality); never raises for a codec failure.

    ``tk`` needs ``get_stage`` and ``verify`` (a :class:`inverity.pipeline.Toolkit`). With ``memo`` a bitstream
    seen before reuses its verdict. ``cannot_win_at``: a payload of at least this many bytes is not verified
    (it cannot beat the best passing size) and counts as not passed. ``effort`` ``fast``/``balanced`` verify in
    stages (½-scale screen, global floors, structure floors), stopping at the first failure; ``max`` verifies
    every floor in one call. ``defer``: when only guard floors (:data:`_GUARDS`) remain after the global ones
    pass, the attempt is ``provisional`` (``passed`` in the record is None) until :func:`_confirm`.
    """
    options = stage_options(cand, effort)
    entry: dict[str, Any] = {"stage": cand.codec_id, "quality": quality}
    if options:
        entry["options"] = _jsonable(options)
    if search:
        entry["search"] = True
    okey = json.dumps(_jsonable(options), sort_keys=True)
    if memo is not None and (cand.codec_id, okey, quality) in memo.by_quality:
        return memo.by_quality[(cand.codec_id, okey, quality)]
    stage = None
    try:
        stage = tk.get_stage(cand.codec_id, quality=quality, **options)
        t0 = time.perf_counter()
        payload = bytes(stage.encode(image))
        entry["encode_ms"] = _ms(t0)
        entry["bytes"] = len(payload)
        if memo is not None:
            memo.encodes += 1
    except Exception as exc:  # noqa: BLE001 - a stage failure is recorded and routing moves on (legible failure)
        return _failed(entry, exc, stage)
    sha = hashlib.sha256(payload).hexdigest()
    hkey = (cand.codec_id, okey, sha)
    if memo is not None and hkey in memo.by_hash:
        prev = memo.by_hash[hkey]
        entry.update(passed=None if prev.verified == "provisional" else prev.passed,
                     same_bitstream_as=prev.entry.get("quality"),
                     reasons=[f"same bitstream as q={prev.entry.get('quality')}: its verdict"])
        if prev.verified not in ("full", "provisional"):
            entry["verified"] = prev.verified
        a = Attempt(prev.passed, entry, payload, prev.checks, stage, prev.verified, prev.recon)
        memo.by_quality[(cand.codec_id, okey, quality)] = a
        return a
    if cannot_win_at is not None and len(payload) >= cannot_win_at:
        entry.update(passed=False, verified="skipped",
                     reasons=[f"not verified: {len(payload)} B cannot beat the best passing {cannot_win_at} B"])
        return Attempt(False, entry, payload, {}, stage, "skipped")
    try:
        t0 = time.perf_counter()
        recon = stage.decode(payload)
        entry["decode_ms"] = _ms(t0)
    except Exception as exc:  # noqa: BLE001
        return _failed(entry, exc, stage)
    t0 = time.perf_counter()
    verdict, verified = _verify(tk, image, recon, cand.floors, staged=_EFFORT[_effort(effort)].staged, memo=memo,
                                defer=defer)
    entry["verify_ms"] = _ms(t0)
    entry["passed"] = bool(verdict.passed)
    entry["reasons"] = [str(r) for r in verdict.reasons]     # the verifier lists failures first
    if getattr(verdict, "failures", None):
        entry["failures"] = [str(f) for f in verdict.failures]
    if verified != "full":
        entry["verified"] = verified
    a = Attempt(bool(verdict.passed), entry, payload, _checks(verdict), stage, verified,
                recon if verified == "provisional" else None)
    if verified == "provisional":
        entry["passed"] = None           # not known until _confirm: the record never claims more than was checked
    if memo is not None:
        memo.by_hash[hkey] = a
        memo.by_quality[(cand.codec_id, okey, quality)] = a
    return a


def _failed(entry: dict[str, Any], exc: BaseException, stage: Any) -> Attempt:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    entry.update(passed=False, reasons=[f"encode/decode failed: {type(exc).__name__}: {msg}".rstrip(": ")])
    return Attempt(False, entry, None, {}, stage)


def _verify(tk: Any, image: Any, recon: Any, floors: Any, *, staged: bool, memo: Memo | None,
            defer: bool = False) -> tuple[Any, str]:
    """The verdict and how far it went: ``screen`` / ``global`` (failed early), ``provisional`` (global floors
    passed, guard floors deferred) or ``full``."""
    if not staged or not isinstance(floors, Floors):
        return tk.verify(image, recon, floors), "full"
    glob, struct = _split(floors)
    if memo is not None and hasattr(image, "with_pixels"):
        early = _screen(tk, image, recon, glob, memo)
        if early is not None:
            return early, "screen"
    va = tk.verify(image, recon, glob)
    if not va.passed or struct is None:
        return va, ("global" if not va.passed and struct is not None else "full")
    if defer and set(thresholds(struct)) <= set(_GUARDS):
        return va, "provisional"
    return _merge(va, tk.verify(image, recon, struct)), "full"


def _confirm(tk: Any, image: Any, cand: Any, a: Attempt) -> bool:
    """Finish a provisional attempt's verification (its deferred guard floors), in place; True if it passed."""
    if a.verified != "provisional":
        return a.passed
    va = Verdict(True, [r for r in a.entry.get("reasons", [])], dict(a.checks), [])
    _, struct = _split(cand.floors)
    t0 = time.perf_counter()
    v = _merge(va, tk.verify(image, a.recon, struct)) if struct is not None else va
    a.entry["verify_ms"] = round(float(a.entry.get("verify_ms", 0.0)) + _ms(t0), 1)
    a.passed, a.verified, a.recon = bool(v.passed), "full", None
    a.checks = _checks(v)
    a.entry.update(passed=a.passed, reasons=[str(r) for r in v.reasons])
    a.entry.pop("verified", None)
    if v.failures:
        a.entry["failures"] = [str(f) for f in v.failures]
    return a.passed


def _effort(effort: str | None) -> str:
    return effort if effort in _EFFORT else "balanced"


# --------------------------------------------------------------------------------------------------------------
# The quality search for one candidate
# --------------------------------------------------------------------------------------------------------------
#: quality-search bounds when neither the candidate nor the stage declares them (learned: from the zoo)
_CLASSICAL_RANGE = (1, 100)


def _learned_range() -> tuple[int, int]:
    """1..K of the zoo's default model: K is its number of λ (rate points) in the registry, never hard-coded."""
    from .stages.learned import zoo

    q = zoo.model_info().qualities
    return int(q[0]), int(q[-1])


def quality_bounds(stage: Any, cand: Any) -> tuple[int, int]:
    """Where a quality search may look: the candidate's range, else the stage's, else the family default."""
    for src in (cand, stage):
        rng = getattr(src, "quality_range", None)
        if rng:
            return int(rng[0]), int(rng[1])
    caps = getattr(stage, "capabilities", None)
    if getattr(caps, "learned", False):
        qs = getattr(stage, "qualities", None)
        if qs:
            return int(min(qs)), int(max(qs))
        return _learned_range()
    return _CLASSICAL_RANGE


def _label(cand: Any) -> str:
    opts = {k: v for k, v in (getattr(cand, "options", None) or {}).items() if k != "model"}
    return cand.codec_id + "".join(f"?{k}={v}" for k, v in opts.items())


def _margins(a: Attempt, floors: Any, slope: Callable[[str], float]) -> dict[str, tuple[float, float, float]]:
    """check → (value, floor, margin in quality steps; negative below the floor) for the floors ``a`` measured."""
    out: dict[str, tuple[float, float, float]] = {}
    for name, thr in thresholds(floors).items():
        v = a.checks.get(name)
        s = slope(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(float(v)) or s <= 0:
            continue
        d = CHECK_DIRECTION.get(name, 1)
        out[name] = (float(v), thr, d * (float(v) - thr) / s)
    return out


@dataclass
class _Bracket:
    """What the probes so far say: the highest failing quality and the lowest passing (or too large) one."""

    lo: int
    hi: int
    fail_q: int
    fail: Attempt | None = None
    upper_q: int | None = None
    upper: Attempt | None = None


def _next_quality(b: _Bracket, floors: Any, slope: Callable[[str], float]) -> int | None:
    """The next quality to probe, or None when the search is done: a secant step on the binding check when
    probes on both sides measured it, else a step by the margin ÷ the check's slope, else a bisection."""
    mf = _margins(b.fail, floors, slope) if b.fail is not None else {}
    if b.upper_q is None:                                   # nothing passed yet: step up
        if b.fail_q >= b.hi:
            return None
        neg = [m for _, _, m in mf.values() if m < 0]
        if neg:
            q = b.fail_q + math.ceil(-min(neg) * 1.2 + 0.5)
        else:
            q = (b.fail_q + b.hi + 1) // 2
        return min(max(q, b.fail_q + 1), b.hi)
    if b.upper_q - b.fail_q <= 1:
        return None
    mu = _margins(b.upper, floors, slope) if b.upper is not None and b.upper.passed else {}
    est: float | None = None
    failing = sorted((m, k) for k, (_, _, m) in mf.items() if m < 0)
    if failing and b.upper is not None and failing[0][1] in mu:           # secant on the binding check
        k = failing[0][1]
        (vf, thr, _), (vu, _, _) = mf[k], mu[k]
        if vu != vf:
            est = b.fail_q + (b.upper_q - b.fail_q) * (thr - vf) / (vu - vf)
    if est is None and mu:                                                  # step by the slope from the pass
        est = b.upper_q - min(m for _, _, m in mu.values())
    if est is None and failing:
        est = b.fail_q - failing[0][0]
    if est is None:
        return (b.fail_q + b.upper_q) // 2
    q = math.ceil(est - 1e-6)                              # the lowest quality estimated to pass
    if q >= b.upper_q:
        return None                                        # the next lower quality is predicted to fail
    return max(q, b.fail_q + 1)


def search_quality(tk: Any, image: Any, cand: Any, attempts: list[dict[str, Any]], *, effort: str = "balanced",
                   predictor: Predictor | None = None, memo: Memo | None = None,
                   best_bytes: int | None = None) -> Attempt | None:
    """The smallest passing attempt of one candidate (None if none passed); every probe's entry goes to
    ``attempts``.

    A candidate without ``search`` is tried once at its quality. With ``search``: ``effort="max"`` bisects the
    stage's quality range (start at the candidate's hint or the middle, never at the top), assuming — as holds
    closely for every codec here — that passing is monotone in quality; ``fast``/``balanced`` start at the
    predicted quality, step up until a probe passes, then step down towards the floor while probes are left.
    ``best_bytes`` (another candidate's passing size): probes at least that large are not verified.
    """
    eff = _EFFORT[_effort(effort)]
    memo = memo if memo is not None else Memo()
    win = best_bytes if eff.predict else None
    if not getattr(cand, "search", False):
        a = attempt(tk, image, cand, getattr(cand, "quality", None), effort=effort, memo=memo, cannot_win_at=win)
        attempts.append(a.entry)
        return a if a.passed else None
    library = None
    try:
        st = tk.get_stage(cand.codec_id, **stage_options(cand, effort))
        lo, hi = quality_bounds(st, cand)
        library = st.library_version() if hasattr(st, "library_version") else None
    except Exception:  # noqa: BLE001 - the probe below records why the stage cannot be built
        lo, hi = _CLASSICAL_RANGE
    passing: list[Attempt] = []
    seen: dict[int, Attempt] = {}

    def probe(q: int, defer: bool = eff.predict) -> Attempt | None:
        a = attempt(tk, image, cand, q, effort=effort, search=True, memo=memo, cannot_win_at=win, defer=defer)
        if q not in seen:
            attempts.append(a.entry)
        seen[q] = a
        if a.payload is None:          # the stage cannot take this image at all: stop searching
            return None
        if a.passed:
            passing.append(a)
        return a

    hint = getattr(cand, "quality", None)
    predicted = predictor.quality(cand.codec_id, cand.floors, eff.tau) if (predictor and eff.predict) else None
    if predicted is None or not math.isfinite(predicted):
        _bisect(probe, lo, hi, hint)
    else:
        start = min(max(int(round(predicted)), lo), hi - 1)      # never the top of the range first
        runs = predictor.same_bitstream(cand.codec_id, str(library)) if predictor is not None else []
        _predicted(probe, lo, hi, start, eff.refine, cand, predictor, runs)
    return _finish(tk, image, cand, passing, lambda q: probe(q, False), hi)


def _finish(tk: Any, image: Any, cand: Any, passing: list[Attempt], probe_full: Callable[[int], Attempt | None],
            hi: int) -> Attempt | None:
    """The smallest passing attempt, its deferred guard floors checked (:func:`_confirm`); if every passing
    probe fails them, the search goes on above the highest, verifying every floor."""
    order = sorted(passing, key=lambda a: (a.entry["bytes"], a.entry["quality"]))
    for i, a in enumerate(order):
        if _confirm(tk, image, cand, a):
            for other in order[i + 1:]:
                if other.verified == "provisional":
                    other.entry["reasons"] = other.entry.get("reasons", []) + [
                        f"guard floors ({', '.join(_GUARDS)}) not checked: a smaller probe passed every floor"]
            return a
    if not order:
        return None
    top = max(int(a.entry["quality"]) for a in order)
    passing.clear()
    if top < hi:
        _bisect(probe_full, top + 1, hi, None)
    return min(passing, key=lambda a: (a.entry["bytes"], a.entry["quality"])) if passing else None


def _bisect(probe: Callable[[int], Attempt | None], lo: int, hi: int, hint: int | None) -> None:
    """The reference search (``effort="max"``, and any stage without a model): start at the hint or the
    middle; if that fails try the top; then bisect to single quality steps."""
    start = min(max(int(hint), lo), hi) if hint is not None else (lo + hi) // 2
    fail_q, pass_q = lo - 1, None          # invariant: the smallest passing quality lies in (fail_q, pass_q]
    a = probe(start)
    if a is None:
        return
    if a.passed or a.verified == "skipped":
        pass_q = start
    else:
        fail_q = start
        if start < hi:
            a = probe(hi)
            if a is None:
                return
            if a.passed or a.verified == "skipped":
                pass_q = hi
    if pass_q is None:
        return
    while pass_q - fail_q > 1:
        mid = (fail_q + pass_q) // 2
        a = probe(mid)
        if a is None:
            break
        if a.passed or a.verified == "skipped":
            pass_q = mid
        else:
            fail_q = mid


def _predicted(probe: Callable[[int], Attempt | None], lo: int, hi: int, start: int, refine: int, cand: Any,
               predictor: Predictor | None, runs: Sequence[tuple[int, int]] = ()) -> None:
    """Predict, then confirm: probe ``start``; step up until a probe passes; then at most ``refine`` probes
    down towards the floor (see :func:`_next_quality`). ``runs``: qualities known to give one bitstream — a
    probe uses the lowest of its run, and a verdict holds for the whole run."""
    b = _Bracket(lo, hi, lo - 1)
    run_of = {q: (a, z) for a, z in runs for q in range(a, z + 1)}

    def slope(check: str) -> float:
        return predictor.slope(cand.codec_id, check) if predictor is not None else DEFAULT_SLOPE.get(check, 0.0)

    q: int | None = start
    after_upper = 0
    while q is not None:
        q_lo, q_hi = run_of.get(q, (q, q))
        q_lo = max(q_lo, b.fail_q + 1)
        a = probe(q_lo)
        if a is None:
            return
        if a.passed or a.verified == "skipped":
            if b.upper_q is None or q_lo < b.upper_q:
                b.upper_q, b.upper = q_lo, a
        elif q_hi > b.fail_q:
            b.fail_q, b.fail = q_hi, a
        if b.upper_q is not None:
            if after_upper >= refine:
                return
            after_upper += 1
        if b.upper is not None and not b.upper.passed and not any(x.passed for x in (b.upper, b.fail) if x):
            # the first probe already cannot beat another candidate: one long shot at the low quantile, then stop
            if b.fail is not None or predictor is None:
                return
            low = predictor.quality(cand.codec_id, cand.floors, 0.1)
            q = None if low is None or int(math.ceil(low)) >= b.upper_q else max(lo, int(math.ceil(low)))
            refine = after_upper + 1 if q is not None else refine
            continue
        q = _next_quality(b, cand.floors, slope)


def search_grid(tk: Any, image: Any, cand: Any, attempts: list[dict[str, Any]], qualities: Sequence[int | None], *,
                exhaustive: bool = False, refine: bool = True, memo: Memo | None = None) -> Attempt | None:
    """The routing benchmark's oracle search: scan ``qualities`` upwards to the first passing one (``exhaustive``:
    the whole grid), then with ``refine`` bisect the gap below it to single quality steps. One full
    verification per new bitstream (``effort="max"``); returns the smallest passing attempt."""
    memo = memo if memo is not None else Memo()
    passing: list[Attempt] = []

    def probe(q: int | None) -> Attempt | None:
        a = attempt(tk, image, cand, q, effort="max", memo=memo)
        attempts.append(a.entry)
        if a.payload is None:
            return None
        if a.passed:
            passing.append(a)
        return a

    prev_fail: int | None = None
    for q in qualities:
        a = probe(q)
        if a is None:
            break
        if not a.passed:
            prev_fail = q
            continue
        if refine and q is not None and prev_fail is not None:
            lo, hi = prev_fail, q
            while hi - lo > 1:
                mid = (lo + hi) // 2
                a2 = probe(mid)
                if a2 is None:
                    break
                lo, hi = (mid, hi) if not a2.passed else (lo, mid)
        if not exhaustive:
            break
    return min(passing, key=lambda a: (a.entry["bytes"], a.entry["quality"] or 0)) if passing else None


# --------------------------------------------------------------------------------------------------------------
# A group of equivalent candidates
# --------------------------------------------------------------------------------------------------------------
def _predicted_bytes(p: Predictor, cand: Any, tau: float) -> tuple[float | None, float | None]:
    """(predicted bytes at the first probe, a lower bound on the passing size) for one candidate."""
    label = _label(cand)
    if not getattr(cand, "search", False):
        q = getattr(cand, "quality", None)
        return p.bytes(label, q), p.bytes_lower(label, q)
    q_first = p.quality(cand.codec_id, cand.floors, tau)
    q_low = p.quality(cand.codec_id, cand.floors, 0.1)
    return p.bytes(label, q_first), p.bytes_lower(label, q_low)


def size_floor(predictor: Predictor | None, cand: Any, effort: str = "balanced") -> float | None:
    """The predicted lower bound on the size of ``cand``'s passing output, bytes; ``None`` when the effort does
    not predict (``max``) or the model does not cover the candidate.

    :func:`search_group` does not try a candidate whose bound is at least the best passing size so far; the
    server applies the same rule between the formats a client accepts equally (a format that cannot beat a
    verified rendition in hand is not made for that request).
    """
    if predictor is None or not _EFFORT[_effort(effort)].predict:
        return None
    return _predicted_bytes(predictor, cand, _EFFORT[_effort(effort)].tau)[1]


def search_group(tk: Any, image: Any, group: Sequence[Any], attempts: list[dict[str, Any]], *,
                 effort: str = "balanced", predictor: Predictor | None = None,
                 memo: Memo | None = None, best_bytes: int | None = None) -> tuple[list[tuple[Attempt, Any]],
                                                                                  list[str]]:
    """Search every candidate of a group of equivalent choices; returns the passing (attempt, candidate) pairs
    and notes for the decision record (which candidates were not tried, and why).

    ``fast``/``balanced``: candidates go in predicted-bytes order, and one whose predicted lower bound cannot
    beat the best passing size so far is not tried; ``max`` tries every candidate in the router's order.
    ``best_bytes``: the best passing size to start from (an output already in hand elsewhere), so only a
    smaller output can pass.
    """
    eff = _EFFORT[_effort(effort)]
    memo = memo if memo is not None else Memo()
    order = list(group)
    bounds: dict[int, float | None] = {}
    if eff.predict and predictor is not None and len(order) > 1:
        pred = {id(c): _predicted_bytes(predictor, c, eff.tau) for c in order}
        bounds = {id(c): size_floor(predictor, c, effort) for c in order}
        # stable: candidates without a prediction keep the router's order, ahead of the predicted ones
        order.sort(key=lambda c: -1.0 if pred[id(c)][0] is None else float(pred[id(c)][0]))
    passed: list[tuple[Attempt, Any]] = []
    notes: list[str] = []
    best: int | None = best_bytes
    for cand in order:
        lb = bounds.get(id(cand))
        if best is not None and lb is not None and lb >= best:
            notes.append(f"{_label(cand)} not tried: its predicted size is at least {lb:,.0f} B, more than the "
                         f"best passing {best:,} B")
            continue
        a = search_quality(tk, image, cand, attempts, effort=effort, predictor=predictor, memo=memo,
                           best_bytes=best)
        if a is not None:
            passed.append((a, cand))
            n = int(a.entry["bytes"])
            best = n if best is None else min(best, n)
    return passed, notes


# --------------------------------------------------------------------------------------------------------------
# The choice over a plan: group by group
# --------------------------------------------------------------------------------------------------------------
#: stage id -> the DICOM transfer syntax its bitstream is (a view of the format registry)
_DICOM_TS = LazyView(dicom_transfer_syntaxes)


class ChoiceError(CodecError):
    """The choice went wrong in a way no candidate explains (a bug: an unverified output was about to ship)."""


def groups(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """Consecutive candidates sharing ``group`` (the router's "equivalent choices").

    Examples
    --------
    >>> from inverity.route import Candidate
    >>> [[c.codec_id for c in g] for g in groups([Candidate("avif"), Candidate("webp"), Candidate("png", group=1)])]
    [['avif', 'webp'], ['png']]
    """
    out: list[list[Candidate]] = []
    for c in candidates:
        if out and out[-1][-1].group == c.group:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def _dicom_only(tk: Toolkit, group: list[Candidate], record: DecisionRecord) -> list[Candidate]:
    """For DICOM output only the stages whose bitstream is a DICOM transfer syntax (or that keep the DICOM file)
    compete, when the group has any."""
    if not any(c.codec_id in _DICOM_TS for c in group):
        return group
    ok = {c.codec_id for c in group if c.codec_id in _DICOM_TS or promises.carries(tk.get_stage, c.codec_id, "dicom")}
    record.reasons.extend(f"{c.codec_id} not tried: not a DICOM transfer syntax" for c in group if c.codec_id not in ok)
    return [c for c in group if c.codec_id in ok]


def _losers(group: list[Candidate], passed: list[tuple[Attempt, Candidate]], notes: list[str],
            attempts: list[dict[str, Any]], record: DecisionRecord
            ) -> tuple[list[tuple[Candidate, list[int]]], list[tuple[Candidate, list[int]]]]:
    """The group's candidates that failed the floors, and those never verified because they could not beat the
    best passing size, each with the sizes it tried (the record compares them too)."""
    ok = {id(c) for _, c in passed}
    rejected: list[tuple[Candidate, list[int]]] = []
    larger: list[tuple[Candidate, list[int]]] = []
    for cand in group:
        if id(cand) in ok or any(n.startswith(f"{_label(cand)} not tried") for n in notes):
            continue
        mine = [e for e in attempts if e.get("stage") == cand.codec_id]
        sizes = [e["bytes"] for e in mine if e.get("bytes")]
        because = "; ".join(mine[-1]["reasons"]) if mine and mine[-1].get("reasons") else "failed"
        if mine and all(e.get("passed") is False and str((e.get("reasons") or [""])[0]).startswith("not verified:")
                        for e in mine):
            larger.append((cand, sizes))
            record.reasons.append(f"{_label(cand)} not chosen: {because}")
        else:
            rejected.append((cand, sizes))
            record.reasons.append(f"{_label(cand)} rejected: {because}")
    return rejected, larger


def choose(tk: Toolkit, image: Image, candidates: Sequence[Candidate], record: DecisionRecord, *,
           dicom_out: bool = False, effort: str = "balanced",
           best_bytes: int | None = None) -> tuple[Attempt, Candidate] | None:
    """Try the candidates group by group (:func:`search_group`), recording every attempt and why each lost.

    Within a group (equivalent choices) the smallest that passes wins; a later group is only a fallback when
    nothing in the earlier ones passed. ``effort`` (the policy's) sets how hard the quality search works. With
    ``dicom_out`` only DICOM transfer syntaxes compete, and what is encoded and verified is the DICOM file itself
    (:class:`inverity.outputs.DicomOutput`). Returns the winning attempt (verified in full) and its candidate, or
    ``None`` when nothing passed. ``best_bytes``: only an output smaller than this is wanted (an output already
    in hand elsewhere): larger probes are not verified.
    """
    stk = tk
    if dicom_out and tk.dicom_bytes is not None:
        stk = dataclasses.replace(tk, get_stage=DicomStages(tk.get_stage, tk.dicom_bytes, tk.load))
    prof = record.profile
    predictor = load_predictor(prof.get("features"), prof.get("kind"), image.width * image.height)
    memo = Memo()
    record.search = {"effort": effort, "encodes": 0}
    for group in groups(candidates):
        if dicom_out:
            group = _dicom_only(tk, group, record)
        g0 = len(record.attempts)
        passed, notes = search_group(stk, image, group, record.attempts, effort=effort, predictor=predictor,
                                     memo=memo, best_bytes=best_bytes)
        record.search["encodes"] = memo.encodes
        record.reasons.extend(notes)
        rejected, larger = _losers(group, passed, notes, record.attempts[g0:], record)
        if not passed:
            continue
        best, cand = min(passed, key=lambda p: p[0].entry["bytes"])
        if best.verified != "full":   # nothing ships on a prediction: a bug here fails the asset, loudly
            raise ChoiceError(f"{record.input}: internal error: {_label(cand)} q={best.entry['quality']} was "
                              "chosen without a full verification")
        best.entry["chosen"] = True
        record.reasons.append(f"{_label(cand)}: {cand.reason or 'passed'}")
        if len(passed) > 1 or rejected or larger:
            record.reasons.append(promises.sizes_reason(passed, _label, rejected, larger=larger))
        return best, cand
    return None
