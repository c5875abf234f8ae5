"""Policies: built-in semantics, TOML parsing, and refusal of unknown keys and impossible combinations."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from inverity.errors import PolicyError, UnknownIdError
from inverity.policy import (BUILTIN_POLICIES, Policy, example_policies, get_policy, list_policies,
                             load_policy_file, register_policy)
from inverity.verify import Floors


def test_builtins_registered_with_design_semantics() -> None:
    assert set(BUILTIN_POLICIES) <= set(list_policies())
    archive, diag, delivery, controlled, auto = (get_policy(n) for n in
                                                 ("archive", "diagnostic", "delivery", "controlled", "auto"))
    assert archive.lossless_only and archive.floors.lossless and archive.keep_metadata
    assert diag.floors.lossless and diag.keep_metadata and not diag.allow_learned
    assert not delivery.allow_learned and delivery.standard_only and delivery.floors.ssimulacra2 is not None
    assert controlled.allow_learned and not controlled.standard_only
    assert controlled.decode_budget_ms_per_mp and controlled.decode_budget_ms_per_mp > 0
    assert controlled.hardware == "cpu"
    # the learned stage is only ever the user's explicit choice
    assert [n for n in BUILTIN_POLICIES if get_policy(n).allow_learned] == ["controlled"]
    assert not auto.allow_learned


@pytest.mark.parametrize("name", BUILTIN_POLICIES)
def test_round_trip_through_dict_and_json(name: str) -> None:
    p = get_policy(name)
    again = Policy.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_get_policy_passes_a_policy_through_and_refuses_unknown_names() -> None:
    p = get_policy("delivery")
    assert get_policy(p) is p
    with pytest.raises(UnknownIdError) as e:
        get_policy("fastest")
    msg = str(e.value)
    assert "'fastest'" in msg and "archive" in msg and "controlled" in msg and "\n" not in msg


@pytest.mark.parametrize("name", sorted(example_policies()))
def test_example_policy_files_load(name: str) -> None:
    path = example_policies()[name]
    p = get_policy(str(path))
    assert p.name == name and p.source == str(path) and p.description


def test_examples_mean_what_they_say() -> None:
    ex = example_policies()
    assert {"web", "radiology-near-lossless", "gpu-controlled", "archive-png"} <= set(ex)
    rad = load_policy_file(ex["radiology-near-lossless"])
    assert rad.max_abs_error == 2 and not rad.floors.lossless and rad.floors.max_abs_error == 2
    assert rad.keep_metadata and not rad.allow_learned            # inherited from diagnostic
    gpu = load_policy_file(ex["gpu-controlled"])
    assert gpu.hardware == "gpu" and gpu.decode_budget_ms_per_mp == 400 and gpu.allow_learned
    web = load_policy_file(ex["web"])
    assert web.accept == ("avif", "webp", "jpeg", "png") and web.floors.ssimulacra2 == 75
    arc = load_policy_file(ex["archive-png"])
    assert arc.stages == ("png", "jpeg2000") and arc.floors.lossless


def test_name_defaults_to_the_file_stem_and_accept_aliases_normalise(tmp_path: Path) -> None:
    f = tmp_path / "my-web.toml"
    f.write_text('extends = "delivery"\naccept = ["image/avif", "JPG"]\n')
    p = get_policy(f)
    assert p.name == "my-web" and p.accept == ("avif", "jpeg")


REFUSALS = {
    "unknown key": ('name = "x"\nqualty = 3\n', "unknown key 'qualty'"),
    "unknown stage": ('name = "x"\nstages = ["png", "heic"]\n', "unknown stage 'heic'"),
    "lossless-only with lossy stages": ('name = "x"\nlossless_only = true\nstages = ["jpeg", "webp"]\n',
                                        "lossless_only but stages lists lossy jpeg, webp"),
    "learned allowed under archive": ('extends = "archive"\nallow_learned = true\nstandard_only = false\n',
                                      "allow_learned contradicts lossless_only"),
    "learned under diagnostic": ('extends = "diagnostic"\nallow_learned = true\nstandard_only = false\n',
                                 "allow_learned contradicts floors.lossless"),
    "negative budget": ('extends = "controlled"\ndecode_budget_ms_per_mp = -5\n',
                        "decode_budget_ms_per_mp must be a positive number"),
    "zero budget": ('extends = "controlled"\ndecode_budget_ms_per_mp = 0\n', "must be a positive number"),
    "unknown hardware": ('extends = "controlled"\nhardware = "tpu"\n', "hardware must be one of cpu, gpu"),
    "unknown accept format": ('extends = "delivery"\naccept = ["avif", "bpg"]\n', "unknown accept format 'bpg'"),
    "string for a bool": ('name = "x"\nallow_learned = "yes"\n', "allow_learned must be true or false"),
    "unknown floors key": ('name = "x"\n[floors]\npsrn = 30\n', "unknown key 'psrn'"),
    "extends auto": ('extends = "auto"\n', "extends 'auto' is not a built-in policy to extend"),
    "extends unknown": ('extends = "fast"\n', "extends 'fast'"),
    "learned listed but not allowed": ('name = "x"\nstages = ["learned", "avif"]\n',
                                       "stages lists 'learned' but allow_learned is false"),
    "learned with standard_only": ('name = "x"\nallow_learned = true\n', "contradicts standard_only"),
    "learned but .inv not accepted": ('extends = "controlled"\naccept = ["avif"]\n', "accept does not list 'inv'"),
    "bound with lossless_only": ('extends = "archive"\nmax_abs_error = 3\n', "contradicts max_abs_error = 3"),
    "negative bound": ('extends = "diagnostic"\nmax_abs_error = -1\n', "max_abs_error must be an integer >= 0"),
    "no accepted stage": ('name = "x"\nstages = ["jpegls"]\naccept = ["avif"]\n', "produces an accepted format"),
    "duplicate stage": ('name = "x"\nstages = ["png", "png"]\n', "lists a codec twice"),
    "bad TOML": ('name = "x\n', "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_one_line_policy_errors_naming_the_file(case: str, tmp_path: Path) -> None:
    text, needle = REFUSALS[case]
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(PolicyError) as e:
        get_policy(str(f))
    msg = str(e.value)
    assert needle in msg, msg
    assert str(f) in msg and "\n" not in msg


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        get_policy(str(tmp_path / "nope.toml"))


def test_max_abs_error_derives_bounded_floors_and_zero_means_lossless() -> None:
    p = Policy.from_dict({"name": "b", "max_abs_error": 4})
    assert p.floors == Floors.bounded(4)
    q = Policy.from_dict({"name": "z", "extends": "diagnostic", "max_abs_error": 0})
    assert q.floors.lossless


def test_explicit_floors_must_agree_with_lossless_only() -> None:
    with pytest.raises(PolicyError, match="lossless_only needs floors.lossless"):
        Policy.from_dict({"name": "x", "lossless_only": True, "floors": {"psnr": 40}})


def test_policy_is_frozen_data() -> None:
    p = get_policy("delivery")
    with pytest.raises(Exception):
        p.name = "other"  # type: ignore[misc]


def test_registry_refuses_a_different_policy_under_a_taken_name() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_policy(Policy("archive", "not the archive"))
    assert register_policy(get_policy("archive")) is get_policy("archive")   # same value: idempotent


# ---- floors merge key by key; loosening/removal explicit and recorded ------------------------------------------
def test_extending_controlled_with_one_floor_keeps_every_other_check(tmp_path: Path) -> None:
    f = tmp_path / "lenient.toml"
    f.write_text('extends = "controlled"\n[floors]\nssimulacra2 = 50\n')
    p = get_policy(f)
    ctl = get_policy("controlled").floors
    assert p.floors.ssimulacra2 == 50
    for k in ("local_snr", "local_structure", "band_kept", "band_invented", "tile_band_kept", "edge_missing",
              "edge_invented"):
        assert getattr(p.floors, k) == getattr(ctl, k) is not None, k
    assert p.floor_notes == ("floor ssimulacra2 loosened 70 -> 50 by policy lenient",)


def test_removing_a_check_is_explicit_and_noted_and_stricter_values_need_no_note(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text('extends = "delivery"\n[floors]\nlocal_snr = false\nssimulacra2 = 80\npsnr = 30\n')
    p = get_policy(f)
    assert p.floors.local_snr is None and p.floors.ssimulacra2 == 80 and p.floors.psnr == 30
    assert p.floor_notes == ("floor local_snr removed by policy x",)


def test_lower_is_stricter_floors_and_parameters_are_noted_with_their_direction() -> None:
    p = Policy.from_dict({"name": "e", "extends": "controlled",
                          "floors": {"edge_missing": 0.6, "band_invented": 0.2, "tile": 64}})
    assert "floor edge_missing loosened 0.35 -> 0.6 by policy e" in p.floor_notes
    assert not any("band_invented" in n for n in p.floor_notes)         # 0.5 -> 0.2 is stricter
    assert "floor parameter tile changed 32 -> 64 by policy e" in p.floor_notes


def test_a_parameter_cannot_be_removed(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('extends = "delivery"\n[floors]\ntile = false\n')
    with pytest.raises(PolicyError, match="tile is a parameter"):
        get_policy(f)


def test_shipped_web_keeps_deliverys_local_snr_and_radiology_notes_the_lossless_removal() -> None:
    web = get_policy("web")
    assert web.floors.local_snr == get_policy("delivery").floors.local_snr is not None
    assert web.floors.ssimulacra2 == 75 and web.floors.worst_tile_psnr == 26 and web.floor_notes == ()
    rad = get_policy("radiology-near-lossless")
    assert rad.floor_notes and rad.floor_notes[0].startswith("floor lossless removed by policy "
                                                             "radiology-near-lossless")


def test_floor_notes_survive_the_dict_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "l.toml"
    f.write_text('extends = "delivery"\n[floors]\nssimulacra2 = 60\n')
    p = get_policy(f)
    again = Policy.from_dict(json.loads(json.dumps(p.to_dict())), source=p.source)
    assert again == p and again.floor_notes == p.floor_notes


# ---- shipped policies by name ----------------------------------------------------------------------------------
def test_shipped_policies_are_usable_by_name_from_any_directory(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("web", "radiology-near-lossless", "gpu-controlled", "archive-png"):
        assert get_policy(name).name == name
    with pytest.raises(UnknownIdError) as e:
        get_policy("webb")
    msg = str(e.value)
    assert "'webb'" in msg and "web" in msg and "radiology-near-lossless" in msg and ".toml" in msg


# ---- metadata / review / effort ----------------------------------------------------------------------------------
def test_metadata_mode_defaults_and_the_older_keep_metadata_spelling(tmp_path: Path) -> None:
    assert {n: get_policy(n).metadata for n in ("archive", "diagnostic", "delivery", "controlled")} == \
        {"archive": "keep", "diagnostic": "keep", "delivery": "strip", "controlled": "strip"}
    f = tmp_path / "m.toml"
    f.write_text('extends = "archive"\nkeep_metadata = false\n')
    assert get_policy(f).metadata == "strip"
    f.write_text('extends = "delivery"\nmetadata = "refuse"\n')
    p = get_policy(f)
    assert p.metadata == "refuse" and not p.keep_metadata
    f.write_text('extends = "delivery"\nmetadata = "keep"\n')
    assert get_policy(f).keep_metadata
    with pytest.raises(PolicyError, match="contradicts metadata"):
        Policy("x", keep_metadata=True, metadata="strip")


def test_review_and_effort_parse_validate_and_default() -> None:
    assert [get_policy(n).review for n in ("archive", "diagnostic", "delivery", "controlled")] == \
        ["none", "none", "none", "learned"]
    assert all(get_policy(n).effort == "balanced" for n in BUILTIN_POLICIES)
    p = Policy.from_dict({"name": "s", "extends": "delivery", "review": "sample:0.05", "effort": "max"})
    assert p.review_sample == 0.05 and p.effort == "max"


@pytest.mark.parametrize("text,needle", [
    ('review = "sometimes"', "review must be one of"), ('review = "sample:0"', "review must be one of"),
    ('review = "sample:1.5"', "review must be one of"), ('effort = "extreme"', "effort must be one of fast"),
    ('metadata = "drop"', "metadata must be one of keep, strip, refuse"), ("effort = 3", "effort must be a string"),
])
def test_bad_review_effort_metadata_are_refused(text: str, needle: str, tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(f'extends = "delivery"\n{text}\n')
    with pytest.raises(PolicyError, match=needle):
        get_policy(f)


def test_delivery_accepts_only_what_every_browser_decodes() -> None:
    assert get_policy("delivery").accept == ("avif", "webp", "jpeg", "png")
    assert get_policy("controlled").accept is None


def test_cli_takes_a_shipped_policy_by_name_and_names_the_choices_for_an_unknown_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import imagecodecs
    import numpy as np

    from inverity.cli import main

    monkeypatch.chdir(tmp_path)                                   # not the source tree: package data lookup
    y, x = np.mgrid[0:48, 0:64]
    px = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(px))
    assert main(["compress", "a.png", "-o", "out", "--policy", "web", "--jobs", "1", "--json"]) in (0, None)
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["status"] == "done" and rec["policy"] == "web"
    assert Path(rec["output"]).suffix in (".avif", ".webp", ".jpg", ".png")
    assert main(["compress", "a.png", "-o", "out2", "--policy", "webb"]) == 2
    err = capsys.readouterr().err
    assert "inverity: error: unknown policy 'webb'" in err and "radiology-near-lossless" in err
