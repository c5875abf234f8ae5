"""Shared assertion helpers and synthetic test images (Pillow's ``Tests/helper.py``, numcodecs' ``tests/common.py``).

Import from a test module as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""
from __future__ import annotations

import hashlib
import json
import math
import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from inverity.image import Image
from inverity.stages.base import Stage, get_stage, stage_class

__all__ = [
    "psnr", "assert_bit_exact", "assert_config_round_trip", "synthetic", "SYNTHETIC_KINDS", "srgb_icc",
    "require_browser", "headless_chromium", "SAMPLE_EXIF", "SAMPLE_XMP", "pixels_sha256", "check_golden", "FIXTURES", "REGEN",
]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: set INVERITY_REGEN_FIXTURES=1 to rewrite the golden fixtures (never in CI)
REGEN = os.environ.get("INVERITY_REGEN_FIXTURES") == "1"

#: a minimal valid little-endian EXIF (TIFF) block: one IFD entry, Orientation = 1
SAMPLE_EXIF = b"II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
SAMPLE_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/test"/>'
              b"</rdf:RDF></x:xmpmeta>")


def srgb_icc() -> bytes:
    """A real sRGB ICC profile (built by LittleCMS through Pillow), so decoders do not warn about it."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def psnr(a: Image | np.ndarray, b: Image | np.ndarray, max_value: int | None = None) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` when identical); ``max_value`` defaults to the dtype's range."""
    x = a.pixels if isinstance(a, Image) else np.asarray(a)
    y = b.pixels if isinstance(b, Image) else np.asarray(b)
    assert x.shape == y.shape, f"shape {x.shape} != {y.shape}"
    if max_value is None:
        max_value = a.max_value if isinstance(a, Image) else int(np.iinfo(x.dtype).max)
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def assert_bit_exact(original: Image, decoded: Image) -> None:
    """Same shape, dtype and every sample; the message points at the first difference."""
    a, b = original.pixels, decoded.pixels
    assert b.shape == a.shape, f"shape changed: {a.shape} -> {b.shape}"
    assert b.dtype == a.dtype, f"dtype changed: {a.dtype} -> {b.dtype}"
    if not np.array_equal(a, b):
        idx = tuple(int(i) for i in np.argwhere(a != b)[0])
        raise AssertionError(f"not bit-exact: first difference at {idx}: {a[idx]} -> {b[idx]}, "
                             f"max abs error {int(np.abs(a.astype(np.int64) - b).max())}")


def assert_config_round_trip(stage: Stage) -> None:
    """STYLE.md 1: JSON-only config holding the id; ``stage == get_stage(json round trip)``."""
    cfg = stage.get_config()
    assert cfg["id"] == stage.codec_id
    again = get_stage(json.loads(json.dumps(cfg)))
    assert type(again) is type(stage)
    assert again == stage, f"{cfg} -> {again.get_config()}"
    assert again.get_config() == cfg


SYNTHETIC_KINDS = ("rgb8", "gray8", "gray16", "gray12", "rgba8", "graya8", "rgba16")


