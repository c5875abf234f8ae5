"""The quality search (:mod:`inverity.search`): memoisation, where it starts, ``max`` as the old reference,
balanced outputs that pass a full verification, and the predicted-bytes early stop. Real codecs and the real
verifier on small skimage crops; the counting stage wraps a real JPEG encoder."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest

from inverity import _search_model, search as S
from inverity.errors import PolicyError
from inverity.image import Image, load
from inverity.pipeline import Toolkit, compress_one
from inverity.policy import Policy, get_policy
from inverity.route import Candidate
from inverity.stages.base import Capabilities, get_stage
from inverity.verify import Floors, verify


def _photo(h: int = 96, w: int = 128) -> Image:
    from skimage import data

    return Image(np.ascontiguousarray(data.chelsea()[60:60 + h, 100:100 + w]))


# ----------------------------------------------------------------------------------------------------------------
# a counting stage: real JPEG, but the bitstream only changes every 10 qualities (like AVIF's shared quantisers)
# ----------------------------------------------------------------------------------------------------------------
COUNTS: dict[str, list[Any]] = {"encode": [], "decode": []}


class CoarseJpeg:
    codec_id = "coarse-jpeg"
    capabilities = Capabilities(lossless=False, extensions=(".jpg",))
    quality_range = (1, 100)

    def __init__(self, quality: int | None = None, **opts: Any) -> None:
        self.quality, self.opts = quality, opts

    def encode(self, image: Image) -> bytes:
        COUNTS["encode"].append(self.quality)
        q = min(95, (int(self.quality) // 10) * 10 + 5)
        return bytes(imagecodecs.jpeg8_encode(image.pixels, level=q, optimize=True))

    def decode(self, data: bytes) -> Image:
        COUNTS["decode"].append(len(data))
        return Image(np.asarray(imagecodecs.jpeg8_decode(data)))


def _get_stage(codec_id: str, **kw: Any) -> Any:
    return CoarseJpeg(**kw) if codec_id == "coarse-jpeg" else get_stage(codec_id, **kw)


TK = dataclasses.replace(Toolkit.default(), get_stage=_get_stage)


@pytest.mark.parametrize("effort", ["max", "balanced"])
def test_identical_bitstreams_are_never_verified_twice_nor_a_quality_encoded_twice(effort: str) -> None:
    img = _photo()
    cand = Candidate("coarse-jpeg", None, True, {}, "", Floors(ssimulacra2=70.0), 0)
    COUNTS["encode"].clear(), COUNTS["decode"].clear()
    attempts: list[dict[str, Any]] = []
    best = S.search_quality(TK, img, cand, attempts, effort=effort)
    assert best is not None and best.passed
    assert len(COUNTS["encode"]) == len(set(COUNTS["encode"])), COUNTS["encode"]       # no quality twice
    sizes = [a["bytes"] for a in attempts]
    # every decode (and so every verification) is of a bitstream not seen before
    assert len(COUNTS["decode"]) == len(set(sizes)) < len(sizes), (sizes, COUNTS["decode"])
    reused = [a for a in attempts if "same_bitstream_as" in a]
    assert reused and all(a["reasons"][0].startswith("same bitstream as q=") for a in reused)


def test_never_starts_at_the_top_of_the_range() -> None:
    img = _photo()
    for effort in S.EFFORTS:
        for floors in (Floors.delivery(), Floors(ssimulacra2=95.0)):
            attempts: list[dict[str, Any]] = []
            S.search_quality(TK, img, Candidate("avif", None, True, {}, "", floors, 0), attempts, effort=effort,
                             predictor=S.load_predictor(_features(img), "photo", img.width * img.height))
            assert attempts[0]["quality"] < 100, (effort, attempts[0])


def _features(img: Image) -> dict[str, float]:
    from inverity.analyse import features

    return features(img)


def _old_search(img: Image, cand: Candidate) -> tuple[list[int], int, int]:
    """The pipeline's quality search before inverity.search (a verbatim port of the bisection, one full
    verification per probe): (qualities probed, chosen quality, chosen bytes)."""
    probes: list[int] = []
    passing: list[tuple[int, int]] = []

    def probe(q: int) -> bool:
        st = get_stage(cand.codec_id, quality=q)
        data = st.encode(img)
        ok = verify(img, st.decode(data), cand.floors).passed
        probes.append(q)
        if ok:
            passing.append((len(data), q))
        return ok

    lo, hi = 0, 100
    start = (lo + hi) // 2
    fail_q, pass_q = lo - 1, None
    if probe(start):
        pass_q = start
    else:
        fail_q = start
        if probe(hi):
            pass_q = hi
    assert pass_q is not None
    while pass_q - fail_q > 1:
        mid = (fail_q + pass_q) // 2
        if probe(mid):
            pass_q = mid
        else:
            fail_q = mid
    b, q = min(passing)
    return probes, q, b


@pytest.mark.parametrize("codec", ["jpeg", "avif"])
def test_max_is_the_old_bisection(codec: str) -> None:
    img = _photo()
    cand = Candidate(codec, None, True, {}, "", Floors.delivery(), 0)
    probes, q, b = _old_search(img, cand)
    attempts: list[dict[str, Any]] = []
    best = S.search_quality(Toolkit.default(), img, cand, attempts, effort="max")
    assert best is not None
    assert (best.entry["quality"], best.entry["bytes"]) == (q, b)
    assert [a["quality"] for a in attempts] == probes
    assert all(a.get("verified", "full") == "full" for a in attempts)


def test_balanced_output_passes_full_verification_with_fewer_encodes(tmp_path: Path) -> None:
    from skimage import data

    src = tmp_path / "in" / "cat.png"
    src.parent.mkdir()
    src.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(data.chelsea()[:200, :256])))
    recs = {}
    for effort in ("balanced", "max"):
        pol = dataclasses.replace(get_policy("delivery"), effort=effort)
        recs[effort] = compress_one(src, pol, outdir=tmp_path / effort).record
    rb, rm = recs["balanced"], recs["max"]
    assert rb["search"]["effort"] == "balanced" and rm["search"]["effort"] == "max"
    assert rb["search"]["encodes"] < rm["search"]["encodes"]
    assert rb["attempts"][0]["quality"] < 100
    # the written file, decoded independently, passes every floor of its candidate
    original = load(src.read_bytes())
    out = load(Path(rb["output"]).read_bytes())
    v = verify(original, out, Floors.delivery())
    assert v.passed, v.reasons
    chosen = [a for a in rb["attempts"] if a.get("chosen")]
    assert len(chosen) == 1 and chosen[0].get("verified", "full") == "full"
    assert rb["bytes"] <= 1.10 * rm["bytes"]


def _toy_model(png_bpp: float) -> dict[str, Any]:
    """A search model with no features' influence: PNG predicted at ``png_bpp`` bits per pixel (σ 0.1)."""
    n = len(S.MODEL_FEATURES)
    return {"format": "inverity-search-model/1", "spec": {"mean": [0.0] * n, "scale": [1.0] * n},
            "quality": {}, "slopes": {},
            "rate": {"png": {"form": "lossless", "coef": [math.log(png_bpp)] + [0.0] * n, "sigma": 0.1}}}


