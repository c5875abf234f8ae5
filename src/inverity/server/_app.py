"""``create_app``: the FastAPI application assembled from its parts.

=====================  ==========================================================================================
``_config``            :class:`ServerConfig`, :class:`ApiError` (what the service runs with; how it refuses)
``_state``             :class:`AppState`: store, thread pools, single-flight map, caches, token check, URL signer
``deps``               the dependencies routes use: ``get_state``, ``require_token``, ``require_read``
``schemas``            the JSON bodies (pydantic)
``routes/<name>.py``   one router per resource (``health``, ``assets``, ``docs``, ``review``), included below
``_handlers``          every error as ``{"error": "<one line>"}``
``_head``              ``HEAD`` wherever ``GET`` exists
``_negotiate``         ``Accept`` negotiation (pure), ``_signing`` signed read URLs (pure), ``_store`` the store
``_review``            human review: the desk (verdicts, re-routing, sessions) and the gate on serving
``_serve``             :func:`serve`: uvicorn with keep-alive and request-head timeouts
=====================  ==========================================================================================

No ``from __future__ import annotations`` in the FastAPI modules: FastAPI reads their annotations at runtime.
FastAPI itself is imported only here and in the modules this imports, so ``import inverity.server`` needs no extra.
"""
from __future__ import annotations

import importlib
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from ..errors import MissingDependencyError
from ._config import ServerConfig

__all__ = ["create_app", "require"]


def require(module: str, package: str) -> Any:
    """Import an optional dependency of the server, or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, "server") from None


def create_app(config: ServerConfig, *, toolkit: Any = None) -> Any:
    """Build the ASGI application for ``config`` (FastAPI is an optional extra: ``inverity[server]``).

    Parameters
    ----------
    config
        Store, token, limits, read access.
    toolkit
        The pipeline's modules (default: the real ones), passed to :func:`inverity.pipeline.compress_one`.

    Returns
    -------
    The FastAPI app (``app.state.inverity`` is its :class:`AppState`), wrapped so ``HEAD`` answers like ``GET``.

    Raises
    ------
    MissingDependencyError
        FastAPI or python-multipart is not installed.
    """
    require("fastapi", "fastapi")
    try:                                    # starlette's multipart parser; renamed python_multipart in 0.0.13
        require("python_multipart", "python-multipart")
    except MissingDependencyError:
        require("multipart", "python-multipart")
    from fastapi import FastAPI

    from ._handlers import install_error_handlers
    from ._head import HeadAsGet
    from ._state import AppState
    from .routes import assets, docs, health, review
    from .routes.health import version

    state = AppState(config, toolkit)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        from .._warm import warm

        # import the codecs and load the models now, in a worker thread, not in the first upload's time
        state.pool.submit(warm)
        yield
        state.close()

    app = FastAPI(
        title="inverity", version=version(), lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
        description="Upload an image, get it compressed by the routed, verified pipeline; fetch it back in the "
                    "best verified format your client accepts (Accept negotiation). Every endpoint except "
                    "/healthz needs `Authorization: Bearer <token>`; image reads may instead use a signed URL, "
                    "or nothing when the server runs with --public-reads. Errors are JSON: {\"error\": \"...\"}.")
    app.state.inverity = state
    install_error_handlers(app)
    # one line per resource (routes/<name>.py defines `router`); HEAD comes from the middleware below
    app.include_router(health.router)
    app.include_router(assets.router)
    app.include_router(docs.router)
    app.include_router(review.router)
    app.add_middleware(HeadAsGet)
    return app
