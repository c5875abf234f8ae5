"""The CLI summary (``inverity.cli._summary``): fits an 80-column terminal, keeps asset names readable, says why
per row (failures included), one aggregate line about the learned stage, one unit convention."""
from __future__ import annotations

import doctest
from typing import Any

import pytest

from inverity.cli import _summary
from inverity.cli._summary import ellipsize_middle, learned_line, summary_lines, why_phrase

LONG = "archive/2019/field-survey/site-7/north-wall/panorama-stitched-final-v3.png"


def _lossy(name: str, q: int, *, kind: str = "photo", learned: list[tuple[int, float]] = (),  # type: ignore[assignment]
           s2: float = 72.4, policy: str = "controlled") -> dict[str, Any]:
    attempts: list[dict[str, Any]] = [
        {"stage": "learned", "quality": lq, "passed": False, "options": {"model": "hp-gain"}, "bytes": 9000,
         "reasons": [f"ssimulacra2 {ls} < 70", "window at (y=16, x=8) 16×16: signal-to-error 4.2 dB < 9 dB floor "
                                                "(error 38% of the local signal; 206 windows below the floor)"],
         "failures": ["ssimulacra2", "local_snr"]} for lq, ls in learned]
    attempts += [
        {"stage": "avif", "quality": q - 1, "passed": False, "search": True, "failures": ["local_snr"],
         "reasons": ["window at (y=0, x=0) 16×16: signal-to-error 8.7 dB < 9 dB floor", "ssimulacra2 71.0 >= 70"]},
        {"stage": "avif", "quality": q, "passed": True, "chosen": True, "search": True, "bytes": 30012,
         "reasons": [f"ssimulacra2 {s2} >= 70"]}]
    return {"input": name, "status": "done", "profile": {"kind": kind}, "policy": policy, "stage": "avif",
            "quality": q, "bytes": 30012, "input_bytes": 445_900, "attempts": attempts, "checks": {"lossless": False},
            "reasons": ["learned rejected: ssimulacra2 61.0 < 70", "avif: lossy, quality searched"]}


@pytest.fixture()
def records() -> list[dict[str, Any]]:
    return [
        _lossy(LONG, 67, learned=[(4, 47.1), (7, 61.0)]),
        _lossy("photos/chelsea.png", 68, learned=[(4, 52.0), (7, 58.9)]),
        {"input": "docs/scan.dcm", "status": "done", "profile": {"kind": "medical"}, "policy": "controlled",
         "stage": "jpeg2000", "container": "dicom", "quality": None, "bytes": 20_100, "input_bytes": 39_200,
         "checks": {"lossless": True},
         "attempts": [{"stage": "jpegls", "passed": True, "bytes": 21_000, "reasons": ["bit-exact"]},
                      {"stage": "jpeg2000", "passed": True, "chosen": True, "bytes": 20_100, "reasons": ["bit-exact"]}],
         "reasons": ["smallest of 2 passing equivalent choices (jpegls 21000 B, jpeg2000 20100 B)"]},
        {"input": "noise.png", "status": "failed", "profile": {"kind": "photo"}, "policy": "controlled",
         "error": "noise.png: no stage passed verification under policy controlled", "bytes": None,
         "attempts": [{"stage": "avif", "quality": 90, "passed": False, "reasons": ["ssimulacra2 41.0 < 70"]},
                      {"stage": "avif", "quality": 100, "passed": False, "reasons": ["ssimulacra2 55.2 < 70"]}]},
        {"input": "old.png", "status": "skipped", "profile": {"kind": "drawing"}, "policy": "controlled",
         "stage": "png", "bytes": 800, "input_bytes": 1200, "attempts": []},
    ]


def test_fits_80_columns_and_keeps_names_readable(records: list[dict[str, Any]]) -> None:
    lines = summary_lines(records, width=80, catalog="/very/long/output/directory/path/inverity.sqlite")
    assert all(len(line) <= 80 for line in lines[:-1]), [line for line in lines if len(line) > 80]
    assert lines[-1] == "catalog /very/long/output/directory/path/inverity.sqlite"
    row = next(line for line in lines if line.startswith("archive/"))
    name = row.split("  ")[0]
    assert "…" in name and name.startswith("arc") and name.endswith("-final-v3.png")   # both ends survive
    assert len(name.split("…")[1]) >= 15
    # every asset has its row, in order, each followed by its why
    starts = [i for i, line in enumerate(lines) for r in records if line.startswith(r["input"][:8])]
    assert len(starts) == len(records)
    for i in starts:
        assert lines[i + 1].startswith("  └ ")


