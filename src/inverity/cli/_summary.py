"""The summary ``compress`` and ``demo`` print: decision records -> plain text lines that fit the terminal.

Pure: no I/O, no colour, the width is an argument, so the layout is tested at a fixed width. Per asset one row —
asset (long names lose their middle, never their file name), kind, policy, stage, quality, size, ratio — and one
short phrase saying why: ``passed: ...``, ``FAILED: ...`` or ``passed (resumed)``. When the row and the phrase do
not fit side by side (an 80-column terminal) the phrase goes on the line below, indented. Then the totals, one
aggregate line about the learned stage when it was tried, and the unit convention, said once: kB = 1000 B.

Examples
--------
>>> recs = [{"input": "photos/2024/holiday/very-long-name-of-a-beach-photo.png", "status": "done",
...          "profile": {"kind": "photo"}, "policy": "auto", "policy_resolved": "delivery", "stage": "avif",
...          "quality": 49, "bytes": 15512, "input_bytes": 444500,
...          "attempts": [{"stage": "avif", "quality": 48, "passed": False, "search": True,
...                        "reasons": ["ssimulacra2 69.8 < 70"], "failures": ["ssimulacra2"]},
...                       {"stage": "avif", "quality": 49, "passed": True, "chosen": True, "search": True,
...                        "reasons": ["ssimulacra2 70.3 >= 70"]}]}]
>>> print("\\n".join(summary_lines(recs, width=72)))
policy auto: a concrete policy chosen per asset (column 'policy')
asset                               kind  policy   stage  q   kB  ratio
photos/2024/holi…a-beach-photo.png  photo delivery avif  49 15.5 28.66x
  └ passed: lowest passing q (q48 failed ssimulacra2)
1/1 assets ok; 444.5 kB -> 15.5 kB (28.66x); kB = 1000 B
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .._units import human_bytes

__all__ = ["summary_lines", "ellipsize_middle", "why_phrase", "learned_line", "fmt_kb", "fmt_bytes"]

#: below this many columns for the phrase, it goes on its own line under the row
MIN_INLINE_WHY = 28
#: the asset column never gets narrower than this (ellipsized in the middle below it)
MIN_ASSET = 12
#: nor wider than this when the phrase is inline
MAX_ASSET = 40


def ellipsize_middle(s: str, n: int) -> str:
    """``s`` in at most ``n`` characters: its middle replaced by ``…`` (the file name at the end survives).

    Examples
    --------
    >>> ellipsize_middle("photos/2024/holiday/beach.png", 20)
    'photos/20…/beach.png'
    >>> ellipsize_middle("a.png", 20), ellipsize_middle("abcdef", 1)
    ('a.png', '…')
    """
    if len(s) <= n:
        return s
    if n <= 1:
        return "…"[:n]
    tail = (n - 1) - (n - 1) // 2
    name = s.rsplit("/", 1)[-1]
    if len(s) > len(name) and len(name) + 1 + 3 <= n - 1:  # keep "/<file name>" whole, 3+ characters before it
        tail = len(name) + 1
    elif len(name) + 3 <= n - 1:                          # else the file name whole at least
        tail = len(name)
    return s[:n - 1 - tail] + "…" + s[len(s) - tail:]


def fmt_bytes(n: Any) -> str:
    """Decimal units: B, kB (1000 B), MB (:func:`inverity._units.human_bytes`).

    Examples
    --------
    >>> fmt_bytes(999), fmt_bytes(15512), fmt_bytes(2_500_000), fmt_bytes(None)
    ('999 B', '15.5 kB', '2.50 MB', '-')
    """
    return human_bytes(n)


def fmt_kb(n: Any) -> str:
    """A size in the table's kB column.

    Examples
    --------
    >>> fmt_kb(15512), fmt_kb(430), fmt_kb(None)
    ('15.5', '0.4', '-')
    """
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    return f"{n / 1000:.1f}" if n < 10_000_000 else f"{n / 1000:.0f}"


def _attempts(rec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in rec.get("attempts") or [] if isinstance(a, Mapping)]


def _first_reason(a: Mapping[str, Any]) -> str:
    """The verifier's first reason that is a check (not the content-window note)."""
    for r in a.get("reasons") or []:
        if "checks use that window" not in str(r):
            return _short(str(r))
    return ""


