"""Human review: outputs that a policy says must be seen wait, ``pending``, for a named reviewer's verdict.

The policy field ``review`` says which outputs wait (DESIGN.md "Policies")::

    "none"         nothing waits (archive, diagnostic, delivery)
    "required"     every output waits
    "learned"      outputs of the learned stage wait (controlled's default)
    "sample:P"     a seeded share P of the outputs waits (the draw is a pure function of the input's sha256
                   and the policy name, so a re-run draws the same); the rest ship

States of one asset's output, and what can be served meanwhile::

    not_required ──(no review for this output: served)
    pending ──approve──► approved      (the approved bytes, and only those, are served)
       │
       └──reject──► rejected ──► re-routed without the rejected stage(s) ──► the new output follows the same rule
                                  (no stage left: stays rejected, nothing is served)

While an output is pending (or was rejected), an alternative the rule does not cover (a classical rendition
under ``learned``) is served; anything the rule covers is held back (HTTP 409 with the reason). A verdict is
final: the second reviewer deciding the same output gets :class:`ReviewConflictError`.

Persistence lives in the catalog's SQLite file, in two tables this module creates:

* ``review_state`` — one row per asset: the state of its current output (keyed by the output's sha256, so a
  verdict can never apply to bytes the reviewer did not see), the stages rejected so far.
* ``review_log`` — append-only (triggers refuse UPDATE and DELETE): who, when, verdict, note, output sha256 and
  what the rejected output looked like to the verifier (kind, OOD score, checks), for :func:`feedback`.

Examples
--------
>>> parse_rule("sample:0.25")
Rule(kind='sample', share=0.25)
>>> transition("pending", "approve"), transition("pending", "reject")
('approved', 'rejected')
>>> servable({"rule": "learned", "state": "pending"}, "avif", "ab")
(True, 'learned outputs wait for review; avif does not')
>>> servable({"rule": "learned", "state": "pending", "output_sha256": "ab"}, "learned", "ab")[0]
False
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import InputError, InverityError, PolicyError
from .outputs import sha256_file
from .verify_checks import check_names

__all__ = [
    "Rule", "parse_rule", "rule_of", "STATES", "VERDICTS", "initial_state", "transition", "servable", "covers",
    "ReviewError", "ReviewConflictError", "StaleVerdictError", "ReviewBook", "reroute", "feedback",
    "feedback_text", "output_sha256", "sampled",
]

#: review states of an output
STATES = ("not_required", "pending", "approved", "rejected")
#: verdicts a reviewer can give
VERDICTS = ("approve", "reject")
_RULE_RE = re.compile(r"(none|required|learned)|sample:(\d+(?:\.\d*)?|\.\d+)")


class ReviewError(InverityError):
    """A review operation that cannot be done (unknown asset, nothing to review)."""


class ReviewConflictError(ReviewError):
    """The output was already decided (the first verdict stands)."""


class StaleVerdictError(ReviewError):
    """The verdict names output bytes (sha256) that are no longer the asset's output."""


