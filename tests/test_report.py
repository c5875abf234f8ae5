"""The audit page: every asset present, every link resolving, nothing external, everything escaped, and maps
that show what they claim (error where the error is, worst tile where the damage is)."""
from __future__ import annotations

import doctest
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import imagecodecs
import numpy as np
import pytest
from skimage import data as skdata

from inverity.errors import InputError
from inverity.image import Image
from inverity.report import _build, _maps, write_report
from inverity.verify import Floors, verify
from inverity.verify_types import Box

# a file name no page should print raw: markup, an entity, a quote, and a '#' that would cut a link short
HOSTILE = 'line<b>&"art #1.png'
#: where the 16-bit asset's reconstruction is damaged (x, y, w, h)
DAMAGE = (96, 32, 16, 16)


@dataclass
class Batch:
    indir: Path
    outdir: Path
    records: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagecodecs.png_encode(pixels))


def make_batch(tmp: Path) -> Batch:
    """A hand-made ``compress`` output: originals in ``tmp/in``, outputs + records as the pipeline writes them.

    Five assets: a photo (JPEG after a rejected learned attempt), a 12-bit medical slice in 16-bit PNG with one
    damaged block, a bit-exact drawing with a hostile file name, a failed asset (no output) and an asset whose
    original has gone missing. The ``checks`` of the verified assets are what the real verifier writes for
    their pair (``worst_windows`` boxes included), not a shape made up for the test.
    """
    indir, outdir = tmp / "in", tmp / "out"
    recs: list[dict[str, Any]] = []

    def record(inp: str, out: str | None, **kw: Any) -> dict[str, Any]:
        r: dict[str, Any] = {
            "input": inp, "output": str(outdir / out) if out else None, "output_rel": out,
            "bytes": (outdir / out).stat().st_size if out else None,
            "input_bytes": (indir / inp).stat().st_size if (indir / inp).exists() else None,
            "status": "done", "error": None, "policy": "auto", "stage": None, "quality": None,
            "profile": {"kind": "photo", "kind_confidence": 0.9, "ood_score": 0.3, "in_distribution": True},
            "attempts": [], "checks": {}, "reasons": [],
        }
        r.update(kw)
        recs.append(r)
        return r

    # 1. photo: learned rejected on its worst tile, JPEG accepted
    photo = np.ascontiguousarray(skdata.astronaut()[40:232, 140:332])
    _png(indir / "photos/astro.png", photo)
    (outdir / "photos").mkdir(parents=True)
    (outdir / "photos/astro.jpg").write_bytes(imagecodecs.jpeg8_encode(photo, level=25))
    jpeg = imagecodecs.jpeg8_decode((outdir / "photos/astro.jpg").read_bytes())
    record("photos/astro.png", "photos/astro.jpg", policy="controlled", stage="jpeg", quality=25,
           attempts=[{"stage": "learned", "quality": 3, "passed": False, "reasons": ["worst_tile_psnr 24.1 < 28"],
                      "options": {"model": "hp-gain"}, "bytes": 2048},
                     {"stage": "jpeg", "quality": 25, "passed": True, "chosen": True,
                      "reasons": ["ssimulacra2 71.3 >= 70"]}],
           checks=verify(photo, jpeg, Floors.controlled()).to_dict()["checks"],
           reasons=["policy controlled: learned first for in-distribution photos",
                    "learned rejected: worst_tile_psnr 24.1 < 28", "jpeg: smallest passing"])

    # 2. 12-bit CT-like slice in uint16; the reconstruction is off by ±2 everywhere and ruined in one block
    yy, xx = np.mgrid[0:128, 0:160]
    ct = (800 + 600 * np.exp(-((xx - 80) ** 2 + (yy - 64) ** 2) / 1800.0) + 3 * xx).astype(np.uint16)
    rng = np.random.default_rng(7)
    rec16 = np.clip(ct.astype(np.int32) + rng.integers(-2, 3, ct.shape), 0, 4095)
    x, y, w, h = DAMAGE
    rec16[y:y + h, x:x + w] += 400
    _png(indir / "ct/slice.png", ct)
    _png(outdir / "ct/slice.png", rec16.astype(np.uint16))
    record("ct/slice.png", "ct/slice.png", policy="auto", policy_resolved="diagnostic", stage="jpegls", quality=None,
           profile={"kind": "medical", "kind_confidence": 0.97, "ood_score": 2.5, "in_distribution": False},
           attempts=[{"stage": "jpegls", "quality": None, "passed": True, "reasons": ["max_abs_error 2 <= 2"]}],
           checks=verify(Image(ct[..., None]), Image(rec16.astype(np.uint16)[..., None]),
                         Floors.bounded(2)).to_dict()["checks"], bit_depth=12,
           reasons=["auto -> diagnostic: 16-bit medical"])

    # 3. a drawing kept bit-exact, under a name full of markup
    drawing = np.full((96, 128, 3), 255, np.uint8)
    drawing[10:86:8, :, :] = 0
    drawing[:, 60:64, 0] = 200
    _png(indir / HOSTILE, drawing)
    _png(outdir / HOSTILE, drawing)
    record(HOSTILE, HOSTILE, policy="archive", stage="png",
           profile={"kind": "drawing", "kind_confidence": 0.8, "ood_score": 5.0, "in_distribution": False},
           attempts=[{"stage": "png", "quality": None, "passed": True, "reasons": ["bit-exact"]}],
           checks={"lossless": True, "max_abs_error": 0}, reasons=["archive: lossless only"])

    # 4. failed: every candidate rejected, nothing written
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    _png(indir / "noise.png", noise)
    record("noise.png", None, status="failed", policy="delivery",
           error="noise.png: no stage passed verification under policy delivery",
           attempts=[{"stage": "avif", "quality": 90, "passed": False, "reasons": ["ssimulacra2 41.0 < 70"]},
                     {"stage": "jpeg", "quality": 95, "passed": False, "reasons": ["ssimulacra2 55.2 < 70"]}])

    # 5. the original is gone (moved after the batch); only the output remains
    gone = np.ascontiguousarray(skdata.camera()[::4, ::4])
    (outdir / "gone").mkdir()
    (outdir / "gone/missing.jpg").write_bytes(imagecodecs.jpeg8_encode(gone, level=80))
    record("gone/missing.png", "gone/missing.jpg", policy="delivery", stage="jpeg", quality=80,
           attempts=[{"stage": "jpeg", "quality": 80, "passed": True, "reasons": ["ssimulacra2 80 >= 70"]}])
    return Batch(indir, outdir, recs)


