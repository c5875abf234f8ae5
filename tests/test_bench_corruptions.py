"""inverity.bench.corruptions and ``inverity bench corruptions``: the 15 ImageNet-C corruptions at any size."""
from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from inverity.bench.corruptions import (CORRUPTIONS, FAMILIES, SEVERITIES, corrupt, corrupt_dataset,
                                        corruption_names, frost_texture, make_rng, plasma_fractal)
from inverity.cli import main
from inverity.errors import InputError, UnknownIdError


def _photo(h: int, w: int) -> np.ndarray:
    """A natural-image crop (skimage's astronaut) resized to h×w, so blur and JPEG act as on photographs."""
    from skimage import data, transform

    img = data.astronaut()[40:340, 100:400]
    return (transform.resize(img, (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)


SMALL = _photo(48, 64)
ODD = _photo(100, 37)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def test_table_has_the_fifteen_in_four_families() -> None:
    assert len(CORRUPTIONS) == 15
    assert set(corruption_names()) == {
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"}
    assert {c.family for c in CORRUPTIONS.values()} == set(FAMILIES)
    assert [len(c.params) for c in CORRUPTIONS.values()] == [5] * 15
    assert corruption_names("weather") == ["snow", "frost", "fog", "brightness"]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_severity_any_size_uint8_same_shape(name: str) -> None:
    for img in (SMALL, ODD):
        outs = []
        for s in SEVERITIES:
            y = corrupt(img, name, s, seed=3, key="a.png")
            assert y.dtype == np.uint8 and y.shape == img.shape, (name, s, img.shape)
            outs.append(y)
        # every corruption changes the image at its strongest severity
        assert not np.array_equal(outs[-1], img), name


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_deterministic_for_seed_and_key(name: str) -> None:
    a = corrupt(SMALL, name, 3, seed=7, key="x.png")
    b = corrupt(SMALL, name, 3, seed=7, key="x.png")
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur",
                                  "snow", "frost", "fog", "elastic_transform"])
def test_random_corruptions_depend_on_seed_and_image_key(name: str) -> None:
    a = corrupt(SMALL, name, 3, seed=7, key="x.png")
    assert not np.array_equal(a, corrupt(SMALL, name, 3, seed=8, key="x.png"))
    assert not np.array_equal(a, corrupt(SMALL, name, 3, seed=7, key="y.png"))


def test_rng_is_independent_of_call_order() -> None:
    first = make_rng(1, "fog", 2, "k").random(4)
    make_rng(1, "snow", 5, "other").random(100)
    assert np.array_equal(first, make_rng(1, "fog", 2, "k").random(4))


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "contrast",
                                  "pixelate", "jpeg_compression", "brightness", "zoom_blur"])
def test_severity_is_monotone_in_psnr(name: str) -> None:
    img = _photo(96, 128)
    psnrs = [_psnr(img, corrupt(img, name, s, seed=0, key="m")) for s in SEVERITIES]
    assert all(a > b for a, b in zip(psnrs, psnrs[1:])), (name, psnrs)


def test_blur_removes_high_frequencies_with_severity() -> None:
    img = _photo(96, 128).astype(float)

    def hf(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x.astype(float), axis=1)).mean())

    energies = [hf(corrupt(img.astype(np.uint8), "defocus_blur", s, seed=0)) for s in SEVERITIES]
    assert hf(img) > energies[0] and all(a > b for a, b in zip(energies, energies[1:]))


def test_contrast_and_brightness_do_what_they_say() -> None:
    img = _photo(64, 64)
    per_channel = img.std(axis=(0, 1))
    assert np.all(corrupt(img, "contrast", 5).std(axis=(0, 1)) < 0.06 * per_channel + 0.5)   # factor 0.05
    assert corrupt(img, "brightness", 5).mean() > img.mean() + 50


def test_gray_and_alpha_inputs() -> None:
    gray = SMALL[..., 0]
    y = corrupt(gray, "fog", 2, seed=1)
    assert y.shape == gray.shape and y.dtype == np.uint8
    y1 = corrupt(gray[..., None], "motion_blur", 2, seed=1)
    assert y1.shape == (48, 64, 1)
    rgba = np.dstack([SMALL, np.full(SMALL.shape[:2], 200, np.uint8)])
    z = corrupt(rgba, "gaussian_noise", 4, seed=1)
    assert z.shape == rgba.shape and np.all(z[..., 3] == 200)
    assert not np.array_equal(z[..., :3], SMALL)


def test_refusals() -> None:
    with pytest.raises(UnknownIdError, match="unknown corruption 'rain'"):
        corrupt(SMALL, "rain", 1)
    with pytest.raises(InputError, match="severity"):
        corrupt(SMALL, "fog", 6)
    with pytest.raises(InputError, match="uint8"):
        corrupt(SMALL.astype(np.uint16), "fog", 1)


def test_helpers_fractal_and_frost() -> None:
    m = plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert m.shape == (32, 32) and m.min() == 0 and m.max() == 1
    with pytest.raises(ValueError):
        plasma_fractal(30, 2.0, np.random.default_rng(0))
    f = frost_texture(50, 70, np.random.default_rng(0))
    assert f.shape == (50, 70, 3) and 20 < f.mean() < 200
    assert f[..., 2].mean() > f[..., 0].mean()          # cold blue-white tint


def _write_dataset(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(imagecodecs.png_encode(SMALL))
    (root / "sub" / "b.png").write_bytes(imagecodecs.png_encode(ODD))
    (root / "notes.txt").write_text("not an image")


def test_cli_writes_the_layout_deterministically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    _write_dataset(data)
    rc = main(["bench", "corruptions", "--data", str(data), "-o", str(out), "--seed", "5",
               "--corruptions", "gaussian_noise,pixelate", "-s", "1", "-s", "5"])
    assert rc == 0, capsys.readouterr().err
    assert "8 corrupted images" in capsys.readouterr().out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [f"{c}/{s}/{n}" for c in ("gaussian_noise", "pixelate") for s in (1, 5)
                     for n in ("a.png", "sub/b.png")]
    got = imagecodecs.png_decode((out / "gaussian_noise" / "5" / "sub" / "b.png").read_bytes())
    assert got.shape == ODD.shape
    assert np.array_equal(got, corrupt(ODD, "gaussian_noise", 5, seed=5, key="sub/b.png"))
    # a second run (another folder) writes identical bytes
    out2 = tmp_path / "out2"
    assert main(["bench", "corruptions", "--data", str(data), "-o", str(out2), "--seed", "5",
                 "-c", "gaussian_noise", "-s", "5"]) == 0
    assert (out2 / "gaussian_noise/5/a.png").read_bytes() == (out / "gaussian_noise/5/a.png").read_bytes()
    assert not list(out.rglob("*.part"))


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _write_dataset(data)
    assert main(["bench", "corruptions", "--data", str(data), "-o", str(tmp_path / "o"), "-c", "rain"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inverity: error: unknown corruption 'rain'") and err.count("\n") == 1
    assert main(["bench", "corruptions", "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_resume_keeps_existing_files(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    _write_dataset(data)
    corrupt_dataset(data, out, corruptions=["contrast"], severities=[2])
    target = out / "contrast" / "2" / "a.png"
    target.write_bytes(b"sentinel")
    corrupt_dataset(data, out, corruptions=["contrast"], severities=[2], overwrite=False)
    assert target.read_bytes() == b"sentinel"
    corrupt_dataset(data, out, corruptions=["contrast"], severities=[2])
    assert target.read_bytes() != b"sentinel"
