"""Policies as data: built-ins are TOML files read by the user-file loader; preferences per kind, ``dicom_out``,
``bounded_only`` and ``uses_gpu`` are keys, so a new kind of policy is a file, not code (issue #11)."""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
from pathlib import Path

import pytest

from inverity.analyse import KINDS, Profile
from inverity.cli import main
from inverity.errors import PolicyError
from inverity.pipeline import _Task, Asset
from inverity.policy import BUILTIN_POLICIES, Policy, Preferences, get_policy, load_policy_file
from inverity.review import rule_of
from inverity.route import make_plan
from inverity.verify import Floors

BUILTIN_DIR = importlib.resources.files("inverity") / "policies" / "builtin"

# The router's table before the built-ins became TOML files (route.PREFERENCES, family -> kind -> groups), as
# literal data: the files must route every kind exactly as it did.
_LINE_ART = (("webp-lossless", "png", "jxl-lossless", "jpegls?near=2", "avif", "jxl", "webp", "jpeg", "original"),)
_PHOTO = (("avif",), ("webp",), ("jpeg",), ("jxl",), ("png",))
OLD_PREFERENCES = {
    "archive": {
        "photo": (("jxl-jpeg", "jxl-lossless", "jpeg2000", "png", "jpegls", "original"),),
        "medical": (("jpegls", "jpeg2000", "jxl-lossless", "png", "jxl-jpeg", "original"),),
        "drawing": (("png", "jxl-lossless", "jpegls", "jpeg2000", "jxl-jpeg", "original"),),
        "screen": (("png", "jxl-lossless", "jpegls", "jpeg2000", "jxl-jpeg", "original"),),
        "synthetic": (("png", "jxl-lossless", "jpegls", "jpeg2000", "jxl-jpeg", "original"),),
        "*": (("jxl-jpeg", "jxl-lossless", "jpeg2000", "png", "jpegls", "original"),),
    },
    "diagnostic": {
        "medical": (("jpegls", "jpeg2000", "jxl-lossless", "png"),),
        "*": (("jpegls", "jxl-lossless", "png", "jpeg2000", "webp-lossless"),),
    },
    "delivery": {"photo": _PHOTO, "drawing": _LINE_ART, "screen": _LINE_ART, "synthetic": _LINE_ART, "*": _PHOTO},
    "controlled": {"photo": (("learned", "avif"),) + _PHOTO[1:], "*": (("learned", "avif"),) + _PHOTO[1:],
                   **{k: (("learned",) + _LINE_ART[0],) for k in ("drawing", "screen", "synthetic")}},
}


def test_the_builtin_folder_holds_exactly_the_builtins_and_they_load_like_user_files() -> None:
    files = sorted(e.name for e in BUILTIN_DIR.iterdir() if e.name.endswith(".toml"))
    assert files == sorted(f"{n}.toml" for n in BUILTIN_POLICIES if n != "auto")
    for name in BUILTIN_POLICIES[1:]:
        builtin = get_policy(name)
        assert builtin.source == "builtin"
        with importlib.resources.as_file(BUILTIN_DIR / f"{name}.toml") as path:
            as_user_file = load_policy_file(path)
        assert dataclasses.replace(as_user_file, source="builtin") == builtin


@pytest.mark.parametrize("name", sorted(OLD_PREFERENCES))
@pytest.mark.parametrize("kind", KINDS)
def test_builtin_preferences_equal_the_old_table_for_every_kind(name: str, kind: str) -> None:
    old = OLD_PREFERENCES[name]
    prefs = get_policy(name).preferences
    assert prefs is not None and prefs.for_kind(kind) == old.get(kind, old["*"])


def test_builtin_switches_that_used_to_be_keyed_on_the_family_name() -> None:
    dicom_out = {n: get_policy(n).dicom_out for n in BUILTIN_POLICIES}
    assert dicom_out == {"auto": False, "archive": True, "diagnostic": True, "delivery": False, "controlled": False}
    assert [n for n in BUILTIN_POLICIES if get_policy(n).uses_gpu] == ["controlled"]
    assert [n for n in BUILTIN_POLICIES if get_policy(n).bounded_only] == ["diagnostic"]
    assert get_policy("delivery").accept == ("avif", "webp", "jpeg", "png")      # accept = "browsers"


