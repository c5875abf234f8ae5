"""Nothing lost, clear errors: the CLI never writes over an input, a failed re-run keeps the last good output,
outputs are never re-ingested, odd file names and empty folders are handled, and every error is one line that
names the user's path and the cause. In-process through ``inverity.cli.main`` (fake toolkit where the pipeline's
own codecs do not matter, real modules where the issue was seen with them)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

import inverity.pipeline as pipeline
from inverity.catalog import CATALOG_NAME, Catalog
from inverity.cli import main

from test_pipeline import FAKE, _photo


@pytest.fixture()
def fake_toolkit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.Toolkit, "default", classmethod(lambda cls: FAKE))


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagecodecs.png_encode(_photo(seed)))
    return path


def _errors(err: str) -> list[str]:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    return [ln for ln in lines if ln.startswith("inverity: error:")]


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    errs = _errors(capsys.readouterr().err)
    assert len(errs) == 1, errs
    return errs[0]


# -- issue 1: a failed re-run keeps the previous output and its record ----------------------------------------
def test_failed_rerun_keeps_previous_output_and_row(fake_toolkit: None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    a = _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(["compress", str(a), "-o", str(out), "--policy", "delivery", "--jobs", "1"]) == 0
    good = (out / "a.fkl").read_bytes()
    capsys.readouterr()
    rc = main(["compress", str(a), "-o", str(out), "--policy", "strict", "--jobs", "1", "--json"])
    cap = capsys.readouterr()
    assert rc == 2
    assert (out / "a.fkl").read_bytes() == good                       # the last good output is still there
    line = [ln for ln in _errors(cap.err)][0]
    assert "kept previous output a.fkl from 20" in line
    rec = json.loads(cap.out.splitlines()[0])
    assert rec["status"] == "failed" and rec["kept_previous"]["output"].endswith("a.fkl")
    with Catalog(out / CATALOG_NAME, readonly=True) as cat:
        row = cat.get("a.png")
        assert row["status"] == "done" and row["stage"] == "fake-lossy" and row["output"] == "a.fkl"
    # inspect still explains the kept output
    assert main(["inspect", str(out / "a.fkl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stage"] == "fake-lossy"


def test_failed_rerun_with_a_real_toml_policy_keeps_the_avif(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's own reproduction: real codecs, a TOML policy whose floor cannot be met."""
    from skimage import data as skd

    a = tmp_path / "a.png"
    a.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(skd.astronaut()[::8, ::8])))
    out = tmp_path / "out"
    assert main(["compress", str(a), "-o", str(out), "--policy", "delivery", "--jobs", "1"]) == 0
    outputs = [p for p in out.iterdir() if p.name != CATALOG_NAME]
    assert len(outputs) == 1
    good = outputs[0].read_bytes()
    pol = tmp_path / "impossible.toml"
    pol.write_text('name = "impossible"\nextends = "delivery"\naccept = ["jpeg"]\n[floors]\nssimulacra2 = 99.9\n')
    capsys.readouterr()
    assert main(["compress", str(a), "-o", str(out), "--policy", str(pol), "--jobs", "1"]) == 2
    line = _one_error(capsys)
    assert f"kept previous output {outputs[0].name} from" in line
    assert outputs[0].read_bytes() == good


# -- issue 2: never write over an input --------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_encode_and_decode_refuse_to_write_over_their_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             spelling: str) -> None:
    x = _png(tmp_path / "x.png")
    before = x.read_bytes()
    target = {"same": x, "dot": tmp_path / "." / "x.png", "symlink": tmp_path / "link.png",
              "hardlink": tmp_path / "hard.png"}[spelling]
    if spelling == "symlink":
        target.symlink_to(x)
    elif spelling == "hardlink":
        os.link(x, target)
    assert main(["encode", str(x), "-o", str(target), "--codec", "png"]) == 2
    assert "refusing to write over an input" in _one_error(capsys)
    assert x.read_bytes() == before
    webp = tmp_path / "x.webp"
    assert main(["encode", str(x), "-o", str(webp), "--codec", "webp"]) == 0
    capsys.readouterr()
    assert main(["decode", str(webp), "-o", str(webp)]) == 2
    assert "refusing to write over an input" in _one_error(capsys)
    assert x.read_bytes() == before


