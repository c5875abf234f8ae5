"""The server's asset store: content-addressed originals, pipeline outputs, cached renditions, the catalog.

Layout of ``STORE/``::

    originals/<id>.<ext>              the uploaded bytes, exactly as received
    outputs/<id>.<ext>                what ``pipeline.compress_one`` chose under the upload's policy
    renditions/<id>/<key>.<ext>       one verified rendition per served media type (created on first request)
    renditions/<id>/<key>.json        its decision record (or why the format is unavailable for this asset)
    renditions/<id>/size_floors.json  per media type, the search's predicted lower bound on a passing size
    inverity.sqlite                   the catalog: one row per asset (key: the id), the upload's decision record

The id is content-addressed (:func:`asset_id`), so two uploads of the same bytes under the same policy are the
same asset: everything written is a pure function of (bytes, policy), every write is atomic
(``inverity._atomic``), and an output is renamed into place *before* its catalog row or JSON record is written —
a crash leaves at worst an output without a record, which the next request simply redoes.

This module is synchronous and thread-safe; :mod:`inverity.server.routes.assets` calls it from worker threads and
makes sure one id (and one rendition of one id) is worked on by a single thread at a time. It uses the pipeline
through its public call only: ``compress_one(..., media_types=[...])`` for a rendition in one format.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from ..errors import InputError
from ..formats import default_extensions, get_format, served_media_types

__all__ = [
    "Store", "asset_id", "is_asset_id", "MEDIA_TYPES", "LEARNED_MEDIA_TYPE", "media_type_of_stage",
    "public_message",
]

#: media types served by ``GET /v1/assets/{id}`` -> rendition key (also the file stem under renditions/<id>/).
#: Order is the tie-break when two renditions are the same size (modern formats first).
#: (Views of the format registry, inverity.formats: ``Format.served``.)
MEDIA_TYPES: dict[str, str] = served_media_types()
#: the learned stage's ``.inv`` stream: only for clients that name it exactly (never via ``*/*``)
LEARNED_MEDIA_TYPE = str(get_format("inv").media_type)

#: file extension of a stored original by sniffed format (others use the format name)
_ORIGINAL_EXT = {name: ext[1:] for name, ext in default_extensions().items() if ext[1:] != name}
#: the per-asset file of size floors (next to the rendition records; no media type's key is this)
_FLOORS_FILE = "size_floors.json"
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
    effort
        The quality search's effort for uploads and renditions (``None``: each policy's own).
    """

    def __init__(self, root: str | os.PathLike[str], *, max_pixels: int | None,
                 toolkit: Any | None = None, effort: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.max_pixels = max_pixels
        self.effort = effort
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

    def load_upload(self, data: bytes, name: str) -> Any:
        """Decode an upload with the pixel limit (``PixelLimitError`` over it, ``InputError`` if undecodable)."""
        from ..image import load

        return load(data, max_pixels=self.max_pixels, name=name)

    # -- paths ------------------------------------------------------------------------------------------------
    def original_path(self, aid: str, fmt: str) -> Path:
        """Where the upload of ``aid`` is kept, named by its sniffed format (``png``, ``jpeg``, ``dicom`` ...)."""
        return self.root / "originals" / f"{aid}.{_ORIGINAL_EXT.get(fmt, fmt)}"

    def find_original(self, aid: str) -> Path:
        """The stored upload of ``aid`` (``InputError`` if it is missing)."""
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

    def done_records(self) -> dict[str, dict[str, Any]]:
        """The (private) decision record of every compressed asset, by id, in catalog order."""
        from ..catalog import Catalog

        with self._db_lock, Catalog(self.catalog_path) as cat:
            return {r["input"]: r["record"] for r in cat.rows() if r["status"] == "done"}

    def public(self, record: dict[str, Any]) -> dict[str, Any]:
        """A decision record as clients see it (paths relative to the store)."""
        return _public(record, self.root)

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
        # refuse bombs and garbage before anything touches the disk; the pipeline reuses this decode
        image = self.load_upload(data, label)
        orig = self.original_path(aid, fmt)
        if not orig.is_file():
            from .._atomic import atomic_write_bytes

            atomic_write_bytes(orig, data)
        sha = hashlib.sha256(data).hexdigest()
        try:
            res = compress_one(orig, policy, outdir=self.root / "outputs",
                               asset=Asset(str(orig), str(orig.parent), aid), toolkit=self.toolkit,
                               image=image, effort=self.effort)
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
        record = dict(res.record, id=aid, filename=filename)
        record["media_types"] = self.offered(record)
        self.catalog_put(record)
        # the upload's output is a verified rendition in its own format (unless it is DICOM): GET need not redo it
        self.adopt_output(aid, record, replace=False)
        atomic_write_text(self.rendition_dir(aid) / _FLOORS_FILE, json.dumps(self._size_floors(image, record)))
        return _public(record, self.root), True

    def _size_floors(self, image: Any, record: dict[str, Any]) -> dict[str, float]:
        """Per servable media type, the search's predicted lower bound on the size of a passing rendition
        (:func:`inverity.search.size_floor`, the smallest over the plan's candidates of that format). A format
        with a candidate the model does not cover gets no bound (it is never skipped)."""
        import dataclasses
        import math

        from .. import search
        from ..analyse import Profile

        prof = record.get("profile") or {}
        out: dict[str, float] = {}
        unbounded: set[str] = set()
        try:   # the upload's profile, as analysed (no second analysis); plan only reads it
            names = {f.name for f in dataclasses.fields(Profile) if not f.name.startswith("_")}
            profile = Profile(**{k: v for k, v in prof.items() if k in names})
            policy = self.toolkit.get_policy(record.get("policy_resolved") or record.get("policy"))
            effort = self.effort or (record.get("search") or {}).get("effort") or "balanced"
            predictor = search.load_predictor(prof.get("features"), prof.get("kind"), image.width * image.height)
            for c in self.toolkit.plan(profile, policy, image):
                mt = media_type_of_stage(c.codec_id)
                if mt not in MEDIA_TYPES:
                    continue
                lb = search.size_floor(predictor, c, effort)
                if lb is None or not math.isfinite(lb):
                    unbounded.add(mt)
                else:
                    out[mt] = min(out.get(mt, lb), lb)
        except Exception:  # noqa: BLE001 - no bounds only means every accepted format is made, as before
            return {}
        return {mt: round(v) for mt, v in out.items() if mt not in unbounded}

    def size_floors(self, aid: str) -> dict[str, float]:
        """What :meth:`_size_floors` wrote at upload (``{}`` for an asset uploaded without it)."""
        try:
            return dict(json.loads((self.rendition_dir(aid) / _FLOORS_FILE).read_text("utf-8")))
        except (FileNotFoundError, ValueError):
            return {}

    def adopt_output(self, aid: str, record: dict[str, Any], *, replace: bool) -> dict[str, Any] | None:
        """Record the asset's output (``record["output"]``) as the verified rendition of its format.

        ``replace=False`` keeps a rendition made before; a re-routed output replaces it (``replace=True``).
        Returns the rendition record written, or ``None`` (DICOM output, unknown format, or kept).
        """
        out = Path(record["output"])
        mt = media_type_of_stage(str(record.get("stage"))) or ""
        key = MEDIA_TYPES.get(mt)
        if key is None or out.suffix == ".dcm" or (not replace and self.read_rendition(aid, key) is not None):
            return None
        meta = self._done_meta(mt, key, out, _public(record, self.root))
        self._write_meta(aid, key, meta)
        return meta

    def reroute(self, aid: str, record: dict[str, Any], review: dict[str, Any]) -> tuple[
            dict[str, Any], dict[str, Any] | None]:
        """Compress the asset again without the stages reviewers rejected (``review["excluded"]``).

        The new output replaces the asset's catalog record and becomes the verified rendition of its format.
        Returns ``(new private record, rendition record or None)``.

        Raises
        ------
        NoCandidatePassedError
            No stage is left that passes verification (nothing is changed).
        """
        from .. import review as _review
        from ..pipeline import Asset

        orig = self.find_original(aid)
        res = _review.reroute(orig, _review.resolve_policy(review, record), review, outdir=self.root / "outputs",
                              asset=Asset(str(orig), str(orig.parent), aid), toolkit=self.toolkit)
        new = dict(res.record, id=aid, filename=record.get("filename"), media_types=record.get("media_types"))
        self.catalog_put(new)
        return new, self.adopt_output(aid, new, replace=True)

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

    def make_rendition(self, aid: str, record: dict[str, Any], media_type: str,
                       beat: int | None = None) -> dict[str, Any]:
        """The verified rendition of an asset in ``media_type``, made on first call and cached on disk.

        The rendition is the pipeline run again on the original, under the asset's (resolved) policy, with the
        routed plan restricted to the stages that write ``media_type`` — so the same floors, the same quality
        search for the fewest bytes that pass, and the same verification as the upload itself. If no stage of
        that format passes (or the policy allows none, e.g. lossy AVIF under ``archive``, or the learned stage
        outside ``controlled``), the record says ``unavailable`` and why; that answer is cached too.

        ``beat``: only a rendition smaller than this many bytes is wanted (another format's, in hand): the search
        does not verify larger probes, and if none is smaller the answer is ``{"status": "beaten", "beat": n}``
        — not cached (the format may well be available, just not smaller), nothing written.
        """
        from ..pipeline import Asset, NoCandidatePassedError, compress_one

        key = MEDIA_TYPES[media_type]
        cached = self.read_rendition(aid, key)
        if cached is not None:
            return cached
        orig = self.find_original(aid)
        policy = record.get("policy_resolved") or record.get("policy") or "delivery"
        outdir = self.rendition_dir(aid)
        try:
            res = compress_one(orig, policy, outdir=outdir, asset=Asset(str(orig), str(orig.parent), key),
                               toolkit=self.toolkit, media_types=[media_type], effort=self.effort, beat=beat)
        except NoCandidatePassedError as exc:
            if beat is not None:
                return {"media_type": media_type, "key": key, "status": "beaten", "beat": beat}
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
        return bool(getattr(pol, "allow_learned", False))      # the policy's data, never its name
