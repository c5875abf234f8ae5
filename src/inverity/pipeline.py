"""The routed pipeline: load → analyse → policy → route → encode → decode → verify → write, per asset.

This module orchestrates; it has no codec logic of its own. Each arrow of DESIGN.md's diagram is a call into the
module that owns it, bundled in a :class:`Toolkit` so the orchestration can be tested with fakes (STYLE.md 9)::

    bytes ─► load ─► analyse ─► get_policy / resolve_policy (auto) ─► plan ─► [Candidate, ...]
                                                                                  │ for each, in order
        ┌─────────────────────────────────────────────────────────────────────────┘
        ▼
    stage.encode ─► stage.decode ─► verify(original, reconstruction, floors) ── failed ─► next candidate
        │ (search=True: bisect the quality for the fewest bytes that still pass)
        ▼ passed
    atomic write of OUTDIR/<input path>.<ext>  ─►  decision record  ─►  catalog row (parent process only)

Every attempt — including each probe of a quality search and each failure, with the verifier's reasons — goes in
the decision record, so an output can always be explained and a refusal is never silent.

Public API
----------
:func:`compress` walks inputs, resumes from the catalog and runs :func:`compress_one` on an engine;
:func:`compress_one` does one asset and returns a :class:`Result` (or raises a one-line error).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence

from ._atomic import atomic_write_bytes
from .errors import CodecError, InputError, InverityError

__all__ = [
    "compress", "compress_one", "collect_assets", "Asset", "Result", "Toolkit", "NoCandidatePassedError",
    "RECORD_KEYS", "DICOM_TRANSFER_SYNTAX",
]

log = logging.getLogger(__name__)

#: the decision-record keys every record has (DESIGN.md minimum plus provenance)
RECORD_KEYS: tuple[str, ...] = (
    "input", "output", "bytes", "policy", "stage", "quality", "profile", "attempts", "checks", "reasons",
    "input_sha256", "input_bytes", "policy_resolved", "elapsed_ms", "version", "status",
)
#: policy families under which a DICOM input is written back as DICOM (dataset intact, lossless transfer syntax)
DICOM_OUT_POLICIES: frozenset[str] = frozenset({"archive", "diagnostic"})
#: stage that passed -> the lossless DICOM transfer syntax to re-encode with (image.dicom_bytes); others -> jpegls.
#: (``jpeg2000`` with ``htj2k=True`` -> ``htj2k``.) Formats DICOM cannot carry (PNG, WebP, JPEG XL) map to JPEG-LS.
DICOM_TRANSFER_SYNTAX: dict[str, str] = {"jpegls": "jpegls", "jpeg2000": "jpeg2000"}
#: file extension by sniffed format, used only when a stage declares none
_FORMAT_EXT: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "jpegls": ".jls", "webp": ".webp", "avif": ".avif",
                               "jxl": ".jxl", "jp2": ".jp2", "j2k": ".j2k", "tiff": ".tif", "dicom": ".dcm",
                               "inv": ".inv"}
#: formats the walker treats as images (by content); everything else in a walked directory is skipped with a note
_IMAGE_FORMATS: frozenset[str] = frozenset(_FORMAT_EXT) - {"inv"} | {"gif", "bmp"}
#: default quality-search bounds when neither the candidate nor the stage declares them
_LEARNED_RANGE = (1, 6)
_CLASSICAL_RANGE = (1, 100)


class NoCandidatePassedError(CodecError):
    """Every candidate stage failed to encode or failed verification for an asset (nothing was written)."""


# --------------------------------------------------------------------------------------------------------------
# The toolkit: the modules the pipeline orchestrates, swappable for fakes in tests
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Toolkit:
    """The callables the pipeline orchestrates (DESIGN.md's boxes), injectable for tests.

    Every field must be a module-level function (picklable) when the toolkit crosses into worker processes.
    ``Toolkit.default()`` binds the real modules; a test can build one from fakes and pass it to
    :func:`compress` / :func:`compress_one`, so the orchestration is testable without any codec.
    """

    load: Callable[..., Any]                     # (bytes, *, name) -> Image
    analyse: Callable[[Any], Any]                # Image -> Profile
    get_policy: Callable[[Any], Any]             # name | TOML path -> Policy
    resolve_policy: Callable[..., Any]           # (profile, auto policy, image) -> Policy | name [| (.., reason)]
    plan: Callable[..., list[Any]]               # (profile, policy, image) -> [Candidate]
    get_stage: Callable[..., Any]                # (codec_id, quality=, **options) -> Stage
    verify: Callable[[Any, Any, Any], Any]       # (original, reconstruction, floors) -> Verdict
    dicom_bytes: Callable[..., bytes] | None = None  # (Image, *, transfer_syntax) -> DICOM file bytes
    policy_family: Callable[[Any], str] | None = None  # Policy -> archive|diagnostic|delivery|controlled
    explain: Callable[..., list[str]] | None = None    # (profile, policy, image) -> the router's reasons

    @classmethod
    def default(cls) -> "Toolkit":
        """The real modules (imported here, lazily, so ``import inverity.pipeline`` stays cheap)."""
        from . import image
        from .stages.base import get_stage
        from .verify import verify
        from .analyse import analyse
        from .policy import get_policy
        from .route import explain, plan, policy_family, resolve_policy

        return cls(load=image.load, analyse=analyse, get_policy=get_policy, resolve_policy=resolve_policy,
                   plan=plan, get_stage=get_stage, verify=verify, dicom_bytes=getattr(image, "dicom_bytes", None),
                   policy_family=policy_family, explain=explain)


# --------------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Asset:
    """One input of a batch: where it is, and the name its output and catalog row take.

    ``input`` is the path relative to the walked root (POSIX separators): ``a/b.png`` becomes
    ``OUTDIR/a/b.<ext>``; with ``keep_suffix`` (two inputs differing only by extension) ``OUTDIR/a/b.png.<ext>``.
    """

    path: str
    root: str
    input: str
    keep_suffix: bool = False
    explicit: bool = False


@dataclass
class Result:
    """What one asset came to: ``status`` is ``done``, ``failed`` or ``skipped`` (resumed from the catalog)."""

    input: str
    status: str
    record: dict[str, Any]
    output: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


@dataclass
class _Attempt:
    passed: bool
    entry: dict[str, Any]
    payload: bytes | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    stage: Any = None


# --------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("inverity")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "0+unknown"


def _jsonable(x: Any) -> Any:
    """Make numpy scalars/arrays, tuples, paths and dataclass-ish values JSON-serialisable (recursively)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        if isinstance(x, float) and not math.isfinite(x):  # NaN/inf are not JSON (inf PSNR: identical pixels)
            return None
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if hasattr(x, "item") and getattr(x, "shape", None) == ():   # numpy scalar
        return _jsonable(x.item())
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if hasattr(x, "to_dict"):
        return _jsonable(x.to_dict())
    return str(x)


def _to_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(vars(obj))


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)


