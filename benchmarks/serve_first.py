"""Time ``inverity serve`` on what a user waits for: upload a 0.4 MP photo, then the first GET of it.

Usage::

    python benchmarks/serve_first.py [--images 4] [--repeat 1] [--effort fast] [--profile OUT.prof]
                                     [--json OUT.json]

A real server (``inverity serve`` in a subprocess on 127.0.0.1, a free port, a temporary store, a random token;
stopped at the end) receives 768×512 photos (Kodak's size, 0.39 MP) made from scikit-image samples, one at a
time, under ``delivery``. For each: the upload's wall time (routed compression, quality search, verification of
the output), then the first ``GET`` with a browser's ``Accept`` (Chromium's: AVIF, WebP, then wildcards) and,
for a second upload of the same image under ``auto`` (another asset id), the first ``GET`` with ``*/*`` (curl's
default: JPEG or PNG only). ``made`` lists the renditions that GET had to create (``—``: none, it served what
the upload produced). The first image is also timed separately: it pays whatever the server did not warm up.

``--src DIR`` runs the server from another source tree (``DIR/src`` on ``PYTHONPATH``), so a before/after
comparison runs in one session: ``git archive <base> src | tar -x -C /tmp/base``, then ``--src /tmp/base``.
Client and server share the machine: on a loaded machine the numbers include waiting for a core.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"   # loopback only, by construction
CHROMIUM = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAMPLES = ["chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "coins"]


def photos(n: int) -> list[tuple[str, bytes]]:
    """``n`` 768×512 PNG photos: scikit-image samples resized to cover 768×512, centre-cropped."""
    import imagecodecs
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    out = []
    for name in SAMPLES[:n]:
        px = getattr(data, name)()
        if px.ndim == 2:
            px = np.stack([px] * 3, -1)
        px = px[..., :3]
        h, w = px.shape[:2]
        s = max(512 / h, 768 / w)
        big = resize(px, (round(h * s), round(w * s)), anti_aliasing=s < 1, preserve_range=True)
        y, x = (big.shape[0] - 512) // 2, (big.shape[1] - 768) // 2
        crop = np.ascontiguousarray(np.clip(big[y:y + 512, x:x + 768].round(), 0, 255).astype(np.uint8))
        out.append((name, bytes(imagecodecs.png_encode(crop))))
    return out


async def _one(c: Any, png: bytes, policy: str, accept: str, pid: int) -> dict[str, Any]:
    cpu0 = _cpu_of(pid)
    t0 = time.perf_counter()
    r = await c.post("/v1/assets", params={"policy": policy}, content=png, headers={"Content-Type": "image/png"})
    t_up = time.perf_counter() - t0
    if r.status_code not in (200, 201):
        raise SystemExit(f"upload failed: {r.status_code} {r.text[:300]}")
    aid, rec = r.json()["id"], r.json()["decision"]
    before = set((await c.get(f"/v1/assets/{aid}/decision")).json()["renditions"])
    t1 = time.perf_counter()
    g = await c.get(f"/v1/assets/{aid}", headers={"Accept": accept})
    t_get = time.perf_counter() - t1
    if g.status_code != 200:
        raise SystemExit(f"GET failed: {g.status_code} {g.text[:300]}")
    cpu = _cpu_of(pid) - cpu0
    after = set((await c.get(f"/v1/assets/{aid}/decision")).json()["renditions"])
    made = sorted(mt.split("/")[1] for mt in after - before)
    return {"policy": policy, "accept": accept, "stage": rec.get("stage"), "quality": rec.get("quality"),
            "bytes": rec.get("bytes"), "encodes": (rec.get("search") or {}).get("encodes"),
            "served": g.headers.get("content-type"), "served_bytes": len(g.content), "made": made,
            "upload_s": round(t_up, 3), "get_s": round(t_get, 3), "total_s": round(t_up + t_get, 3),
            "server_cpu_s": round(cpu, 3)}


async def _run(base: str, token: str, args: argparse.Namespace, pid: int) -> list[dict[str, Any]]:
    import httpx

    out = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                 timeout=300) as c:
        for rep in range(args.repeat):
            for name, png in photos(args.images):
                png = png + b"\0" * rep        # a new asset id per repeat (trailing bytes after IEND are ignored)
                for policy, accept in (("delivery", CHROMIUM), ("auto", "*/*")):
                    row = await _one(c, png, policy, accept, pid)
                    out.append({"image": name, "repeat": rep, **row})
                    print(json.dumps(out[-1]), flush=True)
    return out


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--src", type=Path, default=None, help="run the server from DIR/src (a before/after run)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `inverity serve` flag (repeatable)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from inverity.server._launch import start_server, stop_server

    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve() / "src")
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp), *args.serve_arg, token=token, host=HOST, wait_s=90)
        cpu0 = _cpu_of(proc.pid)
        try:
            rows = asyncio.run(_run(base, token, args, proc.pid))
        finally:
            cpu = _cpu_of(proc.pid) - cpu0
            stop_server(proc)
    first, rest = rows[0], [r for r in rows[1:]]
    summary = {"src": str(args.src or "this tree"), "first_image_total_s": first["total_s"],
               "server_cpu_s": round(cpu, 2), "rows": rows}
    for policy in ("delivery", "auto"):
        sel = [r for r in rest if r["policy"] == policy]
        if sel:
            summary[f"{policy}_median_upload_s"] = round(statistics.median(r["upload_s"] for r in sel), 3)
            summary[f"{policy}_median_get_s"] = round(statistics.median(r["get_s"] for r in sel), 3)
            summary[f"{policy}_median_total_s"] = round(statistics.median(r["total_s"] for r in sel), 3)
            summary[f"{policy}_median_server_cpu_s"] = round(statistics.median(r["server_cpu_s"] for r in sel), 3)
            summary[f"{policy}_bytes"] = sum(r["bytes"] for r in sel)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
