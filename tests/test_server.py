"""The HTTP service, started for real (``inverity serve`` in a subprocess on 127.0.0.1) and driven with httpx.

One server (module fixture) serves every test: small limits so the 413 paths are cheap to reach, 128×128 crops
so quality searches are quick. Tests that need the real pipeline (policy, route, verify) skip while those modules
are missing; the limits, auth and error paths run regardless (they never reach the pipeline).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
imagecodecs = pytest.importorskip("imagecodecs")

from inverity.server import LEARNED_MEDIA_TYPE, acceptable, asset_id, parse_accept  # noqa: E402
from inverity.server._launch import start_server, stop_server  # noqa: E402

TOKEN = "test-token-7f3a"
MAX_BODY = 150_000
MAX_PIXELS = 100_000          # 316×316: the 128×128 crops pass, a 400×400 image does not
STANDARD = {"image/avif", "image/jxl", "image/webp", "image/jpeg", "image/png"}
SNIFF = {"image/avif": "avif", "image/jxl": "jxl", "image/webp": "webp", "image/jpeg": "jpeg", "image/png": "png"}

_PIPELINE = all(importlib.util.find_spec(f"inverity.{m}") is not None for m in ("policy", "route", "verify"))
needs_pipeline = pytest.mark.skipif(not _PIPELINE, reason="inverity.policy/route/verify not available yet")


# --------------------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------------------
def _crop_png(name: str, y: int, x: int, size: int = 128) -> bytes:
    from skimage import data

    return bytes(imagecodecs.png_encode(getattr(data, name)()[y:y + size, x:x + size]))


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return _crop_png("astronaut", 100, 180)


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    return _crop_png("chelsea", 60, 120)


def _start(store: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    return start_server(store, *extra, token=TOKEN)


_stop = stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    store = tmp_path_factory.mktemp("store")
    proc, base = _start(store, "--max-body", str(MAX_BODY), "--max-pixels", str(MAX_PIXELS), "--timeout", "60")
    try:
        yield base, store
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Iterator[Any]:
    with httpx.Client(base_url=server[0], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


def _upload(client: Any, data: bytes, policy: str = "delivery", **kw: Any) -> Any:
    return client.post("/v1/assets", params={"policy": policy}, content=data,
                       headers={"Content-Type": "image/png"}, **kw)


@pytest.fixture(scope="module")
def astronaut_id(client: Any, astronaut: bytes) -> str:
    if not _PIPELINE:
        pytest.skip("inverity.policy/route/verify not available yet")
    r = _upload(client, astronaut)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _error(r: Any, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"]
    return str(body["error"])


# --------------------------------------------------------------------------------------------------------------
# negotiation (pure functions)
# --------------------------------------------------------------------------------------------------------------
def test_accept_parsing_specificity_and_explicit_only() -> None:
    offered = ["image/avif", "image/webp", "image/jpeg", LEARNED_MEDIA_TYPE]
    explicit = {LEARNED_MEDIA_TYPE}
    # the most specific range wins, whatever its position; q=0 excludes
    assert acceptable(offered, "*/*;q=0.1, image/avif;q=0, image/*;q=0.5", explicit_only=explicit) == {
        "image/webp": 0.5, "image/jpeg": 0.5}
    # wildcards never reach the learned stream; naming it does
    assert LEARNED_MEDIA_TYPE not in acceptable(offered, "*/*, application/*", explicit_only=explicit)
    assert acceptable(offered, "application/x-inverity;q=0.7", explicit_only=explicit) == {LEARNED_MEDIA_TYPE: 0.7}
    # malformed entries are ignored rather than failing the request
    assert [(r.type, r.subtype) for r in parse_accept("image/webp;q=oops, /, */png, image/jpeg")] == [
        ("image", "jpeg")]
    assert acceptable(offered, "text/html", explicit_only=explicit) == {}


def test_asset_id_is_content_and_policy_addressed() -> None:
    a = asset_id(b"bytes", "delivery")
    assert a == asset_id(b"bytes", "delivery") != asset_id(b"bytes", "archive") != asset_id(b"bytez", "delivery")
    assert a == hashlib.sha256(b"bytes\0delivery").hexdigest()[:32]


# --------------------------------------------------------------------------------------------------------------
# service basics: health, auth, OpenAPI, CLI refusal
# --------------------------------------------------------------------------------------------------------------
def test_healthz_needs_no_token(server: tuple[str, Path]) -> None:
    r = httpx.get(f"{server[0]}/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and isinstance(body["version"], str) and body["version"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}])
def test_auth_required_everywhere_but_healthz(server: tuple[str, Path], astronaut: bytes,
                                              headers: dict[str, str]) -> None:
    base = server[0]
    for r in (httpx.post(f"{base}/v1/assets", content=astronaut, headers={**headers, "Content-Type": "image/png"}),
              httpx.get(f"{base}/v1/assets/{'0' * 32}", headers=headers),
              httpx.get(f"{base}/v1/assets/{'0' * 32}/decision", headers=headers)):
        _error(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_openapi_describes_endpoints_and_bearer_auth(server: tuple[str, Path]) -> None:
    doc = httpx.get(f"{server[0]}/openapi.json").json()
    paths = doc["paths"]
    assert {"/healthz", "/v1/assets", "/v1/assets/{asset_id}", "/v1/assets/{asset_id}/decision"} <= set(paths)
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    post = paths["/v1/assets"]["post"]
    assert post["security"] and "multipart/form-data" in post["requestBody"]["content"]
    assert "image/*" in post["requestBody"]["content"]
    assert any(p["name"] == "policy" for p in post["parameters"])
    assert {"201", "413", "415", "401"} <= set(post["responses"])
    get = paths["/v1/assets/{asset_id}"]["get"]
    assert get["security"] and {"406", "304", "404"} <= set(get["responses"])
    assert "image/avif" in get["responses"]["200"]["content"]
    assert "security" not in paths["/healthz"]["get"]


def test_serve_refuses_to_start_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from inverity.cli import main

    monkeypatch.delenv("INVERITY_TOKEN", raising=False)
    assert main(["serve", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inverity: error:") and "INVERITY_TOKEN" in err and "--no-auth" in err


def test_missing_fastapi_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from inverity.errors import MissingDependencyError
    from inverity.server import ServerConfig, create_app

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
@needs_pipeline
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


@needs_pipeline
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


@needs_pipeline
@pytest.mark.parametrize("media_type", ["image/avif", "image/webp", "image/jpeg"])
def test_single_format_accept_gets_that_format(client: Any, astronaut_id: str, media_type: str) -> None:
    _check_rendition(_get(client, astronaut_id, f"{media_type}, text/html;q=0.9"), media_type)


@needs_pipeline
def test_negotiation_serves_the_smallest_verified_accepted_rendition(client: Any, astronaut_id: str) -> None:
    r = _get(client, astronaut_id, "image/avif,image/webp;q=0.9,image/jpeg;q=0.8")
    assert r.status_code == 200
    rends = client.get(f"/v1/assets/{astronaut_id}/decision").json()["renditions"]
    done = {mt: m for mt, m in rends.items() if m["status"] == "done"}
    assert {"image/avif", "image/webp", "image/jpeg"} <= set(done)
    smallest = min(("image/avif", "image/webp", "image/jpeg"), key=lambda mt: done[mt]["bytes"])
    assert r.headers["content-type"] == smallest and len(r.content) == done[smallest]["bytes"]
    for m in done.values():    # every rendition passed verification under the asset's policy
        chosen = [a for a in m["record"]["attempts"] if a.get("chosen") or a.get("passed")]
        assert chosen and all(a["passed"] for a in chosen if a.get("chosen"))
    # without avif (q=0) but with webp: never avif
    r = _get(client, astronaut_id, "image/avif;q=0, image/webp, image/jpeg;q=0.5")
    assert r.status_code == 200 and r.headers["content-type"] in {"image/webp", "image/jpeg"}
    assert r.headers["content-type"] == min(("image/webp", "image/jpeg"), key=lambda mt: done[mt]["bytes"])


@needs_pipeline
@pytest.mark.parametrize("accept", ["*/*", "image/*", None, "application/*, */*;q=0.1"])
def test_wildcards_get_a_standard_format_never_inv(client: Any, astronaut_id: str, accept: str | None) -> None:
    r = _get(client, astronaut_id, accept)
    assert r.status_code == 200 and r.headers["content-type"] in STANDARD
    assert not r.content.startswith(b"INV1")


@needs_pipeline
def test_learned_only_accept_under_delivery_is_406_with_the_list(client: Any, astronaut_id: str) -> None:
    r = _get(client, astronaut_id, LEARNED_MEDIA_TYPE)
    _error(r, 406)
    available = r.json()["available"]
    assert LEARNED_MEDIA_TYPE not in available and "image/jpeg" in available
    assert r.headers["vary"] == "Accept"
    _error(_get(client, astronaut_id, "text/html, application/json"), 406)


@needs_pipeline
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
        if planned:
            assert "learned" in msg and "verification" in msg
    for accept in ("*/*", "application/*", "image/*"):    # wildcards never reach the learned stream
        wild = _get(client, aid, accept)
        if accept == "application/*":
            _error(wild, 406)
        else:
            assert wild.status_code == 200 and wild.headers["content-type"] in STANDARD


@needs_pipeline
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


@needs_pipeline
def test_decision_endpoint_has_upload_and_rendition_records(client: Any, astronaut_id: str) -> None:
    _get(client, astronaut_id, "image/jpeg")
    d = client.get(f"/v1/assets/{astronaut_id}/decision").json()
    assert d["id"] == astronaut_id and d["decision"]["stage"] and d["decision"]["checks"]
    jpeg = d["renditions"]["image/jpeg"]
    assert jpeg["status"] == "done" and jpeg["record"]["stage"] == "jpeg" and jpeg["bytes"] > 0
    assert "input_path" not in jpeg["record"] and not Path(jpeg["path"]).is_absolute()


@needs_pipeline
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


@needs_pipeline
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


@needs_pipeline
def test_timeout_is_504_and_the_work_finishes_in_the_background(tmp_path: Path) -> None:
    proc, base = _start(tmp_path / "store", "--timeout", "0.3")
    try:
        data = _crop_png("coffee", 8, 100, size=384)        # a routed compression takes well over 0.3 s
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
            r = _upload(c, data)
            assert "did not finish" in _error(r, 504)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:           # a retry later finds the finished asset
                again = _upload(c, data)
                if again.status_code == 200:
                    assert again.json()["id"] == asset_id(data, "delivery")
                    break
                assert again.status_code == 504, again.text
                time.sleep(0.5)
            else:
                pytest.fail("the upload never completed in the background")
    finally:
        _stop(proc)