def _short(reason: str) -> str:
    """A verifier reason without its trailing detail in parentheses / after ';' (kept for the page)."""
    r = re.sub(r" \((?:error|and|tolerance|worst|every)[^)]*\)$", "", reason)
    return r.split(";")[0].strip()


def why_phrase(rec: Mapping[str, Any]) -> str:
    """One short phrase: why this output (or why none).

    Examples
    --------
    >>> why_phrase({"status": "failed", "error": "a.png: no stage passed verification under policy delivery",
    ...             "attempts": [{"stage": "jpeg", "quality": 95, "passed": False,
    ...                           "reasons": ["ssimulacra2 55.2 < 70"]}]})
    'FAILED: no stage passed; best jpeg q95: ssimulacra2 55.2 < 70'
    >>> why_phrase({"status": "failed", "error": "b.png: truncated PNG file", "input": "b.png", "attempts": []})
    'FAILED: truncated PNG file'
    >>> why_phrase({"status": "done", "checks": {"lossless": True}, "reasons": [
    ...     "smallest of 2 passing equivalent choices (jpegls 14206 B, jpeg2000 13705 B)"],
    ...     "attempts": [{"stage": "jpeg2000", "passed": True, "chosen": True, "reasons": ["bit-exact"]}]})
    'passed: bit-exact; smallest of 2 passing'
    >>> why_phrase({"status": "skipped"})
    'passed (resumed)'
    """
    status = rec.get("status")
    if status == "skipped":
        return "passed (resumed)"
    attempts = _attempts(rec)
    if status == "failed" or rec.get("error"):
        tried = [a for a in attempts if a.get("passed") is False and a.get("reasons")]
        if tried:
            # the closest miss: the highest quality of the last stage tried
            last = tried[-1].get("stage")
            same = [a for a in tried if a.get("stage") == last]
            best = max(same, key=lambda a: a.get("quality") if isinstance(a.get("quality"), (int, float)) else -1)
            q = best.get("quality")
            return f"FAILED: no stage passed; best {best.get('stage')}{f' q{q}' if q is not None else ''}: " \
                   f"{_first_reason(best)}"
        err = str(rec.get("error") or "failed")
        name = str(rec.get("input") or "")
        for prefix in (f"{name}: ", f"{rec.get('input_path')}: "):
            if err.startswith(prefix):
                err = err[len(prefix):]
        return f"FAILED: {err}"
    chosen = next((a for a in attempts if a.get("chosen")), attempts[-1] if attempts else None)
    if chosen is None:
        return "passed"
    parts = ["bit-exact" if (rec.get("checks") or {}).get("lossless") is True else _first_reason(chosen)]
    smallest = next((r for r in rec.get("reasons") or [] if str(r).startswith("smallest of ")), None)
    if smallest:
        parts.append(str(smallest).split(" (")[0].replace(" equivalent choices", ""))
    else:
        q = chosen.get("quality")
        lower = [a for a in attempts if a.get("stage") == chosen.get("stage") and a.get("passed") is False
                 and isinstance(a.get("quality"), (int, float)) and isinstance(q, (int, float)) and a["quality"] < q]
        if lower:  # the quality is set by the check that failed just below it
            nb = max(lower, key=lambda a: a["quality"])
            failed = ", ".join(str(f) for f in (nb.get("failures") or [])[:2]) or _first_reason(nb)
            parts[-1] = f"lowest passing q (q{nb['quality']} failed" + (f" {failed})" if failed else ")")
    # a stage is rejected when none of its attempts passed (failed probes of a quality search that later
    # passed, or a bigger passing equivalent choice, are not rejections)
    passed_stages = {a.get("stage") for a in attempts if a.get("passed")}
    rejected = list(dict.fromkeys(str(a.get("stage")) for a in attempts
                                  if a.get("stage") not in passed_stages and a.get("stage") != chosen.get("stage")))
    if rejected:
        parts.append(f"{'/'.join(rejected)} rejected")
    dropped = (rec.get("metadata") or {}).get("dropped")  # metadata the output could not carry: never unsaid
    if dropped:
        # no-break spaces: the wrap in summary_lines never splits what was dropped from the word "dropped"
        parts.append("dropped:\u00a0" + ",\u00a0".join(dropped))
    return "passed: " + "; ".join(p for p in parts if p)