def test_builtin_floors_are_the_calibrated_presets() -> None:
    # the TOML files spell the numbers out; verify.Floors keeps the presets (and the calibration notes)
    assert get_policy("delivery").floors == Floors.delivery()
    assert get_policy("controlled").floors == Floors.controlled()
    assert get_policy("archive").floors == get_policy("diagnostic").floors == Floors.lossless_only()
    assert all(not get_policy(n).floor_notes for n in BUILTIN_POLICIES)


def test_the_review_rule_of_a_policy_named_by_string_is_its_data(tmp_path: Path) -> None:
    f = tmp_path / "checked.toml"
    f.write_text('extends = "delivery"\nreview = "required"\n')
    assert str(rule_of("controlled")) == "learned" and str(rule_of("delivery")) == "none"
    assert str(rule_of(str(f))) == "required"


def _prof(kind: str) -> Profile:
    return Profile(kind, 0.9, ood_score=3.0, ood_threshold=7.9, in_distribution=True, ood_model="hp-gain",
                   width=256, height=256, channels=3, bit_depth=8)


def test_extends_merges_preferences_per_kind(tmp_path: Path) -> None:
    f = tmp_path / "jpeg-first.toml"
    f.write_text('extends = "delivery"\n[preferences]\nphoto = [["jpeg", "webp"], ["png"]]\n')
    p = load_policy_file(f)
    delivery = get_policy("delivery")
    assert p.preferences is not None and delivery.preferences is not None
    assert p.preferences["photo"] == (("jpeg", "webp"), ("png",))                 # the file's groups
    for kind in ("drawing", "screen", "synthetic", "*"):                          # the parent's, kept
        assert p.preferences[kind] == delivery.preferences[kind]
    plan = make_plan(_prof("photo"), p)
    assert [c.codec_id for c in plan.candidates][:2] == ["jpeg", "webp"] and plan.candidates[1].group == 0
    # a child's stages list replaces the inherited table; a child's table replaces inherited stages
    listed = Policy.from_dict({"name": "listed", "extends": "delivery", "stages": ["webp", "jpeg"]})
    assert [c.codec_id for c in make_plan(_prof("drawing"), listed).candidates] == ["webp", "jpeg"]
    # the round trip keeps the table (and a stages list next to an inherited table)
    for pol in (p, listed):
        assert Policy.from_dict(json.loads(json.dumps(pol.to_dict())), source=pol.source) == pol


