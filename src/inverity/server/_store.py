"""The server's asset store: content-addressed originals, pipeline outputs, cached renditions, the catalog.

Layout of ``STORE/``::

    originals/<id>.<ext>              the uploaded bytes, exactly as received
    outputs/<id>.<ext>                what ``pipeline.compress_one`` chose under the upload's policy
    renditions/<id>/<key>.<ext>       one verified rendition per served media type (created on first request)
    renditions/<id>/<key>.json        its decision record (or why the format is unavailable for this asset)
    inverity.sqlite                   the catalog: one row per asset (key: the id), the upload's decision record

The id is content-addressed (:func:`asset_id`), so two uploads of the same bytes under the same policy are the
same asset: everything written is a pure function of (bytes, policy), every write is atomic
(``inverity._atomic``), and an output is renamed into place *before* its catalog row or JSON record is written —
a crash leaves at worst an output without a record, which the next request simply redoes.

This module is synchronous and thread-safe; :mod:`inverity.server._app` calls it from worker threads and makes
sure one id (and one rendition of one id) is worked on by a single thread at a time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .._atomic import atomic_write_text
from ..errors import InputError

__all__ = [
    "Store", "asset_id", "is_asset_id", "MEDIA_TYPES", "LEARNED_MEDIA_TYPE", "media_type_of_stage",
    "public_message",
]

#: media types served by ``GET /v1/assets/{id}`` -> rendition key (also the file stem under renditions/<id>/).
#: Order is the tie-break when two renditions are the same size (modern formats first).
MEDIA_TYPES: dict[str, str] = {
    "image/avif": "avif", "image/jxl": "jxl", "image/webp": "webp", "image/jpeg": "jpeg", "image/png": "png",
    "application/x-inverity": "inv",
}
#: the learned stage's ``.inv`` stream: only for clients that name it exactly (never via ``*/*``)
LEARNED_MEDIA_TYPE = "application/x-inverity"

#: file extension of a stored original by sniffed format (others use the format name)
_ORIGINAL_EXT = {"jpeg": "jpg", "dicom": "dcm", "tiff": "tif", "jpegls": "jls"}
_ID_HEX = 32
_ID_RE = re.compile(rf"[0-9a-f]{{{_ID_HEX}}}")


def asset_id(data: bytes, policy: str) -> str:
    """The content address of an upload: the first 32 hex digits of sha256(body, NUL, policy name).

    Examples
    --------
    >>> asset_id(b"abc", "delivery")
    '83be86671f7ed22d955e93c7f9b79462'
    >>> len(asset_id(b"abc", "delivery")), asset_id(b"abc", "delivery") == asset_id(b"abc", "archive")
    (32, False)
    """
    h = hashlib.sha256(data)
    h.update(b"\0" + policy.encode("utf-8"))
    return h.hexdigest()[:_ID_HEX]


def is_asset_id(text: str) -> bool:
    """True for a well-formed id (32 lowercase hex digits) — which also rules out any path trickery.

    Examples
    --------
    >>> is_asset_id("0" * 32), is_asset_id("../etc/passwd"), is_asset_id("A" * 32)
    (True, False, False)
    """
    return _ID_RE.fullmatch(text) is not None


def media_type_of_stage(codec_id: str) -> str | None:
    """The media type a stage's output is served as (its capabilities' ``mime``), or ``None`` if unknown."""
    from ..stages.base import stage_class

    try:
        return str(stage_class(codec_id).capabilities.mime)
    except Exception:  # noqa: BLE001 - an unregistered id simply has no media type
        return None


class _PlanFor:
    """``route.plan`` restricted to the stages whose output is one media type (a rendition's plan).

    Filtering the routed plan — rather than building candidates here — keeps every routing rule in one place:
    the policy still decides which stages, options and floors apply to this image (a learned candidate only
    appears where the policy and the out-of-distribution gate allow it), and the pipeline's quality search
    does the rest.
    """

    def __init__(self, plan: Callable[..., list[Any]], media_type: str) -> None:
        self.plan, self.media_type = plan, media_type

    def __call__(self, profile: Any, policy: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [c for c in self.plan(profile, policy, *args, **kwargs)
                if media_type_of_stage(c.codec_id) == self.media_type]


class _PlanRecorder:
    """``route.plan`` unchanged, remembering the plan the pipeline got (which formats this asset can have)."""

    def __init__(self, plan: Callable[..., list[Any]]) -> None:
        self.plan = plan
        self.candidates: list[Any] = []

    def __call__(self, profile: Any, policy: Any, *args: Any, **kwargs: Any) -> list[Any]:
        self.candidates = list(self.plan(profile, policy, *args, **kwargs))
        return self.candidates


class _Preloaded:
    """A ``load`` that returns an already-decoded image for its own bytes (saves decoding an upload twice)."""

    def __init__(self, image: Any, sha256: str, load: Callable[..., Any]) -> None:
        self.image, self.sha256, self.load = image, sha256, load

    def __call__(self, data: bytes, *, name: str | None = None) -> Any:
        if hashlib.sha256(data).hexdigest() == self.sha256:
            return self.image
        return self.load(data, name=name)


#: how a stored original is named in a pipeline message (shown to clients as ``asset <id>``)
_STORED_NAME = re.compile(r"(?:\S*/)?originals/([0-9a-f]{32})\.\w+")


def public_message(text: str, root: Path) -> str:
    """A message as clients see it: the server's paths replaced by the asset id.

    Examples
    --------
    >>> public_message("/srv/st/originals/" + "ab" * 16 + ".png: truncated", Path("/srv/st"))
    'asset abababababababababababababababab: truncated'
    """
    return _STORED_NAME.sub(r"asset \1", str(text).replace(f"{root}{os.sep}", ""))


def _public(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """A decision record as clients see it: paths relative to the store, no server filesystem layout."""
    rec = dict(record)
    rec.pop("input_path", None)
    if rec.get("error"):
        rec["error"] = public_message(rec["error"], root)
    out = rec.get("output")
    if out:
        try:
            rec["output"] = Path(out).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rec["output"] = Path(out).name
    return rec


class Store:
    """Originals, outputs, renditions and the catalog of one server (see the module docstring for the layout).

    Parameters
    ----------
    root
        The store directory (created).
    max_pixels
        Uploads with more pixels are refused (``image.load``'s check, before decoding).
    toolkit
        The pipeline's modules (default: ``pipeline.Toolkit.default()``, built on first use).
    """

    def __init__(self, root: str | os.PathLike[str], *, max_pixels: int | None,
                 toolkit: Any | None = None) -> None:
        self.root = Path(root).resolve()
        self.max_pixels = max_pixels
        for sub in ("originals", "outputs", "renditions"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.root / "inverity.sqlite"
        self._toolkit = toolkit
        # SQLite takes one writer at a time anyway; the lock makes that explicit and keeps "database is locked"
        # retries out of the request path. Connections are opened per operation (they are not shareable across
        # threads), which is cheap next to an encode and rare thanks to the caller's in-memory cache.
        self._db_lock = threading.Lock()
        with self._db_lock:
            from ..catalog import Catalog

            Catalog(self.catalog_path).close()   # create / migrate once, up front

    # -- the pipeline -----------------------------------------------------------------------------------------
    @property
    def toolkit(self) -> Any:
        if self._toolkit is None:
            from ..pipeline import Toolkit

            self._toolkit = Toolkit.default()
        return self._toolkit

    def _load(self) -> Callable[..., Any]:
        from ..image import load

        return partial(load, max_pixels=self.max_pixels)

    def load_upload(self, data: bytes, name: str) -> Any:
        """Decode an upload with the pixel limit (raises ``InputError`` with the loader's one-line message)."""
        return self._load()(data, name=name)

    # -- paths ------------------------------------------------------------------------------------------------
    def original_path(self, aid: str, fmt: str) -> Path:
        """Where the upload of ``aid`` is kept, named by its sniffed format (``png``, ``jpeg``, ``dicom`` ...)."""
        return self.root / "originals" / f"{aid}.{_ORIGINAL_EXT.get(fmt, fmt)}"

    def _find_original(self, aid: str) -> Path:
        hits = sorted((self.root / "originals").glob(f"{aid}.*"))
        hits = [p for p in hits if not p.name.endswith(".part")]
        if not hits:
            raise InputError(f"asset {aid}: original is missing from the store")
        return hits[0]

    def rendition_dir(self, aid: str) -> Path:
        return self.root / "renditions" / aid

    def path_of(self, rel: str) -> Path:
        return self.root / rel

    # -- the catalog (single writer) --------------------------------------------------------------------------
    def catalog_get(self, aid: str) -> dict[str, Any] | None:
        """The catalog row of ``aid`` (columns plus parsed ``record``), or ``None``."""
        from ..catalog import Catalog

        with self._db_lock, Catalog(self.catalog_path) as cat:
            return cat.get(aid)

    def catalog_put(self, record: dict[str, Any]) -> None:
        from ..catalog import Catalog

        with self._db_lock, Catalog(self.catalog_path) as cat:
            cat.put(record)

    def catalog_count(self) -> int:
        from ..catalog import Catalog

        with self._db_lock, Catalog(self.catalog_path) as cat:
            return len(cat)

    def asset(self, aid: str) -> dict[str, Any] | None:
        """The upload's decision record if the asset exists (compressed, output on disk), else ``None``."""
        row = self.catalog_get(aid)
        if row is None or row["status"] != "done" or not row["output"] or not (self.root / row["output"]).is_file():
            return None
        return _public(row["record"], self.root)

    # -- uploads ----------------------------------------------------------------------------------------------
    def create_asset(self, aid: str, data: bytes, fmt: str, policy: str,
                     filename: str | None = None) -> tuple[dict[str, Any], bool]:
        """Store and compress an upload; returns ``(public decision record, created)``.

        Idempotent: if the asset already exists its record is returned with ``created=False``. The caller runs
        at most one ``create_asset`` per id at a time.

        Raises
        ------
        InputError
            The bytes do not decode, or have too many pixels (nothing is stored).
        NoCandidatePassedError
            No stage passed verification; a ``failed`` catalog row keeps the attempts (``exc.record``), and a
            later upload of the same bytes tries again.
        """
        from ..pipeline import Asset, compress_one

        existing = self.asset(aid)
        if existing is not None:
            return existing, False
        label = filename or "<request body>"
        image = self.load_upload(data, label)   # refuse bombs and garbage before anything touches the disk
        orig = self.original_path(aid, fmt)
        if not orig.is_file():
            from .._atomic import atomic_write_bytes

            atomic_write_bytes(orig, data)
        sha = hashlib.sha256(data).hexdigest()
        recorder = _PlanRecorder(self.toolkit.plan)
        tk = dataclasses.replace(self.toolkit, load=_Preloaded(image, sha, self._load()), plan=recorder)
        asset = Asset(str(orig), str(orig.parent), aid)
        try:
            res = compress_one(orig, policy, outdir=self.root / "outputs", asset=asset, toolkit=tk)
        except Exception as exc:
            # keep nothing of a failed upload but its catalog row (the attempts and why): a retry starts afresh
            orig.unlink(missing_ok=True)
            record = getattr(exc, "record", None)
            if record is not None:
                record = dict(record, status="failed", output=None, bytes=None, filename=filename)
                record.setdefault("input_sha256", sha)
                self.catalog_put(record)
                exc.record = _public(record, self.root)  # type: ignore[attr-defined]
            raise
        cands = recorder.candidates
        # the formats this asset can be served in: those its policy's plan has a stage for
        record = dict(res.record, id=aid, filename=filename, media_types=[
            mt for mt in MEDIA_TYPES if any(media_type_of_stage(c.codec_id) == mt for c in cands)])
        self.catalog_put(record)
        self._seed_renditions(aid, record, cands)
        return _public(record, self.root), True

    def _seed_renditions(self, aid: str, record: dict[str, Any], cands: list[Any]) -> None:
        """What the upload already settled, so GET need not redo it.

        The upload's output is a verified rendition in its own format. And the pipeline tried the plan's
        candidates in order up to the chosen one, so a format whose candidates all came *before* it failed
        verification — a rendition restricted to that format (same plan, same floors, same deterministic
        search) would fail the same way: it is recorded as unavailable, with the upload's reasons.
        """
        chosen = next((i for i, c in enumerate(cands) if c.codec_id == record.get("stage")
                       and dict(c.options or {}) == dict(record.get("options") or {})), None)
        if chosen is None:
            chosen = next((i for i, c in enumerate(cands) if c.codec_id == record.get("stage")), None)
        mt = media_type_of_stage(str(record.get("stage")))
        key = MEDIA_TYPES.get(mt or "")
        if key is not None and record.get("container") != "dicom" and self.read_rendition(aid, key) is None:
            out = Path(record["output"])
            self._write_meta(aid, key, self._done_meta(mt or "", key, out, _public(record, self.root)))
        if chosen is None:
            return
        for mtype, k in MEDIA_TYPES.items():
            idx = [i for i, c in enumerate(cands) if media_type_of_stage(c.codec_id) == mtype]
            if not idx or max(idx) >= chosen or self.read_rendition(aid, k) is not None:
                continue
            stages = list(dict.fromkeys(cands[i].codec_id for i in idx))
            last: dict[str, Any] = next(
                (a for a in reversed(record.get("attempts") or []) if a.get("stage") in stages), {})
            why = "; ".join(last.get("reasons") or []) or "failed"
            self._write_meta(aid, k, {
                "media_type": mtype, "key": k, "status": "unavailable",
                "error": f"asset {aid}: no {mtype} stage passed verification under policy "
                         f"{record.get('policy_resolved')} at upload (tried {', '.join(stages)}; last: {why})"})

    # -- renditions -------------------------------------------------------------------------------------------
    def _meta_path(self, aid: str, key: str) -> Path:
        return self.rendition_dir(aid) / f"{key}.json"

    def read_rendition(self, aid: str, key: str) -> dict[str, Any] | None:
        """The cached rendition record (``status`` ``done`` or ``unavailable``), or ``None`` if never made."""
        p = self._meta_path(aid, key)
        try:
            meta = json.loads(p.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if meta.get("status") == "done" and not (self.root / meta["path"]).is_file():
            return None          # the file was removed by hand: make it again
        return dict(meta)

    def renditions(self, aid: str) -> dict[str, dict[str, Any]]:
        """Every cached rendition record of an asset, by media type."""
        out: dict[str, dict[str, Any]] = {}
        for mt, key in MEDIA_TYPES.items():
            meta = self.read_rendition(aid, key)
            if meta is not None:
                out[mt] = meta
        return out

    def _write_meta(self, aid: str, key: str, meta: dict[str, Any]) -> None:
        atomic_write_text(self._meta_path(aid, key), json.dumps(meta, sort_keys=True, indent=1))

    def _done_meta(self, media_type: str, key: str, path: Path, record: dict[str, Any]) -> dict[str, Any]:
        data = path.read_bytes()
        return {"media_type": media_type, "key": key, "status": "done",
                "path": path.resolve().relative_to(self.root).as_posix(), "bytes": len(data),
                "etag": hashlib.sha256(data).hexdigest(), "record": record}

    def make_rendition(self, aid: str, record: dict[str, Any], media_type: str) -> dict[str, Any]:
        """The verified rendition of an asset in ``media_type``, made on first call and cached on disk.

        The rendition is the pipeline run again on the original, under the asset's (resolved) policy, with the
        routed plan restricted to the stages that write ``media_type`` — so the same floors, the same quality
        search for the fewest bytes that pass, and the same verification as the upload itself. If no stage of
        that format passes (or the policy allows none, e.g. lossy AVIF under ``archive``, or the learned stage
        outside ``controlled``), the record says ``unavailable`` and why; that answer is cached too.
        """
        from ..pipeline import Asset, NoCandidatePassedError, compress_one

        key = MEDIA_TYPES[media_type]
        cached = self.read_rendition(aid, key)
        if cached is not None:
            return cached
        orig = self._find_original(aid)
        policy = record.get("policy_resolved") or record.get("policy") or "delivery"
        # no DICOM re-wrap: a rendition is a plain file in the negotiated format
        tk = dataclasses.replace(self.toolkit, load=self._load(), plan=_PlanFor(self.toolkit.plan, media_type),
                                 dicom_bytes=None)
        outdir = self.rendition_dir(aid)
        try:
            res = compress_one(orig, policy, outdir=outdir, asset=Asset(str(orig), str(orig.parent), key),
                               toolkit=tk)
        except NoCandidatePassedError as exc:
            rec = getattr(exc, "record", None) or {}
            meta = {"media_type": media_type, "key": key, "status": "unavailable",
                    "error": public_message(str(exc), self.root),
                    "record": _public(dict(rec, status="failed"), self.root)}
            self._write_meta(aid, key, meta)
            return meta
        meta = self._done_meta(media_type, key, Path(res.record["output"]),
                               _public(dict(res.record, id=aid, media_type=media_type), self.root))
        self._write_meta(aid, key, meta)
        return meta

    def offered(self, record: dict[str, Any]) -> list[str]:
        """The media types worth offering for an asset: those its policy's plan had a stage for at upload."""
        if record.get("media_types") is not None:
            return [mt for mt in record["media_types"] if mt in MEDIA_TYPES]
        out = [mt for mt in MEDIA_TYPES if mt != LEARNED_MEDIA_TYPE]
        return out + [LEARNED_MEDIA_TYPE] if self.learned_allowed(record) else out

    def learned_allowed(self, record: dict[str, Any]) -> bool:
        """Whether the asset's policy may use the learned stage at all (so ``.inv`` is worth offering)."""
        name = record.get("policy_resolved") or record.get("policy")
        try:
            pol = self.toolkit.get_policy(name)
        except Exception:  # noqa: BLE001
            return False
        allow = getattr(pol, "allow_learned", None)
        return bool(allow) if allow is not None else name == "controlled"