_S2 = re.compile(r"^ssimulacra2 (-?[\d.]+) (>=|<) (-?[\d.]+)")


def learned_line(records: Sequence[Mapping[str, Any]]) -> str | None:
    """One line about the learned stage when it was tried (else ``None``).

    Examples
    --------
    >>> def rec(q_s2):
    ...     return {"profile": {"kind": "photo"}, "attempts": [
    ...         {"stage": "learned", "quality": q, "passed": False, "reasons": [f"ssimulacra2 {s} < 70"],
    ...          "failures": ["ssimulacra2", "local_snr"]} for q, s in q_s2]}
    >>> learned_line([rec([(4, 47.1), (7, 61.0)]), rec([(4, 50.2), (7, 58.3)])])
    'learned tried on 2 photos, passed 0: best SSIMULACRA2 61 < floor 70 at its top quality 7'
    >>> learned_line([{"attempts": [{"stage": "avif", "passed": True}]}]) is None
    True
    """
    tried = [r for r in records if any(a.get("stage") == "learned" for a in _attempts(r))]
    if not tried:
        return None
    learned = [a for r in tried for a in _attempts(r) if a.get("stage") == "learned"]
    passed = sum(1 for r in tried if any(a.get("stage") == "learned" and a.get("passed") for a in _attempts(r)))
    chosen = sum(1 for r in tried if r.get("stage") == "learned")
    kinds = {str((r.get("profile") or {}).get("kind") or "") for r in tried}
    what = f"{len(tried)} photo{'s' if len(tried) != 1 else ''}" if kinds == {"photo"} else \
        f"{len(tried)} asset{'s' if len(tried) != 1 else ''}"
    head = f"learned tried on {what}, passed {passed}" + (f" (written for {chosen})" if chosen else "")
    qs = [a["quality"] for a in learned if isinstance(a.get("quality"), (int, float))]
    top = max(qs) if qs else None
    scores = []
    for a in learned:
        for reason in a.get("reasons") or []:
            m = _S2.match(str(reason))
            if m:
                scores.append((float(m.group(1)), m.group(2), float(m.group(3)), a.get("quality")))
    if passed or not scores:
        fails: dict[str, int] = {}
        for a in learned:
            for f in a.get("failures") or []:
                fails[str(f)] = fails.get(str(f), 0) + 1
        if passed or not fails:
            return head
        worst = sorted(fails.items(), key=lambda kv: -kv[1])[:2]
        return head + ": failed " + ", ".join(f"{k} ({v} of {len(learned)} tries)" for k, v in worst)
    best, op, floor, at = max(scores, key=lambda s: s[0])
    where = f"at its top quality {top}" if at == top else f"at quality {at} (top {top})"
    return head + f": best SSIMULACRA2 {best:.0f} {op} floor {floor:g} {where}"


@dataclass
class _Col:
    name: str
    right: bool = False


_COLS = (_Col("asset"), _Col("kind"), _Col("policy"), _Col("stage"), _Col("q", True), _Col("kB", True),
         _Col("ratio", True))


