"""``HEAD`` wherever ``GET`` exists (RFC 9110 §9.3.2): same status, same headers, no body.

A pure ASGI middleware, so it covers every route — those of routers added later included — without each
declaring ``HEAD``: the request runs as ``GET`` and the body is dropped on the way out (``Content-Length`` stays,
as the RFC allows). A route without ``GET`` answers ``HEAD`` as it answers ``GET``: 405 with its ``Allow``.
"""
from typing import Any, Awaitable, Callable

__all__ = ["HeadAsGet"]

Scope = dict[str, Any]
Message = dict[str, Any]


class HeadAsGet:
    """Wraps an ASGI app so ``HEAD`` is answered exactly like ``GET``, without the body."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return                      # a chunk of a streamed body: drop it, wait for the last
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(dict(scope, method="GET"), receive, send_without_body)
