"""inverity.bench.bdrate, inverity.bench.rd and ``inverity bench rd`` (plus the routing oracle, with fakes)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from inverity.bench.bdrate import bd_psnr, bd_rate
from inverity.bench.corruptions import corrupt_dataset
from inverity.bench.rd import bd_table, load_anchors, msssim_db, parse_qualities, run_rd, summarise
from inverity.cli import main

ANCHORS = Path(__file__).resolve().parent / "fixtures" / "bench" / "compressai-kodak"


# -- BD-rate --------------------------------------------------------------------------------------------------


def test_bd_rate_against_published_anchors() -> None:
    """CompressAI's Kodak numbers: the mean-scale hyperprior saves ≈55% over JPEG and ≈28% over WebP."""
    a = load_anchors(ANCHORS)
    jpeg, webp, hyper = a["JPEG"], a["WebP"], a["bmshj2018-hyperprior"]
    vs_jpeg = bd_rate(jpeg["bpp"], jpeg["psnr"], hyper["bpp"], hyper["psnr"])
    vs_webp = bd_rate(webp["bpp"], webp["psnr"], hyper["bpp"], hyper["psnr"])
    assert -58 <= vs_jpeg <= -52, vs_jpeg
    assert -32 <= vs_webp <= -24, vs_webp
    # the piecewise-cubic variant agrees within a point; BD-PSNR has the opposite sign and a plausible size
    assert abs(bd_rate(jpeg["bpp"], jpeg["psnr"], hyper["bpp"], hyper["psnr"], method="pchip") - vs_jpeg) < 1
    assert 3.5 < bd_psnr(jpeg["bpp"], jpeg["psnr"], hyper["bpp"], hyper["psnr"]) < 5.5
    # swapping anchor and test inverts the saving: (1 - 0.55) -> 1 / 0.45 - 1 ≈ +120%
    inv = bd_rate(hyper["bpp"], hyper["psnr"], jpeg["bpp"], jpeg["psnr"])
    assert inv == pytest.approx(100 * (1 / (1 + vs_jpeg / 100) - 1), rel=0.05)


def test_bd_rate_identities() -> None:
    psnr = [28.0, 31.0, 34.0, 37.0, 40.0]
    rate = [0.15, 0.3, 0.6, 1.1, 2.0]
    assert bd_rate(rate, psnr, rate, psnr) == pytest.approx(0, abs=1e-9)
    assert bd_rate(rate, psnr, [r * 1.2 for r in rate], psnr) == pytest.approx(20, abs=1e-6)
    assert bd_psnr(rate, psnr, rate, [p - 0.7 for p in psnr]) == pytest.approx(-0.7, abs=1e-9)
    # order of the points does not matter
    assert bd_rate(rate[::-1], psnr[::-1], [r / 2 for r in rate], psnr) == pytest.approx(-50, abs=1e-6)


def test_bd_rate_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate([0.1, 0.2, 0.4], [30, 32, 34], [0.1, 0.2, 0.4, 0.8], [30, 32, 34, 36])
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate([0.1, 0.2, 0.4, 0.8], [20, 21, 22, 23], [0.1, 0.2, 0.4, 0.8], [30, 32, 34, 36])
    with pytest.raises(ValueError, match="unknown method"):
        bd_rate([0.1, 0.2, 0.4, 0.8], [30, 32, 34, 36], [0.1, 0.2, 0.4, 0.8], [30, 32, 34, 36], method="linear")


def test_small_helpers() -> None:
    assert msssim_db(0.999) == pytest.approx(30.0)
    g = parse_qualities("jpeg=5,50;webp=10,20,30,40", ["jpeg", "webp", "learned"])
    assert g == {"jpeg": (5, 50), "webp": (10, 20, 30, 40), "learned": (1, 2, 3, 4, 5, 6, 7)}