def _cells(rec: Mapping[str, Any]) -> list[str]:
    ratio = (rec.get("input_bytes") or 0) / rec["bytes"] if rec.get("bytes") else None
    stage = str(rec.get("stage") or "-") + ("/dcm" if rec.get("container") == "dicom" else "")
    return [str(rec.get("input") or rec.get("input_path") or "?"),
            str((rec.get("profile") or {}).get("kind") or "-"),
            str(rec.get("policy_resolved") or rec.get("policy") or "-"),
            stage, "-" if rec.get("quality") is None else str(rec["quality"]), fmt_kb(rec.get("bytes")),
            "-" if ratio is None else f"{ratio:.2f}x"]


def _spaces(s: str) -> str:
    return s.replace("\u00a0", " ")


def summary_lines(records: Sequence[Mapping[str, Any]], *, width: int = 80, title: str | None = None,
                  catalog: str | None = None) -> list[str]:
    """The summary of a batch as lines of at most ``width`` characters (see the module docstring)."""
    width = max(40, int(width))
    rows = [_cells(r) for r in records]
    whys = [why_phrase(r) for r in records]
    out: list[str] = []
    if title:
        out.append(ellipsize_middle(title, width))
    pols = {str(r.get("policy")) for r in records}
    if pols == {"auto"} and records:
        out.append("policy auto: a concrete policy chosen per asset (column 'policy')")
    widths = [max([len(c.name)] + [len(row[i]) for row in rows]) for i, c in enumerate(_COLS)]
    fixed = sum(widths[1:]) + len(_COLS) - 1          # every column but the asset, with one space between
    names = max(widths[0], MIN_ASSET)
    # the phrase sits beside the row when it gets MIN_INLINE_WHY columns (wrapped inside them), else below it
    inline = width - fixed - 2 - min(names, MAX_ASSET) - 2 >= MIN_INLINE_WHY
    widths[0] = max(MIN_ASSET, min(names, MAX_ASSET) if inline else min(names, width - fixed - 2))

    def line(cells: list[str]) -> str:
        parts = []
        for i, (c, w) in enumerate(zip(_COLS, widths)):
            v = ellipsize_middle(cells[i], w) if i == 0 else cells[i]
            parts.append(v.rjust(w) if c.right else v.ljust(w))
        # two spaces after the asset: it is the key of the row
        return parts[0] + "  " + " ".join(parts[1:])

    header = line([c.name for c in _COLS])
    out.append((header + "  why") if inline else header.rstrip())
    indent = len(header) + 2
    for cells, why in zip(rows, whys):
        row = line(cells)
        if inline:
            wrapped = textwrap.wrap(why, width=width - indent, break_on_hyphens=False) or ["-"]
            out.append(row + "  " + _spaces(wrapped[0]))
            out.extend(" " * indent + _spaces(w) for w in wrapped[1:])
        else:
            out.append(row.rstrip())
            out.extend(_spaces(w) for w in textwrap.wrap(why, width=width, initial_indent="  └ ", subsequent_indent="    ",
                                                         break_on_hyphens=False) or ["  └ -"])
    ok = sum(1 for r in records if r.get("status") != "failed")
    tin = sum(int(r.get("input_bytes") or 0) for r in records if r.get("bytes"))
    tout = sum(int(r.get("bytes") or 0) for r in records)
    total = f"{ok}/{len(records)} assets ok; {fmt_bytes(tin)} -> {fmt_bytes(tout)}" + \
        (f" ({tin / tout:.2f}x)" if tout else "")
    learned = learned_line(records)
    if learned:
        out.extend(textwrap.wrap(learned, width=width, subsequent_indent="  "))
    out.extend(textwrap.wrap(total + "; kB = 1000 B", width=width, subsequent_indent="  "))
    if catalog:  # on its own line: a path is copied whole, never broken
        out.append(f"catalog {catalog}")
    return out


def terminal_width(default: int = 80) -> int:
    """The width of the terminal on stdout (``COLUMNS`` when set, else ``default`` when not a terminal)."""
    import shutil

    return shutil.get_terminal_size((default, 24)).columns