def test_compress_into_its_own_input_tree_never_overwrites_an_input(fake_toolkit: None, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "d"
    a = _png(d / "a.png")
    before = a.read_bytes()
    # archive (fake-lossless) writes .png: the output would be d/a.png, the input itself
    assert main(["compress", str(d), "-o", str(d), "--policy", "archive", "--jobs", "1"]) == 2
    assert "refusing to write over an input" in _one_error(capsys)
    assert a.read_bytes() == before


def test_output_safety_check_is_public_and_shared() -> None:
    from inverity import outputs
    from inverity.cli import _codecs

    assert callable(outputs.check_output) and callable(outputs.same_file)
    src = Path(_codecs.__file__).read_text() + Path(pipeline.__file__).read_text()
    assert src.count("check_output(") >= 3          # encode, decode, compress all use the one check


# -- issue 11: outputs inside the input tree are never inputs ----------------------------------------------------
def test_compress_dir_into_itself_twice_does_not_reingest_outputs(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Real codecs: their outputs (AVIF, JPEG XL, WebP ...) are images the walker would otherwise take."""
    from skimage import data as skd

    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.png").write_bytes(imagecodecs.png_encode(np.ascontiguousarray(skd.astronaut()[::8, ::8])))
    (d / "sub" / "b.png").write_bytes(imagecodecs.png_encode(np.ascontiguousarray(skd.coffee()[::8, ::8])))
    assert main(["compress", str(d), "-o", str(d), "--policy", "delivery", "--jobs", "1", "--json"]) == 0
    first = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert sorted(r["input"] for r in first) == ["a.png", "sub/b.png"]
    names = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    assert main(["compress", str(d), "-o", str(d), "--policy", "delivery", "--jobs", "1", "--json"]) == 0
    second = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert sorted(r["input"] for r in second) == ["a.png", "sub/b.png"]
    assert {r["status"] for r in second} == {"skipped"}
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) == names   # nothing new
    assert len(names) == 5 and CATALOG_NAME in names


# -- issue 7: a non-UTF-8 file name does not abort the batch -------------------------------------------------------
def test_non_utf8_file_name_does_not_abort_the_batch(fake_toolkit: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "in"
    _png(d / "a.png")
    odd = os.path.join(os.fsencode(d), b"caf\xe9.png")
    try:
        with open(odd, "wb") as f:
            f.write(imagecodecs.png_encode(_photo(1)))
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    out = tmp_path / "out"
    assert main(["compress", str(d), "-o", str(out), "--policy", "delivery", "--jobs", "1", "--json"]) == 0
    cap = capsys.readouterr()
    recs = {r["input"]: r for r in map(json.loads, cap.out.splitlines())}
    assert set(recs) == {"a.png", "caf\\udce9.png"}
    assert all(r["status"] == "done" for r in recs.values())
    assert (out / "a.fkl").is_file() and (out / "caf\\udce9.fkl").is_file()
    assert "not valid UTF-8" in cap.err
    # resumable under its safe name
    assert main(["compress", str(d), "-o", str(out), "--policy", "delivery", "--jobs", "1", "--json"]) == 0
    assert {json.loads(ln)["status"] for ln in capsys.readouterr().out.splitlines()} == {"skipped"}


# -- issue 6: usage errors and Ctrl-C, with typer's own exception types ----------------------------------------
@pytest.mark.parametrize(("argv", "needle"), [
    (["encode"], "encode: Missing argument 'input'"),
    (["encode", "x.png"], "Missing option '-o' / '--output'"),
    (["encode", "x.png", "-o", "y.png", "--codec", "png", "--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
    (["compress", "x", "-o", "y", "--jobs", "zero"], "Invalid value for '--jobs'"),
])
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    line = _one_error(capsys)
    assert needle in line and "MissingParameter" not in line and "Exception" not in line


def test_ctrl_c_says_interrupted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("inverity.image.load", interrupted)
    x = _png(tmp_path / "x.png")
    assert main(["encode", str(x), "-o", str(tmp_path / "y.png"), "--codec", "png"]) == 130
    assert _one_error(capsys) == "inverity: error: interrupted"


def test_the_cli_does_not_import_click() -> None:
    """click is not a dependency (typer >= 0.28 vendors it): the error paths must not need it."""
    code = ("import sys; from inverity.cli import main; main(['encode']); main(['nosuch']); "
            "print('click' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- issue 12: unknown names are errors ------------------------------------------------------------------------
def test_analyse_unknown_model_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = _png(tmp_path / "x.png")
    assert main(["analyse", str(x), "--model", "nope"]) == 2
    line = _one_error(capsys)
    assert "unknown learned model 'nope'; available:" in line


# -- issue 13: newcomer things ---------------------------------------------------------------------------------
def test_compress_empty_dir_is_exit_2_and_a_missing_path_creates_nothing(
        fake_toolkit: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["compress", str(empty), "-o", str(out)]) == 2
    assert "no images found in" in _one_error(capsys)
    assert not (out / CATALOG_NAME).exists()
    out2 = tmp_path / "out2"
    assert main(["compress", str(tmp_path / "nope") + "/", "-o", str(out2)]) == 2
    assert "nope: no such file or directory" in _one_error(capsys)
    assert not out2.exists()


def test_encode_refuses_an_extension_of_another_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = _png(tmp_path / "x.png")
    bad = tmp_path / "y.png"
    assert main(["encode", str(x), "-o", str(bad), "--codec", "avif"]) == 2
    line = _one_error(capsys)
    assert "avif writes .avif files, not .png" in line and "y.avif" in line
    assert not bad.exists()
    assert main(["encode", str(x), "-o", str(tmp_path / "y.avif"), "--codec", "avif"]) == 0


def test_verify_floors_ssimulacra2_at_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skimage import data as skd

    photo = np.ascontiguousarray(skd.astronaut()[::4, ::4])
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(imagecodecs.png_encode(photo))
    b.write_bytes(imagecodecs.png_encode(np.random.default_rng(0).integers(0, 256, photo.shape, dtype=np.uint8)))
    assert main(["verify", str(a), str(b), "--policy", "delivery", "--json"]) == 1
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert checks["ssimulacra2"] == 0.0


def test_catalog_has_relative_paths_no_wal_files_and_can_live_elsewhere(
        fake_toolkit: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "in"
    _png(d / "a.png")
    out = tmp_path / "out"
    assert main(["compress", str(d), "-o", str(out), "--policy", "delivery", "--jobs", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.fkl", CATALOG_NAME]      # no -wal / -shm left
    raw = sqlite3.connect(out / CATALOG_NAME).execute("SELECT record, output FROM assets").fetchall()
    assert str(tmp_path) not in json.dumps(raw)                                 # no absolute path stored
    rec = json.loads(raw[0][0])
    assert rec["output"] == "a.fkl" and rec["input_path"] == "../in/a.png"
    with Catalog(out / CATALOG_NAME, readonly=True) as cat:                      # read back: absolute again
        assert Path(cat.get("a.png")["record"]["input_path"]) == (d / "a.png").resolve()

    # --catalog elsewhere: the deliverables folder holds only deliverables
    elsewhere = tmp_path / "meta" / "batch.sqlite"
    out2 = tmp_path / "out2"
    assert main(["compress", str(d), "-o", str(out2), "--policy", "delivery", "--jobs", "1",
                 "--catalog", str(elsewhere)]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["a.fkl"] and elsewhere.is_file()
    capsys.readouterr()
    assert main(["inspect", str(out2 / "a.fkl"), "--catalog", str(elsewhere), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "a.png"
    # resume works through the same --catalog
    assert main(["compress", str(d), "-o", str(out2), "--policy", "delivery", "--jobs", "1",
                 "--catalog", str(elsewhere)]) == 0
    assert "passed (resumed)" in capsys.readouterr().out


def test_inspect_finds_a_moved_output_by_its_content(fake_toolkit: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "in"
    _png(d / "a.png")
    out = tmp_path / "out"
    assert main(["compress", str(d), "-o", str(out), "--policy", "delivery", "--jobs", "1"]) == 0
    moved = tmp_path / "elsewhere" / "renamed.fkl"
    moved.parent.mkdir()
    (out / "a.fkl").rename(moved)
    capsys.readouterr()
    assert main(["inspect", str(moved), "--catalog", str(out / CATALOG_NAME)]) == 0
    text = " ".join(capsys.readouterr().out.split())       # rich may wrap the header line
    assert "matched by content (sha256)" in text and "a.png" in text
    assert main(["inspect", str(moved)]) == 2                  # no catalog near it, none given: say how to
    assert "--catalog" in _one_error(capsys)


# -- issue 14: errors name the user's path and the cause in words --------------------------------------------------
def test_output_under_a_file_names_the_file(fake_toolkit: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    x = _png(tmp_path / "x.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(["compress", str(x), "-o", str(blocker / "out")]) == 2
    line = _one_error(capsys)
    assert f"{blocker} exists and is a file" in line and "Errno" not in line
    assert main(["encode", str(x), "-o", str(blocker / "y.png"), "--codec", "png"]) == 2
    line = _one_error(capsys)
    assert f"{blocker} exists and is a file" in line and "Errno" not in line
    assert main(["compress", str(x), "-o", str(blocker)]) == 2
    assert "exists and is a file; the output (-o) must be a directory" in _one_error(capsys)


def test_write_errors_name_the_output_not_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    x = _png(tmp_path / "x.png")
    out = tmp_path / "y.webp"

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["encode", str(x), "-o", str(out), "--codec", "webp"]) == 2
    line = _one_error(capsys)
    assert line == f"inverity: error: {out}: no space left on device"
    assert not list(tmp_path.glob(".*.part")) and not out.exists()


def test_an_unusable_catalog_is_named_with_its_cause(fake_toolkit: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    x = _png(tmp_path / "x.png")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    assert main(["compress", str(x), "-o", str(tmp_path / "o"), "--catalog", str(junk)]) == 2
    line = _one_error(capsys)
    assert str(junk) in line and "not an inverity catalog" in line and "OperationalError" not in line


# -- issue 13: train says what its numbers are and where the checkpoint went ----------------------------------------
def test_train_labels_its_numbers_and_prints_the_checkpoint(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from skimage import data as skd

    tdir = tmp_path / "train"
    tdir.mkdir()
    for i, name in enumerate(("astronaut", "chelsea")):
        (tdir / f"{i}.png").write_bytes(imagecodecs.png_encode(np.ascontiguousarray(getattr(skd, name)()[:64, :64, :3])))
    ckpt = tmp_path / "c.pt"
    rc = main(["train", str(tdir), "--val-dir", str(tdir), "--ckpt", str(ckpt), "--steps", "100", "--batch", "1",
               "--crop", "64", "--N", "8", "--M", "8", "--warmup", "1", "--val-every", "100", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "step 100: loss " in out and " bpp, mse " in out and "s/step" in out
    assert "val step 100 (quality: rate bpp / PSNR dB): q1: " in out and " dB" in out
    assert f"checkpoint saved: {ckpt.resolve()} (step 100)" in out
