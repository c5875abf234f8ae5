"""The routed pipeline: load → analyse → policy → route → search → verify → write, per asset.

This module orchestrates; it has no codec, format or search logic of its own. Each arrow of DESIGN.md's diagram
is a call into the module that owns it, bundled in a :class:`Toolkit` so the orchestration can be tested with a
fake stage and verifier (STYLE.md 9)::

    bytes ─► load ─► analyse ─► get_policy / resolve_policy (auto) ─► plan ─► [Candidate, ...]
        ┌─────────────────────────────────────────────────────────────────────────┘
        ▼  inverity.search.choose: group by group, the quality search predicts then confirms
    stage.encode ─► stage.decode ─► verify(original, reconstruction, floors) ── failed ─► next candidate
        ▼ passed (DICOM kept as DICOM: the stage is inverity.outputs.DicomOutput, the file itself is verified)
    atomic write of OUTDIR/<input path>.<ext>  ─►  DecisionRecord  ─►  catalog row (parent process only)

Every attempt — including each probe of a quality search and each failure, with the verifier's reasons — goes in
the :class:`~inverity.record.DecisionRecord`, so an output can always be explained and a refusal is never silent.

Public API
----------
:func:`compress` walks inputs, resumes from the catalog and runs :func:`compress_one` on an engine;
:func:`compress_one` does one asset and returns a :class:`Result` (or raises a one-line error).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Union

from . import _promises as promises
from ._atomic import atomic_write_bytes
from ._walk import collect_assets
from .batch import _Task, compress, policy_id
from .errors import CodecError, InputError, InverityError
from .outputs import DICOM_TRANSFER_SYNTAX, DicomOutput, check_output, dicom_note, extension_for
from .record import RECORD_KEYS, DecisionRecord, jsonable

if TYPE_CHECKING:
    from .analyse import Profile
    from .image import Image
    from .policy import Policy
    from .route import Candidate, Resolution
    from .stages.base import Stage
    from .verify import Floors, Verdict

__all__ = [
    "compress", "compress_one", "collect_assets", "Asset", "Result", "Toolkit", "NoCandidatePassedError",
    "RECORD_KEYS", "DICOM_TRANSFER_SYNTAX", "PolicySpec",
    "policy_id", "output_rel", "_Task",
]

#: what a caller names a policy by: a built-in name, a TOML file, or a ``Policy``
PolicySpec = Union[str, "os.PathLike[str]", "Policy"]
#: the metadata an output may have to carry (the Image contract); other keys are the loader's bookkeeping
_CARRIED_METADATA = ("icc", "exif", "xmp", "dicom")


class NoCandidatePassedError(CodecError):
    """Every candidate stage failed to encode or failed verification for an asset (nothing was written)."""


@dataclass(frozen=True)
class Toolkit:
    """The callables the pipeline orchestrates (DESIGN.md's boxes), injectable for tests.

    Every field must be a module-level function (picklable) when the toolkit crosses into worker processes.
    ``Toolkit.default()`` binds the real modules; a test replaces a stage (``get_stage``) or the verifier and
    passes the toolkit to :func:`compress` / :func:`compress_one`.
    """

    load: Callable[..., Image]                                   # (bytes, *, name) -> Image
    analyse: Callable[[Image], Profile]
    get_policy: Callable[[str | os.PathLike[str]], Policy]       # name | TOML path -> Policy
    resolve_policy: Callable[[Profile, Policy, Image], Resolution]  # auto -> (concrete policy, reason)
    plan: Callable[[Profile, Policy, Image], list[Candidate]]
    get_stage: Callable[..., Stage]                              # (codec_id, quality=, **options) -> Stage
    verify: Callable[[Image, Image, Floors], Verdict]
    dicom_bytes: Callable[..., bytes] | None = None              # (Image, *, transfer_syntax) -> DICOM file bytes
    explain: Callable[[Profile, Policy, Image], list[str]] | None = None   # the router's reasons

    @classmethod
    def default(cls) -> "Toolkit":
        """The real modules (imported here, lazily, so ``import inverity.pipeline`` stays cheap)."""
        from . import image
        from .analyse import analyse
        from .policy import get_policy
        from .route import explain, plan, resolve_policy
        from .stages.base import get_stage
        from .verify import verify

        return cls(load=image.load, analyse=analyse, get_policy=get_policy, resolve_policy=resolve_policy,
                   plan=plan, get_stage=get_stage, verify=verify, dicom_bytes=image.dicom_bytes,
                   explain=explain)


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
    """What one asset came to: ``status`` is ``done``, ``failed`` or ``skipped`` (resumed from the catalog);
    ``record`` is the decision record's JSON form (:meth:`DecisionRecord.to_dict`)."""

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
def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)


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


