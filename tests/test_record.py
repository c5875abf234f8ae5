"""The decision record: one type, one constructor; its JSON is exactly what the pipeline writes and reads back.

The real-run tests compress skimage and pydicom images through the CLI (``--json``) under every built-in policy
but ``controlled`` and check that each record the pipeline writes — on stdout, in the catalog, on failure —
parses with :meth:`DecisionRecord.from_dict` and comes back as the same JSON.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest

from inverity.catalog import Catalog
from inverity.cli import main
from inverity.errors import InverityError, RecordError
from inverity.pipeline import RECORD_KEYS
from inverity.record import DecisionRecord
from inverity.verify_types import Box


def _sample() -> dict[str, Any]:
    """A done record in the pipeline's shape (every step reached, the optional parts set)."""
    return {
        "version": "0.1.0", "input": "a/b.png", "input_path": "/data/a/b.png", "input_sha256": "ab" * 32,
        "input_bytes": 2048, "output": "out/a/b.avif", "bytes": 512, "policy": "auto", "policy_id": "auto",
        "policy_resolved": "delivery", "stage": "avif", "quality": 62,
        "profile": {"kind": "photo", "kind_confidence": 0.93, "ood_score": 0.4, "in_distribution": True},
        "attempts": [{"stage": "avif", "quality": 62, "bytes": 512, "passed": True, "chosen": True,
                      "reasons": ["ssimulacra2 78.1 >= 70"], "encode_ms": 3.1}],
        "checks": {"lossless": False, "psnr": 38.2, "ssimulacra2": 78.1,
                   "worst_windows": [{"x": 0, "y": 16, "w": 16, "h": 16, "check": "local_snr", "value": 4.5}]},
        "reasons": ["auto -> delivery: photo", "avif: lossy at the fewest bytes"], "status": "done",
        "error": None, "elapsed_ms": 12.5,
        "input_format": "png", "width": 32, "height": 24, "channels": 3, "bit_depth": 8,
        "review_policy": "none", "effort": "balanced", "floor_changes": [],
        "output_rel": "a/b.avif", "output_sha256": "cd" * 32, "options": {}, "codec_config": {"id": "avif"},
        "ratio": 4.0, "grew": True, "search": {"effort": "balanced", "encodes": 3},
        "metadata": {"mode": "strip", "input": [], "kept": [], "dropped": []},
        "review": {"rule": "none", "state": "not_required"},
        "filename": "b.png", "media_types": ["image/avif"],      # keys another module (the server) added
    }


def test_round_trip_to_and_from_json_is_exact() -> None:
    d = _sample()
    rec = DecisionRecord.from_dict(d)
    assert rec.to_dict() == d
    assert DecisionRecord.from_json(rec.to_json()) == rec
    assert json.loads(rec.to_json()) == d
    assert rec.worst_windows == [Box(0, 16, 16, 16, "local_snr", 4.5)]
    assert "worst_windows" not in rec.checks and rec.extra == {"filename": "b.png", "media_types": ["image/avif"]}
    assert rec.chosen_attempt() is rec.attempts[0]


def test_the_constructor_gives_the_minimum_keys_and_only_the_steps_reached() -> None:
    d = DecisionRecord(input="x.png").to_dict()
    assert set(RECORD_KEYS) <= set(d)
    assert d["status"] == "failed" and d["output"] is None and d["attempts"] == [] and d["checks"] == {}
    # no step reached: none of the keys those steps write, and no false flags
    for k in ("width", "review_policy", "output_rel", "grew", "restores_input", "container", "input_path"):
        assert k not in d
    rec = DecisionRecord(input="x.png", width=4)
    assert {"input_format", "height", "channels", "bit_depth"} <= set(rec.to_dict())
    rec = DecisionRecord(input="x.png", checks={"psnr": 40.0, "worst_windows": []})
    assert rec.worst_windows == [] and rec.to_dict()["checks"] == {"psnr": 40.0, "worst_windows": []}


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.pop("input"), "no 'input'"),
    (lambda d: d.update(input=7), "'input' must be a string, got int"),
    (lambda d: d.update(status="finished"), "status 'finished' is not one of done, failed, skipped"),
    (lambda d: d.update(bytes="512"), "'bytes' must be an integer, got str"),
    (lambda d: d.update(bytes=True), "'bytes' must be an integer, got bool"),
    (lambda d: d.update(quality=6.5), "'quality' must be an integer, got float"),
    (lambda d: d.update(elapsed_ms="fast"), "'elapsed_ms' must be a number"),
    (lambda d: d.update(profile=[]), "'profile' must be an object"),
    (lambda d: d.update(checks="good"), "'checks' must be an object"),
    (lambda d: d.update(reasons="one"), "'reasons' must be a list of strings"),
    (lambda d: d.update(reasons=["ok", 3]), "'reasons' must be a list of strings"),
    (lambda d: d.update(attempts={}), "'attempts' must be a list"),
    (lambda d: d.update(attempts=[{"quality": 3}]), "attempt 0 must be an object with a 'stage'"),
    (lambda d: d.update(attempts=[{"stage": "png", "reasons": "x"}]), "attempt 0 'reasons' must be a list"),
    (lambda d: d["checks"].update(worst_windows=[{"x": 0, "y": 0, "w": 8}]), "missing h, check"),
    (lambda d: d["checks"].update(worst_windows=[{"x": 0, "y": 0, "w": 0, "h": 4, "check": "c"}]), "w, h > 0"),
    (lambda d: d["checks"].update(worst_windows={"x": 0}), "must be a list of boxes"),
    (lambda d: d.update(grew="yes"), "'grew' must be true or false"),
    (lambda d: d.update(metadata=["icc"]), "'metadata' must be an object"),
])
def test_malformed_records_are_refused_with_one_clear_line(change: Any, needle: str) -> None:
    d = _sample()
    change(d)
    with pytest.raises(RecordError) as e:
        DecisionRecord.from_dict(d)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and isinstance(e.value, InverityError)
    if "input" in d and isinstance(d["input"], str):
        assert msg.startswith("a/b.png: ")      # names the asset when it can


