"""The HTTP service in-process (FastAPI's TestClient drives the ASGI app; no socket, no subprocess).

One app (module fixture) serves most tests: small limits so the 413 paths are cheap to reach, 128×128 crops so
quality searches are quick. ``test_server_process.py`` runs the real ``inverity serve`` (socket-level timeouts,
a smoke test); ``test_server_browser.py`` loads what the server sends in headless Chromium.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
imagecodecs = pytest.importorskip("imagecodecs")

from inverity.server import (LEARNED_MEDIA_TYPE, UNIVERSAL, ServerConfig, acceptable, asset_id,  # noqa: E402
                             create_app, parse_accept, preference_groups)

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

TOKEN = "test-token-7f3a"
MAX_BODY = 150_000
MAX_PIXELS = 100_000          # 316×316: the 128×128 crops pass, a 400×400 image does not
STANDARD = {"image/avif", "image/jxl", "image/webp", "image/jpeg", "image/png"}
SNIFF = {"image/avif": "avif", "image/jxl": "jxl", "image/webp": "webp", "image/jpeg": "jpeg", "image/png": "png"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: the Accept headers browsers send for <img> (and curl's default), checked against their current sources
BROWSERS = {
    "chromium": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "firefox": "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
    "safari": "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,"
              "image/svg+xml,image/*;q=0.8,*/*;q=0.5",
    "curl": "*/*",
}


# --------------------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------------------
def _crop_png(name: str, y: int, x: int, size: int = 128) -> bytes:
    from skimage import data

    return bytes(imagecodecs.png_encode(getattr(data, name)()[y:y + size, x:x + size]))


def drawing_png() -> bytes:
    """A 200×160 crop of the package's synthetic engineering drawing (routed lossless-or-near-lossless)."""
    from inverity.samples import engineering_drawing

    return bytes(imagecodecs.png_encode(np.ascontiguousarray(engineering_drawing()[:160, :200])))


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return _crop_png("astronaut", 100, 180)


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    return _crop_png("chelsea", 60, 120)


