"""Human review in the service: the review desk (verdicts, re-routing, sessions), the gate on serving.

No FastAPI here: :class:`~inverity.server._state.AppState` builds a :class:`ReviewDesk`, and
:mod:`inverity.server.routes.review` serves it:

``GET /v1/review``
    The queue, oldest first (``?policy=&kind=&stage=``).
``GET /v1/assets/{id}/review`` / ``POST /v1/assets/{id}/review``
    The asset's review ``{state, by, at, note, ...}``; a verdict ``{"verdict": "approve"|"reject", "note": ...}``.
    The first verdict stands (the second gets 409). A rejection re-routes the asset at once without the rejected
    stage(s); the new output follows the same rule.
``GET /review`` (+ ``/review/login``, ``/review/logout``, ``/review/static/*``, ``/review/item/{id}``,
``/review/img/{id}/{sha}/{kind}.png``)
    The review page: no external resource (strict Content-Security-Policy), login with the reviewer's token
    once (an HttpOnly, SameSite=Strict session cookie; every state-changing request carries the session's CSRF
    token in ``X-CSRF-Token``), every user-controlled string inserted as text, never as markup.

Reviewers are named: ``inverity serve --token NAME=SECRET`` (repeatable) — their tokens also work as bearer
tokens for the rest of the API (:meth:`AppState.token_ok <inverity.server._state.AppState.token_ok>`), and the
name is what the review log records. :func:`gate` is what the fetch endpoint calls before serving a rendition —
the one read path every access rule (bearer, signed URL, public reads, ``HEAD``) goes through: a covered output
that is pending or rejected is never served.
"""
import dataclasses
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .. import review
from ..errors import InverityError

__all__ = ["ReviewDesk", "NotFound", "gate", "review_of", "register_policy_files", "parse_tokens",
           "SESSION_COOKIE", "SESSION_SECONDS"]

SESSION_COOKIE = "inverity_review"
SESSION_SECONDS = 12 * 3600
_RENDER_CACHE_ITEMS = 64
_REVIEW_CACHE_ITEMS = 20_000


def parse_tokens(values: "list[str] | tuple[str, ...] | None") -> "tuple[Optional[str], tuple[tuple[str, str], ...]]":
    """Split ``--token`` values into the client token (a bare secret) and named reviewers (``NAME=SECRET``).

    Examples
    --------
    >>> parse_tokens(["s3cret", "alice=a-token", "bob=b-token"])
    ('s3cret', (('alice', 'a-token'), ('bob', 'b-token')))
    """
    client: Optional[str] = None
    reviewers: list[tuple[str, str]] = []
    for v in values or ():
        name, sep, secret = v.partition("=")
        if sep and name.strip() and secret:
            if any(n == name.strip() for n, _ in reviewers):
                raise InverityError(f"--token: reviewer {name.strip()!r} given twice")
            reviewers.append((name.strip(), secret))
        elif client is None and v:
            client = v
        else:
            raise InverityError("--token: give one client token and any number of NAME=SECRET reviewer tokens")
    return client, tuple(reviewers)


def register_policy_files(paths: "list[Any] | tuple[Any, ...]") -> list[str]:
    """Register operator policy files (``serve --policy FILE``) so clients can name them; returns the names."""
    from ..policy import BUILTIN_POLICIES, load_policy_file, register_policy

    names = []
    for p in paths:
        pol = load_policy_file(p)
        if pol.name in BUILTIN_POLICIES:
            raise InverityError(f"{p}: policy name {pol.name!r} is a built-in's; give the file its own name")
        try:
            register_policy(dataclasses.replace(pol, source=str(Path(p).resolve())))
        except ValueError:
            raise InverityError(f"{p}: another policy named {pol.name!r} is already registered") from None
        names.append(pol.name)
    return names