# ----------------------------------------------------------------------------------------------------------------
# The rule (the policy field) and the state machine: pure functions
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A parsed ``review`` policy field: ``kind`` in none/required/learned/sample, ``share`` for sample."""

    kind: str
    share: float = 0.0

    def __str__(self) -> str:
        return f"sample:{self.share:g}" if self.kind == "sample" else self.kind


def parse_rule(spec: Any) -> Rule:
    """Parse and validate a ``review`` field.

    Examples
    --------
    >>> str(parse_rule("learned")), str(parse_rule(" sample:0.02 "))
    ('learned', 'sample:0.02')
    >>> parse_rule("sample:2")
    Traceback (most recent call last):
    ...
    inverity.errors.PolicyError: review: sample share must be in (0, 1] (sample:0 would review nothing: use none), got 2
    """
    if not isinstance(spec, str):
        raise PolicyError(f"review must be a string (none, required, learned or sample:P), got {spec!r}")
    m = _RULE_RE.fullmatch(spec.strip())
    if m is None:
        raise PolicyError(f"review: unknown value {spec!r}; use none, required, learned or sample:P "
                          "(P a share in (0, 1], e.g. sample:0.02)")
    if m.group(1):
        return Rule(m.group(1))
    share = float(m.group(2))
    if not 0.0 < share <= 1.0:   # the same range as policy.Policy's check
        raise PolicyError(f"review: sample share must be in (0, 1] (sample:0 would review nothing: use none), "
                          f"got {m.group(2)}")
    return Rule("sample", share)


def rule_of(policy: Any) -> Rule:
    """The review rule of a policy: its ``review`` field (a policy given by name or path is read first), else
    ``none``."""
    spec = getattr(policy, "review", None)
    if spec is None and isinstance(policy, str):
        from .policy import get_policy

        try:
            spec = get_policy(policy).review
        except InverityError:
            spec = None
    return parse_rule(spec or "none")


def sampled(rule: Rule, input_sha256: str, policy_name: str) -> bool:
    """The seeded draw of ``sample:P``: True for a share P of inputs, the same answer every run.

    Examples
    --------
    >>> r = Rule("sample", 0.5)
    >>> draws = [sampled(r, hashlib.sha256(str(i).encode()).hexdigest(), "p") for i in range(2000)]
    >>> 0.45 < sum(draws) / len(draws) < 0.55, sampled(r, "ab", "p") == sampled(r, "ab", "p")
    (True, True)
    """
    digest = hashlib.sha256(f"inverity-review\0{policy_name}\0{input_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < rule.share


def covers(rule: Rule, stage: str | None, *, drawn: bool = True) -> bool:
    """Whether an output of ``stage`` must be reviewed under ``rule`` (``drawn``: the sample draw said yes)."""
    if rule.kind == "required":
        return True
    if rule.kind == "learned":
        return stage == "learned"
    if rule.kind == "sample":
        return drawn
    return False


def output_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 of an output file (``None`` when there is none)."""
    return sha256_file(path)


