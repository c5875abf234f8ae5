"""``GET /healthz``: liveness, without authentication."""
from typing import Any

from fastapi import APIRouter

from ..schemas import Health

__all__ = ["router", "version"]

router = APIRouter(tags=["service"])


def version() -> str:
    """The installed inverity version (``0+unknown`` in a source tree without metadata)."""
    try:
        from importlib.metadata import version as _v

        return _v("inverity")
    except Exception:  # noqa: BLE001 - source tree without metadata
        return "0+unknown"


@router.get("/healthz", response_model=Health, summary="Liveness (no authentication)")
async def healthz() -> Any:
    return {"status": "ok", "version": version()}