def _routing_view(image: Image) -> Image:
    """The image as the router should see it: same pixels (no copy), metadata limited to what an output may
    have to carry. The loader also keeps bookkeeping keys (``dicom_transfer_syntax``, ``dicom_signed_offset``,
    ``notes``) that no stage stores and none needs to; a metadata-keeping policy must not refuse every stage
    over them."""
    if set(image.metadata) <= set(_CARRIED_METADATA):
        return image
    return dataclasses.replace(image, metadata={k: v for k, v in image.metadata.items() if k in _CARRIED_METADATA})


def _refuse_if(message: str | None) -> None:
    if message:
        raise NoCandidatePassedError(message)


# --------------------------------------------------------------------------------------------------------------
# One asset
# --------------------------------------------------------------------------------------------------------------
def compress_one(path: str | os.PathLike[str], policy: PolicySpec = "auto", *, outdir: str | os.PathLike[str],
                 root: str | os.PathLike[str] | None = None, asset: Asset | None = None,
                 toolkit: Toolkit | None = None, media_types: Iterable[str] | None = None,
                 exclude_stages: Sequence[str] = (), image: Image | None = None, effort: str | None = None,
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
        The modules to orchestrate (default: the real ones); tests replace a stage or the verifier.
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

    from .image import read_source  # lazy: keeps `import inverity.pipeline` cheap

    data, _ = read_source(path)
    record = DecisionRecord(input=asset.input, input_path=str(path.resolve()),
                            input_sha256=hashlib.sha256(data).hexdigest(), input_bytes=len(data))
    try:
        out = _compress_loaded(tk, data, asset, policy, Path(outdir), record,
                               None if media_types is None else frozenset(media_types), tuple(exclude_stages),
                               image=image, effort=effort, beat=beat)
    except InverityError as exc:
        record.error = str(exc)
        record.elapsed_ms = _ms(t_start)
        exc.record = record.to_dict()  # type: ignore[attr-defined]
        raise
    record.elapsed_ms = _ms(t_start)
    return Result(asset.input, "done", record.to_dict(), out.as_posix())


def _load(tk: Toolkit, data: bytes, asset: Asset, record: DecisionRecord, image: Image | None = None) -> Image:
    try:
        image = tk.load(data, name=asset.path) if image is None else image
    except InverityError:
        raise
    except Exception as exc:  # noqa: BLE001 - a loader bug or odd file still gets one clear line
        raise InputError(f"{asset.path}: cannot load ({type(exc).__name__}: {exc})") from None
    record.input_format, record.width, record.height = image.source_format, image.width, image.height
    record.channels, record.bit_depth = image.channels, image.bit_depth
    return image


def _resolve(tk: Toolkit, spec: PolicySpec, profile: Profile, image: Image,
             record: DecisionRecord) -> tuple[Policy, Policy]:
    """(the policy as requested, the concrete one: ``auto`` resolved per asset, with its reason)."""
    policy = tk.get_policy(spec) if isinstance(spec, (str, os.PathLike)) else spec
    record.policy, record.policy_id = policy.name, policy_id(spec)
    concrete = policy
    if policy.name == "auto":
        concrete, why = tk.resolve_policy(profile, policy, image)
        record.reasons.append(f"auto -> {concrete.name}" + (f": {why}" if why else ""))
    record.policy_resolved = concrete.name
    promises.policy_promises(record, concrete)
    return policy, concrete


def _candidates(tk: Toolkit, profile: Profile, concrete: Policy, image: Image, record: DecisionRecord,
                media_types: frozenset[str] | None, exclude: tuple[str, ...], asset: Asset) -> list[Candidate]:
    """The routed plan, restricted to the media types asked for and without the stages a reviewer rejected."""
    candidates = list(tk.plan(profile, concrete, _routing_view(image)))
    if media_types is not None:
        from .stages.base import stage_class

        candidates = [c for c in candidates if stage_class(c.codec_id).capabilities.mime in media_types]
        record.reasons.append(f"output restricted to {', '.join(sorted(media_types))}")
    if exclude:   # stages a reviewer rejected for this asset
        record.reasons.extend(f"{c.codec_id} not tried: rejected by review" for c in candidates if c.codec_id in exclude)
        candidates = [c for c in candidates if c.codec_id not in exclude]
    record.profile.update(jsonable(profile.to_dict()))   # the router may have completed the OOD gate
    if candidates:
        return candidates
    why = ""
    if tk.explain is not None:   # the router says why each stage was skipped: put that in the record
        skipped = [ln for ln in tk.explain(profile, concrete, _routing_view(image)) if ln.startswith("skipped ")]
        record.reasons.extend(skipped)
        # a metadata refusal is the one to name: it is the policy's choice, not a limit of the image
        first = next((ln for ln in skipped if " would drop " in ln), skipped[0] if skipped else "")
        why = f"; first refusal: {first[len('skipped '):]}" if first else ""
    raise NoCandidatePassedError(f"{asset.path}: policy {record.policy_resolved} allows no stage for this image "
                                 f"({record.profile.get('kind')}, {image.colour}, {image.bit_depth}-bit){why}")


def _compress_loaded(tk: Toolkit, data: bytes, asset: Asset, spec: PolicySpec, outdir: Path,
                     record: DecisionRecord, media_types: frozenset[str] | None = None,
                     exclude: tuple[str, ...] = (), *, image: Image | None = None, effort: str | None = None,
                     beat: int | None = None) -> Path:
    """load → analyse → policy → plan → search → verify → write; fills ``record`` in; returns the output path."""
    from . import search
    from .review import initial_state

    image = _load(tk, data, asset, record, image)
    profile = tk.analyse(image)
    record.profile = jsonable(profile.to_dict())
    for k in ("kind", "kind_confidence", "ood_score", "in_distribution"):
        record.profile.setdefault(k, None)
    policy, concrete = _resolve(tk, spec, profile, image, record)
    promises.attach_source(image, data)
    candidates = _candidates(tk, profile, concrete, image, record, media_types, exclude, asset)

    # DICOM in + archive/diagnostic: DICOM out, the dataset intact, the pixels in a lossless transfer syntax
    dicom_out = ((image.source_format == "dicom" or "dicom" in image.metadata) and tk.dicom_bytes is not None
                 and concrete.dicom_out                 # the policy's data, not its name
                 and (media_types is None or "application/dicom" in media_types))
    effort = effort or (policy if policy.name == "auto" else concrete).effort or "balanced"
    chosen = search.choose(tk, image, candidates, record, dicom_out=dicom_out, effort=effort, best_bytes=beat)
    if chosen is None or chosen[0].payload is None:
        tried = ", ".join(dict.fromkeys(c.codec_id for c in candidates))
        last = next((e["reasons"][0] for e in reversed(record.attempts) if e.get("reasons")), "no reason given")
        raise NoCandidatePassedError(f"{asset.path}: no stage passed verification under policy "
                                     f"{record.policy_resolved} (tried {tried}; last: {last})")
    best = chosen[0]
    payload, stage = best.payload, best.stage
    if isinstance(stage, DicomOutput):
        record.container, record.transfer_syntax = "dicom", stage.transfer_syntax
        record.reasons.append(dicom_note(stage, best.entry.get("options") or {}, record.policy_resolved))
    elif dicom_out:
        record.container = "dicom"                 # the original DICOM file, dataset and all
    _refuse_if(promises.check_restorable(stage, payload, record))
    _refuse_if(promises.metadata_record(image, stage, record, concrete, _CARRIED_METADATA,
                                        dicom_container=dicom_out))
    promises.growth_note(record, len(payload), len(data), [c.codec_id for c in candidates], concrete)

    rel = output_rel(asset, extension_for(stage, payload))
    out = outdir / rel
    check_output(out, [asset.path])          # never over the input (symlinks and hard links included)
    atomic_write_bytes(out, payload)

    record.output, record.output_rel, record.bytes = out.as_posix(), rel.as_posix(), len(payload)
    record.output_sha256 = hashlib.sha256(payload).hexdigest()
    record.stage, record.quality = best.entry["stage"], best.entry["quality"]
    record.options, record.status = best.entry.get("options", {}), "done"
    record.set_checks(best.checks)
    record.codec_config = jsonable(stage.get_config())
    record.ratio = round(len(data) / len(payload), 3) if payload else None
    record.review = initial_state(concrete, record.to_dict())   # pending / not_required, in every record
    return out
