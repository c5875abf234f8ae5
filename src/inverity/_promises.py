"""What every decision record promises beyond "it passed": kept out of :mod:`inverity.pipeline`, which calls these.

- the concrete policy's ``review_policy``, ``effort`` and each floor it loosened or removed (``floor_changes``,
  also in ``reasons``) — no check disappears silently;
- ``metadata``: which of the input's ICC profile, EXIF, XMP and DICOM dataset the output keeps and drops, with a
  loud reason for a dropped non-sRGB ICC profile; the policy's ``metadata`` mode decides whether dropping is
  allowed (``strip``) or refuses the asset (``keep``, ``refuse``);
- an output larger than its input says why (archive never grows an asset silently);
- a stage that promises the input *file* back (``restore``: keep the original, lossless JPEG → JPEG XL) is held to
  it by sha256;
- the sizes of every passing equivalent choice ("learned 12.7 kB vs avif 16.4 kB (at the same floors)").

Functions that can refuse an asset return the refusal message (``None`` when fine); the pipeline raises it.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ._units import human_bytes

if TYPE_CHECKING:
    from .image import Image
    from .policy import Policy
    from .record import DecisionRecord
    from .stages.base import Stage

__all__ = ["SOURCE_BYTES", "policy_promises", "attach_source", "carries", "check_restorable", "metadata_record",
           "growth_note", "sizes_reason", "kb", "icc_description"]

#: the metadata key under which stages that work on the input file (:mod:`inverity.stages.source`) find its bytes
SOURCE_BYTES = "source_bytes"


def kb(n: int) -> str:
    """``"812 B"``, ``"12.7 kB"`` (:func:`inverity._units.human_bytes`)."""
    return human_bytes(n)


def sizes_reason(passed: list[tuple[Any, Any]], label: Callable[[Any], str],
                 rejected: Sequence[tuple[Any, list[int]]] = (), *,
                 larger: Sequence[tuple[Any, list[int]]] = ()) -> str:
    """The sizes of a group's equivalent choices, from ``(attempt, candidate)`` pairs that passed (smallest first),
    ``(candidate, sizes tried)`` pairs that failed the floors, and ``larger`` ones the search did not verify
    because their output could not beat the best passing size.

    Examples
    --------
    >>> from inverity.route import Candidate
    >>> from inverity.search import Attempt
    >>> a = lambda n: Attempt(True, {"bytes": n})
    >>> c = lambda cid: Candidate(cid)
    >>> sizes_reason([(a(16400), c("avif")), (a(12700), c("learned"))], lambda x: x.codec_id)
    'smallest of 2 passing equivalent choices: learned 12.7 kB vs avif 16.4 kB (at the same floors)'
    >>> sizes_reason([(a(32100), c("avif"))], lambda x: x.codec_id, [(c("learned"), [18000, 25100])])
    'avif 32.1 kB passed; failed the floors: learned (tried 18.0 kB-25.1 kB) (at the same floors)'
    >>> sizes_reason([(a(1657), c("jpeg"))], lambda x: x.codec_id, larger=[(c("png"), [2396])])
    'jpeg 1.7 kB passed; larger, so not verified: png 2.4 kB (at the same floors)'
    """
    ranked = sorted(passed, key=lambda p: p[0].entry["bytes"])
    sizes = " vs ".join(f"{label(c)} {kb(a.entry['bytes'])}" for a, c in ranked)
    head = f"smallest of {len(passed)} passing equivalent choices: {sizes}" if len(passed) > 1 else f"{sizes} passed"
    fails = []
    for c, tried in rejected:
        span = "no output" if not tried else kb(min(tried)) if len(set(tried)) == 1 else \
            f"{kb(min(tried))}-{kb(max(tried))}"
        fails.append(f"{label(c)} (tried {span})")
    tail = f"; failed the floors: {', '.join(fails)}" if fails else ""
    if larger:
        tail += "; larger, so not verified: " + ", ".join(f"{label(c)} {kb(min(t))}" if t else label(c)
                                                          for c, t in larger)
    floors = [getattr(c, "floors", None) for _, c in ranked] + \
        [getattr(c, "floors", None) for c, _ in list(rejected) + list(larger)]
    same = "at the same floors" if all(f == floors[0] for f in floors) else "each at its own floors"
    return f"{head}{tail} ({same})"


def policy_promises(record: DecisionRecord, policy: Policy) -> None:
    """Record the concrete policy's review mode, search effort and floor changes (notes also go in ``reasons``)."""
    record.review_policy = str(policy.review)
    record.effort = str(policy.effort)
    notes = [str(n) for n in policy.floor_notes]
    record.floor_changes = notes
    record.reasons.extend(notes)


def attach_source(image: Image, data: bytes) -> None:
    """Hand the stages that work on the input file its bytes (``image.metadata[SOURCE_BYTES]``); no other stage
    reads that key, and the router never sees it."""
    image.metadata[SOURCE_BYTES] = data


