"""The service's routers, one module per resource; :func:`inverity.server.create_app` includes each in one line.

To add a resource (e.g. ``review.py``)::

    from fastapi import APIRouter, Depends
    from ..deps import get_state, require_token
    from .._config import ApiError
    from .._state import AppState

    router = APIRouter(prefix="/v1/review", tags=["review"], dependencies=[Depends(require_token)])

    @router.get("/pending")
    async def pending(state: AppState = Depends(get_state)) -> Any:
        ...   # state.store (catalog, files), state.call(fn, ...) for blocking I/O, state.once(...) for CPU work

then ``app.include_router(review.router)`` in ``create_app``. Errors: raise :class:`ApiError` (status, one line);
``HEAD`` comes for free wherever ``GET`` exists; image reads use :func:`~inverity.server.deps.require_read`.
No ``from __future__ import annotations`` in router modules: FastAPI reads their annotations at runtime.
"""