class ReviewDesk:
    """Review state of one server: sessions, the review tables of the store's catalog, caches.

    Its blocking methods (:meth:`current`, :meth:`queue`, :meth:`decide`, :meth:`render`) run in worker threads;
    they never touch the app's event-loop caches — :meth:`decide` returns what the caller must refresh there.
    """

    def __init__(self, state: Any) -> None:
        self.state = state
        self.store = state.store
        self.sessions: dict[str, tuple[str, str, float]] = {}   # sid -> (reviewer, csrf, expires); event loop only
        self.reviews: dict[str, dict[str, Any]] = {}             # aid -> current review (in-process cache)
        self.renders: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()                              # one verdict at a time in this process

    # -- identities ---------------------------------------------------------------------------------------------
    def reviewer_for(self, token: Optional[str]) -> Optional[str]:
        return self.state.reviewer_for(token)  # type: ignore[no-any-return]

    def new_session(self, name: str) -> tuple[str, str]:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        self.sessions = {k: v for k, v in self.sessions.items() if v[2] > now}
        self.sessions[sid] = (name, csrf, now + SESSION_SECONDS)
        return sid, csrf

    def session(self, sid: Optional[str]) -> Optional[tuple[str, str]]:
        got = self.sessions.get(sid or "")
        if got is None or got[2] < time.time():
            return None
        return got[0], got[1]

    # -- the review tables (worker threads) ---------------------------------------------------------------------
    def book(self) -> review.ReviewBook:
        return review.ReviewBook(self.store.catalog_path)

    def current(self, aid: str, record: dict[str, Any]) -> dict[str, Any]:
        cached = self.reviews.get(aid)
        if cached is not None and cached.get("output_sha256") == (record.get("review") or {}).get("output_sha256"):
            return cached
        with self.book() as book:
            rev = book.current(aid, record)
        if len(self.reviews) >= _REVIEW_CACHE_ITEMS:
            self.reviews.clear()      # a cache: dropping it only costs one read per asset
        self.reviews[aid] = rev
        return rev

    def queue(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        rows = self.store.done_records()
        with self.book() as book:
            book.sync(rows.items())
            items = book.queue()
            states = book.counts()
            rejected = sum(e["verdict"] == "reject" for e in book.log())
        counts = {"pending": states["pending"], "approved": states["approved"], "rejected": rejected,
                  "rerouted": states["rerouted"]}
        out = []
        for it in items:
            rec = rows.get(it["asset"]) or {}
            prof = rec.get("profile") or {}
            out.append({"id": it["asset"], "state": it["state"], "policy": it["policy"], "stage": it["stage"],
                        "kind": it["kind"], "queued_at": it["queued_at"], "output_sha256": it["output_sha256"],
                        "bytes": rec.get("bytes"), "quality": rec.get("quality"), "filename": rec.get("filename"),
                        "width": rec.get("width"), "height": rec.get("height"), "rule": it["rule"],
                        "ood_score": prof.get("ood_score"), "in_distribution": prof.get("in_distribution"),
                        "kind_confidence": prof.get("kind_confidence"), "checks": rec.get("checks") or {},
                        "reasons": _reasons(rec, it), "history": it["history"], "excluded": it["excluded"]})
        return out, counts

    def decide(self, aid: str, verdict: str, by: str, note: str, *,
               expected_sha256: Optional[str] = None) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
        """Apply a verdict; re-route on rejection.

        Returns ``({"id", "review", "decision"}, rendition)``: the answer (public record) and, after a re-route,
        the new output's rendition record — the caller puts both in the app's caches (event-loop thread).
        """
        with self.lock:
            row = self.store.catalog_get(aid)
            if row is None or row["status"] != "done":
                raise NotFound(f"unknown asset id {aid[:64]!r}")
            record = row["record"]
            with self.book() as book:
                rev = book.decide(aid, record, verdict, by, note, expected_sha256=expected_sha256)
            self.reviews.pop(aid, None)
            meta = None
            if rev["state"] == "rejected":
                record, rev, meta = self._reroute(aid, record, rev)
            else:
                record = dict(record, review=rev)
                self.store.catalog_put(record)
            self.reviews[aid] = rev
            return {"id": aid, "review": rev, "decision": self.store.public(record)}, meta

    def _reroute(self, aid: str, record: dict[str, Any], rev: dict[str, Any]) -> tuple[
            dict[str, Any], dict[str, Any], Optional[dict[str, Any]]]:
        try:
            new, meta = self.store.reroute(aid, record, rev)
        except InverityError as exc:      # no stage left that passes: the asset stays rejected, saying why
            with self.book() as book:
                book.reroute_failed(aid, str(exc))
                rev = book.current(aid, record)
            record = dict(record, review=rev)
            self.store.catalog_put(record)
            return record, rev, None
        with self.book() as book:
            rev = book.register(aid, new)
        return new, rev, meta

    # -- the page's images --------------------------------------------------------------------------------------
    def render(self, aid: str) -> dict[str, Any]:
        """Original, reconstruction and error map (PNG, display size) and the worst windows of an asset."""
        row = self.store.catalog_get(aid)
        if row is None or row["status"] != "done" or not row["output"]:
            raise NotFound(f"unknown asset id {aid[:64]!r}")
        sha = (row["record"].get("review") or {}).get("output_sha256") or ""
        key = (aid, sha)
        got = self.renders.get(key)
        if got is None:
            from ..report import review_images   # lazy: the service imports the report's pixel work on first use

            got = review_images(self.store.find_original(aid), self.store.path_of(row["output"]))
            if len(self.renders) >= _RENDER_CACHE_ITEMS:
                self.renders.pop(next(iter(self.renders)))
            self.renders[key] = got
        return dict(got, sha=sha)


class NotFound(Exception):
    """No such (compressed) asset: the endpoints answer 404."""


def _reasons(record: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """The decision record's reasons in words, with why the output waits first."""
    rule = row.get("rule")
    why = {"required": "policy {p}: every output waits for a reviewer (review = required)",
           "learned": "policy {p}: outputs of the learned stage wait for a reviewer (review = learned)"}.get(
        str(rule), "policy {p}: this output was drawn for review (review = {r})")
    out = [why.format(p=row.get("policy"), r=rule)]
    for h in row.get("history") or []:
        done = {"approve": "approved", "reject": "rejected"}.get(str(h.get("verdict")), h.get("verdict"))
        out.append(f"{h.get('stage')} output {done} by {h.get('by')}: {h.get('note') or 'no note'}")
    return out + [str(r) for r in record.get("reasons") or []]


async def review_of(state: Any, aid: str, record: dict[str, Any]) -> dict[str, Any]:
    """The current review of an asset, as its JSON carries it: ``{state, by, at, note, ...}``."""
    desk: Optional[ReviewDesk] = getattr(state, "review_desk", None)
    rev = record.get("review")
    if desk is None or not rev or rev.get("rule", "none") == "none":   # nothing a verdict could have changed
        return dict(rev or {"state": "not_required", "by": None, "at": None, "note": None})
    return await state.call(desk.current, aid, record)


async def gate(state: Any, aid: str, metas: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Optional[dict]]:
    """The renditions of ``metas`` that may be served; when review holds every one back, also why (for a 409).

    A rendition is served only if :func:`inverity.review.servable` allows its stage and exact bytes (ETag is
    the sha256 of the bytes) given the asset's current review.
    """
    record = state.assets.get(aid)
    if record is None:
        record = await state.call(state.store.asset, aid)
    if not record or (record.get("review") or {}).get("rule", "none") == "none":
        return metas, None          # no review under this policy: nothing to look up
    rev = await review_of(state, aid, record)
    ok, why = [], []
    for m in metas:
        stage = (m.get("record") or {}).get("stage")
        allowed, reason = review.servable(rev, stage, m.get("etag"))
        (ok.append(m) if allowed else why.append(reason))
    if ok or not why:
        return ok, None
    public = {k: rev.get(k) for k in ("state", "by", "at", "note", "rule", "stage", "excluded")}
    return ok, {"error": f"not served: {'; '.join(dict.fromkeys(why))}", "review": public}
