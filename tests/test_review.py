"""Human review (inverity.review): the policy field, the state machine, the review tables, the CLI.

The state machine is checked with hypothesis against the invariant of issue #16: no path serves a pending or a
rejected output. The CLI runs the real pipeline on two small skimage crops under a ``review = "required"``
policy (no learned stage needed).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from inverity import review
from inverity.cli import main
from inverity.errors import PolicyError
from inverity.policy import Policy, get_policy, load_policy_file


# --------------------------------------------------------------------------------------------------------------
# the policy field
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,kind,share", [("none", "none", 0), ("required", "required", 0),
                                             ("learned", "learned", 0), ("sample:0.02", "sample", 0.02),
                                             ("sample:1", "sample", 1.0), ("sample:.5", "sample", 0.5)])
def test_parse_rule(spec: str, kind: str, share: float) -> None:
    r = review.parse_rule(spec)
    assert (r.kind, r.share) == (kind, share)
    assert review.parse_rule(str(r)) == r


@pytest.mark.parametrize("spec", ["", "always", "sample", "sample:", "sample:1.5", "sample:-0.1", "Learned", 3])
def test_parse_rule_refuses(spec: Any) -> None:
    with pytest.raises(PolicyError, match="review"):
        review.parse_rule(spec)


def test_policy_review_field(tmp_path: Path) -> None:
    assert get_policy("controlled").review == "learned"
    for name in ("archive", "diagnostic", "delivery", "auto"):
        assert get_policy(name).review == "none"
    f = tmp_path / "p.toml"
    f.write_text('name = "p"\nextends = "delivery"\nreview = "sample:0.02"\n')
    p = load_policy_file(f)
    assert p.review == "sample:0.02" and Policy.from_dict(p.to_dict(), source=p.source) == p
    f.write_text('name = "p"\nextends = "controlled"\n')
    assert load_policy_file(f).review == "learned"          # inherited from the built-in it extends
    f.write_text('name = "p"\nreview = "sometimes"\n')
    with pytest.raises(PolicyError, match="review"):
        load_policy_file(f)
    f.write_text('name = "p"\nreview = true\n')
    with pytest.raises(PolicyError, match="review"):
        load_policy_file(f)


#: a share this input (sha ab…ab under policy "p") is not drawn at: a policy's sample share must be > 0
RARELY = "sample:0.001"


def _record(tmp_path: Path, stage: str, sha_in: str = "ab" * 32, payload: bytes = b"out") -> dict[str, Any]:
    out = tmp_path / f"o-{stage}-{len(payload)}"
    out.write_bytes(payload)
    return {"input": "x.png", "input_sha256": sha_in, "status": "done", "stage": stage, "output": str(out),
            "policy_resolved": "p", "profile": {"kind": "photo", "ood_score": 0.3}, "checks": {"psnr": 40.0},
            "attempts": [{"stage": stage, "passed": True, "chosen": True}], "reasons": []}


@pytest.mark.parametrize("rule,stage,state", [("none", "avif", "not_required"), ("required", "avif", "pending"),
                                              ("learned", "avif", "not_required"), ("learned", "learned", "pending"),
                                              ("sample:1", "jpeg", "pending"), (RARELY, "jpeg", "not_required")])
def test_initial_state(tmp_path: Path, rule: str, stage: str, state: str) -> None:
    rec = _record(tmp_path, stage)
    rev = review.initial_state(Policy("p", review=rule), rec)
    assert rec["review"] is rev and rev["state"] == state and rev["rule"] == rule.replace("sample:1", "sample:1")
    assert rev["output_sha256"] == review.output_sha256(rec["output"]) and len(rev["output_sha256"]) == 64
    assert (rev["by"], rev["at"], rev["note"]) == (None, None, None)


def test_sample_is_seeded_and_proportional(tmp_path: Path) -> None:
    import hashlib

    pol = Policy("p", review="sample:0.1")
    rule = review.parse_rule(pol.review)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    draws = [review.sampled(rule, s, "p") for s in shas]
    assert draws == [review.sampled(rule, s, "p") for s in shas]    # the same input is drawn the same way
    assert 0.08 < sum(draws) / len(draws) < 0.12
    assert draws != [review.sampled(rule, s, "q") for s in shas]    # another policy draws another sample
    rec = _record(tmp_path, "avif")
    for s, drawn in list(zip(shas, draws))[:40]:                    # and the record says what was drawn
        rev = review.initial_state(pol, dict(rec, input_sha256=s))
        assert rev["state"] == ("pending" if drawn else "not_required") and rev["sampled"] is drawn


def test_transition_table() -> None:
    assert review.transition("pending", "approve") == "approved"
    assert review.transition("pending", "reject") == "rejected"
    for state in ("approved", "rejected", "not_required"):
        for verdict in review.VERDICTS:
            with pytest.raises(review.ReviewConflictError):
                review.transition(state, verdict)
    with pytest.raises(review.ReviewError, match="unknown verdict"):
        review.transition("pending", "maybe")


# --------------------------------------------------------------------------------------------------------------
# the state machine, with the review tables, against "nothing pending or rejected is ever served"
# --------------------------------------------------------------------------------------------------------------
STAGES = ("learned", "avif", "webp", "jpeg", "png")


class ReviewMachine(RuleBasedStateMachine):
    """One asset through verdicts and re-routes; every step checks what would be served."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.book = review.ReviewBook(self.dir / "inverity.sqlite")
        self.rule = "required"
        self.rejected: set[tuple[str, str]] = set()        # (stage, sha) a reviewer rejected
        self.n = 0
        self.record: dict[str, Any] | None = None

    def _new_output(self, stage: str) -> None:
        self.n += 1
        rec = _record(self.dir, stage, payload=f"out{self.n}".encode())
        old = self.record
        review.initial_state(Policy("p", review=self.rule), rec)
        if old is not None:
            prev = self.book.current("a", old)
            rec["review"].update(excluded=prev["excluded"], history=prev["history"], rerouted_from=old["stage"])
        self.record = rec
        self.book.register("a", rec)

    @rule(rule_=st.sampled_from(["required", "learned", "sample:1", RARELY, "none"]), stage=st.sampled_from(STAGES))
    @precondition(lambda self: self.record is None)
    def start(self, rule_: str, stage: str) -> None:
        self.rule = rule_
        self._new_output(stage)

    @rule(verdict=st.sampled_from(review.VERDICTS), by=st.sampled_from(["alice", "bob"]))
    @precondition(lambda self: self.record is not None)
    def decide(self, verdict: str, by: str) -> None:
        assert self.record is not None
        before = self.book.current("a", self.record)
        try:
            after = self.book.decide("a", self.record, verdict, by, "why")
        except review.ReviewConflictError:
            assert before["state"] != "pending"             # only a pending output can be decided
            return
        assert before["state"] == "pending" and after["by"] == by
        if verdict == "reject":
            assert after["state"] == "rejected" and self.record["stage"] in after["excluded"]
            self.rejected.add((self.record["stage"], after["output_sha256"]))

    @rule(stage=st.sampled_from(STAGES))
    @precondition(lambda self: self.record is not None)
    def reroute(self, stage: str) -> None:
        assert self.record is not None
        cur = self.book.current("a", self.record)
        if cur["state"] != "rejected" or stage in cur["excluded"]:
            return                                          # the pipeline never picks an excluded stage
        self._new_output(stage)

    @invariant()
    def nothing_unapproved_is_served(self) -> None:
        if self.record is None:
            return
        cur = self.book.current("a", self.record)
        covered = review.covers(review.parse_rule(self.rule), self.record["stage"],
                                drawn=self.record["review"].get("sampled", True))
        ok, why = review.servable(cur, self.record["stage"], cur["output_sha256"])
        if covered and cur["state"] in ("pending", "rejected"):
            assert not ok, why
        if cur["state"] == "approved":
            assert ok, why
        for stage, sha in self.rejected:                    # a rejected output stays unservable, whatever follows
            assert not review.servable(cur, stage, sha)[0]
        # a covered stage whose bytes nobody approved is never served
        if covered:
            for stage in STAGES:
                if review.covers(review.parse_rule(self.rule), stage, drawn=True) and cur["state"] != "not_required":
                    assert not review.servable(cur, stage, "f" * 64)[0]

    def teardown(self) -> None:
        import shutil

        self.book.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestReviewMachine = ReviewMachine.TestCase