def test_why_per_row_and_failed_rows_say_why(records: list[dict[str, Any]]) -> None:
    text = "\n".join(summary_lines(records, width=80))
    assert "└ passed: lowest passing q (q66 failed local_snr); learned rejected" in text
    assert "└ passed: bit-exact; smallest of 2 passing" in text
    assert "└ FAILED: no stage passed; best avif q100: ssimulacra2 55.2 < 70" in text
    assert "└ passed (resumed)" in text
    assert "jpeg2000/dcm" in text


def test_wide_terminal_puts_why_beside_the_row(records: list[dict[str, Any]]) -> None:
    lines = summary_lines(records, width=140)
    assert all(len(line) <= 140 for line in lines)
    header = next(line for line in lines if line.startswith("asset"))
    assert header.endswith("  why")
    col = header.index("why")
    failed = next(line for line in lines if line.startswith("noise.png"))
    assert failed[col:].startswith("FAILED: no stage passed")
    assert not any("└" in line for line in lines)


def test_one_learned_line_and_one_unit_convention(records: list[dict[str, Any]]) -> None:
    lines = summary_lines(records, width=80)
    text = "\n".join(lines)
    assert text.count("learned tried on") == 1
    assert "learned tried on 2 photos, passed 0: best SSIMULACRA2 61 < floor 70 at its top quality 7" in \
        " ".join(text.split())
    assert text.count("kB = 1000 B") == 1 and "KiB" not in text
    assert "3/4" not in text and "4/5 assets ok" in text
    assert "932.2 kB -> 80.9 kB" in text  # totals over the assets with an output, in the same unit


def test_learned_line_variants() -> None:
    base = {"profile": {"kind": "photo"}}
    passing = dict(base, stage="learned", attempts=[{"stage": "learned", "quality": 5, "passed": True}])
    failing = dict(base, attempts=[{"stage": "learned", "quality": 5, "passed": False, "failures": ["local_snr"],
                                    "reasons": ["window ...: signal-to-error 3 dB < 9 dB floor"]}])
    assert learned_line([passing, failing]) == "learned tried on 2 photos, passed 1 (written for 1)"
    assert learned_line([failing]) == "learned tried on 1 photo, passed 0: failed local_snr (1 of 1 tries)"
    drawing = dict(failing, profile={"kind": "drawing"})
    assert learned_line([drawing]).startswith("learned tried on 1 asset,")  # type: ignore[union-attr]
    assert learned_line([]) is None


def test_ellipsize_middle_and_why_edge_cases() -> None:
    assert ellipsize_middle(LONG, 40) == "archive/…/panorama-stitched-final-v3.png"   # the whole file name
    assert ellipsize_middle(LONG, 30) == "archive/2019/f…ed-final-v3.png"             # too long: both ends
    for n in range(1, len(LONG) + 2):
        assert len(ellipsize_middle(LONG, n)) == min(n, len(LONG))
    assert why_phrase({"status": "failed", "input": "x.png", "error": "x.png: truncated file", "attempts": []}) == \
        "FAILED: truncated file"
    assert why_phrase({"status": "done", "attempts": []}) == "passed"


def test_doctests() -> None:
    res = doctest.testmod(_summary)
    assert res.failed == 0 and res.attempted >= 10


def test_compress_prints_the_summary(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``compress`` command prints these lines (at the terminal's width, here COLUMNS=80)."""
    import imagecodecs
    import numpy as np

    from inverity import image
    from inverity.cli import main

    try:
        image.load(imagecodecs.png_encode(np.zeros((8, 8, 3), np.uint8)))
    except NotImplementedError:
        pytest.skip("inverity.image.load is not implemented yet")
    monkeypatch.setenv("COLUMNS", "80")
    src = tmp_path / "in" / "a-rather-long-directory-name-for-the-inputs-of-this-batch"
    src.mkdir(parents=True)
    drawing = np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((8, 8), np.uint8))
    (src / "drawing-with-a-long-file-name.png").write_bytes(imagecodecs.png_encode(drawing))
    rc = main(["compress", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--jobs", "1", "--policy", "archive"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines if not line.startswith("catalog ")), lines
    assert lines[-1] == f"catalog {tmp_path / 'out' / 'inverity.sqlite'}"
    row = next(line for line in lines if line.startswith("a-rather-long"))
    assert "…" in row and row.split("  ")[0].endswith("file-name.png") and "└ passed: bit-exact" in out and "1/1 assets ok" in out and "kB = 1000 B" in out
