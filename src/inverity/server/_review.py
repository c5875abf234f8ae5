"""Human review in the service: the queue, verdicts, the gate on serving, and the ``/review`` page.

``include_review(app, state)`` adds to the FastAPI app of :mod:`inverity.server._app`:

``GET /v1/review``
    The queue, oldest first (``?policy=&kind=&stage=&state=``).
``GET /v1/assets/{id}/review`` / ``POST /v1/assets/{id}/review``
    The asset's review ``{state, by, at, note, ...}``; a verdict ``{"verdict": "approve"|"reject", "note": ...}``.
    The first verdict stands (the second gets 409). A rejection re-routes the asset at once without the rejected
    stage(s); the new output follows the same rule.
``GET /review`` (+ ``/review/login``, ``/review/logout``, ``/review/static/*``, ``/review/item/{id}``,
``/review/img/{id}/{sha}/{kind}.png``)
    The review page: no external resource (strict Content-Security-Policy), login with the reviewer's token
    once (an HttpOnly, SameSite=Strict session cookie; every state-changing request carries the session's CSRF
    token in ``X-CSRF-Token``), every user-controlled string inserted as text, never as markup.

Reviewers are named: ``inverity serve --token NAME=SECRET`` (repeatable) — their tokens also work as bearer
tokens for the rest of the API, and the name is what the review log records. :func:`gate` is what the fetch
endpoint calls before serving a rendition: a covered output that is pending or rejected is never served.

No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime.
"""
import asyncio
import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .. import review
from ..errors import InverityError

__all__ = ["include_review", "gate", "review_of", "register_policy_files", "parse_tokens", "SESSION_COOKIE"]

SESSION_COOKIE = "inverity_review"
_LOGIN_COOKIE = "inverity_login"
_SESSION_SECONDS = 12 * 3600
_STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_IMAGE_KINDS = ("original", "reconstruction", "error")
_RENDER_CACHE_ITEMS = 64
_REVIEW_CACHE_ITEMS = 20_000


def parse_tokens(values: "list[str] | tuple[str, ...] | None") -> "tuple[Optional[str], tuple[tuple[str, str], ...]]":
    """Split ``--token`` values into the client token (a bare secret) and named reviewers (``NAME=SECRET``).

    Examples
    --------
    >>> parse_tokens(["s3cret", "alice=a-token", "bob=b-token"])
    ('s3cret', (('alice', 'a-token'), ('bob', 'b-token')))
    """
    client: Optional[str] = None
    reviewers: list[tuple[str, str]] = []
    for v in values or ():
        name, sep, secret = v.partition("=")
        if sep and name.strip() and secret:
            if any(n == name.strip() for n, _ in reviewers):
                raise InverityError(f"--token: reviewer {name.strip()!r} given twice")
            reviewers.append((name.strip(), secret))
        elif client is None and v:
            client = v
        else:
            raise InverityError("--token: give one client token and any number of NAME=SECRET reviewer tokens")
    return client, tuple(reviewers)


def register_policy_files(paths: "list[Any] | tuple[Any, ...]") -> list[str]:
    """Register operator policy files (``serve --policy FILE``) so clients can name them; returns the names."""
    from ..policy import BUILTIN_POLICIES, load_policy_file, register_policy

    names = []
    for p in paths:
        pol = load_policy_file(p)
        if pol.name in BUILTIN_POLICIES:
            raise InverityError(f"{p}: policy name {pol.name!r} is a built-in's; give the file its own name")
        try:
            register_policy(dataclasses.replace(pol, source=str(Path(p).resolve())))
        except ValueError:
            raise InverityError(f"{p}: another policy named {pol.name!r} is already registered") from None
        names.append(pol.name)
    return names