def make_client(store: Path, **config: Any) -> Any:
    """A TestClient (enter it with ``with``) over a fresh app; ``config`` overrides :class:`ServerConfig`."""
    from fastapi.testclient import TestClient

    cfg = dict(store=store, token=TOKEN, max_body=MAX_BODY, max_pixels=MAX_PIXELS, timeout=60.0)
    cfg.update(config)
    return TestClient(create_app(ServerConfig(**cfg)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """``(anonymous client, store)``: a client that sends no token."""
    store = tmp_path_factory.mktemp("store")
    with make_client(store) as c:
        yield c, store


@pytest.fixture(scope="module")
def anon(server: tuple[Any, Path]) -> Any:
    return server[0]


class _Authed:
    """The module's client with the bearer token on every request."""

    def __init__(self, c: Any) -> None:
        self.c = c

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.c, name)

        def call(url: str, **kw: Any) -> Any:
            kw["headers"] = {**AUTH, **(kw.get("headers") or {})}
            return method(url, **kw)

        return call


@pytest.fixture(scope="module")
def client(anon: Any) -> Any:
    return _Authed(anon)


def _upload(client: Any, data: bytes, policy: str = "delivery", **kw: Any) -> Any:
    return client.post("/v1/assets", params={"policy": policy}, content=data,
                       headers={"Content-Type": "image/png", **kw.pop("headers", {})}, **kw)


@pytest.fixture(scope="module")
def astronaut_id(client: Any, astronaut: bytes) -> str:
    r = _upload(client, astronaut)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def drawing_id(client: Any) -> str:
    r = _upload(client, drawing_png())
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _error(r: Any, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"]
    return str(body["error"])


def _store_files(store: Path) -> list[str]:
    """Every file under originals/, outputs/ and renditions/ (relative), temporary ones included."""
    return sorted(p.relative_to(store).as_posix() for sub in ("originals", "outputs", "renditions")
                  for p in (store / sub).rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------------------
# negotiation (pure functions)
# --------------------------------------------------------------------------------------------------------------
OFFERED = ["image/avif", "image/jxl", "image/webp", "image/jpeg", "image/png", LEARNED_MEDIA_TYPE]


def test_accept_parsing_specificity_and_q0() -> None:
    # the most specific range wins, whatever its position; q=0 excludes even where a wildcard matches
    assert acceptable(OFFERED, "*/*;q=0.1, image/jpeg;q=0, image/*;q=0.5") == {"image/png": 0.5}
    assert acceptable(OFFERED, "image/avif;q=0, image/avif, */*")["image/jpeg"] == 1.0
    assert "image/png" not in acceptable(OFFERED, "image/png;q=0, image/*, */*")
    # malformed entries are ignored rather than failing the request
    assert [(r.type, r.subtype) for r in parse_accept("image/webp;q=oops, /, */png, image/jpeg")] == [
        ("image", "jpeg")]
    assert acceptable(OFFERED, "text/html") == {}


@pytest.mark.parametrize("accept", ["*/*", "image/*", None, "", "application/*, */*;q=0.1", "image/*;q=0.9"])
def test_wildcards_reach_only_universal_formats(accept: str | None) -> None:
    got = acceptable(OFFERED, accept)
    assert set(got) == {"image/jpeg", "image/png"} and set(got) <= UNIVERSAL


def test_modern_formats_need_their_exact_type() -> None:
    assert set(acceptable(OFFERED, "image/jxl, image/*")) == {"image/jxl", "image/jpeg", "image/png"}
    assert acceptable(OFFERED, "application/x-inverity;q=0.7") == {LEARNED_MEDIA_TYPE: 0.7}
    assert LEARNED_MEDIA_TYPE not in acceptable(OFFERED, "*/*, application/*")


@pytest.mark.parametrize("browser", sorted(BROWSERS))
def test_real_browser_headers_never_get_a_type_they_did_not_name(browser: str) -> None:
    header = BROWSERS[browser]
    got = acceptable(OFFERED, header)
    named = {f"{r.type}/{r.subtype}" for r in parse_accept(header) if r.specificity == 2 and r.q > 0}
    assert set(got) - UNIVERSAL <= named
    assert ("image/jxl" in got) == (browser == "safari") and LEARNED_MEDIA_TYPE not in got
    assert {"image/jpeg", "image/png"} <= set(got)     # a universal fallback always exists


def test_q_values_group_before_size() -> None:
    w = acceptable(OFFERED, "image/jpeg, image/avif;q=0.01")
    assert preference_groups(w) == [["image/jpeg"], ["image/avif"]]
    assert preference_groups(acceptable(OFFERED, BROWSERS["firefox"])) == [
        ["image/avif", "image/webp", "image/png"], ["image/jpeg"]]


def test_asset_id_is_content_and_policy_addressed() -> None:
    a = asset_id(b"bytes", "delivery")
    assert a == asset_id(b"bytes", "delivery") != asset_id(b"bytes", "archive") != asset_id(b"bytez", "delivery")
    assert a == hashlib.sha256(b"bytes\0delivery").hexdigest()[:32]


# --------------------------------------------------------------------------------------------------------------
# service basics: health, auth, OpenAPI, docs, HEAD, CLI refusal
# --------------------------------------------------------------------------------------------------------------
def test_healthz_needs_no_token(anon: Any) -> None:
    r = anon.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and isinstance(body["version"], str) and body["version"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}])
def test_auth_required_everywhere_but_healthz(anon: Any, astronaut: bytes, headers: dict[str, str]) -> None:
    for r in (anon.post("/v1/assets", content=astronaut, headers={**headers, "Content-Type": "image/png"}),
              anon.get(f"/v1/assets/{'0' * 32}", headers=headers),
              anon.get(f"/v1/assets/{'0' * 32}/decision", headers=headers),
              anon.get(f"/v1/assets/{'0' * 32}/url", headers=headers),
              anon.get("/openapi.json", headers=headers), anon.get("/docs", headers=headers)):
        _error(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_openapi_describes_endpoints_and_bearer_auth(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert {"/healthz", "/v1/assets", "/v1/assets/{asset_id}", "/v1/assets/{asset_id}/decision",
            "/v1/assets/{asset_id}/url"} <= set(paths)
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    post = paths["/v1/assets"]["post"]
    assert post["security"] and "multipart/form-data" in post["requestBody"]["content"]
    assert "image/*" in post["requestBody"]["content"]
    assert any(p["name"] == "policy" for p in post["parameters"])
    assert {"201", "413", "415", "401"} <= set(post["responses"])
    get = paths["/v1/assets/{asset_id}"]["get"]
    assert get["security"] and {"406", "304", "404", "403"} <= set(get["responses"])
    assert {"exp", "sig"} <= {p["name"] for p in get["parameters"]}
    assert "image/avif" in get["responses"]["200"]["content"]
    assert "security" not in paths["/healthz"]["get"]
    assert "/docs" not in paths and "/openapi.json" not in paths


def test_docs_are_self_contained_and_behind_the_token(client: Any) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    page = r.text
    # nothing is loaded from anywhere: no script, no stylesheet link, no absolute URL
    assert "<script" not in page and "<link" not in page and "//" not in page.replace("http-equiv", "")
    assert "/v1/assets/{asset_id}" in page and "POST" in page.upper()
    for gone in ("/redoc", "/docs/oauth2-redirect"):
        _error(client.get(gone), 404)


def _same_head(get: Any, head: Any) -> None:
    assert head.status_code == get.status_code and head.content == b""
    skip = {"date", "content-length"} if get.headers.get("transfer-encoding") else {"date"}
    assert {k: v for k, v in head.headers.items() if k not in skip} == {
        k: v for k, v in get.headers.items() if k not in skip}


def test_head_answers_like_get_without_a_body(anon: Any, client: Any, astronaut_id: str) -> None:
    for url, h in (("/healthz", {}), (f"/v1/assets/{astronaut_id}", {**AUTH, "Accept": "image/webp"}),
                   (f"/v1/assets/{astronaut_id}", {}), (f"/v1/assets/{'0' * 32}", AUTH),
                   (f"/v1/assets/{astronaut_id}", {**AUTH, "Accept": "text/html"}), ("/docs", AUTH),
                   ("/openapi.json", AUTH), (f"/v1/assets/{astronaut_id}/decision", AUTH)):
        get, head = anon.get(url, headers=h), anon.head(url, headers=h)
        assert get.status_code != 405
        _same_head(get, head)
    ok = anon.head(f"/v1/assets/{astronaut_id}", headers={**AUTH, "Accept": "image/webp"})
    assert ok.status_code == 200 and int(ok.headers["content-length"]) > 0 and ok.headers["etag"]
    # where there is no GET, HEAD is refused as GET is (405 with Allow), not invented
    assert anon.head("/v1/assets").status_code == anon.get("/v1/assets").status_code == 405


def test_serve_refuses_to_start_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from inverity.cli import main

    monkeypatch.delenv("INVERITY_TOKEN", raising=False)
    assert main(["serve", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inverity: error:") and "INVERITY_TOKEN" in err and "--no-auth" in err


def test_missing_fastapi_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from inverity.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "fastapi", None)   # makes `import fastapi` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"inverity\[server\]"):
        create_app(ServerConfig(store=tmp_path, token="t"))


# --------------------------------------------------------------------------------------------------------------
# refusals: limits, garbage, unknown ids
# --------------------------------------------------------------------------------------------------------------
def test_body_over_limit_is_413_declared_or_streamed(client: Any) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_BODY + 10)
    assert "exceeds the limit" in _error(client.post("/v1/assets", content=big,
                                                     headers={"Content-Type": "image/png"}), 413)

    def chunks() -> Iterator[bytes]:   # no Content-Length: the streaming cap must catch it
        for i in range(0, len(big), 16384):
            yield big[i:i + 16384]

    r = client.post("/v1/assets", content=chunks(), headers={"Content-Type": "image/png"})
    assert "exceeds the limit" in _error(r, 413)


def test_too_many_pixels_is_413_with_the_loaders_message(client: Any) -> None:
    bomb = bytes(imagecodecs.png_encode(np.zeros((400, 400), np.uint8)))    # small file, 160,000 pixels
    assert len(bomb) < MAX_BODY
    msg = _error(_upload(client, bomb), 413)
    assert "too many pixels" in msg and "400x400" in msg


def test_garbage_truncated_and_wrong_type_are_refused(client: Any, astronaut: bytes) -> None:
    assert "not a recognised image" in _error(_upload(client, b"definitely not an image"), 415)
    assert "truncated" in _error(_upload(client, astronaut[: len(astronaut) // 2]), 422)
    assert "empty" in _error(_upload(client, b""), 422)
    _error(client.post("/v1/assets", content=astronaut, headers={"Content-Type": "text/plain"}), 415)
    _error(client.post("/v1/assets", files={"other": ("a.png", astronaut, "image/png")}), 422)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose header claims ``width`` × ``height`` pixels."""
    import struct
    import zlib

    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def test_hostile_bodies_get_a_one_line_4xx_and_leave_nothing(tmp_path: Path, astronaut: bytes) -> None:
    from inverity.server import contract_violations, probe_uploads

    bodies = [("zero bytes", b""), ("garbage", bytes(range(256)) * 8), ("text", b"GET / HTTP/1.1\r\n\r\n"),
              ("truncated PNG", astronaut[: len(astronaut) // 3]), ("PNG signature only", astronaut[:8]),
              ("60000x60000 PNG header bomb", png_header_bomb()), ("0x0 PNG", png_header_bomb(0, 0)),
              ("JPEG SOI only", b"\xff\xd8\xff\xe0" + b"\0" * 20), ("inverity stream", b"INV1" + b"\0" * 40)]
    outcomes = probe_uploads(bodies, tmp_path / "store", max_pixels=50_000_000, timeout=30.0)
    assert [v for o in outcomes for v in contract_violations(o)] == []
    assert all(400 <= o.status < 500 for o in outcomes), [(o.name, o.status, o.error) for o in outcomes]
    by_name = {o.name: o for o in outcomes}
    assert by_name["60000x60000 PNG header bomb"].status == 413
    assert "60000x60000" in str(by_name["60000x60000 PNG header bomb"].error)
    assert _store_files(tmp_path / "store") == []


def test_413_comes_from_the_pixel_limit_type_not_from_message_text(client: Any, astronaut: bytes) -> None:
    from inverity.errors import InputError, PixelLimitError
    from inverity.image import load

    with pytest.raises(PixelLimitError):
        load(png_header_bomb(), max_pixels=1000)
    # an ordinary refusal whose text happens to say "too many pixels" (the client's own file name) is a 422
    r = client.post("/v1/assets", files={"file": ("too many pixels.png", astronaut[:400], "image/png")})
    assert "too many pixels" in _error(r, 422)
    with pytest.raises(InputError) as info:
        load(astronaut[:400], name="too many pixels.png")
    assert not isinstance(info.value, PixelLimitError)


@pytest.mark.parametrize("policy", ["nope", "/etc/passwd", "../policy.toml"])
def test_policy_must_be_a_builtin_name(client: Any, astronaut: bytes, policy: str) -> None:
    assert "available: " in _error(_upload(client, astronaut, policy=policy), 400)


@pytest.mark.parametrize("aid", ["0" * 32, "f" * 32, "not-an-id", "..%2F..%2Fetc%2Fpasswd"])
def test_unknown_id_is_404(client: Any, aid: str) -> None:
    _error(client.get(f"/v1/assets/{aid}"), 404)
    _error(client.get(f"/v1/assets/{aid}/decision"), 404)


# --------------------------------------------------------------------------------------------------------------
# upload and fetch (real pipeline)
# --------------------------------------------------------------------------------------------------------------
def test_upload_raw_then_multipart_is_idempotent(client: Any, astronaut: bytes, astronaut_id: str) -> None:
    assert astronaut_id == asset_id(astronaut, "delivery")
    again = _upload(client, astronaut)
    assert again.status_code == 200 and again.json()["id"] == astronaut_id
    rec = again.json()["decision"]
    assert rec["status"] == "done" and rec["policy"] == "delivery" and rec["bytes"] > 0
    assert rec["attempts"] and any(a.get("passed") for a in rec["attempts"])
    assert not Path(rec["output"]).is_absolute()           # no server paths leak to clients
    multi = client.post("/v1/assets", files={"file": ("astro.png", astronaut, "image/png")})
    assert multi.status_code == 200 and multi.json()["id"] == astronaut_id


def test_multipart_upload_creates(client: Any, chelsea: bytes) -> None:
    r = client.post("/v1/assets", params={"policy": "delivery"}, files={"file": ("cat.png", chelsea, "image/png")})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == asset_id(chelsea, "delivery") and r.headers["location"].endswith(r.json()["id"])
    assert r.json()["decision"]["filename"] == "cat.png"


def _get(client: Any, aid: str, accept: str | None, **headers: str) -> Any:
    h = dict(headers)
    if accept is not None:
        h["Accept"] = accept
    return client.get(f"/v1/assets/{aid}", headers=h)


def _check_rendition(r: Any, media_type: str) -> None:
    from inverity.formats import sniff
    from inverity.image import load

    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    assert r.headers["vary"] == "Accept" and "immutable" in r.headers["cache-control"]
    assert sniff(r.content) == SNIFF[media_type]
    img = load(r.content)
    assert (img.height, img.width) == (128, 128)


@pytest.mark.parametrize("media_type", ["image/avif", "image/webp", "image/jpeg"])
def test_single_format_accept_gets_that_format(client: Any, astronaut_id: str, media_type: str) -> None:
    _check_rendition(_get(client, astronaut_id, f"{media_type}, text/html;q=0.9"), media_type)


def _renditions(client: Any, aid: str) -> dict[str, dict[str, Any]]:
    return {mt: m for mt, m in client.get(f"/v1/assets/{aid}/decision").json()["renditions"].items()
            if m["status"] == "done"}


def test_equal_q_serves_the_smallest_verified_rendition(client: Any, astronaut_id: str) -> None:
    trio = ("image/avif", "image/webp", "image/jpeg")
    r = _get(client, astronaut_id, ", ".join(trio))
    assert r.status_code == 200
    done = _renditions(client, astronaut_id)
    floors = client.get(f"/v1/assets/{astronaut_id}/decision").json()["size_floors"]
    made = [mt for mt in trio if mt in done]
    smallest = min(made, key=lambda mt: done[mt]["bytes"])
    assert r.headers["content-type"] == smallest and len(r.content) == done[smallest]["bytes"]
    for mt in set(trio) - set(made):   # not made: the search's size floor says it cannot beat what was served
        assert floors[mt] >= len(r.content)
    for m in done.values():    # every rendition passed verification under the asset's policy
        chosen = [a for a in m["record"]["attempts"] if a.get("chosen")]
        assert chosen and all(a["passed"] for a in chosen)


def test_q_values_decide_before_size(client: Any, astronaut_id: str, drawing_id: str) -> None:
    done = _renditions(client, astronaut_id)
    if "image/avif" not in done:
        _get(client, astronaut_id, "image/avif")
        done = _renditions(client, astronaut_id)
    assert done["image/avif"]["bytes"] < done["image/jpeg"]["bytes"]      # the premise: AVIF is smaller
    _check_rendition(_get(client, astronaut_id, "image/jpeg, image/avif;q=0.01"), "image/jpeg")
    _check_rendition(_get(client, astronaut_id, "image/avif;q=0.5, image/*;q=0.6"), "image/jpeg")
    # an explicit q=0 excludes a type that a wildcard would have matched (the drawing's PNG is smaller than JPEG)
    assert _get(client, drawing_id, "*/*").headers["content-type"] == "image/png"
    r = _get(client, drawing_id, "image/png;q=0, */*")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_a_png_that_passed_but_was_not_the_smallest_is_served(client: Any) -> None:
    # the drawing with ±2 of noise: PNG (lossless) passes, but a JPEG that passes its floors is 4x smaller
    from inverity.samples import engineering_drawing

    px = engineering_drawing()[:160, :200].astype(np.int16)
    px = np.clip(px + np.random.default_rng(0).integers(-2, 3, px.shape), 0, 255).astype(np.uint8)
    noisy = bytes(imagecodecs.png_encode(np.ascontiguousarray(px)))
    up = _upload(client, noisy)
    assert up.status_code in (200, 201), up.text
    aid, rec = up.json()["id"], up.json()["decision"]
    assert rec["stage"] != "png"     # the premise: PNG is not the chosen (smallest) output
    # PNG was tried and passed, or the search skipped it as bigger: either way it is made and verified on demand
    r = _get(client, aid, "image/png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    from inverity.image import load

    assert np.array_equal(load(r.content).pixels, load(noisy).pixels)      # bit-exact


#: header -> what a browser may be sent (its exact types with q > 0, plus the universal ones)
def _decodable(header: str) -> set[str]:
    return {f"{r.type}/{r.subtype}" for r in parse_accept(header) if r.specificity == 2 and r.q > 0} | UNIVERSAL


@pytest.mark.parametrize("browser", sorted(BROWSERS))
def test_real_browser_headers_get_a_format_they_decode(client: Any, astronaut_id: str, drawing_id: str,
                                                       browser: str) -> None:
    header = BROWSERS[browser]
    for aid in (astronaut_id, drawing_id):
        r = _get(client, aid, header)
        assert r.status_code == 200, r.text
        served = r.headers["content-type"]
        assert served in _decodable(header), (browser, served)
        if browser != "safari":
            assert served != "image/jxl"
        # and it is the smallest verified rendition of the highest-weighted group that has one
        weights = acceptable(OFFERED, header)
        done = _renditions(client, aid)
        for group in preference_groups(weights):
            ok = [mt for mt in group if mt in done]
            if ok:
                assert served == min(ok, key=lambda mt: (done[mt]["bytes"], OFFERED.index(mt)))
                break


@pytest.mark.parametrize("accept", ["*/*", "image/*", None, "application/*, */*;q=0.1"])
def test_wildcards_get_a_universal_format(client: Any, astronaut_id: str, drawing_id: str,
                                         accept: str | None) -> None:
    for aid in (astronaut_id, drawing_id):
        r = _get(client, aid, accept)
        assert r.status_code == 200 and r.headers["content-type"] in {"image/jpeg", "image/png"}
    assert not r.content.startswith(b"INV1")


def test_learned_only_accept_under_delivery_is_406_with_the_list(client: Any, astronaut_id: str) -> None:
    r = _get(client, astronaut_id, LEARNED_MEDIA_TYPE)
    _error(r, 406)
    available = r.json()["available"]
    assert LEARNED_MEDIA_TYPE not in available and "image/jpeg" in available
    assert r.headers["vary"] == "Accept"
    _error(_get(client, astronaut_id, "text/html, application/json"), 406)


def test_learned_rendition_only_when_named_under_controlled(client: Any, chelsea: bytes) -> None:
    # a 128×128 photo crop: in distribution, so `controlled` routes the learned stage first (smaller crops are
    # routed to standard formats only); whether the current model then passes the floors is the verifier's call
    r = _upload(client, chelsea, policy="controlled")
    assert r.status_code in (200, 201), r.text
    aid, rec = r.json()["id"], r.json()["decision"]
    planned = LEARNED_MEDIA_TYPE in rec["media_types"]
    learned_won = rec["stage"] == "learned"
    got = _get(client, aid, LEARNED_MEDIA_TYPE)
    if got.status_code == 200:
        assert planned and got.headers["content-type"] == LEARNED_MEDIA_TYPE and got.content.startswith(b"INV1")
        assert got.headers["etag"] == f'"{hashlib.sha256(got.content).hexdigest()}"'
    else:   # not routed (gate, budget) or no learned reconstruction passed the floors: a legible 406
        assert not learned_won
        msg = _error(got, 406)
        assert LEARNED_MEDIA_TYPE not in got.json()["available"]
        if planned:     # the policy allows it: the 406 says why this asset has no learned rendition
            assert LEARNED_MEDIA_TYPE in msg and ("verification" in msg or "allows no stage" in msg)
    for accept in ("*/*", "application/*", "image/*"):    # wildcards never reach the learned stream
        wild = _get(client, aid, accept)
        if accept == "application/*":
            _error(wild, 406)
        else:
            assert wild.status_code == 200 and wild.headers["content-type"] in {"image/jpeg", "image/png"}


def test_etag_if_none_match_304(client: Any, astronaut_id: str) -> None:
    r = _get(client, astronaut_id, "image/webp")
    etag = r.headers["etag"]
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = _get(client, astronaut_id, "image/webp", **{"If-None-Match": inm})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag and again.headers["vary"] == "Accept"
    assert _get(client, astronaut_id, "image/webp", **{"If-None-Match": '"other"'}).status_code == 200
    # the cached rendition is served byte-identically on later requests
    assert _get(client, astronaut_id, "image/webp").content == r.content


def test_decision_endpoint_has_upload_and_rendition_records(client: Any, astronaut_id: str) -> None:
    _get(client, astronaut_id, "image/jpeg")
    d = client.get(f"/v1/assets/{astronaut_id}/decision").json()
    assert d["id"] == astronaut_id and d["decision"]["stage"] and d["decision"]["checks"]
    jpeg = d["renditions"]["image/jpeg"]
    assert jpeg["status"] == "done" and jpeg["record"]["stage"] == "jpeg" and jpeg["bytes"] > 0
    assert "input_path" not in jpeg["record"] and not Path(jpeg["path"]).is_absolute()


def test_concurrent_uploads_of_one_image_give_one_id_and_one_row(client: Any, server: tuple[str, Path]) -> None:
    from inverity.catalog import Catalog

    data = _crop_png("chelsea", 150, 200)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda _: _upload(client, data, policy="archive"), range(8)))
    assert all(r.status_code in (200, 201) for r in rs), [r.text for r in rs if r.status_code >= 300]
    assert sorted(r.status_code for r in rs) == [200] * 7 + [201]
    ids = {r.json()["id"] for r in rs}
    assert ids == {asset_id(data, "archive")}
    aid = ids.pop()
    with Catalog(server[1] / "inverity.sqlite", readonly=True) as cat:
        assert sum(1 for row in cat.rows() if row["input"] == aid) == 1
        assert cat.get(aid)["status"] == "done"  # type: ignore[index]
    assert len(list((server[1] / "originals").glob(f"{aid}.*"))) == 1
    # concurrent first requests of one rendition make it once: every answer is the same bytes
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        gets = list(pool.map(lambda _: _get(client, aid, "*/*"), range(6)))
    assert all(g.status_code == 200 for g in gets) and len({g.headers["etag"] for g in gets}) == 1


def test_archive_asset_is_only_served_losslessly(client: Any) -> None:
    from inverity.image import load

    data = _crop_png("astronaut", 300, 40)
    r = _upload(client, data, policy="archive")
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    # archive never allows a lossy stage: a client that only takes AVIF or JPEG is told what there is instead
    refused = _get(client, aid, "image/avif, image/jpeg")
    _error(refused, 406)
    assert refused.json()["available"] and not {"image/avif", "image/jpeg"} & set(refused.json()["available"])
    for accept in ("*/*", "image/png"):
        got = _get(client, aid, accept)
        assert got.status_code == 200 and got.headers["content-type"] in {"image/png", "image/jxl"}
        assert np.array_equal(load(got.content).pixels, load(data).pixels)     # bit-exact


def test_timeout_is_504_and_the_work_finishes_in_the_background(tmp_path: Path) -> None:
    data = _crop_png("coffee", 8, 100, size=384)        # a routed compression takes well over 0.05 s
    with make_client(tmp_path / "store", timeout=0.05, max_pixels=1_000_000, max_body=1 << 20) as c:
        c.headers.update(AUTH)
        r = _upload(c, data)
        assert "did not finish" in _error(r, 504)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:           # a retry later finds the finished asset
            again = _upload(c, data)
            if again.status_code == 200:
                assert again.json()["id"] == asset_id(data, "delivery")
                break
            assert again.status_code == 504, again.text
            time.sleep(0.5)
        else:
            pytest.fail("the upload never completed in the background")


# --------------------------------------------------------------------------------------------------------------
# reads an <img src> can make: public reads, signed URLs
# --------------------------------------------------------------------------------------------------------------
def test_public_reads_open_images_only(tmp_path: Path, astronaut: bytes) -> None:
    with make_client(tmp_path / "store", public_reads=True) as c:
        up = c.post("/v1/assets", content=astronaut, headers={**AUTH, "Content-Type": "image/png"})
        assert up.status_code == 201
        aid = up.json()["id"]
        img = c.get(f"/v1/assets/{aid}", headers={"Accept": BROWSERS["chromium"]})
        assert img.status_code == 200 and img.headers["content-type"].startswith("image/")
        assert c.head(f"/v1/assets/{aid}").status_code == 200
        # a wrong token is still refused (a client that sends one means it), and everything else needs the token
        _error(c.get(f"/v1/assets/{aid}", headers={"Authorization": "Bearer nope"}), 401)
        _error(c.post("/v1/assets", content=astronaut, headers={"Content-Type": "image/png"}), 401)
        for url in (f"/v1/assets/{aid}/decision", f"/v1/assets/{aid}/url", "/docs", "/openapi.json"):
            _error(c.get(url), 401)


def test_signed_urls_grant_one_read_until_they_expire(anon: Any, client: Any, astronaut_id: str,
                                                      astronaut: bytes) -> None:
    from inverity.server import UrlSigner
    from inverity.server._signing import derive_secret

    _error(anon.get(f"/v1/assets/{astronaut_id}"), 401)                   # private by default
    issued = client.get(f"/v1/assets/{astronaut_id}/url", params={"ttl": 120}).json()
    url, expires = issued["url"], issued["expires"]
    assert url.startswith(f"/v1/assets/{astronaut_id}?exp={expires}&sig=") and 0 < expires - time.time() <= 121
    got = anon.get(url, headers={"Accept": "image/webp"})
    assert got.status_code == 200 and got.headers["content-type"] == "image/webp"
    assert anon.head(url).status_code == 200
    # the upload's answer carries one too
    assert anon.get(_upload(client, astronaut).json()["url"]).status_code == 200
    sig = url.split("&sig=")[1]
    tampered = [url[:-1] + ("0" if url[-1] != "0" else "1"),                       # another signature
                f"/v1/assets/{'0' * 32}?exp={expires}&sig={sig}",                  # another asset
                f"/v1/assets/{astronaut_id}?exp={expires + 3600}&sig={sig}",       # a later expiry
                f"/v1/assets/{astronaut_id}/decision?exp={expires}&sig={sig}",     # another endpoint
                f"/v1/assets/{astronaut_id}?exp={expires}", f"/v1/assets/{astronaut_id}?exp=soon&sig={sig}"]
    for bad in tampered[:3] + tampered[4:]:
        msg = _error(anon.get(bad), 403)
        assert "signed URL" in msg
    _error(anon.get(tampered[3]), 401)          # decision records are never opened by a URL signature
    past = UrlSigner(derive_secret(TOKEN)).sign(f"/v1/assets/{astronaut_id}", expires=int(time.time()) - 5)
    assert "expired" in _error(anon.get(past), 403)
    head = anon.head(past)
    assert head.status_code == 403 and head.content == b""
    _error(client.get(f"/v1/assets/{astronaut_id}/url", params={"ttl": 10 ** 9}), 422)


# --------------------------------------------------------------------------------------------------------------
# the pipeline argument renditions use (instead of swapping the pipeline's plan)
# --------------------------------------------------------------------------------------------------------------
def test_compress_one_media_types_restricts_the_output_format(tmp_path: Path) -> None:
    from pathlib import Path as _P

    import pydicom.data

    from inverity.pipeline import NoCandidatePassedError, compress_one
    from inverity.policy import get_policy

    src = tmp_path / "a.png"
    src.write_bytes(_crop_png("astronaut", 100, 180, size=64))
    res = compress_one(src, "delivery", outdir=tmp_path / "o", media_types=["image/jpeg"])
    assert res.output.endswith(".jpg") and {a["stage"] for a in res.record["attempts"]} == {"jpeg"}
    with pytest.raises(NoCandidatePassedError, match="allows no stage"):
        compress_one(src, "archive", outdir=tmp_path / "o2", media_types=["image/avif"])
    # a DICOM input stays DICOM under diagnostic unless the caller asked for another media type — which
    # diagnostic (metadata = keep) refuses, since it would drop the DICOM dataset; a policy that strips allows it
    ct = _P(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
    assert compress_one(ct, "diagnostic", outdir=tmp_path / "d1").output.endswith(".dcm")
    with pytest.raises(NoCandidatePassedError, match="refuses to drop DICOM dataset"):
        compress_one(ct, "diagnostic", outdir=tmp_path / "d2", media_types=["image/jls"])
    stripping = dataclasses.replace(get_policy("diagnostic"), name="diagnostic-strip", metadata="strip",
                                    keep_metadata=False)
    jls = compress_one(ct, stripping, outdir=tmp_path / "d2", media_types=["image/jls"])
    assert jls.output.endswith(".jls") and jls.record["stage"] == "jpegls"
    kept = compress_one(ct, "diagnostic", outdir=tmp_path / "d3", media_types=["image/jls", "application/dicom"])
    assert kept.output.endswith(".dcm")
