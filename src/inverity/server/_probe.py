"""Feed hostile upload bodies to an in-process server and report how each was answered.

The contract for any body a client may send to ``POST /v1/assets``: a 2xx (it was an image), or a 4xx whose body
is JSON ``{"error": "<one line>"}`` — never a 5xx, never a traceback, never a file left behind in the store by a
refused upload. :func:`probe_uploads` checks that for a batch of bodies (the adversarial corpus feeds it);
:func:`contract_violations` says what, if anything, broke the contract.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ._config import ServerConfig

__all__ = ["UploadOutcome", "probe_uploads", "contract_violations"]


@dataclass
class UploadOutcome:
    """How the server answered one body."""

    name: str
    status: int
    error: str | None               # the JSON "error" of a refusal (None if the body was not such JSON)
    content_type: str
    left_behind: list[str] = field(default_factory=list)   # store files a refused upload created


def _files(store: Path) -> set[str]:
    return {p.relative_to(store).as_posix() for sub in ("originals", "outputs", "renditions")
            for p in (store / sub).rglob("*") if p.is_file()}


def probe_uploads(bodies: Iterable[tuple[str, bytes]], store: Path, *, content_type: str = "image/png",
                  policy: str = "delivery", **config: Any) -> list[UploadOutcome]:
    """POST each ``(name, body)`` to a fresh in-process app over ``store``; ``config`` overrides
    :class:`ServerConfig` (``max_pixels``, ``max_body``, ``timeout`` ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    from ._app import create_app

    cfg = ServerConfig(**{"store": Path(store), "token": "probe", **config})
    out: list[UploadOutcome] = []
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client:
        for name, body in bodies:
            before = _files(Path(store))
            r = client.post("/v1/assets", params={"policy": policy}, content=body,
                            headers={"Authorization": "Bearer probe", "Content-Type": content_type})
            try:
                error = r.json().get("error") if r.status_code >= 400 else None
            except (ValueError, AttributeError):
                error = None
            left = sorted(_files(Path(store)) - before) if r.status_code >= 400 else []
            out.append(UploadOutcome(name, r.status_code, error, r.headers.get("content-type", ""), left))
    return out


def contract_violations(o: UploadOutcome) -> list[str]:
    """What in ``o`` breaks the upload contract (empty if nothing).

    Examples
    --------
    >>> contract_violations(UploadOutcome("x", 422, "x: truncated PNG data", "application/json"))
    []
    >>> contract_violations(UploadOutcome("x", 500, None, "text/plain", ["originals/a.png"]))
    ['x: status 500', 'x: refusal is not JSON {"error": ...}', 'x: left originals/a.png in the store']
    """
    bad: list[str] = []
    if o.status >= 500 or o.status < 200:
        bad.append(f"{o.name}: status {o.status}")
    if o.status >= 400:
        if not o.content_type.startswith("application/json") or not isinstance(o.error, str) or not o.error:
            bad.append(f'{o.name}: refusal is not JSON {json.dumps({"error": "..."})}')
        elif "\n" in o.error:
            bad.append(f"{o.name}: error is more than one line")
    bad.extend(f"{o.name}: left {f} in the store" for f in o.left_behind)
    return bad
