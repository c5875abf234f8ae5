"""Run the app under uvicorn with the timeouts a public socket needs.

uvicorn closes an *idle* keep-alive connection after ``timeout_keep_alive``, but has no limit on how long a client
may take to send a request's head: a client trickling one header byte a second holds a connection (and a file
descriptor) forever — the slowloris attack. :class:`HeadTimeoutH11Protocol` adds that limit: from the moment a
connection opens, and again after each response, the next request's head must be complete within
``header_timeout`` seconds or the connection is closed. Request *bodies* are bounded by the app's own timeout
(408), and a head's size by h11's ``max_incomplete_event_size``.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from ._app import create_app, require
from ._config import ServerConfig

__all__ = ["serve", "protocol_with_head_timeout", "MAX_HEAD_BYTES"]

#: the largest request head (line + headers) accepted; h11 answers 400 beyond it
MAX_HEAD_BYTES = 32 * 1024


def protocol_with_head_timeout(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing connections whose request head is not complete within ``header_timeout``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11Protocol(H11Protocol):  # type: ignore[misc]
        _head_timer: Optional[asyncio.TimerHandle] = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if not self._waiting_for_head():    # a request's head arrived: its handler runs untimed here
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()                        # before super(): a pipelined request it starts disarms it again
            super().on_response_complete()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadTimeoutH11Protocol


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted (one process: the store's locks live in it)."""
    uvicorn = require("uvicorn", "uvicorn")
    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, timeout_graceful_shutdown=10,
                http=protocol_with_head_timeout(config.header_timeout), timeout_keep_alive=config.keep_alive,
                h11_max_incomplete_event_size=MAX_HEAD_BYTES)
