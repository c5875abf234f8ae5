"""``inverity serve`` for real: a subprocess on 127.0.0.1, driven over TCP (what in-process tests cannot see).

The smoke test uploads and fetches through the socket; the slow-client tests check the connection-level guards
uvicorn is started with (a request head must arrive within ``--header-timeout``; idle keep-alive connections
close after ``--keep-alive``).
"""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
imagecodecs = pytest.importorskip("imagecodecs")

from inverity.server._launch import start_server, stop_server  # noqa: E402

TOKEN = "test-token-process"
HEADER_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = tmp_path_factory.mktemp("store")
    proc, base = start_server(store, "--header-timeout", str(HEADER_TIMEOUT), "--keep-alive", "2",
                              "--timeout", "60", token=TOKEN)
    try:
        yield base
    finally:
        stop_server(proc)


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def test_smoke_upload_fetch_head_over_tcp(server: str) -> None:
    from skimage import data

    png = bytes(imagecodecs.png_encode(data.astronaut()[100:164, 180:244]))
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        up = c.post("/v1/assets", content=png, headers={"Content-Type": "image/png"})
        assert up.status_code == 201, up.text
        aid = up.json()["id"]
        got = c.get(f"/v1/assets/{aid}", headers={"Accept": "*/*"})
        assert got.status_code == 200 and got.headers["content-type"] in ("image/jpeg", "image/png")
        head = c.head(f"/v1/assets/{aid}", headers={"Accept": "*/*"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(got.content)) and head.headers["etag"] == got.headers["etag"]
        assert httpx.head(f"{server}/healthz").status_code == 200
        # a signed URL works without the token, over the wire
        assert httpx.get(server + up.json()["url"]).status_code == 200
        assert "server" not in got.headers     # uvicorn's banner is off


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True once the peer has closed ``sock`` (recv returns b"" or the connection resets) within ``seconds``."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_a_client_trickling_its_headers_is_disconnected(server: str) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    t0 = time.monotonic()
    with socket.create_connection(_address(server), timeout=5) as sock:
        closed_at = None
        for byte in head:                      # one byte every 0.1 s: never completes the head
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            time.sleep(0.1)
            sock.settimeout(0.001)
            try:
                if sock.recv(1) == b"":
                    closed_at = time.monotonic()
                    break
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                closed_at = time.monotonic()
                break
            if time.monotonic() - t0 > HEADER_TIMEOUT + 5:
                break
    assert closed_at is not None, "the server kept a connection open for a client that never finished its headers"
    assert closed_at - t0 < HEADER_TIMEOUT + 2


def test_silent_connection_and_idle_keep_alive_are_closed(server: str) -> None:
    with socket.create_connection(_address(server), timeout=5) as sock:      # connects, sends nothing
        assert _closed_within(sock, HEADER_TIMEOUT + 2)
    with socket.create_connection(_address(server), timeout=5) as sock:      # one request, then idle
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_within(sock, 2 + 2)


def test_a_complete_slow_request_is_not_cut_off_after_its_head(server: str) -> None:
    # the head timer stops once the head is complete: a request still being answered is not affected
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(HEADER_TIMEOUT + 0.5)      # read the answer late: it was sent, the connection idles on keep-alive
        sock.settimeout(2)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_an_oversized_request_head_is_refused(server: str) -> None:
    from inverity.server._serve import MAX_HEAD_BYTES

    # h11 bounds the bytes it buffers while a head is incomplete (a head that arrives whole in one read is parsed)
    with socket.create_connection(_address(server), timeout=5) as sock:
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1024)
        try:
            sock.sendall(big)
        except OSError:
            return                              # closed while we were still sending: refused
        sock.settimeout(HEADER_TIMEOUT / 2)          # answered at once, not by the head timeout closing it later
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
