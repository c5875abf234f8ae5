"""How ``inverity compress`` scales with ``--jobs`` on this machine (run it on an idle machine for the target).

Usage::

    python benchmarks/jobs_scaling.py [--jobs 1 2] [--images 12] [--data DIR] [--policy auto] [--repeat 1]
                                      [--json OUT.json]

Each run is a fresh ``inverity compress INPUTS -o OUT --jobs N --policy P`` in its own process (so every run
pays its own imports, pool start-up and worker warm-up, as a user's would) over the same inputs into a new
output directory. Inputs: ``--images`` mixed images — photos, a drawing, a screenshot-like page, texture, noise
— from scikit-image samples and the package's synthesised ones, each ≤ 0.4 MP; or the first ``--images`` files
of ``--data`` (e.g. Kodak; for measurement only). Runs alternate between the ``--jobs`` values ``--repeat``
times; the table keeps each value's fastest run.

Columns: ``wall s`` (the command's wall time), ``speedup`` (wall of the first ``--jobs`` value ÷ this one's),
``CPU s`` (user + system time of the command and all its workers), ``cores busy`` (CPU s ÷ wall s) and ``load``
(the 1-minute load average before the run: other processes competing for the cores). On a loaded machine the wall
speedup understates what the pool does; ``CPU s`` shows what parallelism costs in extra work (worker start-up
and warm-up), which an idle machine does not hide.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_CLI = "import sys; from inverity.cli import main; sys.exit(main(sys.argv[1:]))"
_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "coins", "camera", "brick",
           "grass", "gravel", "moon", "page", "text", "retina", "hubble_deep_field"]


def _shrink(px: Any, max_pixels: int = 400_000) -> Any:
    import numpy as np
    from skimage.transform import rescale

    h, w = px.shape[:2]
    if h * w <= max_pixels:
        return px
    s = (max_pixels / (h * w)) ** 0.5
    out = rescale(px, s, anti_aliasing=True, preserve_range=True, channel_axis=2 if px.ndim == 3 else None)
    return np.clip(out.round(), 0, 255).astype(px.dtype)


def make_inputs(folder: Path, n: int, data: Path | None) -> list[Path]:
    """``n`` input files in ``folder`` (PNG; or copies of ``data``'s first ``n`` files)."""
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        files = sorted(p for p in data.iterdir() if p.is_file())[:n]
        out = []
        for p in files:
            q = folder / p.name
            q.write_bytes(p.read_bytes())
            out.append(q)
        return out
    import imagecodecs
    import numpy as np
    from skimage import data as sk

    from inverity.samples import engineering_drawing

    imgs: list[tuple[str, Any]] = [("drawing", engineering_drawing())]
    rng = np.random.default_rng(0)
    imgs.append(("noise", rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)))
    for name in _PHOTOS:
        if len(imgs) >= n:
            break
        try:
            imgs.append((name, getattr(sk, name)()))
        except Exception:  # noqa: BLE001 - a sample this scikit-image version lacks
            continue
    out = []
    for name, px in imgs[:n]:
        px = np.ascontiguousarray(_shrink(np.asarray(px)))
        if px.ndim == 3 and px.shape[2] == 4:
            px = np.ascontiguousarray(px[..., :3])
        p = folder / f"{name}.png"
        p.write_bytes(imagecodecs.png_encode(px))
        out.append(p)
    return out


def one_run(inputs: list[Path], jobs: int, policy: str, out: Path) -> dict[str, Any]:
    """Run the CLI once; wall time, CPU time of it and its workers, the load average before it."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CLI, "compress", *map(str, inputs), "-o", str(out),
                        "--jobs", str(jobs), "--policy", policy], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"compress --jobs {jobs} failed ({r.returncode}): {r.stderr[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"jobs": jobs, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load": round(load, 2)}


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["wall_s"]
    lines = ["| jobs | wall s | speedup | CPU s | cores busy | load before |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['jobs']} | {r['wall_s']:.2f} | {base / r['wall_s']:.2f}× | {r['cpu_s']:.2f} | "
                     f"{r['cpu_s'] / r['wall_s']:.2f} | {r['load']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--data", type=Path, default=None, help="take the inputs from this folder instead")
    ap.add_argument("--policy", default="auto")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "in", args.images, args.data)
        runs: list[dict[str, Any]] = []
        for rep in range(args.repeat):
            for j in args.jobs:
                runs.append(one_run(inputs, j, args.policy, Path(tmp) / f"out-{j}-{rep}"))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    best = [min((r for r in runs if r["jobs"] == j), key=lambda r: r["wall_s"]) for j in args.jobs]
    print(f"{len(inputs)} inputs, policy {args.policy}, {os.cpu_count()} CPUs; fastest of {args.repeat} run(s) each")
    print(table(best))
    if args.json:
        args.json.write_text(json.dumps({"inputs": [p.name for p in inputs], "runs": runs, "best": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
