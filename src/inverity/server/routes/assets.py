"""``/v1/assets``: upload → routed, verified compression; fetch with ``Accept`` negotiation; decisions; signed URLs.

Request flow (``POST /v1/assets``)::

    Content-Length > max_body? ─► 413          (before reading a byte of the body)
    stream the body, capped     ─► 413 / 408   (a lying or absent Content-Length cannot get past the cap)
    raw image/* or multipart "file" ─► sniff the format ─► 415 if not an image
    id = sha256(body, policy)[:32] ─► single flight per id ─► worker thread: load (max_pixels → 413, garbage → 422)
        ─► originals/<id>.<ext> ─► pipeline.compress_one ─► outputs/<id>.<ext> ─► catalog row ─► 201 / 200

``GET /v1/assets/{id}`` (:func:`get_asset`) weighs the offered formats by the client's ``Accept``
(:mod:`.._negotiate`: wildcards reach only JPEG/PNG, q-values before size), then serves the smallest *verified*
rendition of the highest-weighted group that has one — each made once, on first demand, by the pipeline limited
to that format (:meth:`Store.make_rendition`) — with a strong ``ETag`` (sha256 of the bytes), ``Vary: Accept``
and an immutable ``Cache-Control``, safe because an id names content, so its renditions never change.

CPU work (decoding, encoding, verification) runs in a bounded thread pool, never on the event loop; a request
that outlives ``timeout`` gets 504 while its work finishes in the background (a retry then finds it done).
"""
import asyncio
import os
import time
from typing import Any, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ...errors import InputError, InverityError, PixelLimitError
from ...formats import sniff
from .._config import CACHE_CONTROL, ApiError, BodyTooLarge, one_line
from .._negotiate import acceptable, preference_groups
from .._review import gate, review_of
from .._state import BYTE_CACHE_ITEM, AppState
from .._store import MEDIA_TYPES, asset_id, is_asset_id
from ..deps import get_state, require_read, require_token
from ..schemas import ERROR, Created, Decisions, SignedUrl

__all__ = ["router", "etag_matches", "builtin_policies"]

router = APIRouter(prefix="/v1/assets", tags=["assets"])

#: the upload's raw-body media types besides image/*
_RAW_TYPES = ("application/dicom",)
#: a signed URL in an upload's answer lives this long; the /url endpoint takes up to _MAX_TTL
_UPLOAD_URL_TTL = 3600
_MAX_TTL = 7 * 24 * 3600


def builtin_policies() -> tuple[str, ...]:
    """The policies a client may name: the built-ins and the operator's (``serve --policy FILE``), by name —
    never a path: policy files are the operator's business."""
    from ...policy import list_policies

    return tuple(list_policies())


