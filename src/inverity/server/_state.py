"""Per-app runtime state: the store, the thread pools, single-flight futures and bounded in-memory caches.

No FastAPI here (importable without the extra); :mod:`.deps` hands it to the endpoints.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from ._config import ServerConfig
from ._signing import UrlSigner, derive_secret
from ._store import Store

__all__ = ["AppState", "LRU"]

#: memory for rendition bytes kept hot (the cached GET path then does no file I/O); larger files stream from disk
BYTE_CACHE_BUDGET = 64 * 1024 * 1024
BYTE_CACHE_ITEM = 4 * 1024 * 1024
#: decision records and rendition records kept in memory (the rest are read from the catalog / disk again)
RECORD_CACHE_ITEMS = 20_000


class LRU:
    """A least-recently-used map bounded by item count and (for bytes) total size. Event-loop thread only.

    Examples
    --------
    >>> c = LRU(2)
    >>> c.put("a", 1); c.put("b", 2); _ = c.get("a"); c.put("c", 3)
    >>> c.get("b"), c.get("a"), c.get("c")
    (None, 1, 3)
    """

    def __init__(self, max_items: int, max_bytes: Optional[int] = None) -> None:
        self.max_items, self.max_bytes, self.size = max_items, max_bytes, 0
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def _weight(self, value: Any) -> int:
        return len(value) if self.max_bytes is not None else 0

    def get(self, key: Any) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def pop(self, key: Any) -> Any:
        value = self._items.pop(key, None)
        if value is not None:
            self.size -= self._weight(value)
        return value

    def put(self, key: Any, value: Any) -> None:
        if self.max_bytes is not None and self._weight(value) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= self._weight(old)
        self._items[key] = value
        self.size += self._weight(value)
        while len(self._items) > self.max_items or (self.max_bytes is not None and self.size > self.max_bytes):
            _, dropped = self._items.popitem(last=False)
            self.size -= self._weight(dropped)


class AppState:
    """What the endpoints share: config, store, pools, single-flight map, caches, token check, URL signer, and
    the review desk (:class:`~inverity.server._review.ReviewDesk`: verdicts, sessions, the serving gate's state).
    """

    def __init__(self, config: ServerConfig, toolkit: Any = None) -> None:
        self.config = config
        self.store = Store(config.store, max_pixels=config.max_pixels, toolkit=toolkit, effort=config.effort)
        self.pool = ThreadPoolExecutor(max_workers=config.workers or os.cpu_count() or 2,
                                       thread_name_prefix="inverity-work")
        # catalog look-ups and file reads get their own threads so a queue of encodes never delays a cached GET
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="inverity-io")
        self.inflight: dict[tuple[str, ...], asyncio.Future[Any]] = {}
        self.assets = LRU(RECORD_CACHE_ITEMS)          # id -> public decision record (done assets only)
        self.renditions = LRU(RECORD_CACHE_ITEMS)      # (id, media type) -> rendition record
        self.offered = LRU(RECORD_CACHE_ITEMS)         # id -> media types worth offering
        self.size_floors = LRU(RECORD_CACHE_ITEMS)     # id -> {media type: predicted lower bound on its bytes}
        self.beaten = LRU(RECORD_CACHE_ITEMS)          # (id, media type) -> bytes it could not beat (not made)
        self.bytes = LRU(RECORD_CACHE_ITEMS, BYTE_CACHE_BUDGET)   # rendition path -> bytes
        self._token_digest = None if config.token is None else hashlib.sha256(config.token.encode()).digest()
        self._reviewers = {name: hashlib.sha256(secret.encode()).digest() for name, secret in config.reviewers}
        secret = config.url_secret or (derive_secret(config.token) if config.token is not None else None)
        self.signer: Optional[UrlSigner] = UrlSigner(secret) if secret is not None else None
        from ._review import ReviewDesk   # no FastAPI in it either

        self.review_desk = ReviewDesk(self)

    @property
    def auth_enabled(self) -> bool:
        return self._token_digest is not None

    def token_ok(self, given: Optional[str]) -> bool:
        """The client token or a reviewer's (reviewers use the whole API too), or any with ``--no-auth``."""
        if self._token_digest is None:
            return True
        if given is None:
            return False
        # compare fixed-length digests in constant time: leaks neither the token nor its length
        digest = hashlib.sha256(given.encode()).digest()
        return hmac.compare_digest(digest, self._token_digest) or self._reviewer_of(digest) is not None

    def reviewer_for(self, given: Optional[str]) -> Optional[str]:
        """The name of the reviewer whose token ``given`` is, else ``None`` (the client token is no reviewer's)."""
        return None if not given else self._reviewer_of(hashlib.sha256(given.encode()).digest())

    def _reviewer_of(self, digest: bytes) -> Optional[str]:
        found = None
        for name, d in self._reviewers.items():      # compare every digest: the time does not say which matched
            if hmac.compare_digest(digest, d):
                found = name
        return found

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a quick blocking call (catalog read, file read) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.io, lambda: fn(*args))

    async def once(self, key: tuple[str, ...], fn: Callable[..., Any], *args: Any,
                   timeout: float) -> tuple[Any, bool]:
        """Run ``fn(*args)`` in the pool at most once at a time per ``key``; concurrent callers share the result.

        Returns ``(result, initiator)``. On timeout the work is *not* cancelled (a thread cannot be, and the
        result is wanted by the next request anyway): ``asyncio.TimeoutError`` is raised to this caller only.
        """
        fut = self.inflight.get(key)
        initiator = fut is None
        if fut is None:
            fut = asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(*args))
            self.inflight[key] = fut

            def _done(f: asyncio.Future[Any]) -> None:
                self.inflight.pop(key, None)
                if not f.cancelled():
                    f.exception()   # mark retrieved: an abandoned failure is reported to its callers, not logged

            fut.add_done_callback(_done)
        return await asyncio.wait_for(asyncio.shield(fut), timeout), initiator

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.io.shutdown(wait=False, cancel_futures=True)