class _Desk:
    """Review state of one server: reviewers, sessions, the review tables of the store's catalog, caches."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.store = state.store
        cfg = state.config
        self.reviewers = {name: hashlib.sha256(secret.encode()).digest()
                          for name, secret in getattr(cfg, "reviewers", ()) or ()}
        self.sessions: dict[str, tuple[str, str, float]] = {}   # sid -> (reviewer, csrf, expires)
        self.reviews: dict[str, dict[str, Any]] = {}             # aid -> current review (in-process cache)
        self.renders: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()                              # one verdict at a time in this process

    # -- identities ---------------------------------------------------------------------------------------------
    def reviewer_for(self, token: Optional[str]) -> Optional[str]:
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for name, d in self.reviewers.items():      # compare every digest: the time does not say which matched
            if hmac.compare_digest(digest, d):
                found = name
        return found

    def new_session(self, name: str) -> tuple[str, str]:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        self.sessions = {k: v for k, v in self.sessions.items() if v[2] > now}
        self.sessions[sid] = (name, csrf, now + _SESSION_SECONDS)
        return sid, csrf

    def session(self, sid: Optional[str]) -> Optional[tuple[str, str]]:
        got = self.sessions.get(sid or "")
        if got is None or got[2] < time.time():
            return None
        return got[0], got[1]

    # -- the review tables (worker threads) ---------------------------------------------------------------------
    def book(self) -> review.ReviewBook:
        return review.ReviewBook(self.store.catalog_path)

    def current(self, aid: str, record: dict[str, Any]) -> dict[str, Any]:
        cached = self.reviews.get(aid)
        if cached is not None and cached.get("output_sha256") == (record.get("review") or {}).get("output_sha256"):
            return cached
        with self.book() as book:
            rev = book.current(aid, record)
        if len(self.reviews) >= _REVIEW_CACHE_ITEMS:
            self.reviews.clear()      # a cache: dropping it only costs one read per asset
        self.reviews[aid] = rev
        return rev

    def queue(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        from ..catalog import Catalog

        with self.store._db_lock, Catalog(self.store.catalog_path) as cat:
            rows = {r["input"]: r["record"] for r in cat.rows() if r["status"] == "done"}
        with self.book() as book:
            book.sync(rows.items())
            items = book.queue()
            states = book.counts()
            rejected = sum(e["verdict"] == "reject" for e in book.log())
        counts = {"pending": states["pending"], "approved": states["approved"], "rejected": rejected,
                  "rerouted": states["rerouted"]}
        out = []
        for it in items:
            rec = rows.get(it["asset"]) or {}
            prof = rec.get("profile") or {}
            out.append({"id": it["asset"], "state": it["state"], "policy": it["policy"], "stage": it["stage"],
                        "kind": it["kind"], "queued_at": it["queued_at"], "output_sha256": it["output_sha256"],
                        "bytes": rec.get("bytes"), "quality": rec.get("quality"), "filename": rec.get("filename"),
                        "width": rec.get("width"), "height": rec.get("height"), "rule": it["rule"],
                        "ood_score": prof.get("ood_score"), "in_distribution": prof.get("in_distribution"),
                        "kind_confidence": prof.get("kind_confidence"), "checks": rec.get("checks") or {},
                        "reasons": _reasons(rec, it), "history": it["history"], "excluded": it["excluded"]})
        return out, counts

    def decide(self, aid: str, verdict: str, by: str, note: str) -> dict[str, Any]:
        """Apply a verdict; re-route on rejection. Returns ``{"id", "review", "decision"}`` (public record)."""
        from ._store import _public

        with self.lock:
            row = self.store.catalog_get(aid)
            if row is None or row["status"] != "done":
                raise _NotFound(f"unknown asset id {aid[:64]!r}")
            record = row["record"]
            with self.book() as book:
                rev = book.decide(aid, record, verdict, by, note)
            self.reviews.pop(aid, None)
            if rev["state"] == "rejected":
                record, rev = self._reroute(aid, record, rev)
            else:
                record = dict(record, review=rev)
                self.store.catalog_put(record)
            public = _public(record, self.store.root)
            self.reviews[aid] = rev
            return {"id": aid, "review": rev, "decision": public}

    def _reroute(self, aid: str, record: dict[str, Any], rev: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        from ..pipeline import Asset
        from ._store import MEDIA_TYPES, _PlanRecorder, _public, media_type_of_stage

        store = self.store
        orig = store._find_original(aid)
        tk = dataclasses.replace(store.toolkit, load=store._load(), plan=_PlanRecorder(store.toolkit.plan))
        try:
            res = review.reroute(orig, review.resolve_policy(rev, record), rev, outdir=store.root / "outputs",
                                 asset=Asset(str(orig), str(orig.parent), aid), toolkit=tk)
        except InverityError as exc:
            with self.book() as book:
                book.reroute_failed(aid, str(exc))
                rev = book.current(aid, record)
            record = dict(record, review=rev)
            store.catalog_put(record)
            return record, rev
        new = dict(res.record, id=aid, filename=record.get("filename"), media_types=record.get("media_types"))
        store.catalog_put(new)
        with self.book() as book:
            rev = book.register(aid, new)
        # the new output is the verified rendition of its format from now on (replacing any made before)
        mt = media_type_of_stage(str(new.get("stage")))
        key = MEDIA_TYPES.get(mt or "")
        if key is not None and new.get("container") != "dicom":
            meta = store._done_meta(mt or "", key, Path(new["output"]), _public(new, store.root))
            store._write_meta(aid, key, meta)
            self.state.renditions.put((aid, mt), meta)
        self.state.assets.put(aid, _public(new, store.root))
        return new, rev

    # -- the page's images --------------------------------------------------------------------------------------
    def render(self, aid: str) -> dict[str, Any]:
        """Original, reconstruction and error map (PNG, display size) and the worst windows of an asset."""
        row = self.store.catalog_get(aid)
        if row is None or row["status"] != "done" or not row["output"]:
            raise _NotFound(f"unknown asset id {aid[:64]!r}")
        sha = (row["record"].get("review") or {}).get("output_sha256") or ""
        key = (aid, sha)
        got = self.renders.get(key)
        if got is None:
            got = _render(self.store._find_original(aid), self.store.root / row["output"])
            if len(self.renders) >= _RENDER_CACHE_ITEMS:
                self.renders.pop(next(iter(self.renders)))
            self.renders[key] = got
        return dict(got, sha=sha)


class _NotFound(Exception):
    pass


def _reasons(record: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """The decision record's reasons in words, with why the output waits first."""
    rule = row.get("rule")
    why = {"required": "policy {p}: every output waits for a reviewer (review = required)",
           "learned": "policy {p}: outputs of the learned stage wait for a reviewer (review = learned)"}.get(
        str(rule), "policy {p}: this output was drawn for review (review = {r})")
    out = [why.format(p=row.get("policy"), r=rule)]
    for h in row.get("history") or []:
        done = {"approve": "approved", "reject": "rejected"}.get(str(h.get("verdict")), h.get("verdict"))
        out.append(f"{h.get('stage')} output {done} by {h.get('by')}: {h.get('note') or 'no note'}")
    return out + [str(r) for r in record.get("reasons") or []]