@pytest.mark.parametrize("png_bpp, png_tried", [(30.0, False), (0.01, True)])
def test_group_stops_when_the_predicted_lower_bound_cannot_win(png_bpp: float, png_tried: bool) -> None:
    img = _photo()
    group = [Candidate("jpeg", None, True, {}, "", Floors.delivery(), 0),
             Candidate("png", None, False, {}, "", Floors.lossless_only(), 0)]
    pred = S.Predictor(_toy_model(png_bpp), _features(img), "photo", img.width * img.height)
    attempts: list[dict[str, Any]] = []
    passed, notes = S.search_group(Toolkit.default(), img, group, attempts, effort="balanced", predictor=pred)
    stages = [a["stage"] for a in attempts]
    assert ("png" in stages) == png_tried
    if not png_tried:
        assert notes and notes[0].startswith("png not tried: its predicted size is at least")
        assert [c.codec_id for _, c in passed] == ["jpeg"]
    else:   # png predicted tiny: tried; its real size cannot beat the jpeg, so it is not even verified
        png = [a for a in attempts if a["stage"] == "png"]
        assert len(png) == 1 and png[0]["verified"] == "skipped" and not png[0]["passed"]
        assert png[0]["reasons"][0].startswith("not verified:") and not notes


def test_fast_uses_the_faster_codec_settings_and_staged_checks() -> None:
    img = _photo()
    attempts: list[dict[str, Any]] = []
    best = S.search_quality(Toolkit.default(), img, Candidate("avif", None, True, {}, "", Floors.controlled(), 0),
                            attempts, effort="fast")
    assert all(a["options"]["speed"] == 8 for a in attempts)
    assert best is None or best.verified == "full"
    failed_early = [a for a in attempts if a.get("verified") == "global"]
    for a in failed_early:     # a global failure never paid for the structure checks
        assert not any(n in a.get("failures", []) for n in ("local_snr", "edge_missing", "band_kept"))


