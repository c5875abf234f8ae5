"""The review page in a real headless Chromium against a real ``inverity serve``: a batch goes from upload to
approved delivery entirely in the browser, by keyboard.

Needs Debian's ``chromium`` and ``chromium-driver``; skips, saying so, when either is missing. Screenshots go to
the test's tmp dir (and, with ``INVERITY_REVIEW_ARTEFACTS=DIR``, are copied there with the batch's counts).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
imagecodecs = pytest.importorskip("imagecodecs")

from inverity.server._launch import start_server, stop_server  # noqa: E402
from helpers import headless_chromium, require_browser

pytestmark = pytest.mark.browser

CLIENT, SECRET = "client-token-b1", "alice-secret-b2"
CROPS = [("astronaut", 40, 140), ("chelsea", 40, 100), ("coffee", 100, 200)]


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(tmp_path / 'chrome-profile', window="1280,1100", console=True) as drv:
        yield drv


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    require_browser()
    from skimage import data

    pol = tmp_path / "reviewed.toml"
    pol.write_text('name = "reviewed"\nextends = "delivery"\nreview = "required"\n')
    store = tmp_path / "store"
    proc, base = start_server(store, "--token", CLIENT, "--token", f"alice={SECRET}", "--policy", str(pol),
                              "--timeout", "120", token=CLIENT)
    try:
        ids = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {CLIENT}"}, timeout=120) as c:
            for name, y, x in CROPS:
                px = np.ascontiguousarray(getattr(data, name)()[y:y + 192, x:x + 192])
                r = c.post("/v1/assets?policy=reviewed",
                           files={"file": (f"{name}.png", bytes(imagecodecs.png_encode(px)), "image/png")})
                assert r.status_code == 201 and r.json()["review"]["state"] == "pending", r.text
                ids.append(r.json()["id"])
        yield base, store, ids
    finally:
        stop_server(proc)


def _wait(drv: Any, cond: Any, what: str, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.1).until(cond, message=what)


def _current(drv: Any) -> str:
    return str(drv.execute_script("return document.getElementById('item').dataset.id || ''"))


def _images_loaded(drv: Any) -> bool:
    return bool(drv.execute_script(
        "var ids = ['recon', 'orig', 'err']; return ids.every(function (i) {"
        " var e = document.getElementById(i); return e.src && e.complete && e.naturalWidth > 0; });"))


def _queue(drv: Any) -> list[str]:
    # read in one script: the list is re-rendered after every verdict (element handles would go stale)
    return list(drv.execute_script(
        "return Array.from(document.querySelectorAll('#queue li')).map(function (li) { return li.dataset.id; })"))


def _press(drv: Any, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(drv).send_keys(key).perform()


def test_review_batch_in_browser(server: tuple[str, Path, list[str]], driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, store, ids = server
    drv = driver
    shots: list[Path] = []

    def shot(name: str) -> None:
        p = tmp_path / f"review-{len(shots) + 1}-{name}.png"
        assert drv.save_screenshot(str(p)) and p.stat().st_size > 10_000
        shots.append(p)

    # login: the token once, then a session cookie (never the token in a URL)
    drv.get(f"{base}/review")
    assert drv.current_url.endswith("/review/login")
    drv.find_element(By.ID, "token").send_keys(SECRET + Keys.ENTER)
    _wait(drv, lambda d: d.current_url.endswith("/review") and len(_queue(d)) == 3, "queue of 3")
    assert SECRET not in drv.current_url and drv.find_element(By.ID, "reviewer").text == "alice"
    assert _queue(drv) == ids                                             # oldest first
    _wait(drv, _images_loaded, "images of the first item")
    shot("queue")

    # j / k move through the queue
    _press(drv, "j")
    _wait(drv, lambda d: _current(d) == ids[1], "next item")
    _press(drv, "k")
    _wait(drv, lambda d: _current(d) == ids[0], "previous item")
    _wait(drv, _images_loaded, "images again")

    # f: the A/B flicker alternates original and reconstruction
    _press(drv, "f")
    seen = set()
    for _ in range(30):
        seen.add(drv.find_element(By.ID, "showing").text)
        time.sleep(0.1)
    assert {"showing: original", "showing: reconstruction"} <= seen
    _press(drv, "f")
    assert drv.find_element(By.ID, "flicker").get_attribute("aria-pressed") == "false"

    # the error map overlay, and the zoom onto the verifier's worst window
    assert not drv.find_element(By.ID, "err").is_displayed()
    _press(drv, "e")
    assert drv.find_element(By.ID, "err").is_displayed()
    _press(drv, "1")
    _wait(drv, lambda d: "scale" in d.find_element(By.ID, "zoom").get_attribute("style"), "zoom")
    time.sleep(0.4)
    shot("zoom-error-map")
    _press(drv, "0")
    _press(drv, "e")
    slider = drv.find_element(By.ID, "slider")
    slider.send_keys(Keys.HOME)
    assert drv.find_element(By.ID, "showing").text == "showing: reconstruction"
    drv.execute_script("document.activeElement.blur()")
    assert not drv.find_element(By.ID, "err").is_displayed()

    # a: approve the first
    _press(drv, "a")
    _wait(drv, lambda d: d.find_element(By.ID, "status").text.startswith("approved"), "approved status")
    _wait(drv, lambda d: _queue(d) == ids[1:], "queue after approval")

    # r: reject the next with a note (markup in it stays text), which re-routes it to another stage
    _wait(drv, _images_loaded, "images of the second item")
    before = drv.find_element(By.ID, "facts").text
    _press(drv, "r")
    note = drv.find_element(By.ID, "note")
    _wait(drv, lambda d: d.switch_to.active_element == note, "note focused")
    note.send_keys("fur smeared <b>bold</b>" + Keys.ENTER)
    _wait(drv, lambda d: "re-routed to" in d.find_element(By.ID, "status").text, "re-routed status")
    _wait(drv, lambda d: sorted(_queue(d)) == sorted(ids[1:]), "rerouted item back in the queue")
    drv.execute_script("arguments[0].scrollIntoView()", drv.find_element(By.ID, "queue"))
    rerouted = _queue(drv).index(ids[1])
    while _current(drv) != ids[1]:
        _press(drv, "j" if rerouted > _queue(drv).index(_current(drv)) else "k")
    _wait(drv, _images_loaded, "images of the re-routed output")
    reasons = drv.find_element(By.ID, "reasons")
    assert "fur smeared <b>bold</b>" in reasons.text and not reasons.find_elements(By.TAG_NAME, "b")
    assert drv.find_element(By.ID, "facts").text != before
    shot("rerouted")

    # approve everything left, by keyboard
    while _queue(drv):
        n = len(_queue(drv))
        _wait(drv, _images_loaded, "images")
        _press(drv, "a")
        _wait(drv, lambda d: len(_queue(d)) == n - 1, "one fewer")
    _wait(drv, lambda d: d.find_element(By.ID, "empty").is_displayed(), "empty queue")
    assert drv.find_element(By.ID, "counts").text == "0 pending · 3 approved · 1 rejected · 1 re-routed"
    shot("done")

    severe = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, f"console errors: {severe}"
    urls = drv.execute_script("return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
                              ".concat([location.href])")
    assert urls and all(u.startswith(base + "/") for u in urls), [u for u in urls if not u.startswith(base)]

    # delivery: every asset is served now, as the approved bytes
    from inverity.review import ReviewBook

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {CLIENT}"}, timeout=120) as c:
        for aid in ids:
            rev = c.get(f"/v1/assets/{aid}/decision").json()["review"]
            assert rev["state"] == "approved" and rev["by"] == "alice"
            stage = rev["stage"]
            mt = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg", "jxl": "image/jxl",
                  "png": "image/png"}[stage]
            r = c.get(f"/v1/assets/{aid}", headers={"Accept": mt})
            assert r.status_code == 200
    with ReviewBook(store / "inverity.sqlite") as book:
        log = list(book.log())
        counts = book.counts()
    summary = {"assets": len(ids), "pending": counts["pending"], "approved": counts["approved"],
               "rejected": sum(e["verdict"] == "reject" for e in log), "re-routed": counts["rerouted"],
               "verdicts": len(log)}
    assert summary == {"assets": 3, "pending": 0, "approved": 3, "rejected": 1, "re-routed": 1, "verdicts": 4}
    (tmp_path / "review-counts.json").write_text(json.dumps(summary, indent=1))
    dest = os.environ.get("INVERITY_REVIEW_ARTEFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        for p in shots + [tmp_path / "review-counts.json"]:
            shutil.copy(p, Path(dest) / p.name)


def test_audit_page_exports_verdicts_that_import(driver: Any, tmp_path: Path) -> None:
    """The static audit page (no service): pick verdicts, export them as JSON, apply with --import."""
    import functools
    import http.server
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from skimage import data

    from inverity import review
    from inverity.cli import main
    from inverity.report import write_report

    src = tmp_path / "in"
    src.mkdir()
    for name, y, x in CROPS[:2]:
        px = np.ascontiguousarray(getattr(data, name)()[y:y + 128, x:x + 128])
        (src / f"{name}.png").write_bytes(bytes(imagecodecs.png_encode(px)))
    pol = tmp_path / "reviewed.toml"
    pol.write_text('name = "reviewed"\nextends = "delivery"\nreview = "required"\n')
    out = tmp_path / "out"
    assert main(["compress", str(src), "-o", str(out), "--policy", str(pol)]) == 0
    write_report(out)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get(f"http://127.0.0.1:{httpd.server_port}/report/index.html")
        rows = {tr.get_attribute("data-id"): tr
                for tr in driver.find_elements(By.CSS_SELECTOR, ".review-verdicts tr[data-id]")}
        assert set(rows) == {"astronaut.png", "chelsea.png"}
        Select(rows["astronaut.png"].find_element(By.CSS_SELECTOR, ".rv-verdict")).select_by_value("approve")
        Select(rows["chelsea.png"].find_element(By.CSS_SELECTOR, ".rv-verdict")).select_by_value("reject")
        driver.find_element(By.ID, "rv-export").click()
        assert "name" in driver.find_element(By.ID, "rv-status").text          # who decides, first
        driver.find_element(By.ID, "rv-name").send_keys("dora")
        driver.find_element(By.ID, "rv-export").click()
        assert "needs a note" in driver.find_element(By.ID, "rv-status").text
        rows["chelsea.png"].find_element(By.CSS_SELECTOR, ".rv-note").send_keys("ringing on the whiskers")
        driver.find_element(By.ID, "rv-export").click()
        _wait(driver, lambda d: (downloads / "verdicts.json").is_file(), "the verdicts download")
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, f"console errors: {severe}"
    finally:
        httpd.shutdown()
        httpd.server_close()
    verdicts = json.loads((downloads / "verdicts.json").read_text())
    assert verdicts["reviewer"] == "dora" and len(verdicts["verdicts"]) == 2
    assert main(["review", str(out), "--import", str(downloads / "verdicts.json")]) == 0
    states = {i["asset"]: (i["state"], i["by"]) for i in review.pending(out, ("pending", "approved"))}
    assert states["astronaut.png"] == ("approved", "dora")
    assert states["chelsea.png"][0] == "pending"                                # re-routed, waits again
    log = review.review_log(out)
    assert [(e["asset"], e["verdict"], e["note"]) for e in log] == [
        ("astronaut.png", "approve", ""), ("chelsea.png", "reject", "ringing on the whiskers")]
    # importing the same file again: every verdict is refused (decided, or for bytes that are gone)
    assert main(["review", str(out), "--import", str(downloads / "verdicts.json")]) == 1