def _clip(text: str, limit: int = 240) -> str:
    """One line of at most ``limit`` characters (the full reasons are in the decision endpoint)."""
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def etag_matches(header: Optional[str], etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 §13.1.2): ``W/`` prefixes are ignored.

    Examples
    --------
    >>> etag_matches('"abc", W/"def"', "def"), etag_matches("*", "x"), etag_matches('"abc"', "abd")
    (True, True, False)
    """
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


# -- reading the request -------------------------------------------------------------------------------------------
async def _read_body(request: Request, state: AppState) -> bytes:
    limit, timeout = state.config.max_body, state.config.timeout
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length {declared[:40]!r}") from None
        if n > limit:
            raise BodyTooLarge(f"request body of {n:,} bytes exceeds the limit of {limit:,} bytes")
    buf = bytearray()

    async def _stream() -> None:
        async for chunk in request.stream():
            buf.extend(chunk)
            if len(buf) > limit:   # chunked uploads and lying Content-Lengths stop here
                raise BodyTooLarge(f"request body exceeds the limit of {limit:,} bytes")

    try:
        await asyncio.wait_for(_stream(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body not received within {timeout:g} s") from None
    return bytes(buf)


async def _multipart_file(request: Request, body: bytes) -> tuple[bytes, Optional[str]]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def _replay() -> Any:
        yield body

    try:
        form = await MultiPartParser(request.headers, _replay(), max_files=4, max_fields=16).parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body: {exc.message}") from None
    try:
        part = form.get("file")
        if part is None:
            raise ApiError(422, "multipart upload has no 'file' field")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "multipart field 'file' must be a file part (with a filename)")
        return await part.read(), os.path.basename(part.filename or "") or None
    finally:
        await form.close()


def _signed_url(state: AppState, aid: str, ttl: int) -> Optional[str]:
    if state.signer is None:
        return None
    return state.signer.sign(f"{router.prefix}/{aid}", expires=int(time.time()) + ttl)


# -- upload --------------------------------------------------------------------------------------------------------
_UPLOAD_BODY = {"requestBody": {
    "required": True,
    "description": "The image: the raw bytes with an image/* (or application/dicom) Content-Type, or a "
                   "multipart/form-data upload with the image in the field `file`. The format is detected "
                   "from the bytes.",
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/dicom": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}},
    }}}


@router.post("", status_code=201, response_model=Created, dependencies=[Depends(require_token)],
             summary="Upload an image and compress it under a policy", openapi_extra=_UPLOAD_BODY,
             responses={200: {"model": Created, "description": "already stored (same bytes and policy)"},
                        400: ERROR, 401: ERROR, 408: ERROR, 413: ERROR, 415: ERROR, 422: ERROR, 504: ERROR})
async def upload(request: Request, state: AppState = Depends(get_state),
                 policy: str = Query("delivery", description="a built-in policy (auto, archive, diagnostic, "
                                                             "delivery, controlled) or one the server was "
                                                             "started with (serve --policy FILE)")) -> Any:
    policies = builtin_policies()
    if policy not in policies:
        raise ApiError(400, f"unknown policy {policy[:40]!r}; available: {', '.join(policies)}")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype in _RAW_TYPES or ctype == "multipart/form-data"):
        raise ApiError(415, f"unsupported Content-Type {ctype[:60] or '(none)'!r}; send the image as image/* "
                            "(or application/dicom), or as multipart/form-data field 'file'")
    body = await _read_body(request, state)
    data, filename = (await _multipart_file(request, body)) if ctype == "multipart/form-data" else (body, None)
    label = filename or "<request body>"
    if not data:
        raise ApiError(422, f"{label}: empty file (0 bytes)")
    fmt = sniff(data)
    if fmt is None or fmt == "inv":
        what = "an inverity .inv stream is not an input image" if fmt == "inv" else "not a recognised image format"
        raise ApiError(415, f"{label}: {what} ({len(data):,} bytes)")
    aid = asset_id(data, policy)
    headers = {"Location": f"{router.prefix}/{aid}"}
    url = _signed_url(state, aid, _UPLOAD_URL_TTL)
    known = state.assets.get(aid)
    if known is not None:
        return JSONResponse({"id": aid, "decision": known, "url": url, "review": await review_of(state, aid, known)},
                            status_code=200, headers=headers)
    try:
        (record, created), initiator = await state.once(
            ("asset", aid), state.store.create_asset, aid, data, fmt, policy, filename, timeout=state.config.timeout)
    except asyncio.TimeoutError:
        raise ApiError(504, f"compression did not finish within {state.config.timeout:g} s; it goes on in the "
                            f"background: repeat the upload later to get the result", headers=headers) from None
    except PixelLimitError as exc:   # a size limit, like the body's
        raise ApiError(413, str(exc).replace("; pass max_pixels to raise the limit", "")) from None
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
    except InverityError as exc:
        attempts = getattr(exc, "record", None)   # the partial decision record: every attempt and why
        raise ApiError(422, str(exc), extra={"decision": attempts} if attempts is not None else {}) from None
    state.assets.put(aid, record)
    return JSONResponse({"id": aid, "decision": record, "url": url, "review": await review_of(state, aid, record)},
                        status_code=201 if created and initiator else 200, headers=headers)


# -- fetch ---------------------------------------------------------------------------------------------------------
async def _asset_record(state: AppState, aid: str) -> dict[str, Any]:
    rec = state.assets.get(aid) if is_asset_id(aid) else None
    if rec is None and is_asset_id(aid):
        rec = await state.call(state.store.asset, aid)
        if rec is not None:
            state.assets.put(aid, rec)
    if rec is None:
        raise ApiError(404, f"unknown asset id {aid[:64]!r}")
    return rec


async def _rendition(state: AppState, aid: str, rec: dict[str, Any], media_type: str,
                     timeout: float, beat: Optional[int] = None) -> dict[str, Any]:
    """The rendition in ``media_type``, made if need be (one make per rendition at a time); with ``beat``, only
    if it is smaller than that (else a ``beaten`` answer, remembered in memory, never cached as a rendition)."""
    meta = state.renditions.get((aid, media_type))
    while meta is None:
        meta, _ = await state.once(("rendition", aid, media_type), state.store.make_rendition, aid, rec,
                                   media_type, beat, timeout=timeout)
        if meta.get("status") == "beaten":
            state.beaten.put((aid, media_type), max(meta["beat"], state.beaten.get((aid, media_type)) or 0))
            if beat is None:     # joined a make that only wanted a smaller one: make it in full now
                meta = None
                continue
            return meta  # type: ignore[no-any-return]
        state.renditions.put((aid, media_type), meta)
    return meta  # type: ignore[no-any-return]


def _offered(state: AppState, aid: str, rec: dict[str, Any]) -> list[str]:
    offered = state.offered.get(aid)
    if offered is None:
        offered = state.store.offered(rec)
        state.offered.put(aid, offered)
    return offered  # type: ignore[no-any-return]


async def _send(state: AppState, meta: dict[str, Any], headers: dict[str, str]) -> Any:
    data = state.bytes.get(meta["path"])
    if data is None and meta["bytes"] <= BYTE_CACHE_ITEM:
        data = await state.call(state.store.path_of(meta["path"]).read_bytes)
        state.bytes.put(meta["path"], data)
    if data is not None:
        return Response(content=data, media_type=meta["media_type"], headers=headers)
    return FileResponse(state.store.path_of(meta["path"]), media_type=meta["media_type"], headers=headers)


async def _known(state: AppState, aid: str, media_type: str) -> Optional[dict[str, Any]]:
    """The rendition record if it was made (or found unavailable) before; never makes one."""
    meta = state.renditions.get((aid, media_type))
    if meta is None:
        meta = await state.call(state.store.read_rendition, aid, MEDIA_TYPES[media_type])
        if meta is not None:
            state.renditions.put((aid, media_type), meta)
    return meta


async def _size_floors(state: AppState, aid: str) -> dict[str, float]:
    floors = state.size_floors.get(aid)
    if floors is None:
        floors = await state.call(state.store.size_floors, aid)
        state.size_floors.put(aid, floors)
    return floors  # type: ignore[no-any-return]


async def _best(state: AppState, aid: str, rec: dict[str, Any], weights: dict[str, float]) -> tuple[
        Optional[dict[str, Any]], list[dict[str, Any]], Optional[dict[str, Any]]]:
    """The smallest servable rendition of the highest-weighted group that has one; what failed on the way; and,
    if human review held back a verified rendition, why (the first such answer).

    Servable = verified *and* let through by the review gate (:func:`.._review.gate`): this is the only way any
    read (bearer, signed URL, public read, ``HEAD``) reaches a rendition, so a pending or rejected output is
    never served.

    The formats of a group not made yet are made the way the quality search tries a group's candidates: in
    order of the search's predicted lower bound on their passing size (:meth:`Store.size_floors`; formats
    without one first, all at once), and a format whose bound is at least the bytes of a servable rendition in
    hand is not made for this request — it cannot win. One that may win is searched for an output smaller
    than the one in hand only (:meth:`Store.make_rendition` ``beat``: larger probes are not verified; an
    output that is smaller is verified in full and becomes that format's rendition). So the first GET after an
    upload serves the upload's output after at most an encode or two per other format, and a wildcard request
    makes JPEG but not PNG for a photo. A request that names a format alone always gets it made and verified.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.config.timeout
    order = list(MEDIA_TYPES)
    failed: list[dict[str, Any]] = []
    held: Optional[dict[str, Any]] = None
    for group in preference_groups(weights):
        known = await asyncio.gather(*(_known(state, aid, mt) for mt in group))
        metas = [m for m in known if m is not None]
        todo = [mt for mt, m in zip(group, known) if m is None]
        floors = await _size_floors(state, aid) if todo else {}
        while todo:
            ok, _ = await gate(state, aid, [m for m in metas if m.get("status") == "done"])
            best = min(m["bytes"] for m in ok) if ok else None
            if best is not None:
                todo = [mt for mt in todo if (floors.get(mt) is None or floors[mt] < best)
                        and best > (state.beaten.get((aid, mt)) or 0)]
            batch = [mt for mt in todo if floors.get(mt) is None] or sorted(todo, key=lambda mt: floors[mt])[:1]
            made = await asyncio.gather(*(_rendition(state, aid, rec, mt, max(deadline - loop.time(), 0.001), best)
                                          for mt in batch))
            metas.extend(m for m in made if m.get("status") != "beaten")
            todo = [mt for mt in todo if mt not in batch]
        ok, why = await gate(state, aid, [m for m in metas if m.get("status") == "done"])
        if ok:
            return min(ok, key=lambda m: (m["bytes"], order.index(m["media_type"]))), failed, None
        held = held or why
        failed.extend(metas)
    return None, failed, held


@router.get("/{asset_id}", dependencies=[Depends(require_read)], response_class=Response,
            summary="Fetch the best verified rendition the client accepts (GET or HEAD)",
            description="Negotiated on `Accept` (RFC 9110 §12.5.1). Wildcards (`image/*`, `*/*`, no header) reach "
                        "only JPEG and PNG; AVIF, WebP, JPEG XL and the learned `.inv` stream "
                        "(application/x-inverity) are served only to clients that name them with q > 0. Higher "
                        "q wins; among the types of the highest q with a verified rendition, the smallest is "
                        "served. Renditions are made on first demand and cached. Strong ETag, `If-None-Match` → "
                        "304. Needs the bearer token, or a signed URL (`exp`, `sig`), or none with "
                        "`--public-reads`.",
            responses={200: {"content": {mt: {"schema": {"type": "string", "format": "binary"}}
                                         for mt in MEDIA_TYPES}, "description": "the rendition"},
                       304: {"description": "not modified"}, 401: ERROR, 403: ERROR, 404: ERROR, 406: ERROR,
                       409: {"model": ERROR["model"], "description": "held back by human review (pending or "
                                                                       "rejected); the body has `review`"},
                       504: ERROR})
async def get_asset(asset_id: str, request: Request, state: AppState = Depends(get_state)) -> Any:
    rec = await _asset_record(state, asset_id)
    accept = request.headers.get("accept")
    vary = {"Vary": "Accept"}
    offered = _offered(state, asset_id, rec)
    weights = acceptable(offered, accept)

    async def _unacceptable(reason: str) -> Any:
        metas = await state.call(state.store.renditions, asset_id)
        available = [mt for mt in offered if metas.get(mt, {}).get("status") != "unavailable"]
        raise ApiError(406, f"{reason}; available: {', '.join(available) or '(none)'}", headers=vary,
                       extra={"available": available})

    if not weights:
        await _unacceptable(f"none of the formats in Accept {(accept or '')[:200]!r} is available (image/* and "
                            f"*/* stand for JPEG and PNG only; name other formats explicitly)")
    try:
        best, failed, held = await _best(state, asset_id, rec, weights)
    except asyncio.TimeoutError:
        raise ApiError(504, f"making the rendition did not finish within {state.config.timeout:g} s; it goes on "
                            "in the background: retry later", headers=vary) from None
    except InverityError as exc:
        raise ApiError(500, f"cannot make a rendition: {exc}", headers=vary) from None
    if best is None and held is not None:   # verified, but not approved (yet): a human decides
        raise ApiError(409, held["error"], headers=vary, extra={"review": held["review"]})
    if best is None:
        why = "; ".join(f"{m['media_type']}: {_clip(m.get('error', 'unavailable'))}" for m in failed)
        await _unacceptable(f"no verified rendition in an accepted format ({why})")
        raise AssertionError("unreachable")
    headers = {"ETag": f'"{best["etag"]}"', "Cache-Control": CACHE_CONTROL, **vary}
    if etag_matches(request.headers.get("if-none-match"), best["etag"]):
        return Response(status_code=304, headers=headers)
    return await _send(state, best, headers)


@router.get("/{asset_id}/decision", response_model=Decisions, dependencies=[Depends(require_token)],
            summary="The decision records: the upload's and each rendition's", responses={401: ERROR, 404: ERROR})
async def get_decision(asset_id: str, state: AppState = Depends(get_state)) -> Any:
    rec = await _asset_record(state, asset_id)
    rends = await state.call(state.store.renditions, asset_id)
    return {"id": asset_id, "decision": rec, "renditions": rends, "review": await review_of(state, asset_id, rec),
            "size_floors": await _size_floors(state, asset_id)}


@router.get("/{asset_id}/url", response_model=SignedUrl, dependencies=[Depends(require_token)],
            summary="A signed, expiring read URL of the image (for <img src>, no token needed)",
            responses={401: ERROR, 404: ERROR})
async def get_signed_url(asset_id: str, state: AppState = Depends(get_state),
                         ttl: int = Query(3600, ge=1, le=_MAX_TTL, description="seconds the URL is valid")) -> Any:
    await _asset_record(state, asset_id)
    if state.signer is None:
        raise ApiError(404, "signed URLs are not enabled: the server runs without a token (every read is open)")
    expires = int(time.time()) + ttl
    return {"url": state.signer.sign(f"{router.prefix}/{asset_id}", expires=expires), "expires": expires}
