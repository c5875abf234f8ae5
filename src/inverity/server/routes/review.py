"""Human review: the queue and verdicts (``/v1/review``, ``/v1/assets/{id}/review``) and the ``/review`` page.

Who may call: a reviewer (``serve --token NAME=SECRET``), by bearer token or by the page's session cookie; a
session-cookie write also carries the session's CSRF token in ``X-CSRF-Token`` (a cross-site form can send the
cookie, not the header). The client token is a valid token but no reviewer's: 403. The work is done by the app's
:class:`~inverity.server._review.ReviewDesk` (``state.review_desk``); what may be *served* is decided by
:func:`~inverity.server._review.gate` in the assets router.

No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at runtime.
"""
import asyncio
import hmac
import secrets
from importlib.resources import files
from typing import Any, Optional

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ... import review
from ...errors import InverityError
from .._config import ApiError
from .._review import SESSION_COOKIE, SESSION_SECONDS, NotFound, review_of
from .._state import AppState
from .._store import is_asset_id
from ..deps import get_state
from ..schemas import ERROR, ReviewOf, ReviewQueue, Verdict, Verdicted

__all__ = ["router"]

router = APIRouter()

_LOGIN_COOKIE = "inverity_login"
_STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_IMAGE_KINDS = ("original", "reconstruction", "error")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="inverity"'}


def _template(name: str) -> str:
    return files("inverity.report").joinpath("templates", name).read_text("utf-8")


def _bearer(request: Request) -> Optional[str]:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _who(state: AppState, request: Request, *, write: bool) -> str:
    """The reviewer: by bearer token, or by session cookie (+ the CSRF header for writes)."""
    token = _bearer(request)
    if token is not None:
        name = state.reviewer_for(token)
        if name is None:
            if state.token_ok(token):
                raise ApiError(403, "this token is not a reviewer's (serve --token NAME=SECRET names one)")
            raise ApiError(401, "missing or invalid bearer token", headers=_CHALLENGE)
        return name
    sess = state.review_desk.session(request.cookies.get(SESSION_COOKIE))
    if sess is None:
        raise ApiError(401, "log in at /review/login or send a reviewer's bearer token", headers=_CHALLENGE)
    if write and not hmac.compare_digest(request.headers.get("x-csrf-token", "").encode(), sess[1].encode()):
        raise ApiError(403, "missing or invalid X-CSRF-Token")
    return sess[0]


def _check_id(aid: str) -> None:
    if not is_asset_id(aid):
        raise ApiError(404, f"unknown asset id {aid[:64]!r}")


# -- the API -------------------------------------------------------------------------------------------------------
@router.get("/v1/review", tags=["review"], response_model=ReviewQueue, summary="The review queue, oldest first",
            responses={401: ERROR, 403: ERROR})
async def review_queue(request: Request, state: AppState = Depends(get_state),
                       policy: Optional[str] = Query(None, description="only this policy"),
                       kind: Optional[str] = Query(None, description="only this content kind (photo, ...)"),
                       stage: Optional[str] = Query(None, description="only outputs of this stage")) -> Any:
    _who(state, request, write=False)
    items, counts = await state.call(state.review_desk.queue)
    items = [i for i in items if (policy is None or i["policy"] == policy) and (kind is None or i["kind"] == kind)
             and (stage is None or i["stage"] == stage)]
    return {"items": items, "count": len(items), "counts": counts}


@router.get("/v1/assets/{asset_id}/review", tags=["review"], response_model=ReviewOf,
            summary="The asset's review state", responses={401: ERROR, 403: ERROR, 404: ERROR})
async def get_review(asset_id: str, request: Request, state: AppState = Depends(get_state)) -> Any:
    _who(state, request, write=False)
    _check_id(asset_id)
    rec = state.assets.get(asset_id) or await state.call(state.store.asset, asset_id)
    if rec is None:
        raise ApiError(404, f"unknown asset id {asset_id!r}")
    return {"id": asset_id, "review": await review_of(state, asset_id, rec)}


@router.post("/v1/assets/{asset_id}/review", tags=["review"], response_model=Verdicted,
             summary="Approve or reject a pending output",
             description="The first verdict stands: deciding an output that is not pending answers 409. A "
                         "rejection (a note is required) re-routes the asset without the rejected stage; the "
                         "new output follows the policy's review rule. Session-cookie callers send X-CSRF-Token.",
             responses={401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR, 422: ERROR})
