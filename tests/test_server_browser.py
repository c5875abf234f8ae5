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
from typing import Any, Iterator

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from inverity.server._launch import start_server, stop_server  # noqa: E402
from test_server import BROWSERS, _crop_png, drawing_png  # noqa: E402
from helpers import headless_chromium, require_browser

pytestmark = pytest.mark.browser

TOKEN = "test-token-browser"
#: loads a data: or http: URL as an image; answers [naturalWidth, naturalHeight], or null if it did not decode
LOAD_IMAGE = """
const src = arguments[0], done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => done([img.naturalWidth, img.naturalHeight]);
img.onerror = () => done(null);
img.src = src;
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with headless_chromium(tmp_path_factory.mktemp('chrome-profile'), window="1280,1000", console=False) as drv:
        yield drv


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, tuple[str, tuple[int, int]]]]]:
    """``(base URL, {kind: (asset id, (width, height))})`` of a server holding a photo and a drawing."""
    require_browser()
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