def test_policy_effort_field() -> None:
    assert get_policy("delivery").effort == "balanced"
    p = Policy.from_dict({"name": "quick", "extends": "delivery", "effort": "fast"})
    assert p.effort == "fast" and Policy.from_dict(p.to_dict()) == p
    with pytest.raises(PolicyError, match="effort must be one of fast, balanced, max"):
        Policy.from_dict({"name": "x", "effort": "turbo"})


def test_shipped_model_has_provenance_and_predicts_a_sane_quality() -> None:
    path = S.search_model_path()
    if not path.exists():
        pytest.skip("no fitted search model shipped")
    import json

    m = json.loads(path.read_text())
    prov = m["provenance"]
    assert prov["script"] == "scripts/fit_search.py" and "shared/datasets/kodak" in prov["held_out_of_fitting"]
    img = _photo()
    p = S.load_predictor(_features(img), "photo", img.width * img.height)
    q7, q9 = p.quality("avif", Floors.delivery(), 0.7), p.quality("avif", Floors.delivery(), 0.9)
    assert q7 is not None and q9 is not None and 0 < q7 <= q9 + 1 < 101
    b = p.bytes("avif", q7)
    assert b is not None and 0 < b < img.pixels.nbytes


def test_predictor_file_is_read_once_per_process() -> None:
    """Workers stay warm: the search model is parsed once per process (again only after a refit)."""
    _search_model.read_model.cache_clear()
    img = _photo()
    for _ in range(3):
        S.load_predictor(_features(img), "photo", img.width * img.height)
    info = _search_model.read_model.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_guard_floors_are_checked_only_on_the_winner_and_a_failing_guard_moves_up() -> None:
    img = _photo()
    tk = Toolkit.default()
    # delivery: the local-SNR guard is deferred while searching, then checked on the smallest passing probe
    attempts: list[dict[str, Any]] = []
    pred = S.load_predictor(_features(img), "photo", img.width * img.height)
    best = S.search_quality(tk, img, Candidate("avif", None, True, {}, "", Floors.delivery(), 0), attempts,
                            effort="balanced", predictor=pred)
    assert best is not None and best.verified == "full" and best.entry["passed"] is True
    assert "local_snr" in best.checks
    for a in attempts:
        if a is not best.entry and a.get("verified") == "provisional":
            assert a["passed"] is None and "not checked" in a["reasons"][-1]
    # a guard no probe near the SSIMULACRA 2 floor meets: the smallest provisional probes fail it, the search
    # goes on upwards with full verification, and what it returns passes every floor when checked independently
    hard = Floors(ssimulacra2=70.0, local_snr=24.0)
    attempts = []
    best = S.search_quality(tk, img, Candidate("avif", None, True, {}, "", hard, 0), attempts, effort="balanced")
    assert best is not None and best.verified == "full"
    assert any(a["passed"] is False and "local_snr" in a.get("failures", []) for a in attempts)
    assert verify(img, get_stage("avif").decode(best.payload), hard).passed


def test_half_scale_screen_rejects_a_probe_far_below_the_floor_and_only_then() -> None:
    from skimage import data

    img = Image(np.ascontiguousarray(np.kron(data.astronaut(), np.ones((2, 2, 1), np.uint8))))  # 1 MP
    assert img.width * img.height >= S._SCREEN_MIN_PIXELS
    cand = Candidate("jpeg", None, True, {}, "", Floors.delivery(), 0)
    memo = S.Memo()
    low = S.attempt(Toolkit.default(), img, cand, 3, effort="balanced", memo=memo)
    assert low.verified == "screen" and not low.passed
    assert low.entry["reasons"][0].startswith("½-scale screen: ssimulacra2")
    st = get_stage("jpeg", quality=3)          # sound: the full-resolution verdict fails too
    assert not verify(img, st.decode(low.payload), Floors.delivery()).passed
    high = S.attempt(Toolkit.default(), img, cand, 92, effort="balanced", memo=memo)
    assert high.verified in ("full", "provisional") and high.passed