async def post_review(asset_id: str, request: Request, body: Verdict = Body(...),
                      state: AppState = Depends(get_state)) -> Any:
    by = _who(state, request, write=True)
    _check_id(asset_id)
    if body.verdict not in review.VERDICTS:
        raise ApiError(422, f"verdict must be approve or reject, got {body.verdict[:20]!r}")
    desk = state.review_desk
    try:
        out, meta = await asyncio.get_running_loop().run_in_executor(
            state.pool, lambda: desk.decide(asset_id, body.verdict, by, body.note,
                                                  expected_sha256=body.output_sha256))
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except (review.ReviewConflictError, review.StaleVerdictError) as exc:
        raise ApiError(409, str(exc)) from None
    except review.ReviewError as exc:
        raise ApiError(422, str(exc)) from None
    # the app's caches live on the event loop: the new record, and a re-routed output as its format's rendition
    state.assets.put(asset_id, out["decision"])
    if meta is not None:
        state.bytes.pop(meta["path"])
        state.renditions.put((asset_id, meta["media_type"]), meta)
    return out


# -- the page ------------------------------------------------------------------------------------------------------
def _html(body: str, status: int = 200) -> Any:
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


def _page(**ctx: Any) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_template("review.html")).render(**ctx)


@router.get("/review", include_in_schema=False)
async def review_page(request: Request, state: AppState = Depends(get_state)) -> Any:
    sess = state.review_desk.session(request.cookies.get(SESSION_COOKIE))
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
async def login(request: Request, state: AppState = Depends(get_state)) -> Any:
    form = await request.form()
    nonce = str(form.get("csrf") or "")
    token = str(form.get("token") or "")
    if not nonce or not hmac.compare_digest(nonce.encode(), request.cookies.get(_LOGIN_COOKIE, "").encode()):
        return _html(_page(login=True, reviewer="", csrf=nonce, error="the login form expired; try again"), 403)
    name = state.reviewer_for(token)
    if name is None:
        return _html(_page(login=True, reviewer="", csrf=nonce, error="not a reviewer's token"), 401)
    sid, _ = state.review_desk.new_session(name)
    resp = RedirectResponse("/review", status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/",
                    max_age=SESSION_SECONDS, secure=request.url.scheme == "https")
    resp.delete_cookie(_LOGIN_COOKIE, path="/review")
    return resp


@router.post("/review/logout", include_in_schema=False)
async def logout(request: Request, state: AppState = Depends(get_state)) -> Any:
    _who(state, request, write=True)
    state.review_desk.sessions.pop(request.cookies.get(SESSION_COOKIE) or "", None)
    resp = JSONResponse({"status": "logged out"})
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/review/static/{name}", include_in_schema=False)
async def static(name: str) -> Any:
    if name not in _STATIC:
        raise ApiError(404, "not found")
    return Response(_template(name), media_type=_STATIC[name],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


async def _render(state: AppState, asset_id: str) -> dict[str, Any]:
    _check_id(asset_id)
    try:
        return await state.call(state.review_desk.render, asset_id)  # type: ignore[no-any-return]
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except InverityError as exc:
        raise ApiError(422, f"cannot show asset {asset_id}: {exc}") from None


@router.get("/review/item/{asset_id}", include_in_schema=False)
async def item(asset_id: str, request: Request, state: AppState = Depends(get_state)) -> Any:
    _who(state, request, write=False)
    got = await _render(state, asset_id)
    base = f"/review/img/{asset_id}/{got['sha'][:16]}"
    return {k: v for k, v in got.items() if k not in _IMAGE_KINDS} | {
        "images": {k: f"{base}/{k}.png" for k in _IMAGE_KINDS}}


@router.get("/review/img/{asset_id}/{sha}/{kind}.png", include_in_schema=False)
async def image(asset_id: str, sha: str, kind: str, request: Request, state: AppState = Depends(get_state)) -> Any:
    _who(state, request, write=False)
    if kind not in _IMAGE_KINDS:
        raise ApiError(404, "not found")
    got = await _render(state, asset_id)
    return Response(got[kind], media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})
