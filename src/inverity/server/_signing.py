"""Signed, expiring read URLs: ``/v1/assets/<id>?exp=<unix seconds>&sig=<hex HMAC-SHA256>``.

The signature covers the method, the path and the expiry (``"GET\\n/v1/assets/<id>\\n<exp>"``) under a server
secret, so a URL grants one read of one resource until ``exp`` and nothing else; changing any part of it (another
id, a later expiry) breaks the signature. ``HEAD`` is checked as ``GET`` (same resource, no body). Signatures are
compared in constant time (:func:`hmac.compare_digest`).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Optional

__all__ = ["UrlSigner", "derive_secret"]


def derive_secret(token: str) -> bytes:
    """The URL key derived from the bearer token (rotating the token revokes the URLs signed with it).

    Examples
    --------
    >>> len(derive_secret("t")), derive_secret("t") == derive_secret("u")
    (32, False)
    """
    return hmac.new(token.encode("utf-8"), b"inverity signed read URLs v1", hashlib.sha256).digest()


class UrlSigner:
    """Signs and checks read URLs with ``secret``.

    Examples
    --------
    >>> s = UrlSigner(b"k" * 32)
    >>> url = s.sign("/v1/assets/" + "0" * 32, expires=2_000_000_000)
    >>> url.split("?")[1].split("&")[0]
    'exp=2000000000'
    >>> exp, sig = url.split("exp=")[1].split("&sig=")
    >>> s.check("GET", "/v1/assets/" + "0" * 32, exp, sig, now=1_900_000_000) is None
    True
    >>> s.check("GET", "/v1/assets/" + "1" * 32, exp, sig, now=1_900_000_000)
    'signed URL is invalid (signature does not match)'
    >>> s.check("GET", "/v1/assets/" + "0" * 32, exp, sig, now=2_000_000_001)
    'signed URL expired at 2000000000 (1 s ago)'
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sig(self, method: str, path: str, exp: int) -> str:
        msg = f"{method.upper()}\n{path}\n{exp}".encode("utf-8")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, path: str, *, expires: int, method: str = "GET") -> str:
        """``path?exp=...&sig=...`` valid until ``expires`` (unix seconds)."""
        return f"{path}?exp={int(expires)}&sig={self._sig(method, path, int(expires))}"

    def check(self, method: str, path: str, exp: Optional[str], sig: Optional[str], *,
              now: Optional[float] = None) -> Optional[str]:
        """``None`` if the URL is valid, else the one-line reason it is refused."""
        if method.upper() == "HEAD":
            method = "GET"
        if not exp or not sig:
            return "signed URL is incomplete (needs both exp and sig)"
        try:
            expires = int(exp)
        except ValueError:
            return f"signed URL has an invalid exp {exp[:20]!r} (unix seconds expected)"
        # the signature first, in constant time: an attacker learns nothing from which check failed
        if not hmac.compare_digest(self._sig(method, path, expires).encode(), sig.encode("utf-8", "replace")):
            return "signed URL is invalid (signature does not match)"
        now = time.time() if now is None else now
        if now > expires:
            return f"signed URL expired at {expires} ({int(now - expires)} s ago)"
        return None