def carries(get_stage: Callable[..., Stage], codec_id: str, key: str) -> bool:
    """Whether ``codec_id``'s output can carry the metadata ``key`` (its declared capabilities)."""
    try:
        caps = get_stage(codec_id).capabilities
    except Exception:  # noqa: BLE001 - a stage that cannot be built carries nothing
        return False
    return key in caps.metadata


def check_restorable(stage: Stage, payload: bytes, record: DecisionRecord) -> str | None:
    """Hold a stage with ``restore`` to its promise: sha256 of the restored file equals the input's."""
    restore = getattr(stage, "restore", None)   # optional: only the stages that keep or transcode the input file
    if restore is None:
        return None
    restored = bytes(restore(payload))
    sha = hashlib.sha256(restored).hexdigest()
    if sha != record.input_sha256:
        return (f"{record.input}: the {stage.codec_id} output does not restore the input file (sha256 "
                f"{sha[:16]} != {str(record.input_sha256)[:16]}); nothing written")
    record.restores_input = True
    what = "is the input file itself" if restored == bytes(payload) else "restores the input file byte for byte"
    record.reasons.append(f"{stage.codec_id}: the output {what} (sha256 {sha[:16]}… verified)")
    return None


def metadata_record(image: Image, stage: Stage, record: DecisionRecord, policy: Policy, keys: Iterable[str], *,
                    dicom_container: bool) -> str | None:
    """Set ``record.metadata`` (mode, input, kept, dropped); refuse when the mode forbids dropping."""
    meta = image.metadata
    had = [k for k in keys if meta.get(k) is not None and not (isinstance(meta.get(k), bytes) and not meta[k])]
    carried = set(stage.capabilities.metadata)
    if dicom_container:
        carried.add("dicom")
    kept, dropped = [k for k in had if k in carried], [k for k in had if k not in carried]
    mode = str(policy.metadata or ("keep" if policy.keep_metadata else "strip"))
    record.metadata = {"mode": mode, "input": had, "kept": kept, "dropped": dropped}
    if not dropped:
        return None
    cid = stage.codec_id
    what = ", ".join("DICOM dataset (patient/study identifiers, acquisition parameters)" if k == "dicom" else k
                     for k in dropped)
    if mode in ("keep", "refuse"):
        return (f"{record.input}: policy {record.policy_resolved} (metadata = {mode}) refuses to drop "
                f"{what}: the chosen {cid} output cannot carry it")
    record.reasons.append(f"metadata dropped: {what} ({cid} output cannot carry it; policy "
                          f"{record.policy_resolved}: metadata = {mode})")
    if "icc" in dropped:
        desc = icc_description(meta["icc"])
        if "srgb" not in desc.lower():
            record.metadata["icc_not_srgb"] = desc
            record.reasons.append(f"WARNING: ICC profile {desc!r} is not sRGB and was dropped: the {cid} "
                                  "output's colours will be shown as sRGB (mislabelled)")
    return None


def icc_description(icc: Any) -> str:
    """An ICC profile's description (``"Display P3"``), or ``"unreadable profile"``."""
    try:
        import io

        from PIL import ImageCms

        return str(ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc))))).strip()
    except Exception:  # noqa: BLE001 - a broken profile is not sRGB either
        return "unreadable profile"


def growth_note(record: DecisionRecord, out_bytes: int, in_bytes: int, candidate_ids: Iterable[str],
                policy: Policy) -> None:
    """An output larger than its input says why, in ``reasons`` (and ``record.grew``).

    ``policy``: the concrete policy; a ``lossless_only`` one promises never to grow (keeping the original is
    its candidate), so a plan without ``original`` is named as the cause.
    """
    if out_bytes <= in_bytes:
        return
    orig = next((e for e in record.attempts if e.get("stage") == "original"), None)
    if orig is not None and not orig.get("passed"):
        why = f"keeping the original failed: {'; '.join(orig.get('reasons') or ['no reason given'])}"
    elif orig is not None:
        why = "the DICOM output is re-encoded; the original was a candidate but not chosen"
    elif "original" in set(candidate_ids):
        why = "keeping the original was not tried (an earlier group passed)"
    elif policy.lossless_only:
        why = f"keeping the original is not among policy {record.policy_resolved}'s stages"
    elif record.container == "dicom":
        why = "DICOM re-encoded with a lossless transfer syntax"
    else:
        why = (f"policy {record.policy_resolved} re-encodes to meet its floors (keeping the original is an "
               "archive candidate)")
    record.reasons.append(f"output {kb(out_bytes)} is larger than the input {kb(in_bytes)} "
                             f"(+{100 * (out_bytes / max(in_bytes, 1) - 1):.0f}%): {why}")
    record.grew = True
