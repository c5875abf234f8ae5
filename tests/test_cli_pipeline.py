"""``inverity compress / inspect / demo`` in-process: first with the fake toolkit of test_pipeline (the CLI's own
behaviour), then end to end with the real modules."""
from __future__ import annotations

import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from inverity.cli import main
import inverity.pipeline as pipeline

from test_pipeline import FAKE, _photo


@pytest.fixture()
def fake_toolkit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.Toolkit, "default", classmethod(lambda cls: FAKE))


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(imagecodecs.png_encode(_photo(0)))
    (d / "b.png").write_bytes(imagecodecs.png_encode(np.ascontiguousarray(_photo(1)[:, :, 0])))
    return d


def test_compress_json_is_one_record_per_line(fake_toolkit: None, inputs: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["compress", str(inputs), "-o", str(out), "--json", "--jobs", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    recs = [json.loads(line) for line in cap.out.splitlines()]
    assert sorted(r["input"] for r in recs) == ["a.png", "b.png"]
    assert {r["stage"] for r in recs} == {"fake-lossy", "fake-lossless"}
    assert (out / "a.fkl").is_file() and (out / "b.png").is_file()

    # inspect: from the catalog, JSON and human
    assert main(["inspect", str(out / "a.fkl"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["input"] == "a.png" and rec["attempts"]
    assert main(["inspect", str(out / "a.fkl")]) == 0
    text = capsys.readouterr().out
    assert "fake-lossy" in text and "reasons:" in text and "attempts" in text

    # re-run: everything resumed, summary says so
    assert main(["compress", str(inputs), "-o", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count("passed (resumed)") == 2 and "2/2 assets ok" in text


def test_bad_input_file_exit_2_one_line_nothing_written(fake_toolkit: None, inputs: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    out = tmp_path / "out"
    rc = main(["compress", str(bad), str(inputs / "a.png"), "-o", str(out), "--jobs", "1"])
    cap = capsys.readouterr()
    assert rc == 2
    errs = [l for l in cap.err.splitlines() if l.startswith("inverity: error:")]
    assert len(errs) == 1 and str(bad) in errs[0] and "Traceback" not in cap.err
    assert not list(out.glob("bad*")) and (out / "a.fkl").is_file()     # the batch went on
    assert "FAILED" in cap.out
    # a path that does not exist: same convention
    assert main(["compress", str(tmp_path / "nope.png"), "-o", str(out), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("inverity: error:") == 1 and "nope.png: no such file" in err


def test_cli_errors(fake_toolkit: None, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", str(inputs), "-o", str(tmp_path / "o"), "--policy", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inverity: error: unknown policy 'nope'") and err.count("\n") == 1
    assert main(["inspect", str(tmp_path / "missing.avif")]) == 2
    assert "no such file" in capsys.readouterr().err
    stray = tmp_path / "stray.png"
    stray.write_bytes(b"x")
    assert main(["inspect", str(stray)]) == 2
    assert "no decision record" in capsys.readouterr().err


def test_inspect_falls_back_to_the_inv_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from inverity.container import pack

    h = {"codec_id": "learned", "model": "m", "model_version": 1, "quality": 3, "shape": [4, 6, 3],
         "dtype": "uint8", "package_version": "0.1.0", "weights_sha256": "ab" * 32, "recon_sha256": "cd" * 32}
    f = tmp_path / "x.inv"
    f.write_bytes(pack(h, b"payload"))
    assert main(["inspect", str(f), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["container"] == "inv" and rec["quality"] == 3 and rec["header"]["model"] == "m"


# ----------------------------------------------------------------------------------------------------------------
# end to end with the real modules
# ----------------------------------------------------------------------------------------------------------------
def _real_modules() -> None:
    for mod in ("inverity.verify", "inverity.analyse", "inverity.policy", "inverity.route"):
        pytest.importorskip(mod)
    from inverity import image

    try:
        image.load(imagecodecs.png_encode(np.zeros((2, 2), np.uint8)))
    except NotImplementedError:
        pytest.skip("image.load not implemented yet")


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _real_modules()
    out = tmp_path / "demo"
    rc = main(["demo", str(out), "--small", "--jobs", "1", "--only", "drawing.png", "--only", "ct_slice.dcm",
               "--only", "sensor16.png"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "policy auto" in cap.out and "ct_slice.dcm" in cap.out
    assert (out / "auto" / "ct_slice.dcm").is_file()
    assert (out / "report" / "index.html").is_file()


def test_real_compress_json_inspect_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _real_modules()
    from inverity.pipeline import RECORD_KEYS
    from inverity.samples import build_demo_set

    src = tmp_path / "in"
    build_demo_set(src, small=True, names=("drawing.png", "ct_slice.dcm"))
    good = (src / "drawing.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    rc = main(["compress", str(src), "-o", str(out), "--json", "--jobs", "1"])
    cap = capsys.readouterr()
    assert rc == 2
    recs = {r["input"]: r for r in map(json.loads, cap.out.splitlines())}
    assert set(recs) == {"drawing.png", "ct_slice.dcm", "truncated.png"}
    assert recs["truncated.png"]["status"] == "failed" and recs["ct_slice.dcm"]["status"] == "done"
    assert all(set(RECORD_KEYS) <= set(r) for r in recs.values())
    errs = [line for line in cap.err.splitlines() if line.startswith("inverity: error:")]
    assert len(errs) == 1 and "truncated.png" in errs[0] and "Traceback" not in cap.err
    assert not list(out.glob("truncated*"))
    assert main(["inspect", str(out / "ct_slice.dcm"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["container"] == "dicom" and rec["checks"]["lossless"] is True