TestReviewMachine.settings = settings(max_examples=60, stateful_step_count=12, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


@given(rule_=st.sampled_from(["none", "required", "learned", "sample:0.5"]),
       state=st.sampled_from(review.STATES), stage=st.sampled_from(STAGES), same=st.booleans())
def test_servable_never_serves_pending_or_rejected(rule_: str, state: str, stage: str, same: bool) -> None:
    rev = {"rule": rule_, "state": state, "stage": stage, "output_sha256": "a" * 64, "by": "x", "excluded": []}
    ok, _ = review.servable(rev, stage, "a" * 64 if same else "b" * 64)
    r = review.parse_rule(rule_)
    if state in ("pending", "rejected") and review.covers(r, stage):
        assert not ok
    if state == "approved" and not same and review.covers(r, stage):
        assert not ok


# --------------------------------------------------------------------------------------------------------------
# the tables: append-only, restart, concurrent verdicts
# --------------------------------------------------------------------------------------------------------------
def _pending(tmp_path: Path, stage: str = "avif") -> dict[str, Any]:
    rec = _record(tmp_path, stage)
    review.initial_state(Policy("p", review="required"), rec)
    return rec


def test_log_is_append_only_and_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "inverity.sqlite"
    rec = _pending(tmp_path)
    with review.ReviewBook(db) as book:
        book.register("a", rec)
        assert [r["asset"] for r in book.queue()] == ["a"]
        book.decide("a", rec, "approve", "alice", "fine")
    with review.ReviewBook(db) as book:                     # a new process: the verdict and log are still there
        cur = book.current("a", rec)
        assert (cur["state"], cur["by"], cur["note"]) == ("approved", "alice", "fine")
        log = list(book.log())
        assert [(e["by"], e["verdict"], e["output_sha256"]) for e in log] == [
            ("alice", "approve", rec["review"]["output_sha256"])]
        assert book.queue() == [] and book.counts()["approved"] == 1
    con = sqlite3.connect(db)
    for sql in ("UPDATE review_log SET verdict = 'reject'", "DELETE FROM review_log"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()


def test_reject_needs_a_note_and_a_name(tmp_path: Path) -> None:
    rec = _pending(tmp_path)
    with review.ReviewBook(tmp_path / "c.sqlite") as book:
        with pytest.raises(review.ReviewError, match="note"):
            book.decide("a", rec, "reject", "alice", "  ")
        with pytest.raises(review.ReviewError, match="name"):
            book.decide("a", rec, "approve", "", "")
        with pytest.raises(review.StaleVerdictError, match="stale"):
            book.decide("a", rec, "approve", "alice", expected_sha256="0" * 64)
        assert book.current("a", rec)["state"] == "pending" and list(book.log()) == []


def test_concurrent_verdicts_first_one_stands(tmp_path: Path) -> None:
    db = tmp_path / "inverity.sqlite"
    rec = _pending(tmp_path)
    with review.ReviewBook(db) as book:
        book.register("a", rec)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def one(i: int) -> None:
        with review.ReviewBook(db) as book:
            barrier.wait()
            try:
                book.decide("a", rec, "approve" if i % 2 else "reject", f"r{i}", "n")
                results.append("ok")
            except review.ReviewConflictError:
                results.append("conflict")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    with review.ReviewBook(db) as book:
        assert len(list(book.log())) == 1


def test_feedback_lists_verifier_misses_first(tmp_path: Path) -> None:
    log = [
        {"asset": "a", "verdict": "reject", "stage": "learned", "by": "x", "note": "smeared face",
         "context": {"kind": "photo", "ood_score": 0.7, "policy": "controlled", "passed": True, "failures": [],
                     "checks": {"ssimulacra2": 75.0, "band_kept": {"0.35–0.50": 0.3, "0.00–0.05": 1.0}}}},
        {"asset": "b", "verdict": "reject", "stage": "learned", "by": "x", "note": "odd",
         "context": {"kind": "drawing", "ood_score": 0.9, "policy": "controlled", "passed": False,
                     "failures": ["psnr"], "checks": {"ssimulacra2": 71.0}}},
        {"asset": "c", "verdict": "approve", "stage": "learned", "context": {}},
        {"asset": "d", "verdict": "reject", "stage": "avif", "context": {"kind": "photo"}},
    ]
    fb = review.feedback(log)
    assert fb["rejections"] == 2 and fb["verifier_misses"] == 1
    assert [i["asset"] for i in fb["items"]] == ["a", "b"]
    a = fb["items"][0]
    assert a["verifier_miss"] and a["worst_band"].startswith("0.35–0.50") and a["tightest_check"] == "ssimulacra2"
    assert a["margin"] == pytest.approx((75 - 70) / 70, abs=1e-3)
    assert fb["by_kind"] == {"photo": 1, "drawing": 1}
    text = "\n".join(review.feedback_text(fb))
    assert "MISS a" in text and "smeared face" in text
    assert review.feedback(log, None)["rejections"] == 3


# --------------------------------------------------------------------------------------------------------------
# the CLI on a real batch
# --------------------------------------------------------------------------------------------------------------
def _write_png(path: Path, name: str, step: int) -> None:
    import imagecodecs
    from skimage import data

    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(getattr(data, name)()[::step, ::step])))


