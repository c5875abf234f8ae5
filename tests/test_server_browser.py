"""What the server sends each browser decodes in a real headless Chromium.

For the ``Accept`` headers of Chromium, Firefox, Safari and curl (``test_server.BROWSERS``) the served body of a
photo and of a line drawing is fetched from a real ``inverity serve`` and loaded in Chromium as an image; only a
JPEG XL body (served to Safari alone, which names ``image/jxl``) is not loaded, since Chromium does not decode
JPEG XL — the test asserts it never reaches the others. Then Chromium itself loads ``<img src>`` from the server
(public reads, and a signed URL), sending its own ``Accept``.

Needs Debian's ``chromium`` and ``chromium-driver``; skips, saying so, when either is missing.
"""
from __future__ import annotations

import base64
import os
import shutil
from typing import Any, Iterator

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from inverity.server._launch import start_server, stop_server  # noqa: E402
from test_server import BROWSERS, _crop_png, drawing_png  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "test-token-browser"
#: loads a data: or http: URL as an image; answers [naturalWidth, naturalHeight], or null if it did not decode
LOAD_IMAGE = """
const src = arguments[0], done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => done([img.naturalWidth, img.naturalHeight]);
img.onerror = () => done(null);
img.src = src;
"""


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.isfile(p)]
    if missing:
        pytest.skip(f"headless browser not installed ({', '.join(missing)} missing): "
                    "apt-get install chromium chromium-driver")
    pytest.importorskip("selenium")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, tuple[str, tuple[int, int]]]]]:
    """``(base URL, {kind: (asset id, (width, height))})`` of a server holding a photo and a drawing."""
    _require_browser()
    proc, base = start_server(tmp_path_factory.mktemp("store"), "--public-reads", token=TOKEN)
    try:
        assets = {}
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
            for kind, png, size in (("photo", _crop_png("astronaut", 100, 180), (128, 128)),
                                    ("drawing", drawing_png(), (200, 160))):
                r = c.post("/v1/assets", content=png, headers={"Content-Type": "image/png"})
                assert r.status_code == 201, r.text
                assets[kind] = (r.json()["id"], size)
        yield base, assets
    finally:
        stop_server(proc)


@pytest.mark.parametrize("browser", sorted(BROWSERS))
def test_served_bodies_decode_in_chromium(served: tuple[str, dict[str, Any]], driver: Any, browser: str) -> None:
    base, assets = served
    driver.get(f"{base}/healthz")
    for kind, (aid, size) in assets.items():
        r = httpx.get(f"{base}/v1/assets/{aid}", headers={"Accept": BROWSERS[browser]}, timeout=120)
        assert r.status_code == 200, r.text
        served_type = r.headers["content-type"]
        if served_type == "image/jxl":
            assert browser == "safari", f"{browser} was sent JPEG XL"
            continue
        url = f"data:{served_type};base64,{base64.b64encode(r.content).decode()}"
        assert driver.execute_async_script(LOAD_IMAGE, url) == list(size), (browser, kind, served_type)


def test_chromium_img_src_with_its_own_accept(served: tuple[str, dict[str, Any]], driver: Any) -> None:
    base, assets = served
    driver.get(f"{base}/healthz")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for aid, size in assets.values():
            signed = c.get(f"/v1/assets/{aid}/url").json()["url"]
            for src in (f"/v1/assets/{aid}", signed):          # public read; signed URL
                assert driver.execute_async_script(LOAD_IMAGE, src) == list(size), src