MALFORMED = {
    "not a table": ('preferences = "png"\n', "preferences must be a table"),
    "flat list": ('[preferences]\n"*" = ["png", "jpeg"]\n', 'preferences."*" must be a list of groups'),
    "unknown kind": ('[preferences]\n"*" = [["png"]]\nphotos = [["jpeg"]]\n', "unknown content kind 'photos'"),
    "no default": ('[preferences]\nphoto = [["jpeg"]]\n', 'preferences needs a "*" entry'),
    "unknown stage": ('[preferences]\n"*" = [["png"], ["heic"]]\n', "preferences.\"*\": unknown stage 'heic'"),
    "empty group": ('[preferences]\n"*" = [["png"]]\ndrawing = [[]]\n', "preferences.drawing: each group"),
    "empty list": ('[preferences]\n"*" = []\n', 'preferences."*" must be a non-empty list'),
    "listed twice": ('[preferences]\n"*" = [["png"], ["jpeg", "png"]]\n', "lists 'png' twice"),
    "number entry": ('[preferences]\n"*" = [[3]]\n', "each group must be a non-empty list of stage ids"),
    "stages and preferences": ('stages = ["png"]\n[preferences]\n"*" = [["png"]]\n', "not both"),
    "extends: bad kind": ('extends = "delivery"\n[preferences]\nphoto = "avif"\n', "preferences.photo must be"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_preferences_are_one_line_policy_errors_naming_file_and_key(case: str, tmp_path: Path) -> None:
    text, needle = MALFORMED[case]
    f = tmp_path / "bad.toml"
    f.write_text('name = "bad"\n' + text)
    with pytest.raises(PolicyError) as e:
        load_policy_file(f)
    msg = str(e.value)
    assert needle in msg and str(f) in msg and "\n" not in msg, msg


def test_a_policy_without_preferences_or_stages_cannot_route_and_says_so() -> None:
    with pytest.raises(PolicyError, match=r"policy bare has no stage preferences: give it extends"):
        make_plan(_prof("photo"), Policy("bare"))


def test_bounded_only_refuses_lossy_stages_and_contradicts_the_learned_stage() -> None:
    pol = Policy.from_dict({"name": "b", "extends": "diagnostic", "stages": ["jpeg", "jpegls"]})
    plan = make_plan(_prof("photo"), pol)
    assert [c.codec_id for c in plan.candidates] == ["jpegls"]
    assert "lossless or bounded-error stages only; jpeg is lossy" in plan.skipped[0].reason
    # without bounded_only (the same floors, written out) a lossy stage may try to meet them
    free = Policy.from_dict({"name": "free", "stages": ["jpeg", "jpegls"], "floors": {"lossless": True}})
    assert [c.codec_id for c in make_plan(_prof("photo"), free).candidates] == ["jpeg", "jpegls"]
    with pytest.raises(PolicyError, match="allow_learned contradicts bounded_only"):
        Policy.from_dict({"name": "x", "bounded_only": True, "allow_learned": True, "standard_only": False})


def test_uses_gpu_is_data_and_follows_allow_learned_by_default(tmp_path: Path) -> None:
    mine = Policy.from_dict({"name": "m", "allow_learned": True, "standard_only": False})
    assert mine.uses_gpu
    assert not Policy.from_dict({"name": "c", "extends": "controlled", "uses_gpu": False}).uses_gpu
    f = tmp_path / "cpu-only.toml"
    f.write_text('extends = "controlled"\nuses_gpu = false\n')
    asset = Asset(str(tmp_path / "a.png"), str(tmp_path), "a.png")
    assert _Task(asset, "controlled", str(tmp_path), None).wants_gpu
    assert not _Task(asset, "delivery", str(tmp_path), None).wants_gpu
    assert not _Task(asset, str(f), str(tmp_path), None).wants_gpu


# A new kind of policy, no code: a print shop wants PNG for drawings (JPEG if PNG fails), JPEG for the rest.
PRINT_TOML = '''description = "print shop: PNG for line art, JPEG otherwise"
accept = ["png", "jpeg"]
metadata = "strip"
dicom_out = false
[floors]
ssimulacra2 = 70
[preferences]
drawing = [["png"], ["jpeg"]]
"*" = [["jpeg"], ["png"]]
'''


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inverity.samples import build_demo_set

    d = tmp_path_factory.mktemp("demo") / "inputs"
    build_demo_set(d, small=True, names=("chelsea.png", "drawing.png", "ct_slice.dcm"))
    return d


def _records(capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    return {json.loads(ln)["input"]: json.loads(ln) for ln in lines}


def test_a_user_toml_defines_a_new_policy_kind_and_the_cli_compresses_with_it(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "print.toml"
    pol.write_text(PRINT_TOML)
    out = tmp_path / "out"
    argv = ["compress", str(demo / "drawing.png"), str(demo / "chelsea.png"), "-o", str(out), "--policy", str(pol),
            "--json", "--jobs", "1"]
    assert main(argv) == 0
    recs = _records(capsys)
    drawing, photo = recs["drawing.png"], recs["chelsea.png"]
    assert drawing["policy"] == "print" and drawing["profile"]["kind"] == "drawing"
    assert drawing["stage"] == "png" and (out / "drawing.png").is_file()
    assert photo["profile"]["kind"] == "photo" and photo["stage"] == "jpeg" and (out / "chelsea.jpg").is_file()
    assert [a["stage"] for a in drawing["attempts"]][0] == "png"


@pytest.mark.parametrize("dicom_out, suffix", [(True, ".dcm"), (False, ".jls")])
def test_dicom_out_is_the_policys_switch_not_its_name(dicom_out: bool, suffix: str, demo: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "scans.toml"
    pol.write_text(f'lossless_only = true\nmetadata = "strip"\ndicom_out = {str(dicom_out).lower()}\n'
                   '[floors]\nlossless = true\n[preferences]\n"*" = [["jpegls"]]\n')
    out = tmp_path / "out"
    assert main(["compress", str(demo / "ct_slice.dcm"), "-o", str(out), "--policy", str(pol), "--json",
                 "--jobs", "1"]) == 0
    rec = _records(capsys)["ct_slice.dcm"]
    assert rec["policy"] == "scans" and rec["stage"] == "jpegls" and Path(rec["output"]).suffix == suffix
    assert (rec.get("container") == "dicom") == dicom_out
