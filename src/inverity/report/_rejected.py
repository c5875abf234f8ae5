"""A preview of a rejected attempt: what the reviewer would have got had the verifier let it through.

The pipeline keeps no rejected payloads (only the chosen output is written). For a stage whose encoder is
deterministic — the learned stage decodes bit-exactly or refuses, see :mod:`inverity.container` — the attempt is
re-encoded here from the record's ``stage``, ``quality`` and ``options``, decoded, and verified again under the
policy's floors, so the page can show the reconstruction *and the verifier's own worst windows* on it. The page
labels it "rejected — not delivered"; nothing of it is written next to the outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..image import Image
from ..verify_types import Box, boxes_from_checks

__all__ = ["PREVIEW_STAGES", "RejectedPreview", "pick_rejected", "reencode"]

#: stages whose rejected attempts are re-encoded for a preview (the ones a reviewer is asked to trust)
PREVIEW_STAGES = ("learned",)


@dataclass
class RejectedPreview:
    """The re-encoded rejected attempt: its reconstruction, size, verdict and worst windows."""

    attempt: Mapping[str, Any]
    reconstruction: Image
    bytes: int
    passed: bool
    failures: list[str]
    windows: list[Box]
    notes: list[str] = field(default_factory=list)


def pick_rejected(record: Mapping[str, Any], stages: tuple[str, ...] = PREVIEW_STAGES) -> Mapping[str, Any] | None:
    """The rejected attempt worth previewing: of the stages in ``stages``, the failed attempt with the highest
    quality (the closest the stage came to passing); ``None`` when there is none.

    Examples
    --------
    >>> pick_rejected({"attempts": [{"stage": "learned", "quality": 4, "passed": False},
    ...                             {"stage": "learned", "quality": 7, "passed": False},
    ...                             {"stage": "avif", "quality": 60, "passed": True}]})["quality"]
    7
    >>> pick_rejected({"attempts": [{"stage": "avif", "quality": 40, "passed": False}]}) is None
    True
    """
    tries = [a for a in record.get("attempts") or [] if isinstance(a, Mapping) and a.get("passed") is False
             and a.get("stage") in stages and "encode/decode failed" not in " ".join(a.get("reasons") or [])]
    if not tries:
        return None
    return max(tries, key=lambda a: a.get("quality") if isinstance(a.get("quality"), (int, float)) else -1)


def _floors(record: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The floors the attempt was verified under: its policy's (the learned candidate carries them unchanged)."""
    from ..verify import Floors

    name = record.get("policy_resolved") or record.get("policy")
    try:
        from ..policy import get_policy

        return get_policy(str(name)).floors, None
    except Exception as exc:  # noqa: BLE001 - a policy file that moved: still show the preview, say so
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Floors.controlled(), f"policy {name!r} not available ({msg}); verified under the controlled floors"


def reencode(record: Mapping[str, Any], attempt: Mapping[str, Any], original: Image) -> RejectedPreview:
    """Re-encode ``attempt`` of ``record`` from ``original``, decode it and verify it again.

    Raises whatever the stage raises (missing model, unknown codec): the caller shows that on the page.
    """
    from ..stages.base import get_stage
    from ..verify import verify

    opts = dict(attempt.get("options") or {})
    stage = get_stage(str(attempt["stage"]), quality=attempt.get("quality"), **opts)
    payload = bytes(stage.encode(original))
    recon = stage.decode(payload)
    floors, note = _floors(record)
    verdict = verify(original, recon, floors)
    notes = [note] if note else []
    recorded = attempt.get("bytes")
    if isinstance(recorded, int) and recorded != len(payload):
        notes.append(f"re-encoded to {len(payload)} B, the record says {recorded} B: the model or codec changed "
                     "since the batch ran; the preview shows today's encoding")
    if verdict.passed:
        notes.append("re-encoded today this attempt passes: the verifier or the model changed since the batch ran")
    windows = boxes_from_checks(verdict.to_dict()["checks"])
    return RejectedPreview(attempt, recon, len(payload), bool(verdict.passed), list(verdict.failures), windows,
                           notes)
