"""Benchmark every classical stage on a folder of images: size, quality and speed, one Markdown table per stage.

Usage::

    python benchmarks/codecs.py --data DIR [--limit N] [--qualities 50,75,90] [--codecs jpeg,avif,...]

For each stage configuration it reports the median over the images of: compressed bytes, bits per pixel, PSNR
(dB, on the image's own bit depth; ``inf`` = bit-exact), encode and decode wall time (ms, one run each — the
machine may be shared, so treat times as indicative). Lossy stages are run at each ``--qualities`` value,
lossless ones once per option set (``jpegls`` also at ``near=2``, ``jpeg2000`` also with ``htj2k``).
Images a stage refuses (e.g. gray in WebP) are counted, not silently converted.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from inverity.errors import UnsupportedInputError
from inverity.image import Image, load
from inverity.stages.base import get_stage, list_stages

#: lossless stages: option sets to run (besides the defaults)
EXTRA_CONFIGS: dict[str, list[dict[str, Any]]] = {"jpegls": [{"near": 2}], "jpeg2000": [{"htj2k": True}]}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".pgm", ".ppm", ".dcm", ".jxl", ".avif"}


def psnr(a: Image, b: Image) -> float:
    mse = float(np.mean((a.pixels.astype(np.float64) - b.pixels.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(a.max_value**2 / mse)


def configs(codec_ids: list[str], qualities: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cid in codec_ids:
        cls = list_stages()[cid]
        if cls.capabilities.learned:
            continue
        if getattr(cls, "quality_range", None):
            out += [{"id": cid, "quality": q} for q in qualities]
        else:
            out += [{"id": cid}] + [{"id": cid, **extra} for extra in EXTRA_CONFIGS.get(cid, [])]
    return out


def run(images: list[Image], cfg: dict[str, Any]) -> dict[str, Any]:
    stage = get_stage(cfg)
    rows: list[tuple[int, float, float, float, float]] = []
    refused = 0
    for image in images:
        try:
            t0 = time.perf_counter()
            data = stage.encode(image)
            t1 = time.perf_counter()
            recon = stage.decode(data)
            t2 = time.perf_counter()
        except UnsupportedInputError:
            refused += 1
            continue
        rows.append((len(data), 8 * len(data) / (image.width * image.height), psnr(image, recon),
                     1000 * (t1 - t0), 1000 * (t2 - t1)))
    if not rows:
        return {"refused": refused}
    cols = list(zip(*rows))
    return {"bytes": statistics.median(cols[0]), "bpp": statistics.median(cols[1]),
            "psnr": statistics.median(cols[2]), "encode_ms": statistics.median(cols[3]),
            "decode_ms": statistics.median(cols[4]), "n": len(rows), "refused": refused}


def markdown(codec_id: str, results: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    cls = list_stages()[codec_id]
    lines = [f"### {codec_id} ({cls.library_version()})", "",
             "| setting | bytes | bpp | PSNR dB | encode ms | decode ms | n |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for cfg, r in results:
        setting = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "id") or "default"
        if "bytes" not in r:
            lines.append(f"| {setting} | refused all {r['refused']} images | | | | | 0 |")
            continue
        q = "inf" if r["psnr"] == float("inf") else f"{r['psnr']:.2f}"
        note = f" ({r['refused']} refused)" if r["refused"] else ""
        lines.append(f"| {setting} | {r['bytes']:.0f} | {r['bpp']:.3f} | {q} | {r['encode_ms']:.1f} | "
                     f"{r['decode_ms']:.1f} | {r['n']}{note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of images (searched recursively)")
    ap.add_argument("--limit", type=int, default=None, help="use at most N images (sorted by path)")
    ap.add_argument("--qualities", default="50,75,90", help="comma-separated qualities for lossy stages")
    ap.add_argument("--codecs", default=None, help="comma-separated codec ids (default: all classical)")
    args = ap.parse_args(argv)

    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
    if not paths:
        print(f"no images under {args.data}", file=sys.stderr)
        return 2
    images = [load(p) for p in paths]
    codec_ids = args.codecs.split(",") if args.codecs else list(list_stages())
    qualities = [int(q) for q in args.qualities.split(",")]
    mp = statistics.median(im.width * im.height for im in images) / 1e6
    print(f"## Codec benchmark: {len(images)} images from {args.data} (median {mp:.2f} MP)\n")
    by_codec: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for cfg in configs(codec_ids, qualities):
        by_codec.setdefault(cfg["id"], []).append((cfg, run(images, cfg)))
    for codec_id, results in by_codec.items():
        print(markdown(codec_id, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
