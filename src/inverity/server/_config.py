"""What ``inverity serve`` runs with, and the error type every endpoint answers through."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..policy import BUILTIN_POLICIES

__all__ = ["ServerConfig", "ApiError", "BUILTIN_POLICY_NAMES", "CACHE_CONTROL", "one_line"]

#: the policies a client may name (never a path: policy files are the operator's business, not the client's)
#: (the policy module's list: one place for the built-in names)
BUILTIN_POLICY_NAMES: tuple[str, ...] = BUILTIN_POLICIES
#: renditions never change for an id (content-addressed), so caches may keep them for a year without revalidating
CACHE_CONTROL = "public, max-age=31536000, immutable"


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces.

    Examples
    --------
    >>> one_line("a\\n  b\\tc ")
    'a b c'
    """
    return " ".join(str(text).split())


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
    public_reads
        ``GET``/``HEAD /v1/assets/{id}`` (the image) need no token — for ``<img src>`` on a public site.
        Uploads, decision records, signed-URL issuance and the docs still do.
    url_secret
        Key of the signed read URLs (``?exp=&sig=``); default: derived from ``token`` (rotating the token
        revokes every URL signed with it).
    header_timeout
        Seconds a client has to send a request's complete head (line + headers) once the connection is open or
        the previous response is sent; then the connection is closed (slow-header / slowloris guard).
    keep_alive
        Seconds an idle keep-alive connection is kept open.
    effort
        The quality search's effort for uploads and renditions (``fast``, ``balanced``, ``max``; ``None``: each
        policy's own, the default). ``fast`` asks the codecs for their faster settings and stops the search
        sooner: about 2x faster uploads of a 0.4 MP photo, for 8-44% more bytes (benchmarks/results/
        serve_first.md); every output served is still verified in full against the policy's floors.
    reviewers
        ``(name, token)`` of each reviewer (``serve --token NAME=SECRET``): the review endpoints and page take
        their tokens (and the name is what the review log records); the rest of the API takes them as bearer
        tokens too.
    """

    store: Path
    token: Optional[str]
    max_body: int = 64 * 1024 * 1024
    max_pixels: Optional[int] = 50_000_000
    timeout: float = 120.0
    workers: Optional[int] = None
    public_reads: bool = False
    url_secret: Optional[bytes] = None
    header_timeout: float = 10.0
    keep_alive: int = 5
    reviewers: tuple[tuple[str, str], ...] = ()
    effort: Optional[str] = None


class ApiError(Exception):
    """An error answer: ``status`` and the one-line ``{"error": message}`` body (plus ``extra`` keys)."""

    def __init__(self, status: int, message: str, *, headers: Optional[dict[str, str]] = None,
                 extra: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.status, self.message = status, one_line(message)
        self.headers, self.extra = headers or {}, extra or {}


class BodyTooLarge(ApiError):
    """The request body is over ``max_body`` (declared or streamed): 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)
