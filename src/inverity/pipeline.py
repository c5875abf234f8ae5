"""The routed pipeline: load → analyse → policy → route → encode → decode → verify → write, per asset.

This module orchestrates; it has no codec logic of its own. Each arrow of DESIGN.md's diagram is a call into the
module that owns it, bundled in a :class:`Toolkit` so the orchestration can be tested with fakes (STYLE.md 9)::

    bytes ─► load ─► analyse ─► get_policy / resolve_policy (auto) ─► plan ─► [Candidate, ...]
                                                                                  │ for each, in order
        ┌─────────────────────────────────────────────────────────────────────────┘
        ▼
    stage.encode ─► stage.decode ─► verify(original, reconstruction, floors) ── failed ─► next candidate
        │ (search=True: inverity.search predicts, then confirms, the fewest bytes that still pass)
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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from . import _promises as promises
from . import formats as _formats
from ._atomic import atomic_write_bytes
from .errors import CodecError, InputError, InverityError, error_line, safe_text
from .outputs import check_output, check_output_dir, same_file, sha256_file
from ._walk import collect_assets

if TYPE_CHECKING:
    from .search import Attempt as _Attempt

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
#: (Views of the format registry, inverity.formats.)
DICOM_TRANSFER_SYNTAX: Mapping[str, str] = _formats.LazyView(_formats.dicom_transfer_syntaxes)
#: file extension by sniffed format, used only when a stage declares none
_FORMAT_EXT: dict[str, str] = _formats.default_extensions()
#: formats the walker treats as images (by content); everything else in a walked directory is skipped with a note
_IMAGE_FORMATS: frozenset[str] = _formats.walked_formats()


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
def _checks(verdict: Any) -> dict[str, Any]:
    """The verdict's measured numbers, JSON-ready (the verifier's own ``to_dict`` when it has one)."""
    if hasattr(verdict, "to_dict"):
        return _jsonable(dict(verdict.to_dict().get("checks") or {}))
    return _jsonable(dict(verdict.checks))


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


def _effort(requested: Any, concrete: Any) -> str:
    """The search effort: the concrete policy's, except under ``auto`` (resolved to a built-in), the requested
    policy's."""
    src = requested if _policy_name(requested) == "auto" else concrete
    return str(getattr(src, "effort", None) or "balanced")


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
            dicom_out: bool, *, effort: str = "balanced", best_bytes: int | None = None) -> tuple[_Attempt | None, Any]:
    """Try the candidates group by group (:func:`inverity.search.search_group`). Within a group (equivalent
    choices) the smallest that passes wins; a later group is only a fallback when nothing in the earlier ones
    passed. ``effort`` (the policy's) sets how hard the quality search works.

    For DICOM output only the stages whose bitstream is a DICOM transfer syntax compete (the file is that
    encoding inside DICOM), when the group has any."""
    from . import search as S

    attempts: list[dict[str, Any]] = record["attempts"]
    prof = record.get("profile") or {}
    predictor = S.load_predictor(prof.get("features"), prof.get("kind"),
                                 int(getattr(image, "width", 0)) * int(getattr(image, "height", 0)))
    memo = S.Memo()
    record["search"] = {"effort": effort, "encodes": 0}
    for group in _groups(candidates):
        if dicom_out and any(c.codec_id in DICOM_TRANSFER_SYNTAX for c in group):
            dicom_ok = {c.codec_id for c in group if c.codec_id in DICOM_TRANSFER_SYNTAX
                        or promises.carries(tk.get_stage, c.codec_id, "dicom")}
            for c in group:
                if c.codec_id not in dicom_ok:
                    record["reasons"].append(f"{c.codec_id} not tried: not a DICOM transfer syntax")
            group = [c for c in group if c.codec_id in dicom_ok]
        g0 = len(attempts)
        passed, notes = S.search_group(tk, image, group, attempts, effort=effort, predictor=predictor, memo=memo,
                                       best_bytes=best_bytes)
        record["search"]["encodes"] = memo.encodes
        record["reasons"].extend(notes)
        ok = {id(c) for _, c in passed}
        rejected: list[tuple[Any, list[int]]] = []     # (candidate, sizes it tried): the record compares them too
        larger: list[tuple[Any, list[int]]] = []       # never verified: could not beat the best passing size
        for cand in group:
            if id(cand) in ok or any(n.startswith(f"{_label(cand)} not tried") for n in notes):
                continue
            mine = [e for e in attempts[g0:] if e.get("stage") == cand.codec_id]
            sizes = [e["bytes"] for e in mine if e.get("bytes")]
            last = mine[-1] if mine else None
            because = "; ".join(last["reasons"]) if last and last.get("reasons") else "failed"
            if mine and all(e.get("passed") is False and str((e.get("reasons") or [""])[0]).startswith(
                    "not verified:") for e in mine):
                larger.append((cand, sizes))
                record["reasons"].append(f"{_label(cand)} not chosen: {because}")
                continue
            rejected.append((cand, sizes))
            record["reasons"].append(f"{_label(cand)} rejected: {because}")
        if passed:
            best, cand = min(passed, key=lambda p: p[0].entry["bytes"])
            if best.verified != "full":   # nothing ships on a prediction: a bug here fails the asset, loudly
                raise NoCandidatePassedError(f"{record['input']}: internal error: {_label(cand)} q="
                                             f"{best.entry['quality']} was chosen without a full verification")
            best.entry["chosen"] = True
            why = getattr(cand, "reason", "") or "passed"
            record["reasons"].append(f"{_label(cand)}: {why}")
            if len(passed) > 1 or rejected or larger:
                record["reasons"].append(promises.sizes_reason(passed, _label, rejected, larger=larger))
            return best, cand
    return None, None


