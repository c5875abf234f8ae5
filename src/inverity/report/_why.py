"""What the audit page says about a record, in words: the verdict, why the chosen candidate won, what was rejected
and why, and the measured checks as small tables.

Pure functions on decision records (no pixels, no I/O), so each sentence can be tested on its own. Sizes use one
convention everywhere: kB = 1000 B (as the CLI summary does).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .._units import human_bytes as _human_bytes
from ..verify_checks import check_names

__all__ = ["verdict_of", "main_reasons", "human_bytes", "fmt", "Why", "Rejected", "explain", "check_rows",
           "CheckRow"]


def fmt(v: Any) -> str:
    """A check's value for a table cell.

    Examples
    --------
    >>> fmt(True), fmt(31.23456), fmt(float("inf")), fmt(None), fmt(88)
    ('yes', '31.23', '∞', '—', '88')
    """
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if math.isnan(v):
            return "n/a"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    if v is None:
        return "—"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, ensure_ascii=False)
    return str(v)


def human_bytes(n: Any) -> str:
    """Bytes in decimal units (kB = 1000 B), the one convention of the page and the CLI.

    Examples
    --------
    >>> human_bytes(999), human_bytes(12345), human_bytes(5_530_413), human_bytes(None)
    ('999 B', '12.3 kB', '5.53 MB', '—')
    """
    return _human_bytes(n, "—")


# -- verdicts ------------------------------------------------------------------------------------------------------
def _attempts(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in record.get("attempts") or [] if isinstance(a, Mapping)]


def chosen_attempt(attempts: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The attempt whose output was written: flagged ``chosen`` by the pipeline, else the last one."""
    return next((a for a in attempts if a.get("chosen")), attempts[-1] if attempts else None)