def _render(original: Path, output: Path) -> dict[str, Any]:
    import numpy as np

    from ..report import _maps
    from ..report._build import _comparable, _png, _read_image

    orig, recon = _read_image(original), _read_image(output)
    rpx, notes = _comparable(orig, recon)
    if rpx is None:
        raise InverityError("; ".join(notes) or "the reconstruction cannot be compared with the original")
    tone = _maps.tone_map_for(orig.pixels, orig.bit_depth)
    size = _maps.preview_size(orig.height, orig.width)

    def show(px: Any) -> bytes:
        return _png(_maps.resize_display(_maps.to_display(px, tone), size))

    err = _maps.abs_error(orig.pixels, rpx)
    full_scale = tone.high - tone.low if tone.note else float(orig.max_value)
    emap, vmax = _maps.error_map(err, full_scale, size)
    # the worst windows: the three grid tiles with the largest mean squared error, as fractions of the image
    h, w = orig.height, orig.width
    t = max(8, min(64, max(h, w) // 4 or 1))
    sq = ((rpx.astype(np.float64) - orig.pixels.astype(np.float64)) ** 2).mean(axis=2)
    ny, nx = -(-h // t), -(-w // t)
    pad = np.pad(sq, ((0, ny * t - h), (0, nx * t - w)), constant_values=np.nan)
    mse = np.nanmean(pad.reshape(ny, t, nx, t).transpose(0, 2, 1, 3).reshape(ny, nx, t * t), axis=2)
    windows = []
    for flat in np.argsort(mse, axis=None)[::-1][:3]:
        iy, ix = divmod(int(flat), nx)
        m = float(mse[iy, ix])
        psnr = None if m == 0 else round(10 * float(np.log10(orig.max_value ** 2 / m)), 2)
        x0, y0 = ix * t, iy * t
        windows.append({"x": x0 / w, "y": y0 / h, "w": min(t, w - x0) / w, "h": min(t, h - y0) / h,
                        "px": [x0, y0, min(t, w - x0), min(t, h - y0)], "psnr": psnr})
    return {"original": show(orig.pixels), "reconstruction": show(rpx), "error": _png(emap),
            "width": size[1], "height": size[0], "full_width": w, "full_height": h, "windows": windows,
            "error_scale": round(float(vmax), 3), "notes": notes + ([tone.note] if tone.note else [])}


async def review_of(state: Any, aid: str, record: dict[str, Any]) -> dict[str, Any]:
    """The current review of an asset, as its JSON carries it: ``{state, by, at, note, ...}``."""
    desk: Optional[_Desk] = getattr(state, "review_desk", None)
    if desk is None or not record.get("review"):
        return dict(record.get("review") or {"state": "not_required", "by": None, "at": None, "note": None})
    return await state.call(desk.current, aid, record)


async def gate(state: Any, aid: str, metas: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Optional[dict]]:
    """The renditions of ``metas`` that may be served; when review holds every one back, also why (for a 409).

    A rendition is served only if :func:`inverity.review.servable` allows its stage and exact bytes (ETag is
    the sha256 of the bytes) given the asset's current review.
    """
    record = state.assets.get(aid)
    if record is None:
        record = await state.call(state.store.asset, aid)
    if not record or (record.get("review") or {}).get("rule", "none") == "none":
        return metas, None          # no review under this policy: nothing to look up
    rev = await review_of(state, aid, record)
    ok, why = [], []
    for m in metas:
        stage = (m.get("record") or {}).get("stage")
        allowed, reason = review.servable(rev, stage, m.get("etag"))
        (ok.append(m) if allowed else why.append(reason))
    if ok or not why:
        return ok, None
    public = {k: rev.get(k) for k in ("state", "by", "at", "note", "rule", "stage", "excluded")}
    return ok, {"error": f"not served: {'; '.join(dict.fromkeys(why))}", "review": public}


def _template(name: str) -> str:
    from importlib.resources import files

    return files("inverity.report").joinpath("templates", name).read_text("utf-8")


def _bearer(request: Any) -> Optional[str]:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _who(desk: _Desk, request: Any, *, write: bool) -> str:
    """The reviewer: by bearer token, or by session cookie (+ the CSRF header for writes)."""
    from ._app import ApiError

    token = _bearer(request)
    if token is not None:
        name = desk.reviewer_for(token)
        if name is None:
            if desk.state.token_ok(token):
                raise ApiError(403, "this token is not a reviewer's (serve --token NAME=SECRET names one)")
            raise ApiError(401, "missing or invalid bearer token",
                           headers={"WWW-Authenticate": 'Bearer realm="inverity"'})
        return name
    sess = desk.session(request.cookies.get(SESSION_COOKIE))
    if sess is None:
        raise ApiError(401, "log in at /review/login or send a reviewer's bearer token",
                       headers={"WWW-Authenticate": 'Bearer realm="inverity"'})
    if write and not hmac.compare_digest(request.headers.get("x-csrf-token", "").encode(), sess[1].encode()):
        raise ApiError(403, "missing or invalid X-CSRF-Token")
    return sess[0]


def _check_id(aid: str) -> None:
    from ._app import ApiError
    from ._store import is_asset_id

    if not is_asset_id(aid):
        raise ApiError(404, f"unknown asset id {aid[:64]!r}")


def include_review(app: Any, state: Any) -> None:
    """Add the review endpoints and page to ``app`` (see the module docstring); ``state`` is the app's state."""
    from fastapi import APIRouter

    desk = _Desk(state)
    state.review_desk = desk
    # reviewer tokens are bearer tokens for the whole API too (the name is what the catalog records)
    client_ok = state.token_ok
    state.token_ok = lambda given: (desk.reviewer_for(given) is not None) or client_ok(given)
    router = APIRouter()
    _api_routes(router, desk)
    _page_routes(router, desk)
    app.include_router(router)


def _api_routes(router: Any, desk: _Desk) -> None:
    """``GET /v1/review``, ``GET``/``POST /v1/assets/{id}/review``."""
    from fastapi import Body, Query, Request
    from pydantic import BaseModel, Field

    from ._app import ApiError

    state = desk.state
    err = {"model": dict}

    class Verdict(BaseModel):
        verdict: str = Field(description="approve or reject")
        note: str = Field("", description="why (required to reject); recorded in the review log", max_length=4000)

    # -- the API ---------------------------------------------------------------------------------------------------
    @router.get("/v1/review", tags=["review"], summary="The review queue, oldest first",
                responses={401: err, 403: err})
    async def review_queue(request: Request,
                           policy: Optional[str] = Query(None, description="only this policy"),
                           kind: Optional[str] = Query(None, description="only this content kind (photo, ...)"),
                           stage: Optional[str] = Query(None, description="only outputs of this stage")) -> Any:
        _who(desk, request, write=False)
        items, counts = await state.call(desk.queue)
        items = [i for i in items if (policy is None or i["policy"] == policy) and (kind is None or i["kind"] == kind)
                 and (stage is None or i["stage"] == stage)]
        return {"items": items, "count": len(items), "counts": counts}

    @router.get("/v1/assets/{asset_id}/review", tags=["review"], summary="The asset's review state",
                responses={401: err, 404: err})
    async def get_review(asset_id: str, request: Request) -> Any:
        _who(desk, request, write=False)
        _check_id(asset_id)
        rec = state.assets.get(asset_id) or await state.call(state.store.asset, asset_id)
        if rec is None:
            raise ApiError(404, f"unknown asset id {asset_id!r}")
        return {"id": asset_id, "review": await review_of(state, asset_id, rec)}

    @router.post("/v1/assets/{asset_id}/review", tags=["review"], summary="Approve or reject a pending output",
                 description="The first verdict stands: deciding an output that is not pending answers 409. A "
                             "rejection (a note is required) re-routes the asset without the rejected stage; the "
                             "new output follows the policy's review rule. Session-cookie callers send "
                             "X-CSRF-Token.",
                 responses={401: err, 403: err, 404: err, 409: err, 422: err})
    async def post_review(asset_id: str, request: Request, body: Verdict = Body(...)) -> Any:
        by = _who(desk, request, write=True)
        _check_id(asset_id)
        if body.verdict not in review.VERDICTS:
            raise ApiError(422, f"verdict must be approve or reject, got {body.verdict[:20]!r}")
        try:
            out = await asyncio.get_running_loop().run_in_executor(
                state.pool, lambda: desk.decide(asset_id, body.verdict, by, body.note))
        except _NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except review.ReviewConflictError as exc:
            raise ApiError(409, str(exc)) from None
        except review.ReviewError as exc:
            raise ApiError(422, str(exc)) from None
        return out


def _page_routes(router: Any, desk: _Desk) -> None:
    """The ``/review`` page: login, logout, static files, an item's view and its images."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

    from ._app import ApiError

    state = desk.state

    # -- the page ----------------------------------------------------------------------------------------------
    page_headers = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

    def _html(body: str, status: int = 200) -> Any:
        return HTMLResponse(body, status_code=status, headers=page_headers)

    def _page(**ctx: Any) -> str:
        import jinja2

        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        return env.from_string(_template("review.html")).render(**ctx)

    @router.get("/review", include_in_schema=False)
    async def review_page(request: Request) -> Any:
        sess = desk.session(request.cookies.get(SESSION_COOKIE))
        if sess is None:
            return RedirectResponse("/review/login", status_code=303)
        return _html(_page(login=False, reviewer=sess[0], csrf=sess[1], error=None))

    @router.get("/review/login", include_in_schema=False)
    async def login_form() -> Any:
        nonce = secrets.token_urlsafe(24)
        resp = _html(_page(login=True, reviewer="", csrf=nonce, error=None))
        resp.set_cookie(_LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/review")
        return resp

    @router.post("/review/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        form = await request.form()
        nonce = str(form.get("csrf") or "")
        token = str(form.get("token") or "")
        if not nonce or not hmac.compare_digest(nonce.encode(), request.cookies.get(_LOGIN_COOKIE, "").encode()):
            return _html(_page(login=True, reviewer="", csrf=nonce, error="the login form expired; try again"), 403)
        name = desk.reviewer_for(token)
        if name is None:
            return _html(_page(login=True, reviewer="", csrf=nonce, error="not a reviewer's token"), 401)
        sid, _ = desk.new_session(name)
        resp = RedirectResponse("/review", status_code=303)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/",
                        max_age=_SESSION_SECONDS, secure=request.url.scheme == "https")
        resp.delete_cookie(_LOGIN_COOKIE, path="/review")
        return resp

    @router.post("/review/logout", include_in_schema=False)
    async def logout(request: Request) -> Any:
        _who(desk, request, write=True)
        desk.sessions.pop(request.cookies.get(SESSION_COOKIE) or "", None)
        resp = JSONResponse({"status": "logged out"})
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @router.get("/review/static/{name}", include_in_schema=False)
    async def static(name: str) -> Any:
        if name not in _STATIC:
            raise ApiError(404, "not found")
        return Response(_template(name), media_type=_STATIC[name],
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    @router.get("/review/item/{asset_id}", include_in_schema=False)
    async def item(asset_id: str, request: Request) -> Any:
        _who(desk, request, write=False)
        _check_id(asset_id)
        try:
            got = await state.call(desk.render, asset_id)
        except _NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except InverityError as exc:
            raise ApiError(422, f"cannot show asset {asset_id}: {exc}") from None
        base = f"/review/img/{asset_id}/{got['sha'][:16]}"
        return {k: v for k, v in got.items() if k not in _IMAGE_KINDS} | {
            "images": {k: f"{base}/{k}.png" for k in _IMAGE_KINDS}}

    @router.get("/review/img/{asset_id}/{sha}/{kind}.png", include_in_schema=False)
    async def image(asset_id: str, sha: str, kind: str, request: Request) -> Any:
        _who(desk, request, write=False)
        _check_id(asset_id)
        if kind not in _IMAGE_KINDS:
            raise ApiError(404, "not found")
        try:
            got = await state.call(desk.render, asset_id)
        except _NotFound as exc:
            raise ApiError(404, str(exc)) from None
        return Response(got[kind], media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})
