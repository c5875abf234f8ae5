"""Typed shapes the verifier writes into a decision record: :class:`Box`, a window where a check is worst.

A verdict's ``checks["worst_windows"]`` is a list of boxes in the *original's pixel coordinates* — one per check
that localises (worst tile PSNR, local signal-to-error, local structure, per-window band retention, edges) —
each ``{"x", "y", "w", "h", "check", "value"}``. Readers (the audit page, ``inverity inspect``) draw exactly
these boxes; nobody recomputes them on another grid.

Examples
--------
>>> b = Box(96, 32, 16, 16, "local_snr", -3.25)
>>> b.to_dict()
{'x': 96, 'y': 32, 'w': 16, 'h': 16, 'check': 'local_snr', 'value': -3.25}
>>> Box.from_dict(b.to_dict()) == b
True
>>> Box(60, 60, 32, 32, "worst_tile_psnr", 31.0).clip(64, 80)  # height 64, width 80
Box(x=60, y=60, w=20, h=4, check='worst_tile_psnr', value=31.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Box", "boxes_from_checks"]

#: the keys of a box in a decision record, in order
BOX_KEYS = ("x", "y", "w", "h", "check", "value")


@dataclass(frozen=True)
class Box:
    """A rectangle in the original's pixels where ``check`` measured ``value`` (its worst over the image).

    ``value`` is in the check's own unit (dB for ``worst_tile_psnr``, ``local_snr``, ``local_structure``; a
    0..1 share for ``tile_band_kept``, ``edge_missing``, ``edge_invented``); ``None`` when not finite.
    """

    x: int
    y: int
    w: int
    h: int
    check: str
    value: float | None = None

    def __post_init__(self) -> None:
        if self.w <= 0 or self.h <= 0 or self.x < 0 or self.y < 0:
            raise ValueError(f"box {self.check}: needs x, y >= 0 and w, h > 0, got "
                             f"x={self.x} y={self.y} w={self.w} h={self.h}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a non-finite value becomes ``None``)."""
        v = self.value
        v = None if v is None or not math.isfinite(v) else round(float(v), 4)
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "check": self.check, "value": v}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Box":
        """The inverse of :meth:`to_dict`; ``ValueError`` naming what is wrong for anything else.

        Examples
        --------
        >>> Box.from_dict({"x": 0, "y": 0, "w": 8})
        Traceback (most recent call last):
        ...
        ValueError: not a box (missing h, check): {'x': 0, 'y': 0, 'w': 8}
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"not a box (a {type(d).__name__}): {d!r}")
        missing = [k for k in BOX_KEYS if k not in d and k != "value"]
        if missing:
            raise ValueError(f"not a box (missing {', '.join(missing)}): {dict(d)!r}")
        try:
            x, y, w, h = (int(d[k]) for k in ("x", "y", "w", "h"))
            v = d.get("value")
            value = None if v is None else float(v)
        except (TypeError, ValueError):
            raise ValueError(f"not a box (non-numeric coordinate or value): {dict(d)!r}") from None
        return cls(x, y, w, h, str(d["check"]), value)

    def clip(self, height: int, width: int) -> "Box | None":
        """The part inside a ``width``×``height`` image, or ``None`` when there is none."""
        x1, y1 = min(width, self.x + self.w), min(height, self.y + self.h)
        if x1 <= self.x or y1 <= self.y:
            return None
        return Box(self.x, self.y, x1 - self.x, y1 - self.y, self.check, self.value)


def boxes_from_checks(checks: Mapping[str, Any]) -> list[Box]:
    """The boxes of a record's ``checks`` (``worst_windows``); malformed entries raise ``ValueError``.

    Examples
    --------
    >>> boxes_from_checks({"worst_windows": [{"x": 0, "y": 0, "w": 4, "h": 4, "check": "local_snr", "value": 2}]})
    [Box(x=0, y=0, w=4, h=4, check='local_snr', value=2.0)]
    >>> boxes_from_checks({})
    []
    """
    raw = checks.get("worst_windows") or []
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"worst_windows must be a list of boxes, got {type(raw).__name__}")
    return [Box.from_dict(b) for b in raw]
