"""Review in the service, in-process (httpx over ASGI): auth, the queue, verdicts and 409s, the serving gate,
re-routing, restart survival, the page's session cookie and CSRF protection.

The policy ``review-test`` (delivery + ``review = "required"``) is registered as the operator would with
``serve --policy FILE``; 128×128 crops keep every compression quick.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
imagecodecs = pytest.importorskip("imagecodecs")

from inverity.server import ServerConfig, create_app  # noqa: E402
from inverity.server._review import SESSION_COOKIE, parse_tokens, register_policy_files  # noqa: E402

CLIENT = "client-token-1"
ALICE, BOB = "alice-token-2", "bob-token-3"
POLICY = "review-test"
MEDIA = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg", "jxl": "image/jxl", "png": "image/png"}


def _crop(name: str, y: int, x: int, size: int = 128) -> bytes:
    from skimage import data

    return bytes(imagecodecs.png_encode(np.ascontiguousarray(getattr(data, name)()[y:y + size, x:x + size])))


@pytest.fixture(scope="session")
def policy_registered(tmp_path_factory: pytest.TempPathFactory) -> str:
    from inverity.policy import list_policies

    if POLICY not in list_policies():
        f = tmp_path_factory.mktemp("policies") / "review-test.toml"
        f.write_text(f'name = "{POLICY}"\nextends = "delivery"\nreview = "required"\n')
        assert register_policy_files([f]) == [POLICY]
    return POLICY


def _app(store: Path) -> Any:
    return create_app(ServerConfig(store=store, token=CLIENT, reviewers=(("alice", ALICE), ("bob", BOB)),
                                   workers=2, timeout=120))


@pytest.fixture()
def client(tmp_path: Path, policy_registered: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(_app(tmp_path / "store"), base_url="http://127.0.0.1") as c:
        yield c


def _h(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def _upload(c: Any, data: bytes, policy: str = POLICY) -> dict[str, Any]:
    r = c.post(f"/v1/assets?policy={policy}", content=data, headers=_h(CLIENT, **{"Content-Type": "image/png"}))
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_parse_tokens_and_policy_names() -> None:
    assert parse_tokens(["alice=x", "c"]) == ("c", (("alice", "x"),))
    with pytest.raises(Exception, match="twice"):
        parse_tokens(["a=x", "a=y"])
    with pytest.raises(Exception, match="one client token"):
        parse_tokens(["c1", "c2"])


def test_upload_waits_for_review_and_is_not_served(client: Any) -> None:
    up = _upload(client, _crop("astronaut", 100, 180))
    aid, rev = up["id"], up["review"]
    assert rev["state"] == "pending" and rev["by"] is None and rev["rule"] == "required"
    assert up["decision"]["review"]["rule"] == "required"        # recorded in the decision record too
    for accept in ("image/*", "image/avif", "image/jpeg", "*/*"):
        r = client.get(f"/v1/assets/{aid}", headers=_h(CLIENT, Accept=accept))
        assert r.status_code == 409, (accept, r.status_code)
        body = r.json()
        assert "waiting for review" in body["error"] and body["review"]["state"] == "pending"
    d = client.get(f"/v1/assets/{aid}/decision", headers=_h(CLIENT)).json()
    assert d["review"]["state"] == "pending"


def test_auth(client: Any) -> None:
    aid = _upload(client, _crop("astronaut", 100, 180))["id"]
    assert client.get("/v1/review").status_code == 401
    assert client.get("/v1/review", headers=_h("nope")).status_code == 401
    r = client.get("/v1/review", headers=_h(CLIENT))
    assert r.status_code == 403 and "reviewer" in r.json()["error"]
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "approve"}, headers=_h(CLIENT))
    assert r.status_code == 403
    # a reviewer's token is a bearer token for the rest of the API as well
    assert client.get(f"/v1/assets/{aid}/decision", headers=_h(ALICE)).status_code == 200
    r = client.post(f"/v1/assets/{'0' * 32}/review", json={"verdict": "approve"}, headers=_h(ALICE))
    assert r.status_code == 404
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "perhaps"}, headers=_h(ALICE))
    assert r.status_code == 422
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "reject", "note": ""}, headers=_h(ALICE))
    assert r.status_code == 422 and "note" in r.json()["error"]


def test_queue_approve_serve_and_second_verdict(client: Any, tmp_path: Path) -> None:
    a = _upload(client, _crop("astronaut", 100, 180))["id"]
    b = _upload(client, _crop("chelsea", 60, 120))["id"]
    c = _upload(client, _crop("coffee", 100, 200))["id"]
    q = client.get("/v1/review", headers=_h(ALICE)).json()
    assert [i["id"] for i in q["items"]] == [a, b, c]             # oldest first (upload order, not id order)
    assert all(i["reasons"][0].startswith(f"policy {POLICY}: every output waits") for i in q["items"])
    stage = q["items"][0]["stage"]
    assert [i["id"] for i in client.get(f"/v1/review?stage={stage}&kind=photo&policy={POLICY}",
                                        headers=_h(ALICE)).json()["items"]] == [a, b, c]
    assert client.get("/v1/review?policy=delivery", headers=_h(ALICE)).json()["count"] == 0

    r = client.post(f"/v1/assets/{a}/review", json={"verdict": "approve", "note": "ok"}, headers=_h(ALICE))
    assert r.status_code == 200 and r.json()["review"]["state"] == "approved" and r.json()["review"]["by"] == "alice"
    r = client.post(f"/v1/assets/{a}/review", json={"verdict": "reject", "note": "no"}, headers=_h(BOB))
    assert r.status_code == 409 and "already approved by alice" in r.json()["error"]
    # the approved bytes, and only those, are served
    sha = client.get(f"/v1/assets/{a}/review", headers=_h(BOB)).json()["review"]["output_sha256"]
    got = client.get(f"/v1/assets/{a}", headers=_h(CLIENT, Accept=MEDIA[stage]))
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha
    q = client.get("/v1/review", headers=_h(ALICE)).json()
    assert [i["id"] for i in q["items"]] == [b, c]
    assert q["counts"] == {"pending": 2, "approved": 1, "rejected": 0, "rerouted": 0}


def test_reject_reroutes_and_rejected_is_never_served(client: Any) -> None:
    up = _upload(client, _crop("chelsea", 60, 120))
    aid, first = up["id"], up["decision"]["stage"]
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "reject", "note": "<script>x</script> soft"},
                    headers=_h(BOB))
    assert r.status_code == 200, r.text
    out = r.json()
    second = out["decision"]["stage"]
    assert second != first and out["review"]["state"] == "pending" and first in out["review"]["excluded"]
    assert any("re-routed after review" in s and "bob" in s for s in out["decision"]["reasons"])
    q = client.get("/v1/review", headers=_h(ALICE)).json()["items"]
    assert [(i["id"], i["stage"]) for i in q] == [(aid, second)]     # the new output follows the same rule
    mt = MEDIA
    assert client.get(f"/v1/assets/{aid}", headers=_h(CLIENT, Accept=mt[first])).status_code == 409
    client.post(f"/v1/assets/{aid}/review", json={"verdict": "approve"}, headers=_h(ALICE))
    assert client.get(f"/v1/assets/{aid}", headers=_h(CLIENT, Accept=mt[second])).status_code == 200
    r = client.get(f"/v1/assets/{aid}", headers=_h(CLIENT, Accept=mt[first]))
    assert r.status_code == 409 and "rejected" in r.json()["error"]      # the rejected stage stays held back


def test_concurrent_verdicts(tmp_path: Path, policy_registered: str) -> None:
    from fastapi.testclient import TestClient

    app = _app(tmp_path / "store")
    with TestClient(app) as c:
        up = _upload(c, _crop("astronaut", 100, 180))
        aid, sha = up["id"], up["review"]["output_sha256"]

        async def race() -> list[int]:
            # every reviewer decides on the output they saw: a verdict that lands after a rejection re-routed
            # the asset must not be applied to the new output (409 stale), nor a second one to the same (409)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
                rs = await asyncio.gather(*(ac.post(f"/v1/assets/{aid}/review", headers=_h(tok),
                                                    json={"verdict": v, "note": "n", "output_sha256": sha})
                                            for tok, v in [(ALICE, "approve"), (BOB, "reject")] * 3))
            return sorted(r.status_code for r in rs)

        assert asyncio.run(race()) == [200, 409, 409, 409, 409, 409]
    from inverity.review import ReviewBook

    with ReviewBook(tmp_path / "store" / "inverity.sqlite") as book:
        assert len(list(book.log())) == 1


def test_restart_survival(tmp_path: Path, policy_registered: str) -> None:
    from fastapi.testclient import TestClient

    store = tmp_path / "store"
    with TestClient(_app(store)) as c:
        a = _upload(c, _crop("astronaut", 100, 180))["id"]
        b = _upload(c, _crop("chelsea", 60, 120))["id"]
        assert c.post(f"/v1/assets/{a}/review", json={"verdict": "approve"}, headers=_h(ALICE)).status_code == 200
    with TestClient(_app(store)) as c:                     # a new process on the same store
        assert c.get(f"/v1/assets/{a}/review", headers=_h(BOB)).json()["review"]["state"] == "approved"
        assert [i["id"] for i in c.get("/v1/review", headers=_h(BOB)).json()["items"]] == [b]
        assert c.get(f"/v1/assets/{a}", headers=_h(CLIENT, Accept="image/avif,image/webp,image/jpeg,image/png,"
                                                                  "image/jxl")).status_code == 200
        assert c.get(f"/v1/assets/{b}", headers=_h(CLIENT, Accept="image/*")).status_code == 409
        assert c.post(f"/v1/assets/{a}/review", json={"verdict": "reject", "note": "late"},
                      headers=_h(BOB)).status_code == 409
    from inverity.review import ReviewBook

    with ReviewBook(store / "inverity.sqlite") as book:
        assert [(e["asset"], e["by"]) for e in book.log()] == [(a, "alice")]


def test_policy_without_review_serves_at_once(client: Any) -> None:
    up = _upload(client, _crop("astronaut", 100, 180), policy="delivery")
    assert up["review"]["state"] == "not_required" and up["decision"]["review"]["rule"] == "none"
    assert client.get(f"/v1/assets/{up['id']}", headers=_h(CLIENT, Accept="image/*")).status_code == 200


def test_openapi_documents_review(client: Any) -> None:
    spec = client.get("/openapi.json", headers=_h(CLIENT)).json()   # the docs are behind the token
    assert "/v1/review" in spec["paths"] and "post" in spec["paths"]["/v1/assets/{asset_id}/review"]
    assert "409" in spec["paths"]["/v1/assets/{asset_id}/review"]["post"]["responses"]


def _login(c: Any, token: str) -> tuple[Any, str]:
    page = c.get("/review/login")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return c.post("/review/login", data={"token": token, "csrf": nonce}, follow_redirects=False), nonce


def test_page_login_session_and_csrf(client: Any) -> None:
    aid = _upload(client, _crop("astronaut", 100, 180))["id"]
    assert client.get("/review", follow_redirects=False).status_code == 303
    r, _ = _login(client, "wrong")
    assert r.status_code == 401 and "not a reviewer" in r.text
    r, _ = _login(client, CLIENT)
    assert r.status_code == 401
    r, _ = _login(client, ALICE)
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict",
                                                                                                    "strict")
    assert ALICE not in cookie
    page = client.get("/review")
    assert page.status_code == 200 and ">alice<" in page.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    # the cookie reads the queue and the images ...
    items = client.get("/v1/review").json()["items"]
    assert [i["id"] for i in items] == [aid]
    view = client.get(f"/review/item/{aid}").json()
    assert len(view["windows"]) == 3 and all(0 <= w["x"] < 1 for w in view["windows"])
    for url in view["images"].values():
        img = client.get(url)
        assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"
    # ... but a write needs the CSRF token too (a cross-site form could send the cookie, not the header)
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "approve"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "approve"}, headers={"X-CSRF-Token": "x" + csrf})
    assert r.status_code == 403
    r = client.post(f"/v1/assets/{aid}/review", json={"verdict": "approve"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["review"]["by"] == "alice"
    assert client.post("/review/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/v1/review").status_code == 401


def test_login_form_needs_its_nonce(client: Any) -> None:
    client.get("/review/login")
    r = client.post("/review/login", data={"token": ALICE, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_page_escapes_names(tmp_path: Path, policy_registered: str) -> None:
    from fastapi.testclient import TestClient

    evil = '<img src=x onerror=alert(1)>"'
    app = create_app(ServerConfig(store=tmp_path / "s", token=CLIENT, reviewers=((evil, ALICE),)))
    with TestClient(app) as c:
        _login(c, ALICE)
        page = c.get("/review").text
        assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_gate_serves_the_classical_alternative_while_learned_waits() -> None:
    """review = learned: a pending learned output is held back, a verified classical rendition is served; with
    no alternative the answer is a reason for a 409."""
    from types import SimpleNamespace

    from inverity.server._review import gate

    rev = {"rule": "learned", "state": "pending", "stage": "learned", "output_sha256": "a" * 64, "excluded": []}
    record = {"stage": "learned", "review": rev}

    async def call(fn: Any, *args: Any) -> Any:
        return fn(*args)

    state = SimpleNamespace(assets=SimpleNamespace(get=lambda aid: record), call=call,
                            store=SimpleNamespace(asset=lambda aid: record))
    inv = {"media_type": "application/x-inverity", "etag": "a" * 64, "record": {"stage": "learned"}}
    avif = {"media_type": "image/avif", "etag": "b" * 64, "record": {"stage": "avif"}}
    ok, held = asyncio.run(gate(state, "x", [inv, avif]))
    assert ok == [avif] and held is None
    ok, held = asyncio.run(gate(state, "x", [inv]))
    assert ok == [] and held is not None and "waiting for review" in held["error"]
    assert held["review"]["state"] == "pending"
    rev.update(state="approved", by="alice")
    ok, held = asyncio.run(gate(state, "x", [inv, avif]))
    assert ok == [inv, avif] and held is None
    rev.update(state="rejected", excluded=["learned"])
    ok, held = asyncio.run(gate(state, "x", [inv]))
    assert ok == [] and "rejected" in held["error"]


def test_no_read_path_bypasses_the_gate(tmp_path: Path, policy_registered: str) -> None:
    """Public reads, signed URLs and HEAD go through the same gate as a bearer GET: a pending or rejected output
    is never served (nor its headers, nor a 304 for its ETag); approved bytes then are, by every path."""
    from fastapi.testclient import TestClient

    app = create_app(ServerConfig(store=tmp_path / "store", token=CLIENT, reviewers=(("alice", ALICE),),
                                  public_reads=True, workers=2, timeout=120))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        up = _upload(c, _crop("astronaut", 100, 180))
        aid, signed, stage = up["id"], up["url"], up["decision"]["stage"]
        sha = up["review"]["output_sha256"]
        assert up["review"]["state"] == "pending" and signed.startswith(f"/v1/assets/{aid}?exp=")
        accept = {"Accept": f"{MEDIA[stage]},image/*"}
        reads = {"public": (f"/v1/assets/{aid}", {}), "signed": (signed, {}),
                 "bearer": (f"/v1/assets/{aid}", _h(CLIENT)), "reviewer": (f"/v1/assets/{aid}", _h(ALICE))}

        def fetch(method: str, how: str, **more: str) -> Any:
            url, auth = reads[how]
            return c.request(method, url, headers={**auth, **accept, **more})

        for how in reads:
            for method in ("GET", "HEAD"):
                r = fetch(method, how)
                assert r.status_code == 409, (how, method, r.status_code)
                assert "etag" not in r.headers and not r.headers["content-type"].startswith("image/")
                if method == "GET":
                    assert "waiting for review" in r.json()["error"] and r.json()["review"]["state"] == "pending"
                else:
                    assert r.content == b""
            # knowing the ETag does not help: no 304 for bytes nobody approved
            assert fetch("GET", how, **{"If-None-Match": f'"{sha}"'}).status_code == 409
        # a reviewer's token is a bearer token (signing a URL), yet no read of it passes the gate either
        own = c.get(f"/v1/assets/{aid}/url", headers=_h(ALICE))
        assert own.status_code == 200 and c.get(own.json()["url"], headers=accept).status_code == 409

        r = c.post(f"/v1/assets/{aid}/review", json={"verdict": "approve", "note": "ok"}, headers=_h(ALICE))
        assert r.status_code == 200 and r.json()["review"]["state"] == "approved"
        for how in reads:
            got = fetch("GET", how, Accept=MEDIA[stage])
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha, how
            head = fetch("HEAD", how, Accept=MEDIA[stage])
            assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == f'"{sha}"', how

        # a rejected output: held back by every path, before and after the re-route that replaces it
        up = _upload(c, _crop("coffee", 100, 200))
        bid, bsigned, first = up["id"], up["url"], up["decision"]["stage"]
        r = c.post(f"/v1/assets/{bid}/review", json={"verdict": "reject", "note": "banding"}, headers=_h(ALICE))
        assert r.status_code == 200, r.text
        for url, auth in ((f"/v1/assets/{bid}", {}), (bsigned, {}), (f"/v1/assets/{bid}", _h(CLIENT))):
            for method in ("GET", "HEAD"):
                r = c.request(method, url, headers={**auth, "Accept": MEDIA[first]})
                assert r.status_code == 409 and "etag" not in r.headers, (url, method)


def test_a_verdict_on_a_replaced_output_is_refused_not_applied_to_the_new_one(tmp_path: Path,
                                                                              policy_registered: str) -> None:
    from fastapi.testclient import TestClient

    with TestClient(_app(tmp_path / "store")) as c:
        up = _upload(c, _crop("astronaut", 100, 180))
        aid, old = up["id"], up["review"]["output_sha256"]
        r = c.post(f"/v1/assets/{aid}/review", headers=_h(BOB),
                   json={"verdict": "reject", "note": "smeared", "output_sha256": old})
        assert r.status_code == 200 and r.json()["review"]["output_sha256"] != old     # re-routed, pending again
        late = c.post(f"/v1/assets/{aid}/review", headers=_h(ALICE),
                      json={"verdict": "approve", "note": "", "output_sha256": old})
        assert late.status_code == 409 and "stale verdict" in late.json()["error"]
        assert c.get(f"/v1/assets/{aid}/review", headers=_h(ALICE)).json()["review"]["state"] == "pending"