def policy_id(spec: Any) -> str:
    """A stable identity of a policy *as requested*, stored in the catalog so resume only skips assets done
    under the same policy: the built-in name, or the name plus a digest of the TOML file / Policy value."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if p.suffix == ".toml" and p.is_file():
            return f"{p.stem}@{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}"
        return str(spec)
    d = _jsonable(_to_dict(spec))
    name = d.get("name", type(spec).__name__)
    return f"{name}@{hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]}"


def _policy_name(policy: Any) -> str:
    return str(getattr(policy, "name", policy))


def _ext_for(stage: Any, payload: bytes) -> str:
    """The output extension: the stage instance's own (options may change it, e.g. HTJ2K's ``.j2c``), else its
    capabilities' first, else from the payload's sniffed format. The learned stage always writes ``.inv``."""
    caps = getattr(stage, "capabilities", None)
    exts = tuple(getattr(caps, "extensions", ()) or ())
    if getattr(caps, "learned", False):
        return ".inv"
    own = getattr(stage, "extension", None)
    if isinstance(own, str) and own:
        return own if own.startswith(".") else f".{own}"
    if exts:
        e = str(exts[0])
        return e if e.startswith(".") else f".{e}"
    from .formats import sniff

    return _FORMAT_EXT.get(sniff(payload) or "", f".{stage.codec_id}")


def _quality_bounds(stage: Any, cand: Any) -> tuple[int, int]:
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
        return _LEARNED_RANGE
    return _CLASSICAL_RANGE


def _is_dicom(image: Any) -> bool:
    return getattr(image, "source_format", None) == "dicom" or "dicom" in (getattr(image, "metadata", None) or {})


def output_rel(asset: Asset, ext: str) -> PurePosixPath:
    """The output path relative to OUTDIR for ``asset`` with extension ``ext``.

    Examples
    --------
    >>> str(output_rel(Asset("/x/a/b.png", "/x", "a/b.png"), ".avif"))
    'a/b.avif'
    >>> str(output_rel(Asset("/x/a/b.png", "/x", "a/b.png", keep_suffix=True), ".avif"))
    'a/b.png.avif'
    """
    rel = PurePosixPath(asset.input)
    return rel.with_name(rel.name + ext) if asset.keep_suffix else rel.with_suffix(ext)


# --------------------------------------------------------------------------------------------------------------
# One asset
# --------------------------------------------------------------------------------------------------------------
def _try(tk: Toolkit, image: Any, cand: Any, quality: int | None, *, search: bool) -> _Attempt:
    """Encode, decode and verify one (stage, quality); never raises for a codec failure."""
    options = dict(getattr(cand, "options", None) or {})
    entry: dict[str, Any] = {"stage": cand.codec_id, "quality": quality}
    if options:
        entry["options"] = _jsonable(options)
    if search:
        entry["search"] = True
    stage = None
    try:
        stage = tk.get_stage(cand.codec_id, quality=quality, **options)
        t0 = time.perf_counter()
        payload = bytes(stage.encode(image))
        entry["encode_ms"] = _ms(t0)
        entry["bytes"] = len(payload)
        t0 = time.perf_counter()
        recon = stage.decode(payload)
        entry["decode_ms"] = _ms(t0)
    except Exception as exc:  # noqa: BLE001 - a stage failure is recorded and routing moves on (legible failure)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        entry.update(passed=False, reasons=[f"encode/decode failed: {type(exc).__name__}: {msg}".rstrip(": ")])
        return _Attempt(False, entry, stage=stage)
    t0 = time.perf_counter()
    verdict = tk.verify(image, recon, cand.floors)
    entry["verify_ms"] = _ms(t0)
    entry["passed"] = bool(verdict.passed)
    entry["reasons"] = [str(r) for r in verdict.reasons]     # the verifier lists failures first
    if getattr(verdict, "failures", None):
        entry["failures"] = [str(f) for f in verdict.failures]
    return _Attempt(bool(verdict.passed), entry, payload, _checks(verdict), stage)


def _checks(verdict: Any) -> dict[str, Any]:
    """The verdict's measured numbers, JSON-ready (the verifier's own ``to_dict`` when it has one)."""
    if hasattr(verdict, "to_dict"):
        return _jsonable(dict(verdict.to_dict().get("checks") or {}))
    return _jsonable(dict(verdict.checks))


def _run_candidate(tk: Toolkit, image: Any, cand: Any, attempts: list[dict[str, Any]]) -> _Attempt | None:
    """Try one candidate. With ``search``, bisect the quality for the smallest passing one (a handful of encodes,
    assuming — as holds closely for every codec here — that passing is monotone in quality), then keep the
    passing probe with the fewest bytes."""
    if not getattr(cand, "search", False):
        a = _try(tk, image, cand, getattr(cand, "quality", None), search=False)
        attempts.append(a.entry)
        return a if a.passed else None

    try:
        lo, hi = _quality_bounds(tk.get_stage(cand.codec_id, **dict(cand.options or {})), cand)
    except Exception:  # noqa: BLE001 - the probe below records why the stage cannot be built
        lo, hi = _CLASSICAL_RANGE
    passing: list[_Attempt] = []

    def probe(q: int) -> bool | None:
        a = _try(tk, image, cand, q, search=True)
        attempts.append(a.entry)
        if a.payload is None:          # the stage cannot take this image at all: stop searching
            return None
        if a.passed:
            passing.append(a)
        return a.passed

    hint = getattr(cand, "quality", None)
    start = min(max(int(hint), lo), hi) if hint is not None else (lo + hi) // 2
    fail_q, pass_q = lo - 1, None          # invariant: the smallest passing quality lies in (fail_q, pass_q]
    r = probe(start)
    if r is None:
        return None
    if r:
        pass_q = start
    else:
        fail_q = start
        if start < hi:
            r = probe(hi)
            if r is None:
                return None
            if r:
                pass_q = hi
    if pass_q is None:
        return None
    while pass_q - fail_q > 1:
        mid = (fail_q + pass_q) // 2
        r = probe(mid)
        if r is None:
            break
        if r:
            pass_q = mid
        else:
            fail_q = mid
    return min(passing, key=lambda a: (a.entry["bytes"], a.entry["quality"]))


#: the metadata an output may have to carry (the Image contract); other keys are the loader's bookkeeping
_CARRIED_METADATA = ("icc", "exif", "xmp", "dicom")


def _routing_view(image: Any) -> Any:
    """The image as the router should see it: same pixels (no copy), metadata limited to what an output may
    have to carry. The loader also keeps bookkeeping keys (``dicom_transfer_syntax``, ``dicom_signed_offset``,
    ``notes``) that no stage stores and none needs to; a metadata-keeping policy must not refuse every stage
    over them."""
    meta = getattr(image, "metadata", None)
    if not isinstance(meta, dict) or set(meta) <= set(_CARRIED_METADATA) or not hasattr(image, "pixels"):
        return image
    from .image import Image

    return Image(image.pixels, image.bit_depth, image.source_format,
                 {k: v for k, v in meta.items() if k in _CARRIED_METADATA})


def _family(tk: Toolkit, policy: Any) -> str:
    """archive / diagnostic / delivery / controlled: how the router treats ``policy`` (a user TOML policy that
    extends ``diagnostic`` keeps DICOM as DICOM too)."""
    if tk.policy_family is not None:
        try:
            return str(tk.policy_family(policy))
        except Exception:  # noqa: BLE001 - a fake policy the router cannot classify: fall back to its name
            pass
    return _policy_name(policy)


def _groups(candidates: list[Any]) -> list[list[Any]]:
    """Consecutive candidates sharing ``group`` (the router's "equivalent choices"); no ``group``: one each."""
    out: list[list[Any]] = []
    last: object = object()
    for i, c in enumerate(candidates):
        g = getattr(c, "group", None)
        key = ("group", g) if g is not None else ("single", i)
        if out and key == last:
            out[-1].append(c)
        else:
            out.append([c])
        last = key
    return out


def _choose(tk: Toolkit, image: Any, candidates: list[Any], record: dict[str, Any],
            dicom_out: bool) -> tuple[_Attempt | None, Any]:
    """Try the candidates group by group. Within a group (equivalent choices) every candidate is tried and the
    smallest that passes wins; a later group is only a fallback when nothing in the earlier ones passed.

    For DICOM output only the stages whose bitstream is a DICOM transfer syntax compete (the file is that
    encoding inside DICOM), when the group has any."""
    attempts: list[dict[str, Any]] = record["attempts"]
    for group in _groups(candidates):
        if dicom_out and any(c.codec_id in DICOM_TRANSFER_SYNTAX for c in group):
            for c in group:
                if c.codec_id not in DICOM_TRANSFER_SYNTAX:
                    record["reasons"].append(f"{c.codec_id} not tried: not a DICOM transfer syntax")
            group = [c for c in group if c.codec_id in DICOM_TRANSFER_SYNTAX]
        passed: list[tuple[_Attempt, Any]] = []
        for cand in group:
            a = _run_candidate(tk, image, cand, attempts)
            if a is not None:
                passed.append((a, cand))
                continue
            last = next((e for e in reversed(attempts) if e["stage"] == cand.codec_id), None)
            because = "; ".join(last["reasons"]) if last and last.get("reasons") else "failed"
            record["reasons"].append(f"{_label(cand)} rejected: {because}")
        if passed:
            best, cand = min(passed, key=lambda p: p[0].entry["bytes"])
            best.entry["chosen"] = True
            why = getattr(cand, "reason", "") or "passed"
            record["reasons"].append(f"{_label(cand)}: {why}")
            if len(passed) > 1:
                sizes = ", ".join(f"{_label(c)} {a.entry['bytes']} B" for a, c in passed)
                record["reasons"].append(f"smallest of {len(passed)} passing equivalent choices ({sizes})")
            return best, cand
    return None, None


def _label(cand: Any) -> str:
    opts = {k: v for k, v in (getattr(cand, "options", None) or {}).items() if k != "model"}
    return cand.codec_id + "".join(f"?{k}={v}" for k, v in opts.items())


def compress_one(path: str | os.PathLike[str], policy: Any = "auto", *, outdir: str | os.PathLike[str],
                 root: str | os.PathLike[str] | None = None, asset: Asset | None = None,
                 toolkit: Toolkit | None = None) -> Result:
    """Compress one asset under ``policy`` and write its output atomically under ``outdir``.

    Parameters
    ----------
    path
        The input file (any format :func:`inverity.image.load` reads, DICOM included).
    policy
        A built-in policy name (``auto``, ``archive``, ``diagnostic``, ``delivery``, ``controlled``), a TOML
        file, or a ``Policy``.
    outdir
        Output directory; the output is ``outdir / <path relative to root>`` with the stage's extension
        (``.inv`` for the learned stage; ``.dcm`` for DICOM kept as DICOM under archive/diagnostic).
    root
        The walked root the output name is relative to (default: the input's directory).
    asset
        The batch's description of this input (name, suffix rule); built from ``path``/``root`` if omitted.
    toolkit
        The modules to orchestrate (default: the real ones); tests pass fakes.

    Returns
    -------
    Result
        ``status == "done"``, with the decision record (``record``) and the output path.

    Raises
    ------
    InputError
        The file cannot be read or is not an image.
    NoCandidatePassedError
        No candidate stage produced a reconstruction that passed verification; nothing was written.
        The partial decision record (every attempt and its reasons) is on the exception as ``.record``.
    """
    t_start = time.perf_counter()
    tk = toolkit or Toolkit.default()
    path = Path(path)
    if asset is None:
        root_p = Path(root) if root is not None else path.parent
        asset = Asset(str(path), str(root_p), path.resolve().relative_to(root_p.resolve()).as_posix())
    outdir = Path(outdir)

    from .image import read_source  # lazy: keeps `import inverity.pipeline` cheap

    data, _ = read_source(path)
    record: dict[str, Any] = {
        "version": _version(), "input": asset.input, "input_path": str(path.resolve()),
        "input_sha256": hashlib.sha256(data).hexdigest(),
        "input_bytes": len(data), "output": None, "bytes": None, "policy": None, "policy_id": None,
        "policy_resolved": None, "stage": None, "quality": None, "profile": {}, "attempts": [], "checks": {},
        "reasons": [], "status": "failed", "error": None, "elapsed_ms": None,
    }
    try:
        return _compress_loaded(tk, data, asset, policy, outdir, record, t_start)
    except InverityError as exc:
        record["error"] = str(exc)
        record["elapsed_ms"] = _ms(t_start)
        exc.record = record  # type: ignore[attr-defined]
        raise


def _compress_loaded(tk: Toolkit, data: bytes, asset: Asset, policy_spec: Any, outdir: Path,
                     record: dict[str, Any], t_start: float) -> Result:
    try:
        image = tk.load(data, name=asset.path)
    except InverityError:
        raise
    except Exception as exc:  # noqa: BLE001 - a loader bug or odd file still gets one clear line
        raise InputError(f"{asset.path}: cannot load ({type(exc).__name__}: {exc})") from None
    record.update(input_format=getattr(image, "source_format", None), width=image.width, height=image.height,
                  channels=image.channels, bit_depth=image.bit_depth)

    policy = tk.get_policy(policy_spec) if isinstance(policy_spec, (str, os.PathLike)) else policy_spec
    record["policy"] = _policy_name(policy)
    record["policy_id"] = policy_id(policy_spec)

    profile = tk.analyse(image)
    prof = _jsonable(_to_dict(profile))
    for k in ("kind", "kind_confidence", "ood_score", "in_distribution"):
        prof.setdefault(k, None)
    record["profile"] = prof

    concrete = policy
    if _policy_name(policy) == "auto":
        resolved = tk.resolve_policy(profile, policy, image)
        reason = None
        if isinstance(resolved, tuple):
            resolved, reason = resolved[0], (resolved[1] if len(resolved) > 1 else None)
        concrete = tk.get_policy(resolved) if isinstance(resolved, str) else resolved
        why = reason or getattr(concrete, "reason", None)
        record["reasons"].append(f"auto -> {_policy_name(concrete)}" + (f": {why}" if why else ""))
    record["policy_resolved"] = _policy_name(concrete)

    candidates = list(tk.plan(profile, concrete, _routing_view(image)))
    record["profile"].update(_jsonable(_to_dict(profile)))   # the router may have completed the OOD gate
    if not candidates:
        why = ""
        if tk.explain is not None:   # the router says why each stage was skipped: put that in the record
            skipped = [ln for ln in tk.explain(profile, concrete, image) if ln.startswith("skipped ")]
            record["reasons"].extend(skipped)
            why = f"; first refusal: {skipped[0][len('skipped '):]}" if skipped else ""
        raise NoCandidatePassedError(f"{asset.path}: policy {record['policy_resolved']} allows no stage for this "
                                     f"image ({prof.get('kind')}, {image.colour}, {image.bit_depth}-bit){why}")
    dicom_out = (_is_dicom(image) and tk.dicom_bytes is not None
                 and _family(tk, concrete) in DICOM_OUT_POLICIES)
    chosen, chosen_cand = _choose(tk, image, candidates, record, dicom_out)
    if chosen is None or chosen.payload is None:
        attempts = record["attempts"]
        tried = ", ".join(dict.fromkeys(c.codec_id for c in candidates))
        last_reason = next((e["reasons"][0] for e in reversed(attempts) if e.get("reasons")), "no reason given")
        raise NoCandidatePassedError(f"{asset.path}: no stage passed verification under policy "
                                     f"{record['policy_resolved']} (tried {tried}; last: {last_reason})")

    payload, checks = chosen.payload, chosen.checks
    ext = _ext_for(chosen.stage, payload)
    # DICOM in + archive/diagnostic: DICOM out, the dataset intact and the pixels losslessly re-encoded.
    if dicom_out:
        payload, checks = _as_dicom(tk, image, chosen_cand, chosen, record)
        ext = ".dcm"

    rel = output_rel(asset, ext)
    out = outdir / rel
    if out.resolve() == Path(asset.path).resolve():
        raise InputError(f"{asset.path}: the output would overwrite the input; choose another -o directory")
    atomic_write_bytes(out, payload)

    record.update(output=out.as_posix(), output_rel=rel.as_posix(), bytes=len(payload),
                  stage=chosen.entry["stage"], quality=chosen.entry["quality"],
                  options=chosen.entry.get("options", {}), checks=checks, status="done",
                  codec_config=_jsonable(chosen.stage.get_config()) if hasattr(chosen.stage, "get_config") else None,
                  ratio=round(len(data) / len(payload), 3) if payload else None)
    record["elapsed_ms"] = _ms(t_start)
    return Result(asset.input, "done", record, out.as_posix())


def _as_dicom(tk: Toolkit, image: Any, cand: Any, chosen: _Attempt, record: dict[str, Any]) -> tuple[bytes, dict]:
    """Re-wrap a DICOM input as DICOM (lossless transfer syntax), and verify *that* file against the floors."""
    ts = DICOM_TRANSFER_SYNTAX.get(chosen.entry["stage"], "jpegls")
    if ts == "jpeg2000" and (chosen.entry.get("options") or {}).get("htj2k"):
        ts = "htj2k"
    entry: dict[str, Any] = {"stage": f"dicom/{ts}", "quality": None}
    assert tk.dicom_bytes is not None
    t0 = time.perf_counter()
    try:
        dcm = bytes(tk.dicom_bytes(image, transfer_syntax=ts))
        entry["encode_ms"] = _ms(t0)
        entry["bytes"] = len(dcm)
        back = tk.load(dcm, name=f"{record['input']} (DICOM out)")
    except Exception as exc:  # noqa: BLE001
        entry.update(passed=False, reasons=[f"DICOM re-encode failed: {type(exc).__name__}: {exc}"])
        record["attempts"].append(entry)
        raise NoCandidatePassedError(f"{record['input']}: could not write DICOM ({type(exc).__name__}: {exc})")
    verdict = tk.verify(image, back, cand.floors)
    entry.update(passed=bool(verdict.passed), reasons=[str(r) for r in verdict.reasons])
    record["attempts"].append(entry)
    if not verdict.passed:
        raise NoCandidatePassedError(f"{record['input']}: the DICOM output failed verification: "
                                     f"{'; '.join(entry['reasons']) or 'no reason given'}")
    record["container"] = "dicom"
    record["transfer_syntax"] = ts
    note = ""
    if (chosen.entry.get("options") or {}).get("near"):
        note = " (lossless: the DICOM writer re-encodes losslessly, so the near-lossless bound is not used)"
    record["reasons"].append(f"DICOM input under {record['policy_resolved']}: written as DICOM ({ts}), "
                             f"dataset kept{note}")
    return dcm, _checks(verdict)


# --------------------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------------------
def _hidden(name: str) -> bool:
    return name.startswith(".")


def collect_assets(inputs: Iterable[str | os.PathLike[str]], outdir: str | os.PathLike[str] | None = None,
                   *, on_note: Callable[[str], None] | None = None) -> list[Asset]:
    """Expand files and directories into the batch's :class:`Asset` list (sorted, deterministic).

    Directories are walked (hidden files and folders, the output directory, ``*.part`` temporaries and files whose
    content is not a recognised image are skipped, each with a note). Files named explicitly are always taken —
    if one is not an image, that asset fails with a clear error rather than being skipped quietly. Two inputs that
    would share an output name keep their extension in it (``b.png.avif``, ``b.jpg.avif``); two inputs with the
    same relative path under different roots are refused.
    """
    from .formats import sniff

    note = on_note or (lambda m: log.info("%s", m))
    out_res = Path(outdir).resolve() if outdir is not None else None
    assets: list[Asset] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            root = p.resolve()
            for dirpath, dirnames, filenames in os.walk(root):
                d = Path(dirpath)
                dirnames[:] = sorted(n for n in dirnames if not _hidden(n) and (d / n).resolve() != out_res)
                for name in sorted(filenames):
                    f = d / name
                    if _hidden(name) or name.endswith(".part") or name.startswith("inverity.sqlite"):
                        continue
                    try:
                        with open(f, "rb") as fh:
                            fmt = sniff(fh.read(512))
                    except OSError as exc:
                        note(f"skipped {f}: cannot read ({exc.strerror or exc})")
                        continue
                    if fmt not in _IMAGE_FORMATS:
                        note(f"skipped {f}: not a recognised image ({fmt or 'unknown format'})")
                        continue
                    assets.append(Asset(str(f), str(root), f.relative_to(root).as_posix()))
        else:
            # a missing or unreadable explicit file still becomes an asset: it fails with a clear one-line error
            root = p.parent.resolve()
            assets.append(Asset(str(p), str(root), p.name, explicit=True))
    # name collisions: same relative path from two roots -> refuse; same stem -> keep the suffix
    seen: dict[str, Asset] = {}
    for a in assets:
        if a.input in seen and seen[a.input].path != a.path:
            raise InputError(f"{a.path} and {seen[a.input].path} would both be catalogued as {a.input!r}; "
                             "compress them into different output directories")
        seen[a.input] = a
    unique = list({(a.input, Path(a.path).resolve()): a for a in assets}.values())
    stems: dict[str, int] = {}
    for a in unique:
        stem = PurePosixPath(a.input).with_suffix("").as_posix()
        stems[stem] = stems.get(stem, 0) + 1
    return [Asset(a.path, a.root, a.input, keep_suffix=stems[PurePosixPath(a.input).with_suffix("").as_posix()] > 1,
                  explicit=a.explicit) for a in unique]


@dataclass(frozen=True)
class _Task:
    asset: Asset
    policy: Any
    outdir: str
    toolkit: Toolkit | None

    @property
    def wants_gpu(self) -> bool:
        """True when the policy may use the learned stage (the Ray engine then asks for a GPU fraction)."""
        return self.policy == "controlled" or bool(getattr(self.policy, "allow_learned", False))


def _work(task: _Task) -> Result:
    """Engine function (runs in a worker): compress one asset; every failure becomes a failed Result."""
    a = task.asset
    try:
        return compress_one(a.path, task.policy, outdir=task.outdir, asset=a, toolkit=task.toolkit)
    except Exception as exc:  # noqa: BLE001 - one asset's failure must not end the batch
        record = getattr(exc, "record", None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, InverityError):
            msg = f"{a.path}: {type(exc).__name__}: {msg}"
        if record is None:
            sha = None
            try:
                sha = hashlib.sha256(Path(a.path).read_bytes()).hexdigest()
            except OSError:
                pass
            record = {"version": _version(), "input": a.input, "input_sha256": sha, "input_bytes": None,
                      "output": None, "bytes": None, "policy": None,
                      "policy_id": None, "policy_resolved": None, "stage": None,
                      "quality": None, "profile": {}, "attempts": [], "checks": {}, "reasons": [],
                      "elapsed_ms": None}
        record.update(status="failed", error=msg, output=None, bytes=None)
        record["policy_id"] = record.get("policy_id") or policy_id(task.policy)
        record["policy"] = record.get("policy") or _policy_name(task.policy)
        return Result(a.input, "failed", record, None, msg)


def _sweep_partials(outdir: Path) -> None:
    """Remove temporaries a killed run left behind (``_atomic`` writes ``.<name>.<random>.part`` then renames).
    Safe because one batch at a time writes into an output directory (the catalog has a single writer)."""
    for p in outdir.rglob(".*.part"):
        try:
            p.unlink()
        except OSError:
            pass


def _sha256_file(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def compress(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], outdir: str | os.PathLike[str],
             policy: Any = "auto", jobs: int | None = None, engine: str = "local",
             on_record: Callable[[dict[str, Any]], None] | None = None, *,
             on_start: Callable[[int], None] | None = None, on_note: Callable[[str], None] | None = None,
             toolkit: Toolkit | None = None) -> list[dict[str, Any]]:
    """Compress files and directories into ``outdir`` with routing, verification and resume.

    Parameters
    ----------
    inputs
        Files and/or directories (walked; see :func:`collect_assets`).
    outdir
        Output directory; outputs mirror the inputs' relative paths; the catalog is ``outdir/inverity.sqlite``.
    policy
        Built-in policy name, TOML file, or ``Policy``.
    jobs
        Worker processes for the local engine (default: the CPU count). Results do not depend on it.
    engine
        ``local`` (process pool) or ``ray``.
    on_record
        Called in this process with each decision record as it arrives (including resumed ones, whose
        ``status`` is ``skipped``) — for progress bars and JSONL output.
    on_start
        Called once with the number of assets before work starts.
    on_note
        Called with human-readable notes (skipped non-image files).
    toolkit
        Injected modules for tests (must be picklable for ``jobs > 1``).

    Returns
    -------
    list of dict
        One decision record per asset, in input order; ``status`` is ``done``, ``failed`` or ``skipped``.
        Failures do not raise: check ``status`` (the CLI exits 2 if any asset failed).
    """
    from .catalog import CATALOG_NAME, Catalog
    from .engine import get_engine

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    outdir_p = Path(outdir)
    assets = collect_assets(inputs, outdir_p, on_note=on_note)
    if on_start is not None:
        on_start(len(assets))
    pid = policy_id(policy)
    if isinstance(policy, (str, os.PathLike)):
        # fail fast, once, on a misspelt policy or a malformed TOML file, not once per asset in the workers
        (toolkit or Toolkit.default()).get_policy(policy)
    eng = get_engine(engine)

    results: dict[str, dict[str, Any]] = {}
    with Catalog(outdir_p / CATALOG_NAME) as cat:
        _sweep_partials(outdir_p)
        todo: list[_Task] = []
        for a in assets:
            sha = _sha256_file(a.path)
            if sha is not None and cat.done(a.input, sha, pid):
                row = cat.get(a.input)
                assert row is not None
                rec = dict(row["record"], status="skipped")
                results[a.input] = rec
                if on_record is not None:
                    on_record(rec)
            else:
                todo.append(_Task(a, policy, str(outdir_p), toolkit))
        for res in eng.run(todo, _work, jobs):
            rec = res.record
            previous = cat.get(res.input)
            # the output file is already renamed into place (by the worker); only now is its row written
            cat.put(rec)
            if previous and previous.get("output") and rec.get("output_rel") != previous["output"]:
                stale = outdir_p / previous["output"]
                if stale.is_file():   # e.g. the asset was redone under another policy and changed extension
                    stale.unlink()
            results[res.input] = rec
            if on_record is not None:
                on_record(rec)
    return [results[a.input] for a in assets if a.input in results]
