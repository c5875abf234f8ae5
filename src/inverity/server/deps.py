"""FastAPI dependencies shared by every router: the app state and the two access rules.

* :func:`require_token` — the bearer token (writes, decision records, URL signing, the docs).
* :func:`require_read` — reading an image: the bearer token, *or* a valid signed URL (``?exp=&sig=``), *or*
  nothing at all when the server runs with ``--public-reads``.

A router adds them per route (``dependencies=[Depends(require_token)]``); with ``--no-auth`` both let everything
through. No ``from __future__ import annotations``: FastAPI reads these signatures at runtime.
"""
from typing import Optional

from fastapi import Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ._config import ApiError
from ._state import AppState

__all__ = ["get_state", "require_token", "require_read", "bearer"]

bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="the server's token (inverity serve --token / INVERITY_TOKEN)")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="inverity"'}


def get_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving ``request``."""
    return request.app.state.inverity  # type: ignore[no-any-return]


def _check_bearer(state: AppState, credentials: Optional[HTTPAuthorizationCredentials]) -> None:
    if not state.token_ok(credentials.credentials if credentials else None):
        raise ApiError(401, "missing or invalid bearer token" if credentials else "missing bearer token",
                       headers=_CHALLENGE)


def require_token(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> None:
    """401 unless the request carries the server's bearer token (or the server runs without auth)."""
    _check_bearer(get_state(request), credentials)


def require_read(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer),
                 exp: Optional[str] = Query(None, description="signed URL: expiry, unix seconds"),
                 sig: Optional[str] = Query(None, description="signed URL: HMAC-SHA256 of method, path and exp"),
                 ) -> None:
    """Reading an image: a bearer token (checked if sent), else a signed URL (403 if expired or tampered),
    else public reads, else 401."""
    state = get_state(request)
    if credentials is not None or not state.auth_enabled:
        _check_bearer(state, credentials)
        return
    if exp is not None or sig is not None:
        reason = ("signed URLs are not enabled on this server" if state.signer is None
                  else state.signer.check(request.method, request.url.path, exp, sig))
        if reason is not None:
            raise ApiError(403, reason)
        return
    if not state.config.public_reads:
        _check_bearer(state, None)
