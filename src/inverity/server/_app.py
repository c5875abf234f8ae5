"""The FastAPI application: upload → compress, fetch with ``Accept`` negotiation, bearer-token auth, limits.

Request flow (``POST /v1/assets``)::

    Content-Length > max_body? ─► 413          (before reading a byte of the body)
    stream the body, capped     ─► 413 / 408   (a lying or absent Content-Length cannot get past the cap)
    raw image/* or multipart "file" ─► sniff the format ─► 415 if not an image
    id = sha256(body, policy)[:32] ─► single flight per id ─► worker thread: load (max_pixels → 413, garbage → 422)
        ─► originals/<id>.<ext> ─► pipeline.compress_one ─► outputs/<id>.<ext> ─► catalog row ─► 201 / 200

``GET /v1/assets/{id}`` picks, among the formats the client's ``Accept`` allows, the smallest *verified*
rendition (each made once, on first demand, by the pipeline restricted to that format; see
:meth:`Store.make_rendition`), and serves it with a strong ``ETag`` (sha256 of the bytes), ``Vary: Accept`` and an
immutable ``Cache-Control`` — safe because an id names content, so its renditions never change.

CPU work (decoding, encoding, verification) runs in a bounded thread pool, never on the event loop; a request
that outlives ``timeout`` gets 504 while its work finishes in the background (a retry then finds it done).
One process serves one store: the single-flight maps and the catalog lock live in this process.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the endpoint annotations at
runtime, and the FastAPI names are imported lazily inside :func:`create_app`.
"""
import asyncio
import hashlib
import hmac
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import InputError, InverityError, MissingDependencyError
from ..formats import sniff
from ._negotiate import acceptable
from ._review import gate as review_gate, include_review, review_of
from ._store import LEARNED_MEDIA_TYPE, MEDIA_TYPES, Store, asset_id, is_asset_id, public_message

__all__ = ["ServerConfig", "create_app", "serve", "ApiError", "BUILTIN_POLICY_NAMES"]

log = logging.getLogger("inverity.server")

#: the policies a client may name (never a path: policy files are the operator's business, not the client's)
BUILTIN_POLICY_NAMES: tuple[str, ...] = ("auto", "archive", "diagnostic", "delivery", "controlled")
#: renditions never change for an id (content-addressed), so caches may keep them for a year without revalidating
CACHE_CONTROL = "public, max-age=31536000, immutable"
#: the upload's raw-body media types besides image/*
_RAW_TYPES = ("application/dicom",)


def _builtin_policies() -> tuple[str, ...]:
    try:
        from ..policy import list_policies

        return tuple(list_policies())   # the built-ins and the operator's (serve --policy FILE)
    except ImportError:
        return BUILTIN_POLICY_NAMES


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("inverity")
    except Exception:  # noqa: BLE001 - source tree without metadata
        return "0+unknown"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _clip(text: str, limit: int = 240) -> str:
    """One line of at most ``limit`` characters (the full reasons are in the decision endpoint)."""
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ServerConfig:
    """What ``inverity serve`` runs with.

    Parameters
    ----------
    store
        Directory for originals, outputs, renditions and the catalog.
    token
        The bearer token clients must send; ``None`` serves without authentication (``--no-auth``).
    max_body
        Largest accepted request body, bytes (413 above it).
    max_pixels
        Largest accepted image, width × height (413 above it; checked from the header, before decoding).
    timeout
        Seconds a request may take (reading the body: 408; processing: 504).
    workers
        Threads for CPU work (default: the CPU count).
    reviewers
        ``(name, token)`` of each reviewer (``serve --token NAME=SECRET``): review endpoints and page.
    """

    store: Path
    token: Optional[str]
    max_body: int = 64 * 1024 * 1024
    max_pixels: Optional[int] = 50_000_000
    timeout: float = 120.0
    workers: Optional[int] = None
    reviewers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    """An error answer: ``status`` and the one-line ``{"error": message}`` body (plus ``extra`` keys)."""

    def __init__(self, status: int, message: str, *, headers: Optional[dict[str, str]] = None,
                 extra: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.status, self.message = status, _one_line(message)
        self.headers, self.extra = headers or {}, extra or {}


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, "server") from None


