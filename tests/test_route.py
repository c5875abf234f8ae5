"""Routing tables: every policy × kind, the learned stage's conditions, bit depth, alpha, metadata, DICOM, auto."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inverity.analyse import KINDS, Profile
from inverity.image import Image
from inverity.policy import BUILTIN_POLICIES, Policy, get_policy
from inverity.route import (AUTO_BY_KIND, DICOM_TRANSFER_SYNTAX_STAGES, LINE_ART_KINDS, Candidate, explain,
                            make_plan, plan, resolve_policy)
from inverity.stages.base import Capabilities

# The stage contract's capabilities, fixed here so the routing tables are tested independently of which codec
# libraries are installed (one test below checks the real registry agrees).
C = Capabilities
CAPS = {
    "jpeg": C(False, (8,), (1, 3), False, ("icc", "exif", "xmp")),
    "webp": C(False, (8,), (3, 4), True, ("icc", "exif", "xmp")),
    "avif": C(False, (8, 16), (3, 4), True, ()),
    "jxl": C(False, (8, 16), (1, 2, 3, 4), True, ("exif", "xmp")),
    "png": C(True, (8, 16), (1, 2, 3, 4), True, ("icc", "exif", "xmp")),
    "webp-lossless": C(True, (8,), (3, 4), True, ("icc", "exif", "xmp")),
    "jxl-lossless": C(True, (8, 16), (1, 2, 3, 4), True, ("exif", "xmp")),
    "jpegls": C(True, (8, 16), (1, 3, 4), True, (), near_lossless=True),
    "jpeg2000": C(True, (8, 16), (1, 2, 3, 4), True, ()),
    "learned": C(False, (8,), (3,), False, (), standard=False, learned=True),
    "original": C(True, (8, 16), (1, 2, 3, 4), True, ("icc", "exif", "xmp", "dicom")),
    "jxl-jpeg": C(True, (8,), (1, 3), False, ("icc", "exif", "xmp"), sources=("jpeg",)),
}
MODEL = {"name": "hp-gain", "decode_ms_per_mp": 4000.0}
MODELS = {"hp-gain": MODEL}


def prof(kind: str = "photo", *, in_dist: bool | None = True, channels: int = 3, bit_depth: int = 8,
         flags: tuple[str, ...] = (), meta: tuple[str, ...] = (), w: int = 768, h: int = 512) -> Profile:
    return Profile(kind, 0.9, ood_score=3.0 if in_dist else 12.0, ood_threshold=7.9,
                   in_distribution=in_dist, ood_model="hp-gain", flags=list(flags),
                   drivers=[{"feature": "flat_frac", "z": 9.5, "value": 0.4, "train_mean": -2.0}],
                   width=w, height=h, channels=channels, bit_depth=bit_depth, metadata_keys=list(meta))


def mk(profile: Profile, policy: str | Policy, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("stages", CAPS)
    kw.setdefault("models", MODELS)
    kw.setdefault("default_model", "hp-gain")
    return make_plan(profile, policy, **kw)


def ids(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.codec_id for c in p.candidates]


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_policy_and_kind_gives_reasoned_candidates(policy: str, kind: str) -> None:
    p = mk(prof(kind), policy)
    assert p.candidates, p.explain()
    for c in p.candidates:
        assert isinstance(c, Candidate) and c.reason and c.floors is not None
        cap = CAPS[c.codec_id]
        assert c.search == (not cap.lossless)          # lossy: quality searched per image; lossless: fixed
        if cap.lossless and not c.options.get("near"):
            assert c.floors.lossless
    groups = [c.group for c in p.candidates]
    assert groups == sorted(groups) and groups[0] == 0
    if p.policy.lossless_only or p.policy.bounded_only:
        assert all(CAPS[c].lossless for c in ids(p))
    if p.policy.lossless_only:
        assert not any(c.options.get("near") for c in p.candidates)
    if p.policy.name != "controlled" or kind != "photo":
        assert "learned" not in ids(p)
    if policy == "auto":
        assert p.policy.name != "controlled" and p.notes and p.notes[0].startswith("auto -> ")


def test_delivery_photo_searches_standard_lossy_formats_in_table_order() -> None:
    p = mk(prof("photo"), "delivery")
    assert ids(p) == ["avif", "webp", "jpeg", "png"]      # no jxl: browsers do not decode it (accept)
    assert "clients accept only avif, webp, jpeg, png" in next(s.reason for s in p.skipped if s.codec_id == "jxl")
    assert all(c.search and c.quality is None for c in p.candidates[:3])
    assert p.candidates[0].floors == get_policy("delivery").floors
    assert p.candidates[-1].floors.lossless and p.candidates[-1].group == 3     # PNG: the last resort


@pytest.mark.parametrize("kind", LINE_ART_KINDS)
def test_line_art_goes_lossless_or_near_lossless_where_smaller_with_stricter_lossy_floors(kind: str) -> None:
    # delivery: browser formats only (no JPEG XL, no JPEG-LS)
    d = mk(prof(kind), "delivery")
    assert ids(d) == ["webp-lossless", "png", "avif", "webp", "jpeg"] and {c.group for c in d.candidates} == {0}
    # where the clients accept everything (here: controlled, whose learned stage skips line art), the full table
    p = mk(prof(kind), "controlled")
    assert {c.group for c in p.candidates} == {0}  # one group: the smallest passing candidate wins
    ids_ = [c.codec_id for c in p.candidates]
    assert ids_[:4] == ["webp-lossless", "png", "jxl-lossless", "jpegls"]
    jls = p.candidates[3]
    assert jls.options == {"near": 2} and jls.floors.max_abs_error == 2 and not jls.floors.lossless
    lossy = p.candidates[4:]
    assert [c.codec_id for c in lossy] == ["avif", "jxl", "webp", "jpeg"] and all(c.search for c in lossy)
    assert all(c.floors.ssimulacra2 >= 80 for c in lossy)


def test_controlled_puts_learned_in_the_same_group_as_avif_for_an_in_distribution_photo() -> None:
    p = mk(prof("photo"), "controlled")
    c = p.candidates[0]
    assert c.codec_id == "learned" and c.search and c.options == {"model": "hp-gain"} and c.group == 0
    assert "in distribution" in c.reason and "ms" in c.reason and "verified with structure checks" in c.reason
    assert c.floors == get_policy("controlled").floors and c.floors.edge_missing is not None
    assert ids(p)[1:] == ["avif", "webp", "jpeg", "jxl", "png"]
    # the learned stage competes with AVIF (smallest passing wins) at the same floors; the rest are fallbacks
    assert [(x.codec_id, x.group) for x in p.candidates[:3]] == [("learned", 0), ("avif", 0), ("webp", 1)]
    assert p.candidates[1].floors == c.floors


def test_learned_reason_says_which_structure_checks_a_policy_removed() -> None:
    lenient = Policy.from_dict({"name": "lenient", "extends": "controlled",
                                "floors": {"ssimulacra2": 50, "edge_missing": False}})
    c = mk(prof("photo"), lenient).candidates[0]
    assert c.codec_id == "learned" and "verified with structure checks" not in c.reason
    assert "structure checks edge_missing not applied (policy lenient)" in c.reason


@pytest.mark.parametrize("case, profile, policy, models, needle", [
    ("model missing", prof("photo"), "controlled", {}, "learned model 'hp-gain' is missing"),
    ("out of distribution", prof("photo", in_dist=False), "controlled", MODELS, "out of distribution: ood score 12.0"),
    ("no ood stats", prof("photo", in_dist=None), "controlled", MODELS, "unknown is not in"),
    ("not a photo", prof("aerial"), "controlled", MODELS, "content is aerial, not a natural photo"),
    ("kind unknown", dataclasses.replace(prof("photo"), kind_source="fallback"), "controlled", MODELS,
     "content kind unknown"),
    ("budget too small", prof("photo"),
     Policy.from_dict({"name": "tight", "extends": "controlled", "decode_budget_ms_per_mp": 100}), MODELS,
     "decode budget too small"),
    ("16-bit", prof("photo", bit_depth=16), "controlled", MODELS, "takes 8-bit samples; this image is 16-bit"),
    ("alpha", prof("photo", channels=4, flags=("alpha",)), "controlled", MODELS, "takes 3 channels"),
])
def test_learned_is_skipped_with_the_failed_condition(case: str, profile: Profile, policy, models, needle) -> None:
    p = mk(profile, policy, models=models)
    assert "learned" not in ids(p)
    assert p.candidates, case                         # the delivery fallbacks remain
    reasons = [s.reason for s in p.skipped if s.codec_id == "learned"]
    assert reasons and needle in reasons[0], (case, reasons)
    assert any(line.startswith("skipped learned: ") for line in p.explain())


def test_budget_uses_gpu_timing_when_declared_else_the_cpu_figure() -> None:
    gpu_policy = get_policy("controlled").__class__.from_dict(
        {"name": "g", "extends": "controlled", "hardware": "gpu", "decode_budget_ms_per_mp": 500})
    no_gpu = mk(prof(), gpu_policy)
    assert "learned" not in ids(no_gpu)
    assert "no GPU timing recorded" in next(s.reason for s in no_gpu.skipped if s.codec_id == "learned")
    with_gpu = mk(prof(), gpu_policy, models={"hp-gain": {**MODEL, "decode_ms_per_mp_gpu": 120.0}})
    assert ids(with_gpu)[0] == "learned" and "on gpu" in with_gpu.candidates[0].reason


def test_the_budget_scales_with_megapixels_in_the_reason() -> None:
    c = mk(prof(w=2000, h=1000), "controlled").candidates[0]
    assert c.codec_id == "learned" and "8000 ms" in c.reason     # 4000 ms/MP × 2 MP


def test_sixteen_bit_gets_only_sixteen_bit_stages() -> None:
    for policy in ("archive", "diagnostic", "delivery"):
        p = mk(prof("medical", channels=1, bit_depth=16), policy)
        assert p.candidates
        assert all(16 in CAPS[c].bit_depths for c in ids(p)), (policy, ids(p))
        assert all(1 in CAPS[c].channels for c in ids(p))
    d = mk(prof("photo", bit_depth=16), "delivery")
    assert ids(d) == ["avif", "png"]
    assert any("this image is 16-bit" in s.reason for s in d.skipped if s.codec_id == "webp")


def test_alpha_gets_only_stages_that_keep_alpha() -> None:
    p = mk(prof("photo", channels=4, flags=("alpha",)), "delivery")
    assert ids(p) == ["avif", "webp", "png"]
    assert "cannot store the alpha channel" in next(s.reason for s in p.skipped if s.codec_id == "jpeg") or \
        "channels" in next(s.reason for s in p.skipped if s.codec_id == "jpeg")
    ga = mk(prof("drawing", channels=2, flags=("alpha",)), "archive")
    assert set(ids(ga)) == {"png", "jxl-lossless", "jpeg2000"}        # jpegls takes no gray+alpha


def test_archive_refuses_stages_that_would_drop_metadata() -> None:
    p = mk(prof("photo", meta=("icc", "exif")), "archive")
    assert ids(p) == ["png"]                          # (no image given: the original's format is unknown)
    why = {s.codec_id: s.reason for s in p.skipped}
    assert "jpegls would drop icc, exif" in why["jpegls"]
    assert "jxl-lossless would drop icc (it keeps exif)" in why["jxl-lossless"]
    # delivery does not promise metadata: nothing is refused for it
    assert ids(mk(prof("photo", meta=("icc", "exif")), "delivery")) == ["avif", "webp", "jpeg", "png"]


def test_dicom_goes_diagnostic_and_keeps_its_dataset_via_a_transfer_syntax() -> None:
    ct = prof("medical", channels=1, bit_depth=16, flags=("dicom", "high_bit_depth"), meta=("dicom",))
    p = mk(ct, "auto")
    assert p.policy.name == "diagnostic" and "DICOM" in p.notes[0]
    assert ids(p) == [c for c in get_policy("diagnostic").preferences["medical"][0] if c in DICOM_TRANSFER_SYNTAX_STAGES]
    assert all(c.floors.lossless for c in p.candidates)
    assert "would drop dicom" in next(s.reason for s in p.skipped if s.codec_id == "png")


def test_bounded_error_policy_uses_jpegls_near_first() -> None:
    pol = Policy.from_dict({"name": "rad", "extends": "diagnostic", "max_abs_error": 3})
    p = mk(prof("medical", channels=1), pol)
    first = p.candidates[0]
    assert first.codec_id == "jpegls" and first.options == {"near": 3} and first.floors.max_abs_error == 3
    assert "every sample within 3" in first.reason
    assert all(c.floors.lossless for c in p.candidates[1:])


def test_accept_list_restricts_formats_and_says_so() -> None:
    web = Policy.from_dict({"name": "web", "extends": "delivery", "accept": ["webp", "jpeg", "png"]})
    assert ids(mk(prof("photo"), web)) == ["webp", "jpeg", "png"]
    line = mk(prof("screen"), web)
    assert ids(line) == ["webp-lossless", "png", "webp", "jpeg"]
    assert "clients accept only webp, jpeg, png" in next(s.reason for s in line.skipped if s.codec_id == "avif")


def test_explicit_stage_list_keeps_the_users_order() -> None:
    pol = Policy.from_dict({"name": "mine", "stages": ["jpeg", "webp"]})
    p = mk(prof("photo"), pol)
    assert ids(p) == ["jpeg", "webp"] and [c.group for c in p.candidates] == [0, 1]
    assert "stage list" in p.candidates[0].reason


@pytest.mark.parametrize("kind", KINDS)
def test_auto_resolution_by_kind_never_controlled(kind: str) -> None:
    r = resolve_policy(prof(kind), "auto")
    assert r.policy.name == AUTO_BY_KIND[kind][0] and r.reason
    assert r.policy.name != "controlled"


def test_auto_resolution_flags_and_image_override() -> None:
    assert resolve_policy(prof("photo", flags=("high_bit_depth",)), "auto").policy.name == "diagnostic"
    img16 = Image(np.zeros((8, 8, 3), np.uint16))
    assert resolve_policy(prof("photo"), "auto", img16).policy.name == "diagnostic"
    assert resolve_policy(prof("photo"), "delivery").policy.name == "delivery"     # explicit stays explicit
    policy, reason = resolve_policy(prof("screen"), get_policy("auto"))             # unpacks like a tuple
    assert policy.name == "delivery" and "screen" in reason


def test_plan_reads_channels_bit_depth_and_metadata_from_the_image_when_given() -> None:
    img = Image(np.zeros((16, 16, 4), np.uint8), metadata={"icc": b"profile"})
    p = mk(prof("photo", channels=3), "archive", image=img)
    assert ids(p) == ["png", "original"]


def test_stage_not_installed_is_skipped_not_fatal() -> None:
    caps = {k: v for k, v in CAPS.items() if k != "avif"}
    p = mk(prof("photo"), "delivery", stages=caps)
    assert ids(p)[0] == "webp"
    assert "not installed" in next(s.reason for s in p.skipped if s.codec_id == "avif")


def test_plan_and_explain_are_the_public_shortcuts() -> None:
    cands = plan(prof("photo"), "delivery", stages=CAPS, models=MODELS)
    assert [c.codec_id for c in cands] == ["avif", "webp", "jpeg", "png"]
    lines = explain(prof("photo"), "controlled", stages=CAPS, models={})
    assert lines[0] == "policy controlled" and any("missing" in ln for ln in lines)
    d = mk(prof("photo"), "controlled").to_dict()
    assert d["candidates"][0]["codec_id"] == "learned" and "floors" in d["candidates"][0]


def test_profile_is_not_mutated_and_plans_are_deterministic() -> None:
    p0 = prof("drawing")
    before = dataclasses.asdict(p0)
    a, b = mk(p0, "delivery"), mk(p0, "delivery")
    assert a.to_dict() == b.to_dict() and dataclasses.asdict(p0) == before


def test_real_registry_agrees_with_the_contract_capabilities() -> None:
    from inverity.stages.base import list_stages

    reg = list_stages()
    missing = set(CAPS) - set(reg)
    if missing:
        pytest.skip(f"stages not installed: {sorted(missing)}")
    for cid, cls in reg.items():
        if cid in CAPS:
            real, ours = cls.capabilities, CAPS[cid]
            for f in ("lossless", "bit_depths", "channels", "alpha", "learned", "near_lossless", "standard"):
                assert getattr(real, f) == getattr(ours, f), (cid, f)
    # and the default plan (registry + zoo) works end to end
    assert [c.codec_id for c in plan(prof("photo"), "delivery")][:1] == ["avif"]


# ---- archive: keep the original, transcode JPEG losslessly ------------------------------------------------------
def _img(fmt: str) -> Image:
    return Image(np.zeros((16, 16, 3), np.uint8), source_format=fmt)


def test_archive_of_a_jpeg_offers_the_lossless_transcode_and_the_original_in_one_group() -> None:
    p = mk(prof("photo"), "archive", image=_img("jpeg"))
    assert ids(p) == ["jxl-jpeg", "jxl-lossless", "jpeg2000", "png", "jpegls", "original"]
    assert {c.group for c in p.candidates} == {0} and all(c.floors.lossless for c in p.candidates)


def test_archive_of_a_png_skips_the_jpeg_transcode_with_a_reason_but_keeps_the_original() -> None:
    p = mk(prof("drawing"), "archive", image=_img("png"))
    assert "jxl-jpeg" not in ids(p) and ids(p)[-1] == "original"
    assert "transcodes jpeg inputs only; this input is png" in next(s.reason for s in p.skipped
                                                                       if s.codec_id == "jxl-jpeg")


def test_delivery_never_offers_the_original_or_the_transcode() -> None:
    for pol in ("delivery", "controlled"):
        assert not {"original", "jxl-jpeg"} & set(ids(mk(prof("photo"), pol, image=_img("jpeg"))))


def test_jpeg_xl_is_delivered_only_where_accept_names_it() -> None:
    jxl_ok = Policy.from_dict({"name": "modern", "extends": "delivery", "accept": ["avif", "jxl", "jpeg"]})
    assert ids(mk(prof("photo"), jxl_ok)) == ["avif", "jpeg", "jxl"]
    auto = mk(prof("drawing"), "auto")                    # auto -> delivery inherits the browser set
    assert auto.policy.name == "delivery" and not {"jxl", "jxl-lossless", "jpegls"} & set(ids(auto))


def _crayons_icc() -> bytes:
    from pathlib import Path

    import pydicom

    p = Path(pydicom.__file__).parent / "data" / "test_files" / "crayons.icc"
    if not p.is_file():
        pytest.skip("pydicom's crayons.icc test profile not installed")
    return p.read_bytes()


def test_a_non_srgb_icc_profile_is_kept_where_a_stage_can_carry_it_else_dropped_with_a_note() -> None:
    from helpers import srgb_icc

    wide = Image(np.zeros((16, 16, 3), np.uint8), source_format="png", metadata={"icc": _crayons_icc()})
    p = mk(prof("photo"), "delivery", image=wide)
    assert ids(p) == ["webp", "jpeg", "png"]                  # AVIF cannot carry the ICC profile
    assert "not sRGB" in next(s.reason for s in p.skipped if s.codec_id == "avif")
    # an sRGB profile changes nothing: dropping it mislabels nothing
    srgb = Image(np.zeros((16, 16, 3), np.uint8), source_format="png", metadata={"icc": srgb_icc()})
    assert ids(mk(prof("photo"), "delivery", image=srgb)) == ["avif", "webp", "jpeg", "png"]
    # when no allowed stage can carry it, routing goes on (the record says it was dropped)
    only_avif = Policy.from_dict({"name": "avif-only", "extends": "delivery", "stages": ["avif"]})
    q = mk(prof("photo"), only_avif, image=wide)
    assert ids(q) == ["avif"] and any("non-sRGB ICC profile 'Crayon Colours'" in n for n in q.notes)


def test_line_art_delivery_keeps_the_original_where_browsers_take_its_format() -> None:
    png = mk(prof("drawing"), "delivery", image=_img("png"))
    assert ids(png)[-1] == "original" and {c.group for c in png.candidates} == {0}   # competes: smallest wins
    tif = mk(prof("drawing"), "delivery", image=_img("tiff"))
    assert "original" not in ids(tif)
    assert "original writes tiff" in next(s.reason for s in tif.skipped if s.codec_id == "original")
    assert "original" not in ids(mk(prof("photo"), "delivery", image=_img("png")))     # photos: re-encoded


def test_a_preference_entry_that_names_a_learned_model_gets_that_model() -> None:
    """``learned?model=NAME`` in a policy's preferences is honoured (it wins over the policy's ``model``), a
    missing one is skipped with its reason, and a group may not hold two variants of one stage."""
    from inverity.errors import PolicyError

    models = {"hp-gain": MODEL, "hp-ctx": {"name": "hp-ctx", "decode_ms_per_mp": 4000.0}}
    pol = Policy.from_dict({"name": "pick", "extends": "controlled", "model": "hp-ctx",
                            "preferences": {"photo": [["learned?model=hp-gain", "avif"], ["learned"], ["png"]]}})
    p = mk(prof("photo"), pol, models=models)
    learned = [c for c in p.candidates if c.codec_id == "learned"]
    assert [(c.options["model"], c.group) for c in learned] == [("hp-gain", 0), ("hp-ctx", 1)]
    assert "model 'hp-gain'" in learned[0].reason and "model 'hp-ctx'" in learned[1].reason
    missing = Policy.from_dict({"name": "nope", "extends": "controlled",
                                "preferences": {"photo": [["learned?model=nope", "avif"]]}})
    p = mk(prof("photo"), missing, models=models)
    assert "learned" not in ids(p)
    assert any(s.codec_id == "learned" and "learned model 'nope' is missing" in s.reason for s in p.skipped)
    with pytest.raises(PolicyError, match="a group lists stage 'learned' more than once"):
        Policy.from_dict({"name": "two", "extends": "controlled",
                          "preferences": {"photo": [["learned?model=hp-gain", "learned"]]}})