def rejections(attempts: list[Mapping[str, Any]], chosen: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """Failed attempts of *other* stages (fallbacks). Failed quality probes of the chosen stage are steps of
    its quality search, not rejections."""
    stage = chosen.get("stage") if chosen is not None else None
    return [a for a in attempts if a.get("passed") is False and (stage is None or a.get("stage") != stage)]


def verdict_of(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(css class, label)`` of a record: failed, lossless, verified, unverified.

    Examples
    --------
    >>> verdict_of({"status": "failed", "error": "x"})
    ('failed', 'failed')
    >>> verdict_of({"attempts": [{"stage": "learned", "passed": False}, {"stage": "jpeg", "passed": True}],
    ...             "checks": {"lossless": False}})
    ('verified', 'verified after 1 rejected attempt')
    >>> verdict_of({"attempts": [{"stage": "avif", "quality": 60, "passed": True, "chosen": True},
    ...                          {"stage": "avif", "quality": 55, "passed": False}], "checks": {}})
    ('verified', 'verified')
    >>> verdict_of({"attempts": [{"passed": True}], "checks": {"lossless": True}})
    ('lossless', 'bit-exact')
    """
    if record.get("status") == "failed" or record.get("error"):
        return "failed", "failed"
    attempts = _attempts(record)
    chosen = chosen_attempt(attempts)
    if chosen is not None and not chosen.get("passed", True):
        return "unverified", "not verified"
    rejected = len(rejections(attempts, chosen))
    extra = f" after {rejected} rejected attempt{'s' if rejected != 1 else ''}" if rejected else ""
    if (record.get("checks") or {}).get("lossless") is True:
        return "lossless", "bit-exact" + extra
    if not attempts:
        return "unverified", "no verification recorded"
    return "verified", "verified" + extra


def attempt_label(a: Mapping[str, Any]) -> str:
    q = a.get("quality")
    return f"{a.get('stage', '?')}" + (f" q{q}" if q is not None else "")


def _failing_reasons(a: Mapping[str, Any], limit: int) -> list[str]:
    """The reasons an attempt failed: the verifier lists failures first, ``failures`` says how many."""
    reasons = [str(r) for r in a.get("reasons") or []]
    n = len(a.get("failures") or []) or 1
    return reasons[:min(n, limit)]


# -- why this output, what was rejected ------------------------------------------------------------------------------
@dataclass
class Rejected:
    """One rejected stage: the qualities tried, its best (highest-quality) attempt and why that one failed."""

    stage: str
    qualities: list[Any]
    best: Mapping[str, Any]
    reasons: list[str]
    n_failures: int

    @property
    def title(self) -> str:
        tried = ", ".join(f"q{q}" for q in self.qualities if q is not None)
        size = f", {human_bytes(self.best.get('bytes'))}" if self.best.get("bytes") is not None else ""
        return f"{self.stage}" + (f" (tried {tried}; best {attempt_label(self.best)}{size})" if tried else size)


@dataclass
class Why:
    """The decision, in the order a reviewer asks: why this output won, then what was rejected, then the rest."""

    won: str = ""
    because: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    context: list[str] = field(default_factory=list)


def explain(record: Mapping[str, Any]) -> Why:
    """Why the chosen candidate won, and what was rejected.

    Examples
    --------
    >>> rec = {"stage": "avif", "quality": 67, "bytes": 30012, "reasons": [
    ...     "learned rejected: ssimulacra2 69.0 < 70", "avif: lossy, quality searched (controlled table for photo)"],
    ...     "attempts": [
    ...     {"stage": "learned", "quality": 4, "passed": False, "reasons": ["ssimulacra2 47.1 < 70"],
    ...      "failures": ["ssimulacra2"]},
    ...     {"stage": "learned", "quality": 7, "passed": False, "bytes": 11941, "failures": ["ssimulacra2"],
    ...      "reasons": ["ssimulacra2 69.0 < 70", "edges missing: worst tile 4% <= 35%"]},
    ...     {"stage": "avif", "quality": 66, "passed": False, "reasons": ["ssimulacra2 69.8 < 70"],
    ...      "failures": ["ssimulacra2"]},
    ...     {"stage": "avif", "quality": 67, "passed": True, "chosen": True, "bytes": 30012,
    ...      "reasons": ["ssimulacra2 82.5 >= 70", "local_snr ok"]}]}
    >>> w = explain(rec)
    >>> w.won
    'avif q67 (30.0 kB) passed every check'
    >>> w.because
    ['avif: lossy, quality searched (controlled table for photo)', 'q67 is the lowest avif quality that passed (q66 failed: ssimulacra2 69.8 < 70)', 'ssimulacra2 82.5 >= 70']
    >>> [(r.title, r.reasons) for r in w.rejected]
    [('learned (tried q4, q7; best learned q7, 11.9 kB)', ['ssimulacra2 69.0 < 70'])]
    """
    attempts = _attempts(record)
    chosen = chosen_attempt(attempts)
    reasons = [str(r) for r in record.get("reasons") or []]
    why = Why()
    if record.get("status") == "failed" or record.get("error"):
        why.won = "nothing was written: " + str(record.get("error") or "no candidate passed")
    elif chosen is not None:
        size = chosen.get("bytes", record.get("bytes"))
        lbl = attempt_label(chosen) + (f" ({human_bytes(size)})" if size is not None else "")
        why.won = f"{lbl} {'passed every check' if chosen.get('passed', True) else 'was written without passing'}"
        stage = str(chosen.get("stage"))
        used: set[str] = set()
        for r in reasons:  # the router's reason for the stage, and the size contest among equivalent choices
            if r.startswith((f"{stage}:", f"{stage}?")) or r.startswith("smallest of "):
                why.because.append(r)
                used.add(r)
        q = chosen.get("quality")
        same = [a for a in attempts if a.get("stage") == stage and a is not chosen]
        lower_fail = [a for a in same if a.get("passed") is False and isinstance(a.get("quality"), (int, float))
                      and isinstance(q, (int, float)) and a["quality"] < q]
        if lower_fail:
            nb = max(lower_fail, key=lambda a: a["quality"])
            first = _failing_reasons(nb, 1)
            why.because.append(f"q{q} is the lowest {stage} quality that passed (q{nb['quality']} failed"
                               + (f": {first[0]})" if first else ")"))
        elif same and isinstance(q, (int, float)):
            why.because.append(f"q{q}: the smallest of {len(same) + 1} {stage} qualities tried")
        why.because.extend(str(r) for r in (chosen.get("reasons") or [])[:1])
        why.context = [r for r in reasons if r not in used and " rejected: " not in r]
    else:
        why.won = "no attempt recorded"
        why.context = list(reasons)
    by_stage: dict[str, list[Mapping[str, Any]]] = {}
    failed = record.get("status") == "failed" or bool(record.get("error"))
    for a in rejections(attempts, None if failed else chosen):  # nothing written: every stage was rejected
        by_stage.setdefault(str(a.get("stage", "?")), []).append(a)
    for stage, tries in by_stage.items():
        best = max(tries, key=lambda a: (a.get("quality") if isinstance(a.get("quality"), (int, float)) else -1))
        why.rejected.append(Rejected(stage, [a.get("quality") for a in tries], best, _failing_reasons(best, 3),
                                     len(best.get("failures") or [])))
    return why


def main_reasons(record: Mapping[str, Any], limit: int = 3) -> list[str]:
    """The few lines that explain a record in the summary table: the error, why the chosen stage won, then the
    rejected stages and why.

    Examples
    --------
    >>> main_reasons({"stage": "jpeg", "attempts": [
    ...     {"stage": "learned", "quality": 3, "passed": False, "reasons": ["worst_tile_psnr 24.1 < 28"]},
    ...     {"stage": "jpeg", "quality": 25, "passed": True, "reasons": ["ssimulacra2 71.3 >= 70"]}]})
    ['jpeg q25: ssimulacra2 71.3 >= 70', 'learned q3 rejected: worst_tile_psnr 24.1 < 28']
    """
    out: list[str] = []
    if record.get("error"):
        out.append(str(record["error"]))
    attempts = _attempts(record)
    chosen = chosen_attempt(attempts)
    if chosen is not None and chosen.get("passed") and chosen.get("reasons"):
        out.append(f"{attempt_label(chosen)}: {chosen['reasons'][0]}")
    for a in rejections(attempts, chosen):
        why = "; ".join(str(r) for r in (a.get("reasons") or [])[:2]) or "failed"
        out.append(f"{attempt_label(a)} rejected: {why}")
    out.extend(str(r) for r in record.get("reasons") or [] if " rejected: " not in str(r))
    # the same line can reach us twice (a rejected attempt is also summarised in the record's reasons)
    return list(dict.fromkeys(out))[:limit]


# -- the checks, as tables -----------------------------------------------------------------------------------------
@dataclass
class CheckRow:
    """One row of the checks table: a scalar ``value``, or a small table ``rows`` (a band dict, a window)."""

    name: str
    value: str = ""
    rows: list[tuple[str, str]] = field(default_factory=list)
    head: tuple[str, str] = ("", "")


#: how a dict-valued check reads as a small table: (key column, value column, value format)
_TABLE_HEADS: dict[str, tuple[str, str]] = {
    "band_kept": ("band (cycles/px)", "kept"),
    "band_invented": ("band (cycles/px)", "invented"),
    "window": ("", ""),
}


#: units of the scalar checks (shares in 0..1 read as percentages)
_DB = check_names(unit="dB") + ("psnr_window",)   # the check classes give the units
_SHARE = check_names(unit="share")


def check_rows(checks: Mapping[str, Any]) -> list[CheckRow]:
    """The checks of a record as table rows, with their units; dict values become small two-column tables, band
    shares read as percentages; the worst windows are drawn on the images, not listed here.

    Examples
    --------
    >>> rows = check_rows({"psnr": 36.99, "band_kept": {"0.03–0.06": 0.9981, "0.50–0.75": 0.0123},
    ...                    "edge_missing": 0.04, "worst_windows": [], "verify_ms": 3.0})
    >>> [(r.name, r.value, r.rows) for r in rows]
    [('psnr', '36.99 dB', []), ('band_kept', '', [('0.03–0.06', '99.8%'), ('0.50–0.75', '1.2%')]), ('edge_missing', '4.0%', [])]
    """
    out: list[CheckRow] = []
    for k, v in checks.items():
        if k in ("worst_windows", "verify_ms"):
            continue
        if isinstance(v, Mapping):
            pct = k.startswith("band_")
            rows = [(str(a), f"{100 * b:.1f}%" if pct and isinstance(b, (int, float)) and not isinstance(b, bool)
                     else fmt(b)) for a, b in v.items()]
            out.append(CheckRow(str(k), rows=rows, head=_TABLE_HEADS.get(str(k), ("", ""))))
        elif isinstance(v, (list, tuple)):
            out.append(CheckRow(str(k), ", ".join(fmt(x) for x in v)))
        elif k in _SHARE and isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(CheckRow(str(k), f"{100 * v:.1f}%"))
        elif k in _DB and isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(CheckRow(str(k), f"{fmt(float(v))} dB"))
        else:
            out.append(CheckRow(str(k), fmt(v)))
    return out
