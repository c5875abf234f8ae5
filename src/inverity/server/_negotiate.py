"""HTTP content negotiation on ``Accept`` (RFC 9110 §12.5.1), small enough to read in one sitting.

A client's ``Accept`` header lists media ranges with optional weights::

    Accept: image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8      (Chromium, <img>)

Each offered media type gets the weight ``q`` of the *most specific* range that matches it (``type/subtype``
beats ``type/*`` beats ``*/*``); ``q=0`` means "not acceptable", even where a wildcard would match.

Two rules keep an image from arriving broken:

* **Wildcards promise only universal formats.** ``image/*`` and ``*/*`` are sent by every browser, including
  those that cannot decode AVIF, WebP, JPEG XL — let alone inverity's learned ``.inv`` stream. So a wildcard
  reaches only :data:`UNIVERSAL` (JPEG, PNG, GIF); every other type needs its exact ``type/subtype`` with
  ``q > 0``. A missing ``Accept`` means ``*/*`` (RFC 9110: "any media type"), hence also universal formats only.
* **q-values decide before size.** The server serves the smallest verified rendition among the types of the
  *highest* weight that has one (:func:`preference_groups`), so ``image/jpeg, image/avif;q=0.01`` gets JPEG.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable, Mapping

from ..formats import universal_media_types

__all__ = ["MediaRange", "parse_accept", "quality_of", "acceptable", "preference_groups", "UNIVERSAL"]

#: media types every image-capable client decodes: the only ones a wildcard (``image/*``, ``*/*``) may reach
UNIVERSAL: frozenset[str] = universal_media_types()   # a view of ``Format.universal`` (inverity.formats)


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

    With ``wildcards=False`` a wildcard never gives a weight — but the most specific range still decides, so
    ``image/avif;q=0`` excludes AVIF whatever else the header says.

    Examples
    --------
    >>> r = parse_accept("image/*;q=0.8, image/webp;q=0.2, */*;q=0.1")
    >>> quality_of("image/webp", r), quality_of("image/avif", r), quality_of("image/avif", r, wildcards=False)
    (0.2, 0.8, 0.0)
    """
    best: MediaRange | None = None
    for r in ranges:
        if r.matches(media_type) and (best is None or r.specificity > best.specificity):
            best = r
    if best is None or (not wildcards and best.specificity < 2):
        return 0.0
    return best.q


def acceptable(offered: Iterable[str], header: str | None, *,
               universal: Collection[str] = UNIVERSAL) -> dict[str, float]:
    """The offered media types the client accepts (``q > 0``), with their weights, in offered order.

    Only ``universal`` types may be reached through a wildcard; the others need their exact entry. A missing
    or empty header is ``*/*``.

    Examples
    --------
    >>> offered = ["image/avif", "image/jxl", "image/webp", "image/jpeg", "image/png", "application/x-inverity"]
    >>> chromium = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    >>> acceptable(offered, chromium)
    {'image/avif': 1.0, 'image/webp': 1.0, 'image/jpeg': 1.0, 'image/png': 1.0}
    >>> acceptable(offered, "*/*"), acceptable(offered, None)
    ({'image/jpeg': 1.0, 'image/png': 1.0}, {'image/jpeg': 1.0, 'image/png': 1.0})
    >>> acceptable(offered, "application/x-inverity;q=0.5, image/png;q=0, */*")
    {'image/jpeg': 1.0, 'application/x-inverity': 0.5}
    """
    ranges = parse_accept(header) or [MediaRange("*", "*")]
    wild = {m.lower() for m in universal}
    out: dict[str, float] = {}
    for mt in offered:
        q = quality_of(mt, ranges, wildcards=mt.lower() in wild)
        if q > 0:
            out[mt] = q
    return out


def preference_groups(weights: Mapping[str, float]) -> list[list[str]]:
    """The accepted types grouped by weight, highest first (order within a group kept): the server tries each
    group in turn and serves the smallest verified rendition of the first group that has one.

    Examples
    --------
    >>> preference_groups({"image/jpeg": 1.0, "image/avif": 0.01, "image/png": 1.0})
    [['image/jpeg', 'image/png'], ['image/avif']]
    >>> preference_groups({})
    []
    """
    levels = sorted(set(weights.values()), reverse=True)
    return [[mt for mt, q in weights.items() if q == level] for level in levels]