#: memory for rendition bytes kept hot (the cached GET path then does no file I/O); larger files stream from disk
_BYTE_CACHE_BUDGET = 64 * 1024 * 1024
_BYTE_CACHE_ITEM = 4 * 1024 * 1024
#: decision records and rendition records kept in memory (the rest are read from the catalog / disk again)
_RECORD_CACHE_ITEMS = 20_000


class _LRU:
    """A least-recently-used map bounded by item count and (for bytes) total size. Event-loop thread only."""

    def __init__(self, max_items: int, max_bytes: Optional[int] = None) -> None:
        from collections import OrderedDict

        self.max_items, self.max_bytes, self.size = max_items, max_bytes, 0
        self._items: "OrderedDict[Any, Any]" = OrderedDict()

    def _weight(self, value: Any) -> int:
        return len(value) if self.max_bytes is not None else 0

    def get(self, key: Any) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        if self.max_bytes is not None and self._weight(value) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= self._weight(old)
        self._items[key] = value
        self.size += self._weight(value)
        while len(self._items) > self.max_items or (self.max_bytes is not None and self.size > self.max_bytes):
            _, dropped = self._items.popitem(last=False)
            self.size -= self._weight(dropped)


class _State:
    """Per-app runtime state: the store, the thread pool, single-flight futures and in-memory caches."""

    def __init__(self, config: ServerConfig, toolkit: Any = None) -> None:
        self.config = config
        self.store = Store(config.store, max_pixels=config.max_pixels, toolkit=toolkit)
        self.pool = ThreadPoolExecutor(max_workers=config.workers or os.cpu_count() or 2,
                                       thread_name_prefix="inverity-work")
        # catalog look-ups and file reads get their own threads so a queue of encodes never delays a cached GET
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="inverity-io")
        self.inflight: dict[tuple[str, ...], "asyncio.Future[Any]"] = {}
        self.assets = _LRU(_RECORD_CACHE_ITEMS)          # id -> public decision record (done assets only)
        self.renditions = _LRU(_RECORD_CACHE_ITEMS)      # (id, media type) -> rendition record
        self.offered = _LRU(_RECORD_CACHE_ITEMS)         # id -> media types worth offering
        self.bytes = _LRU(_RECORD_CACHE_ITEMS, _BYTE_CACHE_BUDGET)   # rendition path -> bytes
        self._token_digest = None if config.token is None else hashlib.sha256(config.token.encode()).digest()

    def token_ok(self, given: Optional[str]) -> bool:
        if self._token_digest is None:
            return True
        # compare fixed-length digests in constant time: leaks neither the token nor its length
        return given is not None and hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                                         self._token_digest)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a quick blocking call (catalog read, file read) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.io, lambda: fn(*args))

    async def once(self, key: tuple[str, ...], fn: Callable[..., Any], *args: Any,
                   timeout: float) -> tuple[Any, bool]:
        """Run ``fn(*args)`` in the pool at most once at a time per ``key``; concurrent callers share the result.

        Returns ``(result, initiator)``. On timeout the work is *not* cancelled (a thread cannot be, and the
        result is wanted by the next request anyway): ``asyncio.TimeoutError`` is raised to this caller only.
        """
        fut = self.inflight.get(key)
        initiator = fut is None
        if fut is None:
            fut = asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(*args))
            self.inflight[key] = fut

            def _done(f: "asyncio.Future[Any]") -> None:
                self.inflight.pop(key, None)
                if not f.cancelled():
                    f.exception()   # mark retrieved: an abandoned failure is reported to its callers, not logged

            fut.add_done_callback(_done)
        return await asyncio.wait_for(asyncio.shield(fut), timeout), initiator

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.io.shutdown(wait=False, cancel_futures=True)


def _input_error_status(exc: InputError) -> int:
    """413 for the pixel limit (a size limit, like the body's), 422 for anything else the loader refuses."""
    return 413 if "too many pixels" in str(exc) else 422


