"""HTTP content negotiation on ``Accept`` (RFC 9110 §12.5.1), small enough to read in one sitting.

A client's ``Accept`` header lists media ranges with optional weights::

    Accept: image/avif,image/webp;q=0.9,image/*;q=0.8,*/*;q=0.5

Each offered media type gets the weight ``q`` of the *most specific* range that matches it (``type/subtype``
beats ``type/*`` beats ``*/*``); ``q=0`` means "not acceptable". Some media types are only offered to clients
that name them exactly — inverity's learned ``.inv`` stream (``application/x-inverity``) must never reach a
browser through ``*/*``, because only inverity can decode it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable

__all__ = ["MediaRange", "parse_accept", "quality_of", "acceptable"]


@dataclass(frozen=True)
class MediaRange:
    """One entry of an ``Accept`` header: ``type/subtype`` (either may be ``*``) and its weight ``q``."""

    type: str
    subtype: str
    q: float = 1.0

    @property
    def specificity(self) -> int:
        """2 for ``type/subtype``, 1 for ``type/*``, 0 for ``*/*``."""
        return (self.type != "*") + (self.subtype != "*")

    def matches(self, media_type: str) -> bool:
        t, _, s = media_type.lower().partition("/")
        return self.type in ("*", t) and self.subtype in ("*", s)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an ``Accept`` header into media ranges; malformed entries are ignored, as RFC 9110 allows.

    Parameters are ignored except ``q`` (clamped to 0..1; an unparsable ``q`` drops the entry).

    Examples
    --------
    >>> parse_accept("image/avif, image/*;q=0.5, text/html;level=1, bogus, */*;q=x")
    [MediaRange(type='image', subtype='avif', q=1.0), MediaRange(type='image', subtype='*', q=0.5), \
MediaRange(type='text', subtype='html', q=1.0)]
    >>> parse_accept(None)
    []
    """
    ranges: list[MediaRange] = []
    for part in (header or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        t, slash, s = mt.partition("/")
        if not slash or not t or not s or (t == "*" and s != "*"):
            continue
        q = 1.0
        ok = True
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    ok = False
        if ok:
            ranges.append(MediaRange(t, s, q))
    return ranges


def quality_of(media_type: str, ranges: Iterable[MediaRange], *, wildcards: bool = True) -> float:
    """The weight the client gives ``media_type``: that of the most specific matching range (0 if none).

    With ``wildcards=False`` only an exact ``type/subtype`` entry counts.

    Examples
    --------
    >>> r = parse_accept("image/*;q=0.8, image/webp;q=0.2, */*;q=0.1")
    >>> quality_of("image/webp", r), quality_of("image/avif", r), quality_of("application/x-inverity", r)
    (0.2, 0.8, 0.1)
    >>> quality_of("application/x-inverity", r, wildcards=False)
    0.0
    """
    best: MediaRange | None = None
    for r in ranges:
        if not r.matches(media_type) or (not wildcards and r.specificity < 2):
            continue
        if best is None or r.specificity > best.specificity:
            best = r
    return 0.0 if best is None else best.q


def acceptable(offered: Iterable[str], header: str | None, *,
               explicit_only: Collection[str] = ()) -> dict[str, float]:
    """The offered media types the client accepts (``q > 0``), with their weights, in offered order.

    A missing or empty ``Accept`` header accepts everything (RFC 9110) — except the ``explicit_only`` types,
    which need an exact entry in the header.

    Examples
    --------
    >>> offered = ["image/avif", "image/webp", "image/jpeg", "application/x-inverity"]
    >>> acceptable(offered, "image/webp,image/*;q=0.8", explicit_only={"application/x-inverity"})
    {'image/avif': 0.8, 'image/webp': 1.0, 'image/jpeg': 0.8}
    >>> acceptable(offered, "*/*", explicit_only={"application/x-inverity"})
    {'image/avif': 1.0, 'image/webp': 1.0, 'image/jpeg': 1.0}
    >>> acceptable(offered, "application/x-inverity", explicit_only={"application/x-inverity"})
    {'application/x-inverity': 1.0}
    >>> acceptable(offered, "image/avif;q=0, image/*", explicit_only={"application/x-inverity"})
    {'image/webp': 1.0, 'image/jpeg': 1.0}
    """
    ranges = parse_accept(header)
    explicit = {m.lower() for m in explicit_only}
    out: dict[str, float] = {}
    for mt in offered:
        exact_only = mt.lower() in explicit
        if not ranges:
            q = 0.0 if exact_only else 1.0
        else:
            q = quality_of(mt, ranges, wildcards=not exact_only)
        if q > 0:
            out[mt] = q
    return out