@pytest.mark.parametrize("doc", ["[1, 2]", "not json", '"a string"', "null"])
def test_from_json_refuses_what_is_not_a_record(doc: str) -> None:
    with pytest.raises(RecordError, match="not a decision record"):
        DecisionRecord.from_json(doc)


# ----------------------------------------------------------------------------------------------------------------
# every record a real run writes parses, and round-trips exactly
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pydicom.data import get_testdata_file
    from skimage import data

    d = tmp_path_factory.mktemp("inputs")
    (d / "camera.png").write_bytes(imagecodecs.png_encode(data.camera()[:96, :128]))
    (d / "astronaut.png").write_bytes(imagecodecs.png_encode(data.astronaut()[:64, :96]))
    (d / "text.png").write_bytes(imagecodecs.png_encode(data.text()[:48, :64]))
    (d / "photo.jpg").write_bytes(imagecodecs.jpeg8_encode(data.chelsea()[:64, :64], level=90))
    (d / "gray16.png").write_bytes(imagecodecs.png_encode((data.camera()[:32, :48].astype(np.uint16) * 257)))
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "ct.dcm")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return d


def _cli_records(argv: list[str]) -> tuple[int, list[dict[str, Any]]]:
    buf, old = io.StringIO(), sys.stdout
    sys.stdout = buf
    try:
        rc = main(argv)
    finally:
        sys.stdout = old
    return int(rc or 0), [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("policy", ["auto", "archive", "diagnostic", "delivery"])
def test_every_record_a_real_compress_writes_parses(policy: str, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, recs = _cli_records(["compress", str(inputs), "-o", str(out), "--policy", policy, "--json", "--jobs", "1"])
    assert rc == 2 and len(recs) == 7                               # broken.png fails, the batch goes on
    by = {r["input"]: r for r in recs}
    assert by["broken.png"]["status"] == "failed" and all(r["status"] == "done" for r in recs
                                                           if r["input"] != "broken.png")
    with Catalog(out / "inverity.sqlite") as cat:
        stored = cat.records()
    for d in [*recs, *stored]:
        rec = DecisionRecord.from_dict(d)
        assert rec.to_dict() == d, d["input"]
        assert DecisionRecord.from_json(rec.to_json()).to_dict() == d
        if rec.status == "done":
            assert rec.worst_windows is not None and rec.chosen_attempt() is not None
            assert rec.output_rel is not None and (out / rec.output_rel).stat().st_size == rec.bytes
    if policy in ("archive", "diagnostic"):
        ct = DecisionRecord.from_dict(by["ct.dcm"])
        assert ct.container == "dicom" and ct.output_rel == "ct.dcm"
    # resumed: the catalog's records come back as "skipped" and still parse
    rc, again = _cli_records(["compress", str(inputs), "-o", str(out), "--policy", policy, "--json", "--jobs", "1"])
    assert {r["status"] for r in again} == {"skipped", "failed"}
    for d in again:
        assert DecisionRecord.from_dict(d).to_dict() == d


def test_a_file_that_cannot_be_read_still_gets_a_record(tmp_path: Path) -> None:
    from inverity.batch import _Task, _work
    from inverity.pipeline import Asset

    gone = tmp_path / "gone.png"           # removed between the walk and the worker
    res = _work(_Task(Asset(str(gone), str(tmp_path), "gone.png"), "delivery", str(tmp_path / "out"), None))
    rec = DecisionRecord.from_dict(res.record)
    assert res.status == rec.status == "failed" and rec.error and str(gone) in rec.error
    assert rec.input_sha256 is None and rec.policy == rec.policy_id == "delivery" and rec.to_dict() == res.record
    assert set(RECORD_KEYS) <= set(res.record)


def test_the_catalog_stores_only_decision_records(tmp_path: Path) -> None:
    good = DecisionRecord(input="a.png", input_sha256="ab" * 32, status="failed", error="a.png: truncated").to_dict()
    with Catalog(tmp_path / "inverity.sqlite") as cat:
        cat.put(good)
        with pytest.raises(RecordError, match="'bytes' must be an integer"):
            cat.put(dict(good, input="b.png", bytes="many"))
        assert [r["input"] for r in cat.records()] == ["a.png"]
        assert DecisionRecord.from_dict(cat.get("a.png")["record"]).to_dict() == good
