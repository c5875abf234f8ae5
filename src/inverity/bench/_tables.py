"""Table and file helpers shared by the benchmarks' reports (:mod:`.rd`, :mod:`.routing`): Markdown tables,
number cells, CSV text and JSON-safe values."""
from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["fmt", "md_table", "to_csv", "json_safe"]


def fmt(v: Any, nd: int = 2) -> str:
    """A table cell: ``nd`` decimals for a float, ``n/a`` for None or NaN, ``∞``/``−∞`` for infinities."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a" if math.isnan(v) else ("∞" if v > 0 else "−∞")
        return f"{v:.{nd}f}"
    return str(v)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of dict rows: the union of their keys as columns (first-seen order), None as an empty cell."""
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def json_safe(o: Any) -> Any:
    """``o`` with non-finite floats as None, NumPy scalars as Python numbers and dict keys as strings."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return json_safe(o.item())
    return o
