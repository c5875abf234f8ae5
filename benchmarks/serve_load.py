"""Load-test ``inverity serve`` on loopback: upload a few images, time first requests, then a bounded GET load.

Usage::

    python benchmarks/serve_load.py [--images 3] [--size 256] [--requests 1000] [--concurrency 50]
                                    [--policy delivery] [--max-seconds 300] [--json OUT.json]

What it does, all against a server it starts itself on 127.0.0.1 (a free port, a temporary store, a random
token) and stops at the end — it never talks to any other address:

1. uploads ``--images`` crops (``--size`` square) of scikit-image sample photos, timing each upload (the routed
   compression with its quality search and verification);
2. times the *first* request of each negotiated format per image, which creates and verifies that rendition
   (first image: ``*/*`` first, which makes the universal formats (JPEG, PNG) in one request — wildcards never
   reach AVIF, WebP or JPEG XL; then, as for the others: ``image/avif``,
   ``image/webp``, ``image/jpeg``, ``image/jxl``, then ``*/*``). The rendition in the upload's own format
   (AVIF for photos under ``delivery``) already exists, so its first request is a cache hit;
3. fires ``--requests`` GETs (``--concurrency`` in flight, httpx async, Accept headers rotating over the
   formats above) — all served from the rendition cache — and reports latency percentiles, throughput and the
   error count, which must be 0 (exit status 1 otherwise).

Client and server share the machine, so latencies include the client's own CPU time: treat them as indicative.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ACCEPTS = ["image/avif", "image/webp", "image/jpeg", "image/jxl", "*/*"]
LOAD_ACCEPTS = ["image/avif,image/webp,*/*;q=0.8", "image/webp,*/*;q=0.5", "image/jpeg", "*/*",
                "image/avif;q=0, image/webp, image/jpeg;q=0.5"]
SAMPLES = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"]
HOST = "127.0.0.1"   # loopback only, by construction


def _images(n: int, size: int) -> list[tuple[str, bytes]]:
    import imagecodecs
    from skimage import data

    out = []
    for name in SAMPLES[:n]:
        px = getattr(data, name)()
        h, w = px.shape[:2]
        s = min(size, h, w)
        y, x = (h - s) // 2, (w - s) // 2
        out.append((name, bytes(imagecodecs.png_encode(px[y:y + s, x:x + s]))))
    return out


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _start(store: Path, token: str, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    from inverity.server._launch import start_server

    try:
        return start_server(store, "--timeout", str(timeout), token=token, host=HOST, wait_s=60)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


async def _made(c: Any, aid: str) -> set[str]:
    """The media types whose rendition (verified or known unavailable) exists for an asset."""
    r = await c.get(f"/v1/assets/{aid}/decision")
    r.raise_for_status()
    return set(r.json()["renditions"])


async def _run(base: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    result: dict[str, Any] = {"uploads": [], "first_requests": [], "config": {
        "images": args.images, "size": args.size, "requests": args.requests, "concurrency": args.concurrency,
        "policy": args.policy}}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=args.max_seconds) as c:
        ids: list[str] = []
        for name, png in _images(args.images, args.size):
            t0 = time.perf_counter()
            r = await c.post("/v1/assets", params={"policy": args.policy}, content=png,
                             headers={"Content-Type": "image/png"})
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code not in (200, 201):
                raise SystemExit(f"upload of {name} failed: {r.status_code} {r.text[:300]}")
            rec = r.json()["decision"]
            ids.append(r.json()["id"])
            result["uploads"].append({"image": name, "ms": round(ms, 1), "stage": rec.get("stage"),
                                      "bytes": rec.get("bytes"), "input_bytes": len(png)})
        for n, (aid, (name, _)) in enumerate(zip(ids, _images(args.images, args.size))):
            # the first image starts with */*: one request that makes every format (the worst first request);
            # the others go format by format. AVIF is the upload's own output under delivery: a cache hit.
            for acc in (["*/*"] + ACCEPTS[:-1]) if n == 0 else ACCEPTS:
                before = await _made(c, aid)
                t0 = time.perf_counter()
                r = await c.get(f"/v1/assets/{aid}", headers={"Accept": acc})
                ms = (time.perf_counter() - t0) * 1000
                created = sorted(await _made(c, aid) - before)
                result["first_requests"].append({"image": name, "accept": acc, "status": r.status_code,
                                                 "ms": round(ms, 1), "served": r.headers.get("content-type"),
                                                 "bytes": len(r.content), "created": created})

        sem = asyncio.Semaphore(args.concurrency)
        lat: list[float] = []
        errors: list[str] = []

        async def one(i: int) -> None:
            aid = ids[i % len(ids)]
            acc = LOAD_ACCEPTS[(i // len(ids)) % len(LOAD_ACCEPTS)]
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await c.get(f"/v1/assets/{aid}", headers={"Accept": acc})
                    await r.aread()
                    if r.status_code != 200 or not r.content:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                lat.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(args.requests))), args.max_seconds)
        wall = time.perf_counter() - t0
    result["load"] = {
        "requests": len(lat), "errors": len(errors), "error_samples": errors[:5], "wall_s": round(wall, 3),
        "throughput_rps": round(len(lat) / wall, 1) if wall else None,
        "p50_ms": round(_pct(lat, 50), 2), "p90_ms": round(_pct(lat, 90), 2), "p99_ms": round(_pct(lat, 99), 2),
        "mean_ms": round(statistics.fmean(lat), 2) if lat else None, "max_ms": round(max(lat), 2) if lat else None}
    return result


def _markdown(res: dict[str, Any]) -> str:
    cfg, load = res["config"], res["load"]
    lines = [f"# inverity serve: loopback load ({cfg['images']} images {cfg['size']}², policy {cfg['policy']})", "",
             "## Uploads (routed compression, quality search, verification)", "",
             "| image | stage | bytes (in → out) | ms |", "|---|---|---|---|"]
    for u in res["uploads"]:
        lines.append(f"| {u['image']} | {u['stage']} | {u['input_bytes']} → {u['bytes']} | {u['ms']:.0f} |")
    lines += ["", "## First request per format (creates and verifies the rendition)", "",
              "| image | Accept | status | served | bytes | made by this request | ms |",
              "|---|---|---|---|---|---|---|"]
    for f in res["first_requests"]:
        made = ", ".join(m.split("/")[-1] for m in f["created"]) or "— (cached)"
        lines.append(f"| {f['image']} | `{f['accept']}` | {f['status']} | {f['served']} | {f['bytes']} | {made} | "
                     f"{f['ms']:.0f} |")
    one = [f["ms"] for f in res["first_requests"] if f["status"] == 200 and len(f["created"]) == 1]
    hits = [f["ms"] for f in res["first_requests"] if f["status"] == 200 and not f["created"]]
    many = [f for f in res["first_requests"] if len(f["created"]) > 1]
    lines.append("")
    if one:
        lines.append(f"Requests that made one rendition: median {statistics.median(one):.0f} ms, max "
                     f"{max(one):.0f} ms (n={len(one)}).")
    for f in many:
        lines.append(f"`{f['accept']}` on a fresh asset made {len(f['created'])} renditions in parallel in "
                     f"{f['ms']:.0f} ms.")
    if hits:
        lines.append(f"Cache hits (incl. the upload's own format): median {statistics.median(hits):.0f} ms.")
    lines += ["", f"## Cached GETs: {load['requests']} requests, {cfg['concurrency']} concurrent", "",
              "| p50 ms | p90 ms | p99 ms | mean ms | max ms | req/s | errors |", "|---|---|---|---|---|---|---|",
              f"| {load['p50_ms']} | {load['p90_ms']} | {load['p99_ms']} | {load['mean_ms']} | {load['max_ms']} | "
              f"{load['throughput_rps']} | {load['errors']} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3, choices=range(1, len(SAMPLES) + 1))
    ap.add_argument("--size", type=int, default=256, help="square crop size (pixels)")
    ap.add_argument("--requests", type=int, default=1000, help="cached GETs (at most 100,000)")
    ap.add_argument("--concurrency", type=int, default=50, help="GETs in flight (at most 500)")
    ap.add_argument("--policy", default="delivery")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="bound on the GET phase and each request")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 500:
        ap.error("--requests must be 1..100000 and --concurrency 1..500")
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="inverity-serve-load-") as tmp:
        proc, base = _start(Path(tmp) / "store", token, args.max_seconds)
        try:
            res = asyncio.run(_run(base, token, args))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    sys.stdout.write(_markdown(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    if res["load"]["errors"]:
        print(f"errors: {res['load']['error_samples']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
