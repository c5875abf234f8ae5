"""The audit page in a real headless Chromium: loads clean, shows every asset's images, the slider slides, the
verifier's worst windows sit on the images, the attempts fold and unfold.

Needs Debian's ``chromium`` and ``chromium-driver`` (scripts/test.sh installs them); skips, saying so, when
either is missing. The page is served by a real HTTP server on 127.0.0.1 (port chosen by the OS), so the
Content-Security-Policy and relative image URLs are exercised as a browser sees them.
"""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from inverity.report import write_report
from test_report import make_batch
from helpers import headless_chromium

pytestmark = pytest.mark.browser



class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def served_report(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    batch = make_batch(tmp_path)
    # with the rejected learned attempt re-encoded when the model is here (else the page says why it is not)
    page = write_report(batch.outdir, batch.records, roots=[batch.indir], preview_rejected=True)
    # serve the output directory: the page links to outputs beside it (../photos/astro.jpg)
    handler = functools.partial(_QuietHandler, directory=str(batch.outdir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/report/index.html", len(batch.records), page
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[object]:
    with headless_chromium(tmp_path / 'chrome-profile', window="1280,1000", console=True) as drv:
        yield drv


def test_page_in_headless_chromium(served_report: tuple[str, int, Path], driver: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, n_assets, page = served_report
    drv = driver  # type: ignore[assignment]
    drv.get(url)  # type: ignore[attr-defined]
    # wait until every image has finished loading (or failed)
    WebDriverWait(drv, 20).until(lambda d: d.execute_script(
        "return Array.from(document.images).every(function (i) { return i.complete; })"))

    severe = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]  # type: ignore[attr-defined]
    assert not severe, f"console errors: {severe}"

    sections = drv.find_elements(By.CSS_SELECTOR, "section.asset")  # type: ignore[attr-defined]
    assert len(sections) == n_assets
    for sec in sections:
        assert sec.is_displayed()
        imgs = sec.find_elements(By.TAG_NAME, "img")
        broken = [i.get_attribute("src") for i in imgs
                  if not drv.execute_script("return arguments[0].naturalWidth", i)]  # type: ignore[attr-defined]
        assert not broken, f"{sec.get_attribute('data-input')}: images did not load: {broken}"
        crops = sec.find_elements(By.CSS_SELECTOR, "figure.crop-fig img")
        rejected = sec.find_elements(By.CSS_SELECTOR, ".rejected-preview img")
        if sec.get_attribute("data-input") == "gone/missing.png":
            assert len(imgs) == 1 and "original not found" in sec.text     # placeholder, reconstruction only
        elif sec.get_attribute("data-verdict") == "failed":
            assert len(imgs) == 1 and "no stage passed verification" in sec.text
        elif sec.get_attribute("data-verdict") == "lossless":
            assert len(imgs) == 4 and not crops  # slider pair, error map, spectral map: no window in identical pixels
        else:
            # slider pair, error map, spectral map, three 1:1 crops (original, reconstruction, error) per window
            windows = [w for w in (sec.get_attribute("data-windows") or "").split(";") if w]
            assert windows and len(crops) == 3 * min(len(windows), 3)
            assert len(imgs) == 4 + len(crops) + len(rejected)
            # each window is a box on the displayed error map, where the verifier put it (in image pixels)
            emap = sec.find_element(By.CSS_SELECTOR, ".maps .frame img")
            boxes = emap.find_elements(By.XPATH, "following-sibling::div[contains(@class, 'winbox')]")
            assert len(boxes) == len(windows)
            width = int(sec.get_attribute("data-width"))
            x, y, w, h = (int(v) for v in windows[0].split(","))
            scale = emap.rect["width"] / width
            r = boxes[0].rect
            assert abs(r["x"] - (emap.rect["x"] + x * scale)) <= 3 and abs(r["width"] - w * scale) <= 4
            assert abs(r["y"] - (emap.rect["y"] + y * scale)) <= 3

    # the slider: moving it changes the width of the overlay that shows the original
    sec = sections[0]
    slider = sec.find_element(By.CSS_SELECTOR, "input.slider")
    overlay = sec.find_element(By.CSS_SELECTOR, ".cmp .ov")
    frame = sec.find_element(By.CSS_SELECTOR, ".cmp")
    full = frame.rect["width"]
    half = overlay.rect["width"]
    assert full > 100 and abs(half - full / 2) <= 3
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", frame)  # type: ignore[attr-defined]
    slider.send_keys(Keys.HOME)                  # a real key press on the range input: value -> 0
    assert overlay.rect["width"] <= 3 and overlay.value_of_css_property("width") in ("0px", "2px")
    slider.send_keys(Keys.END)                   # value -> 100: the original covers everything
    assert abs(overlay.rect["width"] - full) <= 3
    # the overlay image keeps the frame's width (it is clipped, not squeezed)
    inner = overlay.find_element(By.TAG_NAME, "img")
    slider.send_keys(Keys.HOME)
    for _ in range(20):
        slider.send_keys(Keys.ARROW_RIGHT)       # 20 steps of 0.5 -> 10 %
    assert abs(overlay.rect["width"] - 0.10 * full) <= 3
    assert abs(inner.rect["width"] - full) <= 2

    # the summary links jump to the sections
    link = drv.find_element(By.CSS_SELECTOR, "table.summary a")  # type: ignore[attr-defined]
    link.click()
    assert drv.execute_script("return location.hash") == "#" + sections[0].get_attribute("id")  # type: ignore

    # the attempts are folded: their reasons are hidden until the reviewer opens them
    photo = sections[0]
    att = photo.find_element(By.CSS_SELECTOR, "details.attempts")
    first = att.find_element(By.CSS_SELECTOR, "ol.attempts li")
    assert not first.is_displayed()
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", att)  # type: ignore[attr-defined]
    att.find_element(By.TAG_NAME, "summary").click()
    assert first.is_displayed() and att.get_attribute("open") is not None
    # why it won is read before what was rejected
    text = photo.text
    assert text.index("WHY THIS OUTPUT") < text.index("REJECTED") or text.index("Why this output") < text.index(
        "Rejected")
    if photo.find_elements(By.CSS_SELECTOR, ".rejected-preview img"):
        assert "rejected — not delivered" in photo.text.lower()
    # one asset at a glance: its section alone (kept beside the full page)
    section_shot = Path(os.environ.get("INVERITY_SCREENSHOT", tmp_path / "report.png")).with_name("report-asset.png")
    drv.execute_script("arguments[0].scrollIntoView()", photo)  # type: ignore[attr-defined]
    assert photo.screenshot(str(section_shot)) and section_shot.stat().st_size > 20_000

    # a full-page screenshot, kept for a human to look at (INVERITY_SCREENSHOT=path to keep it elsewhere)
    drv.execute_script("window.scrollTo(0, 0)")  # type: ignore[attr-defined]
    height = drv.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    drv.set_window_size(1280, min(int(height), 6000))  # type: ignore[attr-defined]
    shot = Path(os.environ.get("INVERITY_SCREENSHOT", tmp_path / "report.png"))
    assert drv.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 20_000