def _refuse_if(message: str | None) -> None:
    if message:
        raise NoCandidatePassedError(message)


def _label(cand: Any) -> str:
    opts = {k: v for k, v in (getattr(cand, "options", None) or {}).items() if k != "model"}
    return cand.codec_id + "".join(f"?{k}={v}" for k, v in opts.items())


def compress_one(path: str | os.PathLike[str], policy: Any = "auto", *, outdir: str | os.PathLike[str],
                 root: str | os.PathLike[str] | None = None, asset: Asset | None = None,
                 toolkit: Toolkit | None = None, media_types: Iterable[str] | None = None,
                 exclude_stages: Sequence[str] = (), image: Any = None, effort: str | None = None,
                 beat: int | None = None) -> Result:
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
    media_types
        Only the routed candidates whose stage writes one of these media types (its capabilities' ``mime``)
        are tried — same policy, floors and search, one output format (the server's per-format renditions);
        a DICOM input stays DICOM only if ``application/dicom`` is among them.
    exclude_stages
        Codec ids removed from the routed plan (a reviewer rejected them; :func:`inverity.review.reroute`).
    image
        ``path`` already decoded by :func:`inverity.image.load` (the server checks an upload by decoding it):
        used as is, so the file is read for its hash but not decoded twice.
    effort
        The quality search's effort (``fast``, ``balanced``, ``max``) instead of the policy's (the server's
        speed setting); the chosen output is verified in full whatever the effort.
    beat
        Only an output smaller than this many bytes is wanted (the server's rendition that must beat one in
        hand): larger probes are not verified, and if none is smaller, ``NoCandidatePassedError``.

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
        return _compress_loaded(tk, data, asset, policy, outdir, record, t_start,
                                None if media_types is None else frozenset(media_types), tuple(exclude_stages),
                                image=image, effort=effort, beat=beat)
    except InverityError as exc:
        record["error"] = str(exc)
        record["elapsed_ms"] = _ms(t_start)
        exc.record = record  # type: ignore[attr-defined]
        raise


def _compress_loaded(tk: Toolkit, data: bytes, asset: Asset, policy_spec: Any, outdir: Path,
                     record: dict[str, Any], t_start: float, media_types: frozenset[str] | None = None,
                     exclude: tuple[str, ...] = (), *, image: Any = None, effort: str | None = None,
                     beat: int | None = None) -> Result:
    try:
        image = tk.load(data, name=asset.path) if image is None else image
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
    promises.policy_promises(record, concrete)
    promises.attach_source(image, data)

    candidates = list(tk.plan(profile, concrete, _routing_view(image)))
    if media_types is not None:
        from .stages.base import stage_class

        candidates = [c for c in candidates if stage_class(c.codec_id).capabilities.mime in media_types]
        record["reasons"].append(f"output restricted to {', '.join(sorted(media_types))}")
    if exclude:   # stages a reviewer rejected for this asset
        record["reasons"].extend(f"{c.codec_id} not tried: rejected by review" for c in candidates
                                 if c.codec_id in exclude)
        candidates = [c for c in candidates if c.codec_id not in exclude]
    record["profile"].update(_jsonable(_to_dict(profile)))   # the router may have completed the OOD gate
    if not candidates:
        why = ""
        if tk.explain is not None:   # the router says why each stage was skipped: put that in the record
            lines = tk.explain(profile, concrete, _routing_view(image))
            skipped = [ln for ln in lines if ln.startswith("skipped ")]
            record["reasons"].extend(skipped)
            # a metadata refusal is the one to name: it is the policy's choice, not a limit of the image
            first = next((ln for ln in skipped if " would drop " in ln), skipped[0] if skipped else "")
            why = f"; first refusal: {first[len('skipped '):]}" if first else ""
        raise NoCandidatePassedError(f"{asset.path}: policy {record['policy_resolved']} allows no stage for this "
                                     f"image ({prof.get('kind')}, {image.colour}, {image.bit_depth}-bit){why}")
    dicom_out = (_is_dicom(image) and tk.dicom_bytes is not None
                 and _family(tk, concrete) in DICOM_OUT_POLICIES
                 and (media_types is None or "application/dicom" in media_types))
    chosen, chosen_cand = _choose(tk, image, candidates, record, dicom_out, effort=effort or _effort(policy, concrete),
                                   best_bytes=beat)
    if chosen is None or chosen.payload is None:
        attempts = record["attempts"]
        tried = ", ".join(dict.fromkeys(c.codec_id for c in candidates))
        last_reason = next((e["reasons"][0] for e in reversed(attempts) if e.get("reasons")), "no reason given")
        raise NoCandidatePassedError(f"{asset.path}: no stage passed verification under policy "
                                     f"{record['policy_resolved']} (tried {tried}; last: {last_reason})")

    payload, checks = chosen.payload, chosen.checks
    ext = _ext_for(chosen.stage, payload)
    # DICOM in + archive/diagnostic: DICOM out, the dataset intact and the pixels losslessly re-encoded
    # (unless the chosen output is itself the DICOM file: the original kept as is).
    if dicom_out and not promises.carries(tk.get_stage, chosen.entry["stage"], "dicom"):
        payload, checks = _as_dicom(tk, image, chosen_cand, chosen, record)
        ext = ".dcm"
    else:
        _refuse_if(promises.check_restorable(chosen.stage, payload, record))
        if dicom_out:
            record["container"] = "dicom"                 # the original DICOM file, dataset and all
    _refuse_if(promises.metadata_record(image, chosen.stage, record, concrete, _CARRIED_METADATA,
                                        dicom_container=dicom_out))
    promises.growth_note(record, len(payload), len(data), [c.codec_id for c in candidates], _family(tk, concrete))

    rel = output_rel(asset, ext)
    out = outdir / rel
    check_output(out, [asset.path])          # never over the input (symlinks and hard links included)
    atomic_write_bytes(out, payload)

    record.update(output=out.as_posix(), output_rel=rel.as_posix(), bytes=len(payload),
                  output_sha256=hashlib.sha256(payload).hexdigest(),
                  stage=chosen.entry["stage"], quality=chosen.entry["quality"],
                  options=chosen.entry.get("options", {}), checks=checks, status="done",
                  codec_config=_jsonable(chosen.stage.get_config()) if hasattr(chosen.stage, "get_config") else None,
                  ratio=round(len(data) / len(payload), 3) if payload else None)
    record["elapsed_ms"] = _ms(t_start)
    from . import review   # lazy, like the other modules: pending / not_required, recorded in every record

    review.initial_state(concrete, record)
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
        msg = error_line(exc)
        if not isinstance(exc, InverityError) and safe_text(a.path) not in msg:
            msg = f"{safe_text(a.path)}: {msg}"       # name the user's file, and the cause in words
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


def compress(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], outdir: str | os.PathLike[str],
             policy: Any = "auto", jobs: int | None = None, engine: str = "local",
             on_record: Callable[[dict[str, Any]], None] | None = None, *,
             on_start: Callable[[int], None] | None = None, on_note: Callable[[str], None] | None = None,
             toolkit: Toolkit | None = None, catalog: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Compress files and directories into ``outdir`` with routing, verification and resume.

    Parameters
    ----------
    inputs
        Files and/or directories (walked; see :func:`collect_assets`). A path that does not exist is an error
        before anything is created.
    outdir
        Output directory; outputs mirror the inputs' relative paths.
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
    catalog
        The catalog file (default ``outdir/inverity.sqlite``).

    Returns
    -------
    list of dict
        One decision record per asset, in input order; ``status`` is ``done``, ``failed`` or ``skipped``.
        Failures do not raise: check ``status`` (the CLI exits 2 if any asset failed). A failed re-run of an
        asset that was done before keeps the previous output and its catalog row; its record says so
        (``kept_previous``). No inputs found: ``[]`` and nothing is created.
    """
    from .catalog import CATALOG_NAME, Catalog, catalog_files
    from .engine import get_engine

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    missing = [safe_text(os.fspath(p)) for p in inputs if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: no such file or directory{more}; nothing was compressed")
    outdir_p = check_output_dir(outdir)
    cat_path = Path(catalog) if catalog is not None else outdir_p / CATALOG_NAME
    check_output(cat_path, [])
    pid = policy_id(policy)
    if isinstance(policy, (str, os.PathLike)):
        # fail fast, once, on a misspelt policy or a malformed TOML file, not once per asset in the workers
        (toolkit or Toolkit.default()).get_policy(policy)
    eng = get_engine(engine)
    exclude: list[Path] = catalog_files(cat_path)
    if cat_path.is_file():   # the outputs this catalog knows are never inputs (compress d -o d, twice)
        with Catalog(cat_path, readonly=True) as known:
            exclude.extend(known.outputs())
    assets = collect_assets(inputs, outdir_p, on_note=on_note, exclude=exclude)
    if on_start is not None:
        on_start(len(assets))
    if not assets:
        return []

    results: dict[str, dict[str, Any]] = {}
    with Catalog(cat_path) as cat:
        _sweep_partials(outdir_p)
        todo: list[_Task] = []
        for a in assets:
            sha = sha256_file(a.path)
            if sha is not None and cat.done(a.input, sha, pid):
                row = cat.get(a.input)
                assert row is not None
                rec = dict(row["record"], status="skipped")
                results[a.input] = rec
                if on_record is not None:
                    on_record(rec)
            else:
                todo.append(_Task(a, policy, str(outdir_p), toolkit))
        inputs_of_batch = [a.path for a in assets]
        from functools import partial

        from ._warm import warm   # once per worker: imports and models (torch only if a task may be learned)

        warm_up = None if toolkit is not None else partial(warm, any(t.wants_gpu for t in todo))
        for res in eng.run(todo, _work, jobs, warm=warm_up):
            rec = res.record
            _settle(cat, rec, inputs_of_batch)
            results[res.input] = rec
            if on_record is not None:
                on_record(rec)
    return [results[a.input] for a in assets if a.input in results]


def _settle(cat: Any, rec: dict[str, Any], inputs: list[str]) -> None:
    """Write one result's catalog row (the output is already renamed into place by the worker).

    A failure never costs the last good output: when the asset was done before and that output is still on
    disk, the row and the file stay as they were and the failed record says so (``kept_previous``). A success
    that renamed the output (another stage, another extension) removes the previous file — never an input."""
    previous = cat.get(rec["input"])
    prev_out = previous.get("output") if previous and previous.get("status") == "done" else None
    prev_file = cat.root / prev_out if prev_out else None
    if rec.get("status") == "failed":
        if prev_file is not None and prev_file.is_file():
            assert previous is not None
            when = previous.get("created_at") or "an earlier run"
            rec["kept_previous"] = {"output": str(prev_file), "created_at": when, "stage": previous.get("stage")}
            rec["error"] = f"{rec.get('error')}; kept previous output {prev_out} from {when}"
            return
        cat.put(rec)
        return
    cat.put(rec)
    if prev_file is not None and not same_file(prev_file, rec.get("output") or "") and prev_file.is_file() \
            and not any(same_file(prev_file, p) for p in inputs):
        prev_file.unlink()   # e.g. the asset was redone under another policy and changed extension