def test_bd_table_skips_flat_curves() -> None:
    rows = []
    for codec, scale in (("jpeg", 1.0), ("webp", 0.7)):
        for i, q in enumerate((20, 40, 60, 80)):
            rows.append({"condition": "clean", "corruption": "", "severity": 0, "codec": codec, "quality": q,
                         "image": "a", "bpp": scale * (0.2 * 2 ** i), "psnr": 28 + 3 * i})
            # under heavy corruption PSNR against the clean original saturates: no BD-rate
            rows.append({"condition": "fog/5", "corruption": "fog", "severity": 5, "codec": codec, "quality": q,
                         "image": "a", "bpp": scale * (0.2 * 2 ** i), "psnr": 12.0 + 0.01 * i,
                         "psnr_input": 28 + 3 * i})
            # under noise, PSNR against the clean original falls as the codec keeps more of the noise
            rows.append({"condition": "noise/5", "corruption": "noise", "severity": 5, "codec": codec,
                         "quality": q, "image": "a", "bpp": scale * (0.2 * 2 ** i), "psnr": 20.0 - 2 * i,
                         "psnr_input": 20 + 3 * i})
            # a curve that shoots up and then saturates: cubic fits give BD-rate and BD-PSNR of opposite sign
            rows.append({"condition": "jpeg/5", "corruption": "jpeg", "severity": 5, "codec": codec,
                         "quality": q, "image": "a",
                         "bpp": (0.24, 0.26, 0.30, 0.42)[i] if codec == "jpeg" else (0.18, 0.25, 0.37, 0.51)[i],
                         "psnr": 20.0, "psnr_input": ((39.5, 46.8, 48.3, 48.5) if codec == "jpeg"
                                                      else (36.0, 42.6, 46.9, 49.1))[i]})
    bd = bd_table(summarise(rows), metrics=["psnr"])
    odd = next(b for b in bd if b["condition"] == "jpeg/5" and b["distortion"] == "psnr_input")
    assert odd["bd_rate"] is None and "disagree" in odd["note"]
    falling = next(b for b in bd if b["condition"] == "noise/5" and b["distortion"] == "psnr")
    assert falling["bd_rate"] is None and "not monotone" in falling["note"]
    clean = next(b for b in bd if b["condition"] == "clean")
    assert clean["bd_rate"] == pytest.approx(-30, abs=1e-6)
    flat = next(b for b in bd if b["condition"] == "fog/5" and b["distortion"] == "psnr")
    assert flat["bd_rate"] is None and "overlap" in flat["note"]
    fidelity = next(b for b in bd if b["condition"] == "fog/5" and b["distortion"] == "psnr_input")
    assert fidelity["bd_rate"] == pytest.approx(-30, abs=1e-6)


# -- the RD run -----------------------------------------------------------------------------------------------


def _dataset(root: Path) -> Path:
    from skimage import data, transform

    root.mkdir(parents=True)
    for name, img in (("astronaut.png", data.astronaut()), ("coffee.png", data.coffee())):
        small = (transform.resize(img, (96, 128), anti_aliasing=True) * 255).round().astype(np.uint8)
        (root / name).write_bytes(imagecodecs.png_encode(small))
    return root


