"""Sizes in words: the one unit convention of the records, the CLI summary and the audit page (kB = 1000 B)."""
from __future__ import annotations

from typing import Any

__all__ = ["human_bytes"]


def human_bytes(n: Any, missing: str = "-") -> str:
    """Bytes in decimal units: ``B`` below 1000, ``kB`` (1000 B) with one decimal, ``MB`` with two.

    Examples
    --------
    >>> human_bytes(999), human_bytes(15512), human_bytes(2_500_000), human_bytes(None), human_bytes(None, "—")
    ('999 B', '15.5 kB', '2.50 MB', '-', '—')
    """
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return missing
    if abs(n) < 1000:
        return f"{n:.0f} B"
    if abs(n) < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1e6:.2f} MB"