class _Page(HTMLParser):
    """Collects the sections, every URL-bearing attribute, and the text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str]] = []
        self.sections: dict[str, dict[str, str]] = {}
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        for k in ("src", "href", "srcset", "poster", "data"):
            if k in a:
                self.urls.append((tag, a[k]))
        if tag == "section" and "asset" in a.get("class", "").split():
            self.sections[a["id"]] = a

    def handle_data(self, d: str) -> None:
        self.text.append(d)


def _parse(page: Path) -> _Page:
    p = _Page()
    p.feed(page.read_text(encoding="utf-8"))
    return p


@pytest.fixture()
def batch(tmp_path: Path) -> Batch:
    return make_batch(tmp_path)


@pytest.fixture()
def page(batch: Batch) -> Path:
    return write_report(batch.outdir, batch.records, roots=[batch.indir])


# -- the page as a whole ------------------------------------------------------------------------------------------
def test_every_asset_has_a_row_and_a_section(batch: Batch, page: Path) -> None:
    assert page == batch.outdir / "report" / "index.html"
    doc = _parse(page)
    inputs = [s["data-input"] for s in doc.sections.values()]
    assert inputs == [r["input"] for r in batch.records]
    rows = [a for t, a in doc.tags if t == "tr" and a.get("id", "").startswith("row-")]
    assert [r["id"][4:] for r in rows] == list(doc.sections)
    # each row links to its section
    anchors = {u[1:] for t, u in doc.urls if t == "a" and u.startswith("#") and len(u) > 1}
    assert set(doc.sections) <= anchors


def test_every_link_resolves_to_a_file(page: Path) -> None:
    doc = _parse(page)
    local = [u for _, u in doc.urls if not u.startswith(("#", "data:"))]
    assert len(local) >= 15  # images of four assets plus output links: not a vacuous loop
    for url in local:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        target = (page.parent / unquote(parts.path)).resolve()
        assert target.is_file(), f"{url} -> {target} does not exist"


def test_no_external_resources(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html, re.I)
    doc = _parse(page)
    for tag, url in doc.urls:
        assert not url.startswith("//"), url
    # CSS and JS are inline: no <link rel=stylesheet>, no <script src>
    assert not [a for t, a in doc.tags if t == "link" and "stylesheet" in a.get("rel", "")]
    assert not [a for t, a in doc.tags if t == "script" and "src" in a]
    assert "Content-Security-Policy" in html


def test_names_and_record_text_are_escaped(batch: Batch, page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "<b>&" not in html and 'line<b>' not in html
    assert "line&lt;b&gt;&amp;" in html
    doc = _parse(page)
    assert HOSTILE in "".join(doc.text)  # ... and it reads back as the real name
    link = next(u for t, u in doc.urls if t == "a" and "art" in u and not u.startswith("#"))
    assert "#" not in link and (page.parent / unquote(link)).resolve() == (batch.outdir / HOSTILE).resolve()


def test_previews_are_webp_at_screen_size_and_only_window_crops_are_png(page: Path) -> None:
    files = sorted((page.parent / "assets").iterdir())
    assert files and {f.suffix for f in files} == {".webp", ".png"}
    for f in files:
        px = imagecodecs.imread(f.read_bytes())
        assert px.dtype == np.uint8, f"{f.name}: display images are 8-bit"
        if f.suffix == ".png":    # full resolution only around the verifier's windows
            assert re.search(r"-w\d-(orig|recon|err)\.png$", f.name), f.name
            assert max(px.shape[:2]) <= _build.CROP_MAX
        else:
            assert max(px.shape[:2]) <= _maps.DISPLAY_MAX_SIDE
    photo = page.parent / "assets" / next(f.name for f in files if "astro" in f.name
                                          and f.name.endswith("-original.webp"))
    assert imagecodecs.imread(photo.read_bytes()).shape == (192, 192, 3)


# -- what each section says ----------------------------------------------------------------------------------------
def _section_html(page: Path, needle: str) -> str:
    html = page.read_text(encoding="utf-8")
    chunks = html.split('<section class="asset"')[1:]
    return next(c for c in chunks if needle in c.split(">", 1)[0])


def test_verdicts_reasons_and_attempts(page: Path) -> None:
    photo = _section_html(page, 'data-input="photos/astro.png"')
    assert 'data-verdict="verified"' in photo and "verified after 1 rejected attempt" in photo
    assert "worst_tile_psnr 24.1 &lt; 28" in photo          # the rejected learned attempt and why
    assert photo.count('class="badge v-failed">rejected') == 1
    # why it won comes first, what was rejected after it, the attempts are collapsed
    won = photo.index("Why this output")
    assert won < photo.index("jpeg q25") < photo.index("<h3>Rejected</h3>") < photo.index("learned (tried q3")
    assert re.search(r'<details class="attempts"><summary>All attempts \(2\)</summary>', photo)
    assert photo.count('<details class="att">') == 2
    failed = _section_html(page, 'data-input="noise.png"')
    assert 'data-verdict="failed"' in failed
    assert "no stage passed verification under policy delivery" in failed
    assert "ssimulacra2 41.0 &lt; 70" in failed and "ssimulacra2 55.2 &lt; 70" in failed
    assert "no output was written" in failed and "-original.webp" in failed and 'class="slider"' not in failed
    assert "nothing was written" in failed and "avif (tried q90" in failed and "jpeg (tried q95" in failed
    drawing = _section_html(page, 'data-verdict="lossless"')
    assert "bit-exact" in drawing
    html = page.read_text(encoding="utf-8")
    # the summary table carries the main reasons, the decision record is there in full
    assert "learned q3 rejected: worst_tile_psnr 24.1 &lt; 28" in html.split("<section", 1)[0]
    assert html.count("Decision record (JSON)") == 5
    assert "&#34;input&#34;: &#34;photos/astro.png&#34;" in html or "&quot;input&quot;" in html


def test_missing_original_gets_a_placeholder(page: Path) -> None:
    gone = _section_html(page, 'data-input="gone/missing.png"')
    assert "original not found" in gone
    assert "-reconstruction.webp" in gone and "-original." not in gone and "-error." not in gone


def test_mismatched_reconstruction_is_reported_not_compared(tmp_path: Path) -> None:
    rgba = np.dstack([skdata.astronaut()[:64, :80], np.full((64, 80), 200, np.uint8)])
    _png(tmp_path / "alpha.png", rgba)
    _png(tmp_path / "out/alpha.png", np.ascontiguousarray(rgba[..., :3]))        # alpha dropped
    _png(tmp_path / "small.png", rgba[..., :3].copy())
    _png(tmp_path / "out/small.png", np.ascontiguousarray(rgba[:32, :40, :3]))    # wrong size
    recs = [{"input": n, "output_rel": n, "status": "done", "attempts": [{"stage": "png", "passed": True}]}
            for n in ("alpha.png", "small.png")]
    page = write_report(tmp_path / "out", recs, roots=[tmp_path])
    alpha = _section_html(page, 'data-input="alpha.png"')
    assert "channels differ (original rgba, reconstruction rgb)" in alpha and 'class="slider"' in alpha
    small = _section_html(page, 'data-input="small.png"')
    assert "the reconstruction is 40×32 but the original is 80×64" in small
    assert 'class="slider"' not in small and "-error." not in small
    assert "-original.webp" in small and "-reconstruction.webp" in small


def test_undecodable_outputs_are_shown_as_problems(tmp_path: Path) -> None:
    px = np.ascontiguousarray(skdata.astronaut()[:48, :48])
    _png(tmp_path / "a.png", px)
    _png(tmp_path / "b.png", px)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/a.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)          # truncated JPEG
    (tmp_path / "out/b.inv").write_bytes(b"INV1" + b"\x00" * 40)                   # a broken learned stream
    recs = [{"input": "a.png", "output_rel": "a.jpg", "status": "done", "stage": "jpeg"},
            {"input": "b.png", "output_rel": "b.inv", "status": "done", "stage": "learned"}]
    page = write_report(tmp_path / "out", recs, roots=[tmp_path])
    for name, out in (("a.png", "a.jpg"), ("b.png", "b.inv")):
        sec = _section_html(page, f'data-input="{name}"')
        assert f"the output {out} could not be decoded: " in sec
        assert "-original.webp" in sec and "-reconstruction." not in sec   # the original is still shown


def test_inputs_relative_to_the_current_directory(batch: Batch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(batch.indir)          # no roots given: the input paths resolve against the cwd
    page = write_report(batch.outdir, batch.records, dest=batch.outdir.parent / "elsewhere")
    assert page == batch.outdir.parent / "elsewhere" / "index.html"
    assert "-original.webp" in _section_html(page, 'data-input="photos/astro.png"')
    # without the root the originals are honestly reported missing, never guessed
    monkeypatch.chdir(batch.outdir.parent)
    page2 = write_report(batch.outdir, batch.records, dest=batch.outdir.parent / "noroot.html")
    assert page2.name == "noroot.html" and "original not found" in _section_html(page2, 'data-input="ct/slice.png"')


# -- the maps ------------------------------------------------------------------------------------------------------
def _windows_attr(section: str) -> list[str]:
    m = re.search(r'data-windows="([\d,;]*)"', section)
    assert m, "section has no data-windows attribute"
    return [w for w in m.group(1).split(";") if w]


def test_sixteen_bit_is_tone_mapped_and_the_verifiers_windows_are_drawn(batch: Batch, page: Path) -> None:
    ct = _section_html(page, 'data-input="ct/slice.png"')
    assert "16-bit image shown tone-mapped to 8-bit" in ct
    assert "OOD" in ct
    # exactly the verifier's boxes, in its pixels (no second search on another grid)
    recorded = batch.records[1]["checks"]["worst_windows"]
    drawn = _windows_attr(ct)
    assert sorted(drawn) == sorted({f"{b['x']},{b['y']},{b['w']},{b['h']}" for b in recorded})
    tile = next(b for b in recorded if b["check"] == "worst_tile_psnr")
    dx, dy, dw, dh = DAMAGE
    assert tile["x"] <= dx and tile["y"] <= dy and tile["x"] + tile["w"] >= dx + dw and tile["y"] + tile["h"] >= dy + dh
    assert "as recorded by the verifier" in ct and "found by the report" not in ct
    assert ct.count('class="winbox') == 2 * len(drawn)        # on the slider and on the error map
    # the error map is hottest over the damaged block
    err_src = re.search(r'src="(assets/[^"]+-error\.webp)"', ct).group(1)
    emap = imagecodecs.imread((page.parent / err_src).read_bytes()).astype(int)
    lut = _maps.colormap_lut(_build.ERROR_CMAP).astype(int)
    level = np.abs(emap[..., None, :] - lut[None, None]).sum(-1).argmin(-1)   # invert the colour map
    inside = level[dy:dy + dh, dx:dx + dw]
    outside = np.delete(level, np.s_[dy:dy + dh], axis=0)
    assert inside.min() >= 240 and np.percentile(outside, 99) < 40
    # a 1:1 crop around the worst window, in exact pixels
    crop = re.search(r'src="(assets/[^"]+-w0-recon\.png)"', ct).group(1)
    assert imagecodecs.imread((page.parent / crop).read_bytes()).shape[:2] == (64, 64)
    photo = _section_html(page, 'data-input="photos/astro.png"')
    boxes = batch.records[0]["checks"]["worst_windows"]
    assert sorted(_windows_attr(photo)) == sorted({f"{b['x']},{b['y']},{b['w']},{b['h']}" for b in boxes})
    assert "local_snr" in photo and "dB — 16×16 at x=" in photo


def test_malformed_or_legacy_windows_are_said_not_guessed(tmp_path: Path) -> None:
    px = np.ascontiguousarray(skdata.astronaut()[:64, :64])
    _png(tmp_path / "a.png", px)
    _png(tmp_path / "b.png", px)
    (tmp_path / "out").mkdir()
    for n in ("a", "b"):
        (tmp_path / f"out/{n}.jpg").write_bytes(imagecodecs.jpeg8_encode(px, level=30))
    recs = [{"input": "a.png", "output_rel": "a.jpg", "stage": "jpeg",
             "checks": {"worst_tile": [1, 1], "worst_windows": [{"x": 3, "y": 4}]}},   # neither shape is a box
            {"input": "b.png", "output_rel": "b.jpg", "stage": "jpeg", "checks": {"worst_tile": [1, 1]}}]
    page = write_report(tmp_path / "out", recs, roots=[tmp_path])
    a = _section_html(page, 'data-input="a.png"')
    assert "worst windows are malformed" in a and _windows_attr(a) == []
    b = _section_html(page, 'data-input="b.png"')
    assert "no worst windows" in b and _windows_attr(b) == [] and 'class="winbox' not in b


def test_checks_render_as_small_tables_not_raw_json(page: Path) -> None:
    photo = _section_html(page, 'data-input="photos/astro.png"')
    checks = photo.split('<table class="checks mono">', 1)[1].split('<div class="maps">')[0]
    assert "\\u2013" not in photo and "{&#34;" not in checks and "&#34;" not in checks
    assert '<table class="sub"><tr><th>band (cycles/px)</th><th>kept</th></tr>' in checks
    assert re.search(r"<td>0\.03–0\.06</td><td class=\"val\">\d+\.\d%</td>", checks)
    assert "worst_windows" not in checks          # drawn on the images, not dumped as JSON


def test_units_are_decimal_kilobytes(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "KiB" not in html and "MiB" not in html and " kB" in html and "kB = 1000 B" in html


def test_a_rejected_attempt_that_cannot_be_re_encoded_says_why(batch: Batch) -> None:
    recs = [dict(batch.records[0])]
    recs[0]["attempts"] = [dict(recs[0]["attempts"][0], options={"model": "no-such-model"}),
                           recs[0]["attempts"][1]]
    page = write_report(batch.outdir, recs, roots=[batch.indir], preview_rejected=True)
    photo = _section_html(page, 'data-input="photos/astro.png"')
    assert "Rejected — not delivered: learned q3" in photo
    assert "could not re-encode learned q3 for a preview: " in photo and "-rejected-" not in photo
    # without the option nothing is re-encoded
    page = write_report(batch.outdir, recs, roots=[batch.indir], dest=batch.outdir / "plain")
    assert "not delivered" not in page.read_text(encoding="utf-8")


def test_rejected_learned_attempt_is_previewed(batch: Batch) -> None:
    pytest.importorskip("torch")
    from inverity.stages.learned.zoo import list_models

    if not any(Path(m.path).is_file() for m in list_models()):
        pytest.skip("no learned model weights in this tree")
    page = write_report(batch.outdir, batch.records, roots=[batch.indir], preview_rejected=True)
    photo = _section_html(page, 'data-input="photos/astro.png"')
    assert "Rejected — not delivered: learned q3" in photo and "rejected — not delivered</span>" in photo
    src = re.search(r'src="(assets/[^"]+-rejected-learned\.webp)"', photo).group(1)
    assert imagecodecs.imread((page.parent / src).read_bytes()).shape == (192, 192, 3)
    pre = photo.split('class="rejected-preview"', 1)[1]
    assert 'class="winbox' in pre and "-rejected-error.webp" in pre
    # the record's verdict is shown again: it failed and the boxes say where (failed ones in red)
    assert 'class="winbox failed"' in pre or "passes" in pre


def test_lossless_error_map_is_zero(page: Path) -> None:
    drawing = _section_html(page, 'data-verdict="lossless"')
    err_src = re.search(r'src="(assets/[^"]+-error\.webp)"', drawing).group(1)
    emap = imagecodecs.imread((page.parent / err_src).read_bytes())
    assert (emap == _maps.colormap_lut(_build.ERROR_CMAP)[0]).all()
    assert "no error: the spectrum is empty" in drawing and "pixel-identical" in drawing
    assert 'data-windows=""' in drawing and "-w0-" not in drawing   # nothing to point at


def test_large_image_preview_is_downscaled_and_keeps_one_pixel_error(tmp_path: Path) -> None:
    wide = np.tile(np.linspace(0, 255, 1500).astype(np.uint8)[None, :, None], (40, 1, 3))
    recon = wide.copy()
    recon[17, 1234, 1] ^= 0x40                      # a single wrong pixel
    _png(tmp_path / "wide.png", wide)
    _png(tmp_path / "out/wide.png", recon)
    rec = {"input": "wide.png", "output_rel": "wide.png", "status": "done", "stage": "png", "bytes": 1,
           "attempts": [{"stage": "png", "passed": True}], "checks": {"lossless": False}}
    page = write_report(tmp_path / "out", [rec], roots=[tmp_path])
    assets = page.parent / "assets"
    orig = imagecodecs.imread(next(assets.glob("*-original.webp")).read_bytes())
    assert orig.shape == (27, 1024, 3)
    emap = imagecodecs.imread(next(assets.glob("*-error.webp")).read_bytes())
    assert emap.shape == (14, _build.MAP_MAX_SIDE, 3)                  # maps are smaller than the previews
    zero = _maps.colormap_lut(_build.ERROR_CMAP)[0].astype(int)
    hot = np.argwhere(np.abs(emap.astype(int) - zero).sum(axis=2) > 60)
    assert len(hot) >= 1 and abs(hot[0][1] - 1234 * 512 / 1500) <= 2    # the lone error survived the downscale
    assert "shown at 1024×27" in page.read_text(encoding="utf-8")


def test_spectral_map_puts_fine_errors_far_from_the_centre() -> None:
    base = np.full((64, 64, 1), 128, np.uint8)
    checker = base.copy()
    checker[::2, ::2] += 3                           # highest-frequency error
    smooth = base.copy()
    smooth[:, :32] += 3                              # low-frequency error
    lut = _maps.colormap_lut("magma").astype(int)

    def peak_distance(recon: np.ndarray) -> float:
        rgb, _ = _maps.spectral_map(base, recon)
        level = np.abs(rgb[..., None, :].astype(int) - lut[None, None]).sum(-1).argmin(-1)
        py, px = np.unravel_index(level.argmax(), level.shape)
        return float(np.hypot(py - 32, px - 32))

    assert peak_distance(checker) > 30 and peak_distance(smooth) < 6
    assert "empty" in _maps.spectral_map(base, base)[1]


def test_doctests_of_the_report_modules() -> None:
    import inverity.report as pkg

    from inverity.report import _rejected, _why

    for mod in (_maps, _build, pkg, _why, _rejected):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__
    assert doctest.testmod(_maps).attempted >= 6


# -- catalog and CLI -----------------------------------------------------------------------------------------------
def _catalog(batch: Batch) -> None:
    from inverity.catalog import Catalog

    with Catalog(batch.outdir / "inverity.sqlite") as cat:
        for r in batch.records:
            cat.put(dict(r, input_sha256="0" * 64))


def test_records_come_from_the_catalog(batch: Batch) -> None:
    _catalog(batch)
    page = write_report(batch.outdir, roots=[batch.indir])
    doc = _parse(page)
    # the catalog orders by input path
    assert sorted(s["data-input"] for s in doc.sections.values()) == sorted(r["input"] for r in batch.records)


def test_no_catalog_and_no_records_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no catalog inverity.sqlite"):
        write_report(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        write_report(tmp_path / "nope", [])


def test_cli_report(batch: Batch, capsys: pytest.CaptureFixture[str]) -> None:
    from inverity.cli import main

    _catalog(batch)
    dest = batch.outdir.parent / "audit"
    rc = main(["report", str(batch.outdir), "-o", str(dest), "--root", str(batch.indir)])
    out = capsys.readouterr().out.strip()
    assert rc == 0 and Path(out) == dest / "index.html" and len(_parse(Path(out)).sections) == 5
    # from a JSONL file (what `compress --json` prints) instead of the catalog
    jsonl = batch.outdir.parent / "records.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in batch.records[:2]) + "\n")
    rc = main(["report", str(batch.outdir), "--records", str(jsonl), "-o", str(dest / "two.html")])
    assert rc == 0 and len(_parse(dest / "two.html").sections) == 2
    capsys.readouterr()
    rc = main(["report", str(batch.outdir.parent / "missing")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("inverity: error:") and "not a directory" in err and len(err.splitlines()) == 1


def test_real_pipeline_batch(tmp_path: Path) -> None:
    """End to end with the real pipeline, once every module it needs is in the tree."""
    for mod in ("inverity.pipeline", "inverity.analyse", "inverity.policy", "inverity.route", "inverity.verify",
                "inverity.stages.classical", "inverity.stages.lossless"):
        pytest.importorskip(mod)
    from inverity import image
    from inverity.pipeline import compress

    try:
        image.load(imagecodecs.png_encode(np.zeros((8, 8, 3), np.uint8)))
    except NotImplementedError:
        pytest.skip("inverity.image.load is not implemented yet")
    src = tmp_path / "src"
    _png(src / "photo.png", np.ascontiguousarray(skdata.astronaut()[100:228, 100:228]))
    _png(src / "drawing.png", np.kron(np.eye(8, dtype=np.uint8) * 255, np.ones((12, 12), np.uint8)))
    records = compress([src], tmp_path / "out", policy="auto", jobs=1)
    assert len(records) == 2
    page = write_report(tmp_path / "out", roots=[src])
    doc = _parse(page)
    assert sorted(s["data-input"] for s in doc.sections.values()) == ["drawing.png", "photo.png"]
    for r in records:
        if r["status"] == "done":
            sec = _section_html(page, f'data-input="{r["input"]}"')
            assert "-reconstruction.webp" in sec
            # the page draws exactly the boxes the real verifier recorded
            boxes = [Box.from_dict(b) for b in r["checks"].get("worst_windows") or []]
            drawn = {tuple(int(v) for v in w.split(",")) for w in _windows_attr(sec)}
            assert drawn == {(b.x, b.y, b.w, b.h) for b in boxes}