def test_run_rd_clean_and_corrupted(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    corrupted = tmp_path / "c"
    corrupt_dataset(data, corrupted, corruptions=["gaussian_noise"], severities=[1, 5])
    out = tmp_path / "rd"
    grids = {"jpeg": (20, 40, 60, 80, 95), "webp": (20, 40, 60, 80, 95), "nonexistent": (1,)}
    res = run_rd(data, out, codecs=["jpeg", "webp", "nonexistent"], qualities=grids, corrupted=corrupted,
                 metrics=["psnr"], anchors=ANCHORS, spectral_bpp=1.0)
    assert any("codec nonexistent skipped" in n for n in res.notes)
    clean = [p for p in res.points if p["condition"] == "clean"]
    assert len(clean) == 2 * 2 * 5
    for p in clean:     # bpp comes from the real stream size
        assert p["bpp"] == pytest.approx(8 * p["bytes"] / (p["width"] * p["height"]))
        assert p["psnr"] > 20 and p["enc_ms"] >= 0 and p["dec_ms"] >= 0
    noisy = [p for p in res.points if p["condition"] == "gaussian_noise/5"]
    assert len(noisy) == 2 * 2 * 5 and all("psnr_input" in p for p in noisy)
    # heavy noise: the reconstruction is far from the clean original whatever the rate
    assert max(p["psnr"] for p in noisy) < min(p["psnr"] for p in clean)
    # bigger quality -> more bytes, for every codec and image
    for codec in ("jpeg", "webp"):
        for img in ("astronaut.png", "coffee.png"):
            b = [p["bytes"] for p in clean if p["codec"] == codec and p["image"] == img]
            assert b == sorted(b)
    conds = {b["condition"] for b in res.bd}
    assert conds == {"clean", "gaussian_noise/1", "gaussian_noise/5"}
    webp_clean = next(b for b in res.bd if b["condition"] == "clean" and b["codec"] == "webp")
    assert webp_clean["bd_rate"] is not None and -80 < webp_clean["bd_rate"] < 80
    assert any(b["codec"] == "anchor:bmshj2018-hyperprior" for b in res.bd)
    # spectra: the corruption itself (white noise) puts most of its energy in the high band
    noise_row = next(r for r in res.spectral if r["condition"] == "gaussian_noise/5" and r["codec"] == "input")
    assert noise_row["share_high"] > 0.6
    for name in ("points.csv", "summary.csv", "bd.csv", "spectral_bands.csv", "rd.json", "rd.md",
                 "rd_clean_psnr.png", "spectrum_clean.png", "radial_clean.png", "bd_matrix_psnr_input.png",
                 "rd_gaussian_noise_psnr.png", "spectrum_gaussian_noise.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    doc = json.loads((out / "rd.json").read_text())
    assert doc["config"]["conditions"] == ["gaussian_noise/1", "gaussian_noise/5"]
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["codec"] for r in rows} == {"jpeg", "webp"}
    md = (out / "rd.md").read_text()
    assert "BD-rate against JPEG (clean)" in md and "gaussian_noise/5" in md


def test_cli_rd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "data")
    out = tmp_path / "rd"
    rc = main(["bench", "rd", "--data", str(data), "-o", str(out), "--codecs", "jpeg,webp",
               "--qualities", "25,50,75,90", "--metrics", "psnr", "--limit", "1", "--no-spectral"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "BD-rate (PSNR) webp vs jpeg:" in cap.out
    summary = json.loads((out / "rd.json").read_text())["summary"]
    assert {(r["codec"], r["quality"]) for r in summary} == {(c, q) for c in ("jpeg", "webp")
                                                             for q in (25, 50, 75, 90)}
    assert not (out / "spectral_bands.csv").exists()
    assert main(["bench", "rd", "--data", str(data), "-o", str(out), "--codecs", "nonexistent"]) == 2
    assert "no codec could be built" in capsys.readouterr().err


# -- the routing oracle, with a fake verifier (the router itself is tested where it lives) ----------------------


def test_oracle_finds_the_cheapest_passing_choice() -> None:
    import dataclasses

    from inverity.bench.routing import oracle
    from inverity.image import Image
    from inverity.pipeline import Toolkit
    from inverity.policy import Policy
    from inverity.route import Candidate
    from inverity.stages.base import get_stage
    from inverity.verify import Floors, Verdict

    from skimage import data, transform

    px = (transform.resize(data.astronaut(), (64, 64), anti_aliasing=True) * 255).round().astype(np.uint8)
    image = Image(px)

    def verify(orig: Image, rec: Image, floors: Floors) -> Verdict:   # the fake: PSNR only
        a, b = orig.pixels.astype(float), rec.pixels.astype(float)
        mse = np.mean((a - b) ** 2)
        ok = bool(mse == 0 or 10 * np.log10(255 ** 2 / mse) >= float(floors.psnr or 0))
        return Verdict(ok, [f"psnr {'>=' if ok else '<'} {floors.psnr}"], {}, [] if ok else ["psnr"])

    tk = dataclasses.replace(Toolkit.default(), verify=verify)
    policy = Policy("psnr34", stages=("jpeg", "webp", "png"), floors=Floors(psnr=34.0))

    res = oracle(image, policy, [], grid=range(10, 101, 10), exhaustive=True, refine=False, toolkit=tk)
    assert set(res.best_per_stage) == {"jpeg", "webp", "png"}
    assert res.bytes == min(v["bytes"] for v in res.best_per_stage.values())
    # brute force over the same grid agrees
    brute = []
    for sid in ("jpeg", "webp"):
        for q in range(10, 101, 10):
            st = get_stage(sid, quality=q)
            enc = st.encode(image)
            if verify(image, st.decode(enc), policy.floors).passed:
                brute.append(len(enc))
    brute.append(res.best_per_stage["png"]["bytes"])
    assert res.bytes == min(brute)
    # bisecting the last grid gap can only find a smaller passing stream, at a quality off the grid
    fine = oracle(image, policy, [], grid=range(10, 101, 10), toolkit=tk)
    assert fine.bytes is not None and fine.bytes <= res.bytes
    lossy = [v for k, v in fine.best_per_stage.items() if k in ("jpeg", "webp")]
    assert all(v["quality"] is not None for v in lossy)
    # a candidate's own floors override the policy's (here: impossible for webp)
    res2 = oracle(image, policy, [Candidate("webp", floors=Floors(psnr=200.0))], grid=range(10, 101, 10), toolkit=tk)
    assert "webp" not in res2.best_per_stage


def test_cli_routing_reports_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end when the router modules exist; otherwise a one-line error naming what is missing."""
    data = _dataset(tmp_path / "data")
    rc = main(["bench", "routing", "--data", str(data), "--policy", "delivery", "-o", str(tmp_path / "r"),
               "--limit", "1", "--grid-step", "20"])
    cap = capsys.readouterr()
    try:
        from inverity.pipeline import Toolkit

        Toolkit.default()
    except ImportError:
        assert rc == 2 and cap.err.startswith("inverity: error: bench routing needs the router")
        return
    assert rc == 0, cap.err
    doc = json.loads((tmp_path / "r" / "routing.json").read_text())
    row = doc["rows"][0]
    assert row["oracle_bytes"] and row["router_bytes"]
    assert doc["summary"]["violations"] == 0
