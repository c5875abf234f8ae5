"""The server's work per upload: one decode, the first GET serves what the upload made, the effort setting.

No timings here (benchmarks/serve_first.py measures them): each test counts the work itself — calls to the real
loader, pipeline runs, files written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
imagecodecs = pytest.importorskip("imagecodecs")

from inverity.server import ServerConfig, create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

TOKEN = "speed-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png(name: str = "astronaut", y: int = 100, x: int = 180, size: int = 128) -> bytes:
    from skimage import data

    return bytes(imagecodecs.png_encode(getattr(data, name)()[y:y + size, x:x + size]))


def _client(store: Path, **config: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(create_app(ServerConfig(store=store, token=TOKEN, timeout=60.0, **config)),
                      raise_server_exceptions=False)


def _upload(c: Any, data: bytes) -> Any:
    return c.post("/v1/assets", params={"policy": "delivery"}, content=data,
                  headers={**AUTH, "Content-Type": "image/png"})


def _files(store: Path) -> set[str]:
    return {p.relative_to(store).as_posix() for p in (store / "renditions").rglob("*") if p.is_file()}


def test_an_upload_is_decoded_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import inverity.image as image_mod

    real, names = image_mod.load, []

    def counting(*args: Any, **kw: Any) -> Any:
        names.append(kw.get("name"))
        return real(*args, **kw)

    monkeypatch.setattr(image_mod, "load", counting)     # the real loader, counted (the store's and the pipeline's)
    with _client(tmp_path / "store", effort="fast") as c:
        r = _upload(c, _png())
        assert r.status_code == 201, r.text
    assert len(names) == 1, names
    assert r.json()["decision"]["search"]["effort"] == "fast"          # the server's speed setting was used


def test_first_get_serves_the_upload_without_a_new_encode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import inverity.pipeline as pipeline_mod

    store = tmp_path / "store"
    with _client(store) as c:
        up = _upload(c, _png())
        assert up.status_code == 201, up.text
        aid, rec = up.json()["id"], up.json()["decision"]
        assert rec["stage"] == "avif" and rec["search"]["effort"] == "balanced"   # the policy's own by default
        floors = c.get(f"/v1/assets/{aid}/decision", headers=AUTH).json()["size_floors"]
        # the premise: PNG (lossless) of a photo cannot beat the AVIF in hand; WebP's predicted floor could
        assert floors["image/png"] >= rec["bytes"] > floors["image/webp"]
        before = _files(store)

        real, runs = pipeline_mod.compress_one, []

        def counting(*args: Any, **kw: Any) -> Any:
            runs.append((kw.get("media_types"), kw.get("beat")))
            return real(*args, **kw)

        monkeypatch.setattr(pipeline_mod, "compress_one", counting)
        r = c.get(f"/v1/assets/{aid}", headers={**AUTH, "Accept": "image/avif, image/png"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/avif"
        assert len(r.content) == rec["bytes"]
        assert runs == [] and _files(store) == before            # no encode, nothing written: the upload's output
        # a format that might beat it is searched for a smaller output only (larger probes are not verified) ...
        r = c.get(f"/v1/assets/{aid}", headers={**AUTH, "Accept": "image/avif, image/webp"})
        assert r.status_code == 200 and runs == [(["image/webp"], rec["bytes"])]
        done = c.get(f"/v1/assets/{aid}/decision", headers=AUTH).json()["renditions"]
        if "image/webp" in done:     # it was smaller: verified in full, a rendition like any other, and served
            assert done["image/webp"]["bytes"] < rec["bytes"] and r.headers["content-type"] == "image/webp"
            assert [a for a in done["image/webp"]["record"]["attempts"] if a.get("chosen")][0]["passed"]
        else:                        # it could not be: nothing written, the upload's output served
            assert r.headers["content-type"] == "image/avif" and _files(store) == before
            again = c.get(f"/v1/assets/{aid}", headers={**AUTH, "Accept": "image/avif, image/webp"})
            assert again.content == r.content and len(runs) == 1      # remembered: not searched again
        # ... and a format that was not made is made in full, and verified, when asked for alone
        webp_made, n = "image/webp" in done, len(runs)
        for mt in ("image/png", "image/webp"):
            r = c.get(f"/v1/assets/{aid}", headers={**AUTH, "Accept": mt})
            assert r.status_code == 200 and r.headers["content-type"] == mt
            meta = c.get(f"/v1/assets/{aid}/decision", headers=AUTH).json()["renditions"][mt]
            assert meta["status"] == "done" and [a for a in meta["record"]["attempts"] if a.get("chosen")]
        assert runs[n:] == [(["image/png"], None)] + ([] if webp_made else [(["image/webp"], None)])


def test_serve_effort_flag_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from inverity.cli import main

    assert main(["serve", "--store", str(tmp_path), "--no-auth", "--effort", "quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("inverity: error: --effort must be one of fast, balanced, max") and "\n" not in err


def test_compress_one_beat_verifies_only_smaller_outputs(tmp_path: Path) -> None:
    from inverity.pipeline import NoCandidatePassedError, compress_one

    src = tmp_path / "a.png"
    src.write_bytes(_png())
    full = compress_one(src, "delivery", outdir=tmp_path / "o", media_types=["image/jpeg"])
    with pytest.raises(NoCandidatePassedError) as exc:      # nothing can be smaller than 100 bytes
        compress_one(src, "delivery", outdir=tmp_path / "o2", media_types=["image/jpeg"], beat=100)
    record = exc.value.record                               # type: ignore[attr-defined]
    assert all(a["passed"] is False and a["reasons"][0].startswith("not verified:") for a in record["attempts"])
    assert record["attempts"] or any(" not tried: " in r for r in record["reasons"])
    assert not (tmp_path / "o2").exists()
    # with room to beat, the output passed its full verification like any other
    roomy = compress_one(src, "delivery", outdir=tmp_path / "o3", media_types=["image/jpeg"],
                         beat=10 * full.record["bytes"])
    assert roomy.record["bytes"] < 10 * full.record["bytes"]
    assert [a for a in roomy.record["attempts"] if a.get("chosen")][0]["passed"] is True
