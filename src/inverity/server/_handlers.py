"""Every error answer is ``{"error": "<one line>"}`` (plus keys an :class:`ApiError` adds), never a server path."""
import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._config import ApiError, one_line
from ._store import public_message

__all__ = ["install_error_handlers", "json_error"]

log = logging.getLogger("inverity.server")


def json_error(request: Request, status: int, message: str, headers: Optional[dict[str, str]] = None,
               **extra: Any) -> JSONResponse:
    # never show the server's own filesystem layout to a client
    message = public_message(one_line(message), request.app.state.inverity.store.root)
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route FastAPI's, Starlette's and our own errors through :func:`json_error`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Any:
        return json_error(request, exc.status, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return json_error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return json_error(request, 422, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_error(request, 500, f"internal server error ({type(exc).__name__})")