def synthetic(kind: str = "rgb8", height: int = 24, width: int = 32, seed: int = 0) -> Image:
    """A deterministic image with smooth gradients, a hard edge and noise (so codecs have real work to do).

    ``kind``: ``rgb8``, ``gray8``, ``gray16`` (full 16-bit range), ``gray12`` (12 significant bits in uint16),
    ``rgba8`` / ``graya8`` / ``rgba16`` (alpha with fully transparent pixels, whose colour must survive lossless
    stages too).
    """
    colour, bits = kind.rstrip("0123456789"), int("".join(c for c in kind if c.isdigit()))
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), (x + y) / max(width + height - 2, 1)], -1)
    base[:, width // 2 :, 0] = 1.0 - base[:, width // 2 :, 0]  # a hard vertical edge
    base = np.clip(base + rng.normal(0, 0.03, base.shape), 0.0, 1.0)
    channels = {"rgb": base, "gray": base[..., :1], "rgba": base, "graya": base[..., :1]}[colour]
    if colour in ("rgba", "graya"):
        alpha = np.clip(x / max(width - 1, 1), 0.0, 1.0)[..., None]
        alpha[:, : width // 4] = 0.0  # fully transparent columns
        channels = np.concatenate([channels, alpha], -1)
    maxval = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    return Image(np.round(channels * maxval).astype(dtype), bit_depth=bits)


def pixels_sha256(image: Image) -> str:
    return hashlib.sha256(np.ascontiguousarray(image.pixels).tobytes()).hexdigest()


def check_golden(codec_id: str, variants: dict[str, tuple[dict[str, Any], str]], tolerance: int = 0) -> None:
    """Decode every committed sample of ``codec_id`` and compare with the recorded pixels (STYLE.md 3).

    ``variants`` maps a name to ``(stage config without id, synthetic kind)``. Fixtures live in
    ``tests/fixtures/<codec_id>/``: ``<name><ext>`` (the encoded bytes), ``<name>.ref.npy`` (the decoded pixels
    at recording time) and ``manifest.json`` (config, shape, dtype, bit depth, sha256 of the decoded pixels).
    With ``INVERITY_REGEN_FIXTURES=1`` they are rewritten from the current encoder first.

    ``tolerance`` (on the 8-bit scale; ×257 for 16-bit samples) > 0 allows decoders whose output is not specified bit-exactly (JPEG XL VarDCT, AVIF's
    YUV→RGB) to differ by that much across CPUs; the sha256 then only has to match on the recording machine's
    kind of CPU, the reference pixels always within ``tolerance``.
    """
    folder = FIXTURES / codec_id
    manifest_path = folder / "manifest.json"
    if REGEN:
        folder.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {}
        for name, (cfg, kind) in variants.items():
            stage = get_stage({"id": codec_id, **cfg})
            data = stage.encode(synthetic(kind))
            decoded = stage.decode(data)
            ext = getattr(stage, "extension", stage.capabilities.extensions[0])
            (folder / f"{name}{ext}").write_bytes(data)
            np.save(folder / f"{name}.ref.npy", decoded.pixels, allow_pickle=False)
            manifest[name] = {"file": f"{name}{ext}", "config": stage.get_config(), "source": kind,
                              "shape": list(decoded.pixels.shape), "dtype": str(decoded.dtype),
                              "bit_depth": decoded.bit_depth, "sha256": pixels_sha256(decoded)}
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    assert manifest_path.is_file(), f"no golden fixtures for {codec_id}; run with INVERITY_REGEN_FIXTURES=1"
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest) == set(variants), f"{codec_id}: fixtures {sorted(manifest)} != {sorted(variants)}"
    for name, entry in manifest.items():
        decoded = stage_class(codec_id)().decode((folder / entry["file"]).read_bytes())
        where = f"{codec_id}/{entry['file']}"
        assert list(decoded.pixels.shape) == entry["shape"], where
        assert str(decoded.dtype) == entry["dtype"], where
        assert decoded.bit_depth == entry["bit_depth"], where
        ref = np.load(folder / f"{name}.ref.npy", allow_pickle=False)
        err = int(np.abs(decoded.pixels.astype(np.int64) - ref).max())
        tol = tolerance * (257 if ref.dtype == np.uint16 else 1)  # tolerance is on the 8-bit scale
        assert err <= tol, f"{where}: decoded pixels moved by {err} (> {tol})"
        if tolerance == 0:
            assert pixels_sha256(decoded) == entry["sha256"], f"{where}: decoded pixel hash changed"


# -- headless Chromium (Debian chromium + chromedriver) for the browser tests -------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def require_browser() -> None:
    """Skip the calling test cleanly when chromium, chromedriver or selenium is missing."""
    import pytest

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.isfile(p)]
    if missing:
        pytest.skip(f"headless browser not installed ({', '.join(missing)} missing): "
                    "apt-get install chromium chromium-driver")
    pytest.importorskip("selenium")


@contextlib.contextmanager
def headless_chromium(profile: Path, *, window: str = "1280,1000", console: bool = True) -> Iterator[Any]:
    """A selenium driver on headless Chromium with no background networking (nothing leaves the machine),
    a fresh profile under ``profile``, and the browser console log kept when ``console``."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--window-size={window}", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    if console:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
