"""The pipeline's orchestration, tested with fake stages/analyser/router/verifier (STYLE.md 9), then end to end.

The fakes are module-level functions so a ``Toolkit`` made of them pickles into worker processes (``jobs=2``).
The fake lossy stage quantises pixels with a step that shrinks as quality grows, so "passes max-abs-error ≤ k" is
monotone in quality and the bisection has a known answer to find.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest

from inverity.catalog import Catalog
from inverity.errors import InputError, UnknownIdError
from inverity.image import Image
from inverity.pipeline import (RECORD_KEYS, NoCandidatePassedError, Toolkit, collect_assets, compress,
                               compress_one)
from inverity.analyse import Profile
from inverity.policy import Policy
from inverity.record import DecisionRecord
from inverity.route import Candidate, Resolution
from inverity.stages.base import Capabilities, Stage
from inverity.verify import Floors, Verdict


# ----------------------------------------------------------------------------------------------------------------
# fakes: only stages and the verifier; policies, candidates, profiles and verdicts are the real classes
# ----------------------------------------------------------------------------------------------------------------
ENCODES: list[tuple[str, Any]] = []     # (codec_id, quality) per encode, to count the search's cost


class FakeLossy(Stage):
    """Quantise with step 101 - quality: max abs error = (step - 1) // 2 (monotone in quality)."""

    codec_id = "fake-lossy"
    capabilities = Capabilities(lossless=False, extensions=(".fkl",))

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "quality": self.quality, **self.opts}

    def encode(self, image: Image) -> bytes:
        ENCODES.append((self.codec_id, self.quality))
        step = 101 - int(self.quality)
        q = (image.pixels.astype(np.int32) + step // 2) // step
        body = np.clip(q * step, 0, 255).astype(np.uint8)
        h, w, c = image.pixels.shape
        # bytes fall as the step grows, like a real codec's
        return b"FKL" + bytes([c]) + np.array([h, w], "<u4").tobytes() + imagecodecs.zlib_encode(body.tobytes())

    def decode(self, data: bytes) -> Image:
        c = data[3]
        h, w = np.frombuffer(data[4:12], "<u4")
        px = np.frombuffer(imagecodecs.zlib_decode(data[12:]), np.uint8).reshape(int(h), int(w), c)
        return Image(px.copy())


class FakeLossless(FakeLossy):
    codec_id = "fake-lossless"
    capabilities = Capabilities(lossless=True, bit_depths=(8, 16), extensions=(".png",))

    def encode(self, image: Image) -> bytes:
        ENCODES.append((self.codec_id, self.quality))
        px = image.pixels
        return imagecodecs.png_encode(px[:, :, 0] if px.shape[2] == 1 else px)

    def decode(self, data: bytes) -> Image:
        return Image(imagecodecs.png_decode(data))


class FakeBroken(FakeLossy):
    codec_id = "fake-broken"

    def encode(self, image: Image) -> bytes:
        from inverity.errors import CodecError

        raise CodecError("fake-broken: refuses everything")


STAGES = {c.codec_id: c for c in (FakeLossy, FakeLossless, FakeBroken)}

def _cand(codec_id: str, quality: int | None, search: bool, reason: str, max_abs_error: int, group: int) -> Candidate:
    return Candidate(codec_id, quality, search, {}, reason, Floors(max_abs_error=max_abs_error), group)


#: the plan of each (real) policy, by name: what the fake router returns
PLANS: dict[str, tuple[Candidate, ...]] = {
    "auto": (),
    "delivery": (_cand("fake-lossy", None, True, "photo: lossy at the fewest bytes", 4, 0),
                 _cand("fake-lossless", None, False, "lossless fallback", 0, 1)),
    "archive": (_cand("fake-lossless", None, False, "archive", 0, 0),),
    "strict": (_cand("fake-broken", 50, False, "broken", 0, 0), _cand("fake-lossy", 90, False, "too lossy", 0, 1)),
    "fallback": (_cand("fake-broken", 50, False, "broken", 0, 0),
                 _cand("fake-lossless", None, False, "lossless", 0, 1)),
    # equivalent choices (one group): the smallest that passes wins, every size in the record
    "pair": (_cand("fake-lossy", 95, False, "lossy", 4, 0), _cand("fake-lossless", None, False, "lossless", 4, 0)),
    "pair-strict": (_cand("fake-lossy", 90, False, "too lossy", 0, 0),
                    _cand("fake-lossless", None, False, "lossless", 0, 0)),
}
POLICIES = {name: Policy(name) for name in PLANS}


def fake_load(data: bytes, *, name: str | None = None, **kw: Any) -> Image:
    if not data.startswith(b"\x89PNG"):
        raise InputError(f"{name}: not an image (fake loader reads PNG only)")
    return Image(imagecodecs.png_decode(data), source_format="png")


def fake_analyse(image: Image) -> Profile:
    return Profile("drawing" if image.channels == 1 else "photo", 0.9, ood_score=0.1, in_distribution=True)


def fake_get_policy(name: Any) -> Policy:
    try:
        return POLICIES[str(name)]
    except KeyError:
        raise UnknownIdError("policy", str(name), list(POLICIES)) from None


def fake_resolve_policy(profile: Profile, policy: Policy, image: Image) -> Resolution:
    if profile.kind == "drawing":
        return Resolution(POLICIES["archive"], "drawing -> lossless")
    return Resolution(POLICIES["delivery"], "photo")


def fake_plan(profile: Profile, policy: Policy, image: Image | None = None) -> list[Candidate]:
    return list(PLANS[policy.name])


def fake_get_stage(codec_id: str, **kw: Any) -> Stage:
    return STAGES[codec_id](**kw)


def fake_verify(original: Image, recon: Image, floors: Floors) -> Verdict:
    err = int(np.abs(original.pixels.astype(np.int32) - recon.pixels.astype(np.int32)).max())
    ok = floors.max_abs_error is None or err <= floors.max_abs_error
    return Verdict(ok, [f"max_abs_error {err} {'<=' if ok else '>'} {floors.max_abs_error}"],
                   {"max_abs_error": np.int64(err), "lossless": err == 0}, [] if ok else ["max_abs_error"])


FAKE = Toolkit(load=fake_load, analyse=fake_analyse, get_policy=fake_get_policy,
               resolve_policy=fake_resolve_policy, plan=fake_plan, get_stage=fake_get_stage, verify=fake_verify)


def _photo(seed: int = 0, h: int = 24, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """in/ with photos (RGB), a drawing (gray), a nested file, a hidden file and a text file."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "a.png").write_bytes(imagecodecs.png_encode(_photo(0)))
    (d / "sub" / "b.png").write_bytes(imagecodecs.png_encode(_photo(1)))
    (d / "line.png").write_bytes(imagecodecs.png_encode((_photo(2)[:, :, :1] > 128).astype(np.uint8) * 255))
    (d / ".hidden.png").write_bytes(imagecodecs.png_encode(_photo(3)))
    (d / "notes.txt").write_text("not an image")
    return d


def _strip_timing(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_timing(v) for k, v in x.items() if not k.endswith("_ms")}
    if isinstance(x, list):
        return [_strip_timing(v) for v in x]
    return x


# ----------------------------------------------------------------------------------------------------------------
# orchestration with fakes
# ----------------------------------------------------------------------------------------------------------------
def test_compress_one_search_finds_smallest_passing_quality(tmp_path: Path) -> None:
    src = tmp_path / "p.png"
    src.write_bytes(imagecodecs.png_encode(_photo()))
    ENCODES.clear()
    res = compress_one(src, "delivery", outdir=tmp_path / "out", toolkit=FAKE)
    rec = res.record
    # floor: max abs error <= 4  <=> (100 - q) // 2 <= 4  <=> q >= 92: the smallest passing quality
    assert res.status == "done" and rec["stage"] == "fake-lossy" and rec["quality"] == 92
    assert len(ENCODES) <= 9, ENCODES                    # a bisection, not a sweep of 100 qualities
    assert [a["quality"] for a in rec["attempts"]] == [q for _, q in ENCODES]
    assert any(not a["passed"] for a in rec["attempts"]) and sum(a.get("chosen", False) for a in rec["attempts"]) == 1
    out = tmp_path / "out" / "p.fkl"
    assert Path(res.output) == out and out.read_bytes()[:3] == b"FKL"
    assert rec["bytes"] == out.stat().st_size
    assert set(RECORD_KEYS) <= set(rec)
    assert rec["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert rec["checks"] == {"max_abs_error": 4, "lossless": False}
    json.dumps(rec)                                      # numpy values were made JSON-able
    assert DecisionRecord.from_dict(rec).to_dict() == rec   # the one record type reads it back, exactly


def test_auto_resolves_and_records_reason(tmp_path: Path, tree: Path) -> None:
    res = compress_one(tree / "line.png", "auto", outdir=tmp_path / "o", root=tree, toolkit=FAKE)
    assert res.record["policy"] == "auto" and res.record["policy_resolved"] == "archive"
    assert res.record["reasons"][0] == "auto -> archive: drawing -> lossless"
    assert res.record["profile"]["kind"] == "drawing"
    assert Path(res.output) == tmp_path / "o" / "line.png"


def test_failed_candidates_fall_through_then_error_when_none_pass(tmp_path: Path) -> None:
    src = tmp_path / "p.png"
    src.write_bytes(imagecodecs.png_encode(_photo()))
    res = compress_one(src, "fallback", outdir=tmp_path / "o", toolkit=FAKE)
    assert res.record["stage"] == "fake-lossless"
    assert [a["stage"] for a in res.record["attempts"]] == ["fake-broken", "fake-lossless"]
    assert "refuses everything" in res.record["attempts"][0]["reasons"][0]
    assert any(r.startswith("fake-broken rejected") for r in res.record["reasons"])

    with pytest.raises(NoCandidatePassedError) as ei:
        compress_one(src, "strict", outdir=tmp_path / "s", toolkit=FAKE)
    msg = str(ei.value)
    assert "\n" not in msg and "no stage passed verification" in msg and "fake-lossy" in msg
    assert [a["passed"] for a in ei.value.record["attempts"]] == [False, False]   # type: ignore[attr-defined]
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*"))


def test_collect_assets_walks_sorted_skips_hidden_and_non_images(tree: Path, tmp_path: Path) -> None:
    notes: list[str] = []
    assets = collect_assets([tree], tmp_path / "out", on_note=notes.append)
    assert [a.input for a in assets] == ["a.png", "line.png", "sub/b.png"]
    assert len(notes) == 1 and "notes.txt" in notes[0]
    # outputs inside the walked tree are not walked again
    (tree / "out").mkdir()
    (tree / "out" / "x.png").write_bytes((tree / "a.png").read_bytes())
    assert [a.input for a in collect_assets([tree], tree / "out")] == ["a.png", "line.png", "sub/b.png"]


def test_collect_assets_name_collisions(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for d in ("x", "y"):
        (tmp_path / d / "a.png").write_bytes(imagecodecs.png_encode(_photo()))
    (tmp_path / "x" / "a.jpg").write_bytes(imagecodecs.png_encode(_photo()))   # content decides, not the name
    assets = collect_assets([tmp_path / "x"])
    assert [(a.input, a.keep_suffix) for a in assets] == [("a.jpg", True), ("a.png", True)]
    with pytest.raises(InputError, match="both be catalogued"):
        collect_assets([tmp_path / "x", tmp_path / "y"])


def test_compress_batch_catalog_resume_and_failures(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    seen: list[dict] = []
    recs = compress([tree, bad], out, policy="auto", jobs=1, on_record=seen.append, toolkit=FAKE)
    assert [r["input"] for r in recs] == ["a.png", "line.png", "sub/b.png", "bad.png"]
    assert [r["status"] for r in recs] == ["done", "done", "done", "failed"]
    assert len(seen) == 4
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "sqlite" not in p.name) \
        == ["a.fkl", "line.png", "sub/b.fkl"]
    assert recs[3]["error"].startswith(str(bad)) and "\n" not in recs[3]["error"]
    with Catalog(out / "inverity.sqlite") as cat:
        assert len(cat) == 4 and cat.get("bad.png")["status"] == "failed"
        assert cat.lookup_output(out / "sub" / "b.fkl")["input"] == "sub/b.png"
        assert cat.schema_version == 1
    assert not list(out.rglob("*.part"))

    # resume: everything done is skipped (no encode at all); the failed asset is retried
    ENCODES.clear()
    again = compress([tree, bad], out, policy="auto", jobs=1, toolkit=FAKE)
    assert [r["status"] for r in again] == ["skipped", "skipped", "skipped", "failed"]
    assert ENCODES == []
    # a changed input is redone; a different policy redoes everything
    (tree / "a.png").write_bytes(imagecodecs.png_encode(_photo(9)))
    again = compress([tree], out, policy="auto", jobs=1, toolkit=FAKE)
    assert [r["status"] for r in again] == ["done", "skipped", "skipped"]
    again = compress([tree], out, policy="archive", jobs=1, toolkit=FAKE)
    assert [r["stage"] for r in again] == ["fake-lossless"] * 3
    # the previous outputs (other extension) were removed when their rows were replaced
    assert sorted(p.name for p in out.rglob("*") if p.is_file() and "sqlite" not in p.name) \
        == ["a.png", "b.png", "line.png"]


class _Stop(Exception):
    pass


def test_interrupted_batch_then_rerun_processes_each_input_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.png").write_bytes(imagecodecs.png_encode(_photo(i)))
    out = tmp_path / "out"
    processed: list[str] = []

    def stop_after_two(rec: dict) -> None:
        processed.append(rec["input"])
        if len(processed) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        compress([src], out, policy="delivery", jobs=1, on_record=stop_after_two, toolkit=FAKE)
    with Catalog(out / "inverity.sqlite") as cat:
        assert len(cat) == 2
    # an output renamed into place whose row never got written (crash between the two) is redone, overwritten
    (out / "4.fkl").write_bytes(b"stale")
    recs = compress([src], out, policy="delivery", jobs=1, toolkit=FAKE)
    redone = [r["input"] for r in recs if r["status"] == "done"]
    skipped = [r["input"] for r in recs if r["status"] == "skipped"]
    assert sorted(processed + redone) == [f"{i}.png" for i in range(5)] and skipped == processed
    assert (out / "4.fkl").read_bytes()[:3] == b"FKL"
    assert not list(out.rglob("*.part"))


def test_jobs_2_gives_the_same_records_as_jobs_1(tree: Path, tmp_path: Path) -> None:
    r1 = compress([tree], tmp_path / "o1", jobs=1, toolkit=FAKE)
    r2 = compress([tree], tmp_path / "o2", jobs=2, toolkit=FAKE)

    def norm(recs: list[dict]) -> list[dict]:
        out = []
        for r in _strip_timing(recs):
            r = dict(r)
            r["output"] = r["output_rel"]
            out.append(r)
        return out

    assert norm(r1) == norm(r2)
    for a, b in zip(sorted((tmp_path / "o1").rglob("*.fkl")), sorted((tmp_path / "o2").rglob("*.fkl"))):
        assert a.read_bytes() == b.read_bytes()


def test_unknown_policy_fails_fast(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownIdError, match="available"):
        compress([tree], tmp_path / "o", policy="nope", toolkit=FAKE)
    assert not (tmp_path / "o").exists()


def test_output_never_overwrites_its_input(tmp_path: Path) -> None:
    src = tmp_path / "p.png"
    src.write_bytes(imagecodecs.png_encode(_photo()))
    before = src.read_bytes()
    with pytest.raises(InputError, match="refusing to write over an input"):
        compress_one(src, "archive", outdir=tmp_path, toolkit=FAKE)
    assert src.read_bytes() == before


_CRASHING_CHILD = r"""
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_pipeline import FAKE
from inverity.pipeline import compress
n = []
def crash(rec):
    n.append(rec)
    if len(n) == {after}:
        os.kill(os.getpid(), signal.SIGKILL)      # no cleanup, no finally: like a power cut for this process
compress([{src!r}], {out!r}, policy="delivery", jobs={jobs}, on_record=crash, toolkit=FAKE)
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_process_then_rerun_completes_each_input_once(tmp_path: Path, jobs: int) -> None:
    import subprocess
    import sys

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.png").write_bytes(imagecodecs.png_encode(_photo(i)))
    code = _CRASHING_CHILD.format(tests=str(Path(__file__).parent), src=str(src), out=str(out), after=3, jobs=jobs)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with Catalog(out / "inverity.sqlite") as cat:
        assert len(cat) == 3
        first = {r["input"] for r in cat.records()}
    (out / ".0.fkl.abc123.part").write_bytes(b"half a file")       # what a kill mid-write leaves
    recs = compress([src], out, policy="delivery", jobs=1, toolkit=FAKE)
    assert len(recs) == 6 and all(r["status"] in ("done", "skipped") for r in recs)
    assert {r["input"] for r in recs if r["status"] == "skipped"} == first
    assert {r["input"] for r in recs if r["status"] == "done"} == {f"{i}.png" for i in range(6)} - first
    assert not list(out.rglob("*.part"))
    assert sorted(p.name for p in out.glob("*.fkl")) == [f"{i}.fkl" for i in range(6)]
    with Catalog(out / "inverity.sqlite") as cat:
        assert len(cat) == 6 and all(cat.done(f"{i}.png", hashlib.sha256((src / f"{i}.png").read_bytes())
                                              .hexdigest()) for i in range(6))


# ----------------------------------------------------------------------------------------------------------------
# end to end with the real modules (skipped until they exist)
# ----------------------------------------------------------------------------------------------------------------
STANDARD_EXTS = {".jpg", ".webp", ".avif", ".jxl", ".png", ".jls", ".jp2", ".j2c", ".dcm", ".inv"}


def _real() -> Toolkit:
    for mod in ("inverity.verify", "inverity.analyse", "inverity.policy", "inverity.route"):
        pytest.importorskip(mod)
    return Toolkit.default()


@pytest.fixture(scope="module")
def demo_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inverity.samples import build_demo_set

    d = tmp_path_factory.mktemp("demo") / "inputs"
    build_demo_set(d, small=True, names=("chelsea.png", "drawing.png", "screenshot.png", "ct_slice.dcm",
                                         "sensor16.png"))
    return d


def test_real_auto_batch_routes_writes_and_resumes(demo_small: Path, tmp_path: Path) -> None:
    _real()
    out = tmp_path / "auto"
    recs = compress([demo_small], out, policy="auto", jobs=1)
    assert [r["status"] for r in recs] == ["done"] * 5, [r.get("error") for r in recs]
    by = {r["input"]: r for r in recs}
    for r in recs:
        assert set(RECORD_KEYS) <= set(r)
        assert {"kind", "kind_confidence", "ood_score", "in_distribution"} <= set(r["profile"])
        out_file = out / r["output_rel"]
        assert out_file.is_file() and out_file.stat().st_size == r["bytes"]
        assert out_file.suffix in STANDARD_EXTS and out_file.suffix != ".inv"     # auto never picks learned
        assert r["attempts"] and any(a["passed"] for a in r["attempts"]) and r["checks"]
        json.dumps(r)
    assert by["ct_slice.dcm"]["output_rel"] == "ct_slice.dcm" and by["ct_slice.dcm"]["policy_resolved"] == "diagnostic"
    assert by["sensor16.png"]["policy_resolved"] in ("diagnostic", "archive")
    assert by["chelsea.png"]["policy_resolved"] == "delivery"
    assert not list(out.rglob("*.part"))
    # resume: nothing is redone
    again = compress([demo_small], out, policy="auto", jobs=1)
    assert [r["status"] for r in again] == ["skipped"] * 5


def test_real_dicom_round_trip_through_diagnostic(demo_small: Path, tmp_path: Path) -> None:
    _real()
    import pydicom
    from inverity.image import load

    res = compress_one(demo_small / "ct_slice.dcm", "diagnostic", outdir=tmp_path)
    out = Path(res.output)
    assert out.suffix == ".dcm" and res.record["container"] == "dicom"
    orig_ds = pydicom.dcmread(demo_small / "ct_slice.dcm")
    new_ds = pydicom.dcmread(out)
    assert new_ds.file_meta.TransferSyntaxUID.is_compressed
    assert np.array_equal(new_ds.pixel_array, orig_ds.pixel_array)                # bit-exact
    assert np.array_equal(load(out).pixels, load(demo_small / "ct_slice.dcm").pixels)
    for elem in orig_ds:                                                         # every tag but the pixels kept
        if elem.tag == (0x7FE0, 0x0010):
            continue
        assert elem.tag in new_ds, elem
        assert new_ds[elem.tag].value == elem.value, elem


def test_real_dicom_output_is_encoded_once_and_verified_once(demo_small: Path, tmp_path: Path) -> None:
    """The DICOM file the search encodes and verifies is the file written: no re-encode, no second verdict."""
    import dataclasses

    from inverity import image as image_mod

    real = _real()
    written: list[str] = []
    verdicts: list[int] = []

    def dicom_bytes(image: Image, *, transfer_syntax: str) -> bytes:
        written.append(transfer_syntax)
        return image_mod.dicom_bytes(image, transfer_syntax=transfer_syntax)

    def verify(original: Image, recon: Image, floors: Any) -> Any:
        verdicts.append(1)
        return real.verify(original, recon, floors)

    tk = dataclasses.replace(real, dicom_bytes=dicom_bytes, verify=verify)
    res = compress_one(demo_small / "ct_slice.dcm", "diagnostic", outdir=tmp_path, toolkit=tk)
    rec = res.record
    encoded = [a for a in rec["attempts"] if a.get("bytes")]
    assert len(written) == len(encoded) and set(written) <= {"jpegls", "jpeg2000", "htj2k"}
    assert len(verdicts) == len([a for a in encoded if "verify_ms" in a])      # one verdict per file verified
    chosen = next(a for a in rec["attempts"] if a.get("chosen"))
    assert chosen["bytes"] == rec["bytes"] == Path(res.output).stat().st_size
    assert rec["transfer_syntax"] in written and rec["container"] == "dicom"
    assert not any(a["stage"].startswith("dicom/") for a in rec["attempts"])


def test_real_archive_16_bit_is_bit_exact(demo_small: Path, tmp_path: Path) -> None:
    _real()
    from inverity.image import load

    res = compress_one(demo_small / "sensor16.png", "archive", outdir=tmp_path)
    back = load(Path(res.output))
    src = load(demo_small / "sensor16.png")
    assert back.dtype == np.uint16 and np.array_equal(back.pixels, src.pixels)
    assert res.record["checks"].get("lossless") in (True, None) and res.record["policy_resolved"] == "archive"


def test_real_jobs_2_equals_jobs_1(demo_small: Path, tmp_path: Path) -> None:
    _real()
    files = [demo_small / "drawing.png", demo_small / "ct_slice.dcm", demo_small / "sensor16.png"]
    r1 = compress(files, tmp_path / "o1", jobs=1)
    r2 = compress(files, tmp_path / "o2", jobs=2)

    def norm(recs: list[dict]) -> list[dict]:
        return [dict(_strip_timing(r), output=r["output_rel"]) for r in recs]

    assert norm(r1) == norm(r2)
    for r in r1:
        assert (tmp_path / "o1" / r["output_rel"]).read_bytes() == (tmp_path / "o2" / r["output_rel"]).read_bytes()


def test_real_toml_policy_resumes_and_a_changed_file_redoes(demo_small: Path, tmp_path: Path) -> None:
    _real()
    pol = tmp_path / "mine.toml"
    pol.write_text('extends = "archive"\ndescription = "test"\n')
    src = demo_small / "drawing.png"
    first = compress([src], tmp_path / "o", policy=str(pol), jobs=1)
    assert first[0]["status"] == "done" and first[0]["policy"] == "mine" and first[0]["policy_id"].startswith("mine@")
    assert compress([src], tmp_path / "o", policy=str(pol), jobs=1)[0]["status"] == "skipped"
    pol.write_text('extends = "archive"\ndescription = "test, edited"\n')
    assert compress([src], tmp_path / "o", policy=str(pol), jobs=1)[0]["status"] == "done"


def test_learned_search_range_comes_from_the_zoo_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """1..K with K = the model's number of lambdas in the registry (7 today, 9 soon), never a constant."""
    import dataclasses

    from inverity import search
    from inverity.stages.learned import zoo

    class LearnedNoQualities:
        codec_id = "fake-learned"
        capabilities = Capabilities(lossless=False, learned=True, extensions=(".inv",))

    k = len(zoo.model_info().lambdas)
    assert search.quality_bounds(LearnedNoQualities(), Candidate("fake-learned")) == (1, k)
    nine = dataclasses.replace(zoo.model_info(), lambdas=tuple(0.001 * (i + 1) for i in range(9)))
    monkeypatch.setattr(zoo, "model_info", lambda name=None, wdir=None: nine)
    assert search.quality_bounds(LearnedNoQualities(), Candidate("fake-learned")) == (1, 9)


# ----------------------------------------------------------------------------------------------------------------
# promises every record keeps: sizes of equivalent choices, floor changes, metadata kept/dropped
# ----------------------------------------------------------------------------------------------------------------
def test_sizes_of_every_passing_equivalent_choice_are_in_the_record(tmp_path: Path) -> None:
    src = tmp_path / "p.png"
    src.write_bytes(imagecodecs.png_encode(_photo()))
    rec = compress_one(src, POLICIES["pair"], outdir=tmp_path / "o", toolkit=FAKE).record
    sizes = {a["stage"]: a["bytes"] for a in rec["attempts"]}
    first, second = sorted(sizes, key=sizes.get)
    # the search verifies the larger one only if it could still win; either way both sizes are in the record
    line = next(r for r in rec["reasons"] if r.startswith(("smallest of 2 passing equivalent choices: ",
                                                          f"{first} ")))
    assert line.index(first) < line.index(second) and line.endswith("(at the same floors)")
    assert " vs " in line or f"larger, so not verified: {second}" in line
    assert rec["stage"] == first
    assert rec["review_policy"] == "none" and rec["effort"] == "balanced" and rec["floor_changes"] == []


def test_real_loosened_and_removed_floors_are_in_every_record(demo_small: Path, tmp_path: Path) -> None:
    _real()
    pol = tmp_path / "lenient.toml"
    pol.write_text('extends = "delivery"\neffort = "fast"\nreview = "sample:0.1"\n'
                   '[floors]\nssimulacra2 = 60\nlocal_snr = false\n')
    rec = compress_one(demo_small / "chelsea.png", str(pol), outdir=tmp_path / "o").record
    assert rec["floor_changes"] == ["floor ssimulacra2 loosened 70 -> 60 by policy lenient",
                                    "floor local_snr removed by policy lenient"]
    assert set(rec["floor_changes"]) <= set(rec["reasons"])
    assert rec["review_policy"] == "sample:0.1" and rec["effort"] == "fast"


def test_real_dicom_under_delivery_says_its_dataset_was_dropped(demo_small: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    _real()
    from inverity.cli import main

    rec = compress_one(demo_small / "ct_slice.dcm", "delivery", outdir=tmp_path / "o").record
    assert rec["metadata"]["dropped"] == ["dicom"] and rec["metadata"]["mode"] == "strip"
    assert any(r.startswith("metadata dropped: DICOM dataset (patient/study identifiers") for r in rec["reasons"])
    assert main(["compress", str(demo_small / "ct_slice.dcm"), "-o", str(tmp_path / "cli"), "--policy", "delivery",
                 "--jobs", "1"]) in (0, None)
    assert "dropped: dicom" in capsys.readouterr().out
    # archive/diagnostic keep it (nothing dropped)
    kept = compress_one(demo_small / "ct_slice.dcm", "diagnostic", outdir=tmp_path / "d").record["metadata"]
    assert kept["kept"] == ["dicom"] and kept["dropped"] == []


@pytest.mark.parametrize("mode, needle", [("refuse", "(metadata = refuse) refuses to drop DICOM dataset"),
                                          ("keep", "would drop dicom")])
def test_real_dicom_under_a_metadata_keeping_delivery_policy_is_refused(mode: str, needle: str, demo_small: Path,
                                                                        tmp_path: Path) -> None:
    _real()
    pol = tmp_path / "strict.toml"
    pol.write_text(f'extends = "delivery"\nmetadata = "{mode}"\n')
    with pytest.raises(NoCandidatePassedError) as e:
        compress_one(demo_small / "ct_slice.dcm", str(pol), outdir=tmp_path / "o")
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "o").exists() or not any(p.is_file() for p in (tmp_path / "o").rglob("*"))


def test_real_wide_gamut_icc_that_cannot_be_carried_is_recorded_loudly_or_refused(tmp_path: Path) -> None:
    _real()
    import pydicom
    from PIL import Image as PILImage
    from skimage import data

    from inverity.policy import Policy

    icc_path = Path(pydicom.__file__).parent / "data" / "test_files" / "crayons.icc"
    if not icc_path.is_file():
        pytest.skip("pydicom's crayons.icc test profile not installed")
    src = tmp_path / "p3.png"
    PILImage.fromarray(data.chelsea()[::3, ::3]).save(src, icc_profile=icc_path.read_bytes())
    avif_only = Policy.from_dict({"name": "avif-only", "extends": "delivery", "stages": ["avif"]})
    rec = compress_one(src, avif_only, outdir=tmp_path / "o").record
    assert rec["stage"] == "avif" and rec["metadata"]["dropped"] == ["icc"]
    assert rec["metadata"]["icc_not_srgb"] == "Crayon Colours"
    assert any(r.startswith("WARNING: ICC profile 'Crayon Colours' is not sRGB") for r in rec["reasons"])
    keep = Policy.from_dict({"name": "avif-keep", "extends": "delivery", "stages": ["avif"], "metadata": "keep"})
    with pytest.raises(NoCandidatePassedError, match="would drop icc"):
        compress_one(src, keep, outdir=tmp_path / "k")


def test_a_rejected_equivalent_choice_still_gives_its_sizes(tmp_path: Path) -> None:
    src = tmp_path / "p.png"
    src.write_bytes(imagecodecs.png_encode(_photo()))
    rec = compress_one(src, POLICIES["pair-strict"], outdir=tmp_path / "o", toolkit=FAKE).record
    lossy = next(a for a in rec["attempts"] if a["stage"] == "fake-lossy")
    line = next(r for r in rec["reasons"] if r.startswith("fake-lossless "))
    assert line.endswith(f"passed; failed the floors: fake-lossy (tried {lossy['bytes'] / 1000:.1f} kB) "
                         "(at the same floors)") or line.endswith(f"(tried {lossy['bytes']} B) (at the same floors)")


def test_real_delivery_keeps_a_non_srgb_icc_profile_by_choosing_a_stage_that_carries_it(tmp_path: Path) -> None:
    _real()
    import pydicom
    from PIL import Image as PILImage
    from skimage import data

    icc_path = Path(pydicom.__file__).parent / "data" / "test_files" / "crayons.icc"
    if not icc_path.is_file():
        pytest.skip("pydicom's crayons.icc test profile not installed")
    src = tmp_path / "wide.png"
    PILImage.fromarray(data.chelsea()[::3, ::3]).save(src, icc_profile=icc_path.read_bytes())
    rec = compress_one(src, "delivery", outdir=tmp_path / "o").record
    assert rec["stage"] in ("webp", "jpeg", "png") and rec["metadata"]["kept"] == ["icc"]
    from inverity.image import load

    assert load(Path(rec["output"])).metadata.get("icc") == icc_path.read_bytes()