def _etag_matches(header: Optional[str], etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 §13.1.2): ``W/`` prefixes are ignored.

    Examples
    --------
    >>> _etag_matches('"abc", W/"def"', "def"), _etag_matches("*", "x"), _etag_matches('"abc"', "abd")
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


def create_app(config: ServerConfig, *, toolkit: Any = None) -> Any:
    """Build the FastAPI application for ``config`` (FastAPI is an optional extra: ``inverity[server]``).

    Parameters
    ----------
    config
        Store, token and limits.
    toolkit
        The pipeline's modules (default: the real ones); tests may inject fakes.

    Raises
    ------
    MissingDependencyError
        FastAPI or python-multipart is not installed.
    """
    _require("fastapi", "fastapi")
    try:                                    # starlette's multipart parser; renamed python_multipart in 0.0.13
        _require("python_multipart", "python-multipart")
    except MissingDependencyError:
        _require("multipart", "python-multipart")
    from fastapi import FastAPI, Query, Request, Security
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    state = _State(config, toolkit)
    store = state.store
    policies = _builtin_policies()

    class ErrorBody(BaseModel):
        error: str = Field(description="one line saying what went wrong")

    class Created(BaseModel):
        id: str = Field(description="content address: sha256(body, policy), 32 hex digits")
        decision: dict[str, Any] = Field(description="the pipeline's decision record (DESIGN.md)")
        review: Optional[dict[str, Any]] = Field(None, description="review state: {state, by, at, note}")

    class Health(BaseModel):
        status: str
        version: str

    class Decisions(BaseModel):
        id: str
        decision: dict[str, Any] = Field(description="the upload's decision record")
        renditions: dict[str, dict[str, Any]] = Field(
            description="per media type: the rendition's record, or why it is unavailable")
        review: Optional[dict[str, Any]] = Field(None, description="review state: {state, by, at, note}")

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        state.close()

    app = FastAPI(
        title="inverity", version=_version(), lifespan=lifespan,
        description="Upload an image, get it compressed by the routed, verified pipeline; fetch it back in the "
                    "smallest verified format your client accepts (Accept negotiation). Every endpoint except "
                    "/healthz needs `Authorization: Bearer <token>`. Errors are JSON: {\"error\": \"...\"}.")
    app.state.inverity = state
    bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                        description="the server's token (inverity serve --token / INVERITY_TOKEN)")

    def _auth(credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> None:
        if not state.token_ok(credentials.credentials if credentials else None):
            raise ApiError(401, "missing or invalid bearer token" if credentials else "missing bearer token",
                           headers={"WWW-Authenticate": 'Bearer realm="inverity"'})

    auth = [Security(_auth)] if config.token is not None else []
    err = {"model": ErrorBody}

    # -- errors: always {"error": "<one line>"} ----------------------------------------------------------------
    def _json_error(status: int, message: str, headers: Optional[dict[str, str]] = None,
                    **extra: Any) -> Any:
        # never show the server's own filesystem layout to a client
        message = public_message(_one_line(message), store.root)
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Any:
        return _json_error(exc.status, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return _json_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _json_error(422, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json_error(500, f"internal server error ({type(exc).__name__})")

    # -- helpers ------------------------------------------------------------------------------------------------
    async def _read_body(request: Request) -> bytes:
        limit = config.max_body
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise ApiError(400, f"invalid Content-Length {declared!r}") from None
            if n > limit:
                raise ApiError(413, f"request body of {n:,} bytes exceeds the limit of {limit:,} bytes")
        buf = bytearray()

        async def _stream() -> None:
            async for chunk in request.stream():
                buf.extend(chunk)
                if len(buf) > limit:   # chunked uploads and lying Content-Lengths stop here
                    raise ApiError(413, f"request body exceeds the limit of {limit:,} bytes")

        try:
            await asyncio.wait_for(_stream(), config.timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, f"request body not received within {config.timeout:g} s") from None
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

    async def _asset_record(aid: str) -> dict[str, Any]:
        rec = state.assets.get(aid) if is_asset_id(aid) else None
        if rec is None and is_asset_id(aid):
            rec = await state.call(store.asset, aid)
            if rec is not None:
                state.assets.put(aid, rec)
        if rec is None:
            raise ApiError(404, f"unknown asset id {aid[:64]!r}")
        return rec

    async def _rendition(aid: str, rec: dict[str, Any], media_type: str, timeout: float) -> dict[str, Any]:
        meta = state.renditions.get((aid, media_type))
        if meta is None:
            meta, _ = await state.once(("rendition", aid, media_type), store.make_rendition, aid, rec, media_type,
                                       timeout=timeout)
            state.renditions.put((aid, media_type), meta)
        return meta

    def _offered(aid: str, rec: dict[str, Any]) -> list[str]:
        offered = state.offered.get(aid)
        if offered is None:
            offered = store.offered(rec)
            state.offered.put(aid, offered)
        return offered

    async def _send(meta: dict[str, Any], headers: dict[str, str]) -> Any:
        data = state.bytes.get(meta["path"])
        if data is None and meta["bytes"] <= _BYTE_CACHE_ITEM:
            data = await state.call(store.path_of(meta["path"]).read_bytes)
            state.bytes.put(meta["path"], data)
        if data is not None:
            return Response(content=data, media_type=meta["media_type"], headers=headers)
        return FileResponse(store.path_of(meta["path"]), media_type=meta["media_type"], headers=headers)

    # -- endpoints ----------------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness (no authentication)")
    async def healthz() -> Any:
        return {"status": "ok", "version": _version()}

    upload_body = {"requestBody": {
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

    @app.post("/v1/assets", status_code=201, response_model=Created, dependencies=auth, tags=["assets"],
              summary="Upload an image and compress it under a policy", openapi_extra=upload_body,
              responses={200: {"model": Created, "description": "already stored (same bytes and policy)"},
                         400: err, 401: err, 408: err, 413: err, 415: err, 422: err, 504: err})
    async def upload(request: Request,
                     policy: str = Query("delivery", description="built-in policy: " + ", ".join(policies))) -> Any:
        if policy not in policies:
            raise ApiError(400, f"unknown policy {policy[:40]!r}; available: {', '.join(policies)}")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (ctype.startswith("image/") or ctype in _RAW_TYPES or ctype == "multipart/form-data"):
            raise ApiError(415, f"unsupported Content-Type {ctype or '(none)'!r}; send the image as image/* "
                                "(or application/dicom), or as multipart/form-data field 'file'")
        body = await _read_body(request)
        filename: Optional[str] = None
        data = body
        if ctype == "multipart/form-data":
            data, filename = await _multipart_file(request, body)
        label = filename or "<request body>"
        if not data:
            raise ApiError(422, f"{label}: empty file (0 bytes)")
        fmt = "dicom" if data[128:132] == b"DICM" else sniff(data)
        if fmt is None or fmt == "inv":
            what = "an inverity .inv stream is not an input image" if fmt == "inv" else "not a recognised image format"
            raise ApiError(415, f"{label}: {what} ({len(data):,} bytes)")
        aid = asset_id(data, policy)
        headers = {"Location": f"/v1/assets/{aid}"}
        known = state.assets.get(aid)
        if known is not None:
            return JSONResponse({"id": aid, "decision": known, "review": await review_of(state, aid, known)},
                                status_code=200, headers=headers)
        try:
            (record, created), initiator = await state.once(
                ("asset", aid), store.create_asset, aid, data, fmt, policy, filename, timeout=config.timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, f"compression did not finish within {config.timeout:g} s; it goes on in the "
                                f"background: repeat the upload later to get the result", headers=headers) from None
        except InputError as exc:
            # the loader's hint about its max_pixels argument means nothing to an HTTP client
            raise ApiError(_input_error_status(exc), str(exc).replace("; pass max_pixels to raise the limit",
                                                                      "")) from None
        except InverityError as exc:
            attempts = getattr(exc, "record", None)   # the partial decision record: every attempt and why
            extra = {"decision": attempts} if attempts is not None else {}
            raise ApiError(422, str(exc), extra=extra) from None
        state.assets.put(aid, record)
        return JSONResponse({"id": aid, "decision": record, "review": await review_of(state, aid, record)},
                            status_code=201 if created and initiator else 200, headers=headers)

    image_content = {mt: {"schema": {"type": "string", "format": "binary"}} for mt in MEDIA_TYPES}

    @app.get("/v1/assets/{asset_id}", dependencies=auth, tags=["assets"], response_class=Response,
             summary="Fetch the smallest verified rendition the client accepts",
             description="Negotiated on `Accept` (q-values, `image/*`, `*/*`): among AVIF, JPEG XL, WebP, JPEG "
                         "and PNG the smallest rendition that passed verification is served; each is made on "
                         "first demand and cached. The learned `.inv` stream (application/x-inverity) is only "
                         "served to clients that list that type explicitly, never via wildcards. Strong ETag, "
                         "`If-None-Match` → 304.",
             responses={200: {"content": image_content, "description": "the rendition"},
                        304: {"description": "not modified"}, 401: err, 404: err, 406: err, 504: err})
    async def get_asset(asset_id: str, request: Request) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout
        rec = await _asset_record(asset_id)
        accept = request.headers.get("accept")
        vary = {"Vary": "Accept"}
        offered = _offered(asset_id, rec)
        wanted = acceptable(offered, accept, explicit_only={LEARNED_MEDIA_TYPE})

        async def _unacceptable(reason: str) -> Any:
            metas = await state.call(store.renditions, asset_id)
            available = [mt for mt in offered if metas.get(mt, {}).get("status") != "unavailable"]
            raise ApiError(406, f"{reason}; available: {', '.join(available) or '(none)'}", headers=vary,
                           extra={"available": available})

        if not wanted:
            await _unacceptable(f"none of the formats in Accept {(accept or '')[:200]!r} is available")
        try:
            metas = await asyncio.gather(*(_rendition(asset_id, rec, mt, max(deadline - loop.time(), 0.001))
                                           for mt in wanted))
        except asyncio.TimeoutError:
            raise ApiError(504, f"making the rendition did not finish within {config.timeout:g} s; it goes on in "
                                "the background: retry later", headers=vary) from None
        except InverityError as exc:
            raise ApiError(500, f"cannot make a rendition: {exc}", headers=vary) from None
        order = list(MEDIA_TYPES)
        ok = [m for m in metas if m.get("status") == "done"]
        ok, held = await review_gate(state, asset_id, ok)   # nothing pending or rejected is served
        if held is not None:
            raise ApiError(409, held["error"], headers=vary, extra={"review": held["review"]})
        if not ok:
            why = "; ".join(f"{m['media_type']}: {_clip(m.get('error', 'unavailable'))}" for m in metas)
            await _unacceptable(f"no verified rendition in an accepted format ({why})")
        best = min(ok, key=lambda m: (m["bytes"], -wanted[m["media_type"]], order.index(m["media_type"])))
        headers = {"ETag": f'"{best["etag"]}"', "Cache-Control": CACHE_CONTROL, **vary}
        if _etag_matches(request.headers.get("if-none-match"), best["etag"]):
            return Response(status_code=304, headers=headers)
        return await _send(best, headers)

    @app.get("/v1/assets/{asset_id}/decision", response_model=Decisions, dependencies=auth, tags=["assets"],
             summary="The decision records: the upload's and each rendition's",
             responses={401: err, 404: err})
    async def get_decision(asset_id: str) -> Any:
        rec = await _asset_record(asset_id)
        rends = await state.call(store.renditions, asset_id)
        return {"id": asset_id, "decision": rec, "renditions": rends,
                "review": await review_of(state, asset_id, rec)}

    include_review(app, state)
    return app


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted (one process: the store's locks live in it)."""
    uvicorn = _require("uvicorn", "uvicorn")
    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=10)
