"""The service's routers, one module per resource; :func:`inverity.server.create_app` includes each in one line.

To add a resource (e.g. ``review.py``): define ``router = APIRouter(tags=[...])`` in a module here, guard each
route with ``dependencies=[Depends(require_token)]`` (or :func:`~inverity.server.deps.require_read` for image
reads), take the shared state with ``state: AppState = Depends(get_state)``, raise
:class:`~inverity.server.ApiError` for errors, and add its name to :data:`ROUTERS`. ``HEAD`` comes for free
wherever ``GET`` exists.
"""
from __future__ import annotations

__all__ = ["ROUTERS"]

#: the router modules create_app includes, in this order (each defines ``router``)
ROUTERS: tuple[str, ...] = ("health", "assets", "docs")