def initial_state(policy: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Set ``record["review"]`` for a freshly written output and return it (the pipeline's one call here).

    ``state`` is ``pending`` when the policy's rule covers this output, else ``not_required``; ``rule`` is the
    policy's ``review`` field, recorded in every decision record.
    """
    rule = rule_of(policy)
    drawn = rule.kind != "sample" or sampled(rule, str(record.get("input_sha256") or ""),
                                               str(getattr(policy, "name", policy)))
    stage = record.get("stage")
    waits = record.get("status") == "done" and covers(rule, stage, drawn=drawn)
    rev: dict[str, Any] = {"rule": str(rule), "state": "pending" if waits else "not_required", "by": None, "at": None,
           "note": None, "stage": stage, "output_sha256": output_sha256(record.get("output")),
           "excluded": [], "history": [], "policy_source": _policy_source(policy),
           "queued_at": _now() if waits else None}
    if rule.kind == "sample":
        rev["sampled"] = drawn
    record["review"] = rev
    return rev


def _policy_source(policy: Any) -> str | None:
    """Where a re-route finds the policy again: the TOML file (absolute) or the registered name."""
    src = getattr(policy, "source", None)
    if isinstance(src, str) and src not in ("", "builtin") and Path(src).is_file():
        return str(Path(src).resolve())
    return getattr(policy, "name", None) or (policy if isinstance(policy, str) else None)


def resolve_policy(review: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """The policy an output was made under (for a re-route or the floors in :func:`feedback`)."""
    from .policy import get_policy

    for spec in (review.get("policy_source"), record.get("policy_resolved"), record.get("policy")):
        if spec:
            try:
                return get_policy(spec)
            except InverityError:
                continue
    raise ReviewError(f"{record.get('input')}: the policy {record.get('policy')!r} it was made under is gone")


def transition(state: str, verdict: str) -> str:
    """The state after ``verdict``; only a pending output can be decided.

    Examples
    --------
    >>> transition("approved", "reject")
    Traceback (most recent call last):
    ...
    inverity.review.ReviewConflictError: already approved: the first verdict stands
    """
    if verdict not in VERDICTS:
        raise ReviewError(f"unknown verdict {verdict!r}; use approve or reject")
    if state != "pending":
        what = "not waiting for review" if state == "not_required" else f"already {state}"
        raise ReviewConflictError(f"{what}: the first verdict stands" if state != "not_required" else what)
    return "approved" if verdict == "approve" else "rejected"


def servable(review: Mapping[str, Any] | None, stage: str | None, sha256: str | None) -> tuple[bool, str]:
    """May an output of ``stage`` whose bytes hash to ``sha256`` be served, given the asset's review state?

    A stage the reviewers rejected never is; a stage the rule does not cover always is; a covered one only when
    its exact bytes were approved (or the output did not need review, e.g. not drawn by ``sample:P``).
    """
    if not review:
        return True, "no review"
    rule = parse_rule(str(review.get("rule") or "none"))
    if stage in (review.get("excluded") or []):
        return False, f"the {stage} output was rejected by a reviewer"
    state = str(review.get("state") or "not_required")
    if rule.kind == "learned" and stage != "learned":
        return True, f"learned outputs wait for review; {stage} does not"
    if rule.kind == "none":
        return True, "the policy asks for no review"
    if state == "not_required":
        if rule.kind == "sample" or stage == review.get("stage"):
            return True, "this output was not drawn for review" if rule.kind == "sample" else "no review needed"
        return False, f"the {stage} rendition was never reviewed"
    same = sha256 is not None and sha256 == review.get("output_sha256")
    if state == "approved" and same:
        return True, f"approved by {review.get('by')}"
    if state == "approved":
        return False, f"the {stage} rendition is not the output {review.get('by')} approved"
    if state == "pending":
        return False, f"the {review.get('stage')} output is waiting for review (policy review = {rule})"
    return False, f"the {review.get('stage')} output was rejected by {review.get('by')}"


# ----------------------------------------------------------------------------------------------------------------
# Persistence: review_state and the append-only review_log, in the catalog's SQLite file
# ----------------------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_state (
    asset          TEXT PRIMARY KEY,     -- the catalog's key (input path; the server's asset id)
    state          TEXT NOT NULL CHECK (state IN ('not_required', 'pending', 'approved', 'rejected')),
    rule           TEXT NOT NULL,
    policy         TEXT,
    stage          TEXT,
    kind           TEXT,
    output_sha256  TEXT,
    queued_at      TEXT NOT NULL,
    by             TEXT,
    at             TEXT,
    note           TEXT,
    excluded       TEXT NOT NULL DEFAULT '[]',   -- JSON list of stages rejected so far
    history        TEXT NOT NULL DEFAULT '[]',   -- JSON list of earlier verdicts on this asset
    rerouted       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS review_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    asset          TEXT NOT NULL,
    at             TEXT NOT NULL,
    by             TEXT NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('approve', 'reject')),
    note           TEXT NOT NULL,
    output_sha256  TEXT,
    stage          TEXT,
    policy         TEXT,
    context        TEXT NOT NULL DEFAULT '{}'    -- what the verifier saw: kind, OOD score, checks (JSON)
);
CREATE TRIGGER IF NOT EXISTS review_log_no_update BEFORE UPDATE ON review_log
    BEGIN SELECT RAISE(ABORT, 'review_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS review_log_no_delete BEFORE DELETE ON review_log
    BEGIN SELECT RAISE(ABORT, 'review_log is append-only'); END;
"""
_STATE_COLS = ("asset", "state", "rule", "policy", "stage", "kind", "output_sha256", "queued_at", "by", "at",
               "note", "excluded", "history", "rerouted")


def _now() -> str:
    """UTC, milliseconds (the queue's order is the order outputs arrived)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context(record: Mapping[str, Any]) -> dict[str, Any]:
    prof = record.get("profile") or {}
    chosen = next((a for a in record.get("attempts") or [] if a.get("chosen")), None)
    return {"kind": prof.get("kind"), "ood_score": prof.get("ood_score"),
            "in_distribution": prof.get("in_distribution"), "quality": record.get("quality"),
            "bytes": record.get("bytes"), "policy": record.get("policy_resolved") or record.get("policy"),
            "policy_source": (record.get("review") or {}).get("policy_source"),
            "checks": record.get("checks") or {},
            "passed": None if chosen is None else bool(chosen.get("passed", True)),
            "failures": [] if chosen is None else list(chosen.get("failures") or [])}


class ReviewBook:
    """The review tables of one catalog file. Open per operation (a connection is not shared across threads).

    Parameters
    ----------
    path
        The catalog's SQLite file (``OUTDIR/inverity.sqlite`` or the server store's); the tables are created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE), so two reviewers serialise on the lock
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ReviewBook":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------------------------
    @staticmethod
    def _state(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["excluded"], d["history"] = json.loads(d["excluded"]), json.loads(d["history"])
        return d

    def get(self, asset: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM review_state WHERE asset = ?", (asset,)).fetchone()
        return None if row is None else self._state(row)

    def current(self, asset: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """The review of ``record``'s current output: the table's row when it is about these bytes, else the
        record's own ``review`` (a fresh output not yet in the table)."""
        rev = dict(record.get("review") or {"rule": "none", "state": "not_required"})
        row = self.get(asset)
        if row is not None and row["output_sha256"] == rev.get("output_sha256"):
            rev.update({k: row[k] for k in ("state", "by", "at", "note", "excluded", "history", "rerouted")})
        elif row is not None:          # new bytes for this asset: earlier rejections still hold
            rev["excluded"] = sorted(set(rev.get("excluded") or []) | set(row["excluded"]))
            rev["history"] = row["history"] + list(rev.get("history") or [])
        return rev

    def queue(self, states: Sequence[str] = ("pending",)) -> list[dict[str, Any]]:
        """Rows in ``states``, oldest first."""
        marks = ",".join("?" * len(states))
        return [self._state(r) for r in self._db.execute(
            f"SELECT * FROM review_state WHERE state IN ({marks}) ORDER BY queued_at, asset", tuple(states))]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM review_state GROUP BY state"):
            out[state] = n
        out["rerouted"] = int(self._db.execute("SELECT COUNT(*) FROM review_state WHERE rerouted > 0")
                              .fetchone()[0])
        return out

    def log(self) -> Iterator[dict[str, Any]]:
        """The review log, oldest first."""
        for r in self._db.execute("SELECT * FROM review_log ORDER BY seq"):
            d = dict(r)
            d["context"] = json.loads(d["context"])
            yield d

    # -- writing -------------------------------------------------------------------------------------------------
    def _put(self, row: dict[str, Any]) -> None:
        vals = [json.dumps(row[c]) if c in ("excluded", "history") else row.get(c) for c in _STATE_COLS]
        self._db.execute(f"INSERT OR REPLACE INTO review_state({','.join(_STATE_COLS)}) "
                         f"VALUES ({','.join('?' * len(_STATE_COLS))})", vals)

    def _row_for(self, asset: str, record: Mapping[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        rev = dict(record.get("review") or {})
        return {"asset": asset, "state": rev.get("state", "not_required"), "rule": rev.get("rule", "none"),
                "policy": record.get("policy_resolved") or record.get("policy"), "stage": record.get("stage"),
                "kind": (record.get("profile") or {}).get("kind"), "output_sha256": rev.get("output_sha256"),
                "queued_at": rev.get("queued_at") or _now(), "by": None, "at": None, "note": None,
                "excluded": sorted(set(rev.get("excluded") or []) | set((old or {}).get("excluded") or [])),
                "history": (old or {}).get("history") or list(rev.get("history") or []),
                "rerouted": int((old or {}).get("rerouted") or 0) + (1 if rev.get("rerouted_from") else 0)}

    def register(self, asset: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Put ``record``'s output in the table (idempotent for the same bytes); returns its current review."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            old = self.get(asset)
            rev = record.get("review") or {}
            if record.get("status") == "done" and rev and (
                    old is None or old["output_sha256"] != rev.get("output_sha256")):
                self._put(self._row_for(asset, record, old))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self.current(asset, record)

    def sync(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Register every ``(asset, record)`` whose output needs review and is not in the table yet."""
        for asset, rec in records:
            rev = rec.get("review") or {}
            if rev.get("state") == "pending" and rec.get("status") == "done":
                row = self.get(asset)
                if row is None or row["output_sha256"] != rev.get("output_sha256"):
                    self.register(asset, rec)

    def decide(self, asset: str, record: Mapping[str, Any], verdict: str, by: str, note: str = "", *,
               expected_sha256: str | None = None) -> dict[str, Any]:
        """Apply a verdict to the asset's current output, atomically; returns the new review state.

        Raises
        ------
        ReviewConflictError
            The output is not pending (already decided, or never needed review): the first verdict stands.
        StaleVerdictError
            ``expected_sha256`` is not the current output's sha256.
        """
        if not by or not str(by).strip():
            raise ReviewError("a verdict needs a reviewer name")
        note = str(note or "").strip()
        if verdict == "reject" and not note:
            raise ReviewError("a rejection needs a note (why, for the record and the next training run)")
        self._db.execute("BEGIN IMMEDIATE")        # the write lock first: a second reviewer waits, then sees it
        try:
            row = self.get(asset)
            rev = record.get("review") or {}
            if row is None or row["output_sha256"] != rev.get("output_sha256"):
                if rev.get("state") != "pending":
                    raise ReviewConflictError(f"asset {asset}: "
                                              f"{'not waiting for review' if not rev else 'nothing pending'}")
                row = self._row_for(asset, record, row)
            if expected_sha256 is not None and expected_sha256 != row["output_sha256"]:
                raise StaleVerdictError(f"asset {asset}: stale verdict for output sha256 {expected_sha256[:12]}…; "
                                        f"the current output is {str(row['output_sha256'])[:12]}…")
            try:
                new = transition(row["state"], verdict)
            except ReviewConflictError as exc:
                if row.get("by"):
                    raise ReviewConflictError(f"asset {asset}: already {row['state']} by {row['by']} at "
                                              f"{row['at']}: the first verdict stands") from None
                raise ReviewConflictError(f"asset {asset}: {exc}") from None
            at = _now()
            row.update(state=new, by=by, at=at, note=note)
            if new == "rejected":
                row["excluded"] = sorted(set(row["excluded"]) | {str(row["stage"])})
            row["history"] = list(row["history"]) + [{"verdict": verdict, "by": by, "at": at, "note": note,
                                                      "stage": row["stage"], "output_sha256": row["output_sha256"]}]
            self._put(row)
            self._db.execute(
                "INSERT INTO review_log(asset, at, by, verdict, note, output_sha256, stage, policy, context)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (asset, at, by, verdict, note, row["output_sha256"], row["stage"], row["policy"],
                 json.dumps(_context(record), sort_keys=True, default=str)))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self.current(asset, record)

    def reroute_failed(self, asset: str, why: str) -> None:
        """Keep a rejected asset rejected, saying why no other stage could take its place."""
        with self._db:
            self._db.execute("UPDATE review_state SET note = note || ? WHERE asset = ?",
                             (f" [re-route: {why}]", asset))


# ----------------------------------------------------------------------------------------------------------------
# Re-routing a rejected output
# ----------------------------------------------------------------------------------------------------------------
def reroute(path: str | os.PathLike[str], policy: Any, review: Mapping[str, Any], *, outdir: str | os.PathLike[str],
            asset: Any = None, toolkit: Any = None) -> Any:
    """Compress ``path`` again under ``policy`` with every rejected stage excluded; returns the pipeline's Result.

    The new record's ``review`` carries the rejections (``excluded``, ``history``: who, when, why) and a reason
    line says what was re-routed; its state follows the same rule as any output (pending when covered).

    Raises
    ------
    NoCandidatePassedError
        No stage is left that passes verification (the asset stays rejected).
    """
    from .pipeline import compress_one

    excluded = sorted(set(review.get("excluded") or []))
    res = compress_one(path, policy, outdir=outdir, asset=asset, toolkit=toolkit, exclude_stages=excluded)
    rev = res.record.setdefault("review", {})
    rev["excluded"] = excluded
    rev["history"] = list(review.get("history") or [])
    rev["rerouted_from"] = review.get("stage")
    last = rev["history"][-1] if rev["history"] else {}
    res.record["reasons"].append(f"re-routed after review: {last.get('stage', review.get('stage'))} rejected by "
                                 f"{last.get('by', '?')} ({last.get('note') or 'no note'}); excluded: "
                                 f"{', '.join(excluded)}")
    return res


# ----------------------------------------------------------------------------------------------------------------
# Feedback: where reviewers rejected the learned stage
# ----------------------------------------------------------------------------------------------------------------
_HIGHER = check_names(stricter="higher")   # the check classes say which way a margin runs
_LOWER = check_names(stricter="lower")


def _margin(checks: Mapping[str, Any], floors: Any) -> tuple[float | None, str | None]:
    """The smallest relative margin of a check over its floor (how close the verifier came to refusing)."""
    best: tuple[float | None, str | None] = (None, None)
    for name in _HIGHER + _LOWER:
        v, f = checks.get(name), getattr(floors, name, None) if floors is not None else None
        if not isinstance(v, (int, float)) or not isinstance(f, (int, float)) or isinstance(f, bool) or not f:
            continue
        m = (v - f) / abs(f) if name in _HIGHER else (f - v) / abs(f)
        if best[0] is None or m < best[0]:
            best = (round(float(m), 4), name)
    return best


def _worst_band(checks: Mapping[str, Any]) -> str | None:
    kept = checks.get("band_kept")
    if isinstance(kept, Mapping) and kept:
        band, v = min(kept.items(), key=lambda kv: kv[1] if isinstance(kv[1], (int, float)) else 9)
        return f"{band} cycles/px ({100 * float(v):.0f}% kept)"
    at = checks.get("tile_band_kept_at")
    return f"{at[2]} cycles/px (window)" if isinstance(at, list) and len(at) == 3 else None


def feedback(log: Iterable[Mapping[str, Any]], stage: str | None = "learned") -> dict[str, Any]:
    """Rejections of ``stage`` (all stages when ``None``): each with kind, OOD score, worst band and verifier
    margin; verifier misses (every check had passed) first, widest margin first; counts by kind."""
    from .policy import get_policy

    items: list[dict[str, Any]] = []
    for e in log:
        if e.get("verdict") != "reject" or (stage is not None and e.get("stage") != stage):
            continue
        ctx = dict(e.get("context") or {})
        checks = ctx.get("checks") or {}
        floors = None
        for spec in (ctx.get("policy_source"), ctx.get("policy"), e.get("policy")):
            try:
                floors = get_policy(spec).floors if spec else None
            except Exception:  # noqa: BLE001 - a policy file gone since: margins unknown, the rest still counts
                continue
            if floors is not None:
                break
        margin, tightest = _margin(checks, floors)
        items.append({"asset": e.get("asset"), "by": e.get("by"), "at": e.get("at"), "note": e.get("note"),
                      "stage": e.get("stage"), "kind": ctx.get("kind"), "ood_score": ctx.get("ood_score"),
                      "worst_band": _worst_band(checks), "margin": margin, "tightest_check": tightest,
                      "verifier_miss": bool(ctx.get("passed", True)) and not ctx.get("failures"),
                      "output_sha256": e.get("output_sha256")})
    items.sort(key=lambda i: (not i["verifier_miss"], -(i["margin"] if i["margin"] is not None else -1e9)))
    by_kind: dict[str, int] = {}
    for i in items:
        by_kind[str(i["kind"])] = by_kind.get(str(i["kind"]), 0) + 1
    oods = [i["ood_score"] for i in items if isinstance(i["ood_score"], (int, float))]
    return {"stage": stage, "rejections": len(items), "verifier_misses": sum(i["verifier_miss"] for i in items),
            "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "ood_score": {"min": min(oods), "max": max(oods), "mean": round(sum(oods) / len(oods), 4)}
            if oods else None, "items": items}


def feedback_text(fb: Mapping[str, Any]) -> list[str]:
    """The feedback report as lines of text (``inverity review report``)."""
    what = fb["stage"] or "any stage"
    lines = [f"rejections of {what}: {fb['rejections']} ({fb['verifier_misses']} with every verifier check "
             "passed: misses of the verifier)"]
    if fb["by_kind"]:
        lines.append("by content kind: " + ", ".join(f"{k} {n}" for k, n in fb["by_kind"].items()))
    if fb["ood_score"]:
        o = fb["ood_score"]
        lines.append(f"OOD score of rejected outputs: min {o['min']:.3g}, mean {o['mean']:.3g}, max {o['max']:.3g}")
    for i in fb["items"]:
        margin = "—" if i["margin"] is None else f"{100 * i['margin']:+.1f}% on {i['tightest_check']}"
        ood = "—" if i["ood_score"] is None else format(i["ood_score"], ".3g")
        lines.append(f"{'MISS ' if i['verifier_miss'] else '     '}{i['asset']}: {i['kind']}, OOD {ood}, "
                     f"worst band {i['worst_band'] or '—'}, margin {margin}; {i['by']}: {i['note']}")
    return lines


def load_verdicts(path: str | os.PathLike[str]) -> tuple[str, list[dict[str, Any]]]:
    """Read a verdicts file exported by the audit page: ``{"reviewer": NAME, "verdicts": [{"id", "verdict",
    "note", "output_sha256"}, ...]}``; returns ``(reviewer, verdicts)``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read verdicts ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("reviewer"), str) or not data["reviewer"].strip():
        raise InputError(f"{p}: a verdicts file needs a \"reviewer\" name")
    items = data.get("verdicts")
    if not isinstance(items, list):
        raise InputError(f"{p}: \"verdicts\" must be a list")
    out = []
    for n, v in enumerate(items):
        if (not isinstance(v, dict) or not isinstance(v.get("id"), str) or v.get("verdict") not in VERDICTS
                or not isinstance(v.get("output_sha256"), str)):
            raise InputError(f"{p}: verdict #{n + 1} needs id, verdict (approve|reject) and output_sha256")
        out.append(dataclasses.asdict(_Verdict(v["id"], v["verdict"], str(v.get("note") or ""),
                                               v["output_sha256"])))
    return data["reviewer"].strip(), out


@dataclass(frozen=True)
class _Verdict:
    id: str
    verdict: str
    note: str
    output_sha256: str


# ----------------------------------------------------------------------------------------------------------------
# An ``inverity compress`` output directory (the CLI, for teams without the service)
# ----------------------------------------------------------------------------------------------------------------
#: where a rejected output is moved, inside the output directory (out of the delivery tree, kept for the record)
REJECTED_DIR = "review-rejected"


def _catalog_path(outdir: str | os.PathLike[str]) -> Path:
    from .catalog import CATALOG_NAME

    p = Path(outdir) / CATALOG_NAME
    if not p.is_file():
        raise InputError(f"{outdir}: no catalog ({CATALOG_NAME}); expected an 'inverity compress' output directory")
    return p


def pending(outdir: str | os.PathLike[str], states: Sequence[str] = ("pending",)) -> list[dict[str, Any]]:
    """The review queue of an output directory, oldest first (every output needing review is registered)."""
    from .catalog import Catalog

    path = _catalog_path(outdir)
    with Catalog(path) as cat, ReviewBook(path) as book:
        rows = {r["input"]: r["record"] for r in cat.rows()}
        book.sync(rows.items())
        out = []
        for row in book.queue(states):
            rec = rows.get(row["asset"]) or {}
            out.append(dict(row, bytes=rec.get("bytes"), output=rec.get("output_rel") or rec.get("output")))
        return out


def apply_verdict(outdir: str | os.PathLike[str], asset: str, verdict: str, by: str, note: str = "", *,
                  expected_sha256: str | None = None, toolkit: Any = None) -> dict[str, Any]:
    """Decide one pending output of an output directory; a rejection re-routes the asset at once.

    Returns ``{"asset", "state", "rerouted": bool, "stage", "review"}`` where ``stage``/``review`` describe the
    asset's output after the verdict (the new output when re-routed).
    """
    from .catalog import Catalog
    from .pipeline import Asset

    path = _catalog_path(outdir)
    root = path.parent
    if (root / "originals").is_dir() and (root / "outputs").is_dir():
        raise ReviewError(f"{outdir} is a server store: decide through the service (POST /v1/assets/ID/review "
                          "or the /review page), which re-routes and serves in place")
    with Catalog(path) as cat, ReviewBook(path) as book:
        row = cat.get(asset)
        if row is None or row["status"] != "done":
            raise ReviewError(f"{outdir}: no output for {asset!r} in the catalog")
        record = row["record"]
        rev = book.decide(asset, record, verdict, by, note, expected_sha256=expected_sha256)
        result = {"asset": asset, "state": rev["state"], "rerouted": False, "stage": record.get("stage"),
                  "review": rev}
        if rev["state"] != "rejected":
            cat.put(dict(record, review=rev))      # the record says what the review table says
            return result
        old = root / row["output"] if row["output"] else None
        keep_suffix = old is not None and old.stem == Path(asset).name
        src = record.get("input_path") or asset
        try:
            res = reroute(src, resolve_policy(rev, record), rev, outdir=root,
                          asset=Asset(str(src), str(Path(src).parent), asset, keep_suffix=keep_suffix),
                          toolkit=toolkit)
        except InverityError as exc:
            book.reroute_failed(asset, str(exc))
            return dict(result, error=str(exc))
        new = res.record
        if old is not None and old.is_file() and old.resolve() != Path(new["output"]).resolve():
            dest = root / REJECTED_DIR / row["output"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, dest)
        cat.put(new)
        rev = book.register(asset, new)
        return dict(result, state=rev["state"], rerouted=True, stage=new.get("stage"), review=rev)


def import_verdicts(outdir: str | os.PathLike[str], path: str | os.PathLike[str],
                    toolkit: Any = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Apply a verdicts file (see :func:`load_verdicts`); returns ``(applied, refused)``.

    Each verdict carries the sha256 of the output its reviewer saw: one for other bytes (re-run, re-routed) is
    refused as stale, one for an output already decided is refused as a conflict; the others are applied.
    """
    reviewer, verdicts = load_verdicts(path)
    applied, refused = [], []
    for v in verdicts:
        try:
            applied.append(apply_verdict(outdir, v["id"], v["verdict"], reviewer, v["note"],
                                         expected_sha256=v["output_sha256"], toolkit=toolkit))
        except ReviewError as exc:
            refused.append(str(exc))
    return applied, refused


def review_log(outdir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The append-only review log of an output directory, oldest first."""
    path = _catalog_path(outdir)
    with ReviewBook(path) as book:
        return list(book.log())


def audit_context(outdir: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What the static audit page shows about review: the outputs waiting (for its verdict export, which
    ``inverity review OUTDIR --import`` applies) and the reviewers' feedback on the learned stage."""
    from .catalog import CATALOG_NAME

    path = Path(outdir) / CATALOG_NAME
    if not path.is_file():
        return {"items": [], "feedback": None}
    with ReviewBook(path) as book:
        items = []
        for rec in records:
            if rec.get("status", "done") != "done" or not rec.get("review") or not rec.get("input"):
                continue
            cur = book.current(str(rec["input"]), rec)
            if cur.get("state") in ("pending", "approved", "rejected"):
                items.append({"id": rec["input"], "state": cur["state"], "stage": rec.get("stage"),
                              "output_sha256": cur.get("output_sha256"), "by": cur.get("by"),
                              "note": cur.get("note")})
        log = list(book.log())
    fb = feedback(log) if log else None
    return {"items": items, "feedback": fb, "all_rejections": sum(e["verdict"] == "reject" for e in log)}