@pytest.fixture()
def batch(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "in"
    src.mkdir()
    _write_png(src / "astro.png", "astronaut", 4)
    _write_png(src / "cat.png", "chelsea", 3)
    pol = tmp_path / "reviewed.toml"
    pol.write_text('name = "reviewed"\nextends = "delivery"\nreview = "required"\n')
    out = tmp_path / "out"
    assert main(["compress", str(src), "-o", str(out), "--policy", str(pol)]) == 0
    return out, pol


def test_cli_review_flow(batch: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = batch
    capsys.readouterr()
    assert main(["review", str(out), "--json"]) == 0
    items = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert sorted(i["asset"] for i in items) == ["astro.png", "cat.png"]
    assert all(i["state"] == "pending" and i["rule"] == "required" for i in items)
    first_stage = {i["asset"]: i["stage"] for i in items}

    assert main(["review", str(out), "--approve", "astro.png", "--by", "alice"]) == 0
    assert main(["review", str(out), "--approve", "astro.png", "--by", "bob"]) == 2      # the first verdict stands
    assert "already approved by alice" in capsys.readouterr().err
    assert main(["review", str(out), "--reject", "cat.png", "--by", "bob"]) == 2          # a note is required
    assert main(["review", str(out), "--reject", "cat.png", "--note", "too soft", "--by", "bob", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rerouted"] and res["stage"] != first_stage["cat.png"] and res["state"] == "pending"
    assert first_stage["cat.png"] in res["review"]["excluded"]
    # the rejected output left the delivery tree; the new one replaced it in the catalog
    from inverity.catalog import Catalog

    with Catalog(out / "inverity.sqlite") as cat:
        rec = cat.get("cat.png")["record"]
    assert rec["stage"] == res["stage"] and any("re-routed after review" in r and "too soft" in r
                                                 for r in rec["reasons"])
    assert (out / rec["output_rel"]).is_file()
    assert list((out / review.REJECTED_DIR).iterdir())

    assert main(["review", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "cat.png" in listing and "astro.png" not in listing

    assert main(["review", "log", str(out), "--json"]) == 0
    log = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [(e["asset"], e["by"], e["verdict"]) for e in log] == [("astro.png", "alice", "approve"),
                                                                  ("cat.png", "bob", "reject")]
    assert all(len(e["output_sha256"]) == 64 for e in log)
    assert main(["review", "report", str(out), "--stage", "all"]) == 0
    assert "cat.png" in capsys.readouterr().out


def test_cli_import_refuses_stale_verdicts(batch: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    out, _ = batch
    items = review.pending(out)
    sha = {i["asset"]: i["output_sha256"] for i in items}
    vfile = tmp_path / "verdicts.json"
    vfile.write_text(json.dumps({"reviewer": "carol", "verdicts": [
        {"id": "astro.png", "verdict": "approve", "note": "", "output_sha256": sha["astro.png"]},
        {"id": "cat.png", "verdict": "approve", "note": "", "output_sha256": "0" * 64},     # stale
    ]}))
    capsys.readouterr()
    assert main(["review", str(out), "--import", str(vfile)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "stale" in err and "cat.png" in err
    states = {i["asset"]: i["state"] for i in review.pending(out, ("pending", "approved"))}
    assert states == {"astro.png": "approved", "cat.png": "pending"}
    assert [e["by"] for e in review.review_log(out)] == ["carol"]
    vfile.write_text("{}")
    assert main(["review", str(out), "--import", str(vfile)]) == 2
    assert "reviewer" in capsys.readouterr().err


def test_cli_review_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", str(tmp_path)]) == 2
    assert "no catalog" in capsys.readouterr().err
    assert main(["review", "log"]) == 2


def test_audit_page_review_section(batch: tuple[Path, Path]) -> None:
    from inverity.report import write_report

    out, _ = batch
    assert main(["review", str(out), "--reject", "cat.png", "--note", "<i>halo</i> on the fur", "--by", "bob"]) == 0
    page = write_report(out).read_text()
    assert 'id="review"' in page and "rv-export" in page
    sha = {i["asset"]: i["output_sha256"] for i in review.pending(out)}
    for aid, s in sha.items():                 # each pending output carries the sha256 its verdict will name
        assert f'data-id="{aid}" data-sha="{s}"' in page
    assert "&lt;i&gt;halo&lt;/i&gt;" in page and "<i>halo</i>" not in page
    # the learned stage was never rejected here: no feedback table on it, but the rejection is counted
    assert "1 rejections in all" in page


def test_cli_refuses_to_decide_in_a_server_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from inverity.catalog import Catalog

    for sub in ("originals", "outputs"):
        (tmp_path / sub).mkdir()
    Catalog(tmp_path / "inverity.sqlite").close()
    assert main(["review", str(tmp_path), "--approve", "0" * 32, "--by", "a"]) == 2
    assert "server store" in capsys.readouterr().err


def test_example_policy_spot_checked() -> None:
    from inverity.policy import example_policies

    p = load_policy_file(example_policies()["delivery-spot-checked"])
    assert p.review == "sample:0.02" and not p.allow_learned and review.rule_of(p) == review.Rule("sample", 0.02)


@pytest.mark.parametrize("spec", ["sample:0", "sample:0.0", "sample:1.5"])
def test_review_rule_and_policy_agree_on_the_sample_range(spec: str) -> None:
    """The review module and the policy refuse the same shares (0 < P <= 1)."""
    with pytest.raises(PolicyError):
        review.parse_rule(spec)
    with pytest.raises(PolicyError):
        Policy("p", review=spec)
