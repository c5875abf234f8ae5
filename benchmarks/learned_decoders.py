"""Decoder fine-tunes (``train_dec`` checkpoints) against their base model, before any export: same bitstream,
other synthesis, so only quality moves.

Usage::

    python benchmarks/learned_decoders.py CKPT[,CKPT...] --data ../shared/datasets/validation [--limit 8]
        [--qualities 1,4,7] [--json OUT.json]

Each image (every ``len/limit``-th of the folder, whole images, 8-bit RGB through ``inverity.image.load``) is
encoded once per quality by the base model (the checkpoint's ``config.base``, which must be the installed
weights); the payload is decoded by the base and by each checkpoint's decoder exactly as the stage decodes
(float64 g_s, the codec's own latents). Reported per quality: mean PSNR (dB, RGB) and mean SSIMULACRA 2
(``inverity.metrics``), and each checkpoint's difference to the base. Rates are identical by construction.
Never run it on Kodak to choose a checkpoint (Kodak is the final test set).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inverity.formats import walked_extensions
from inverity.image import load
from inverity.metrics import ssimulacra2
from inverity.stages.learned import zoo
from inverity.stages.learned.entropy import LatentCodec


def _codec(base: LatentCodec, ckpt: Path) -> LatentCodec:
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    info = zoo.model_info(ck["config"]["base"])
    if info.sha256 != ck["config"]["base_sha256"]:
        raise SystemExit(f"{ckpt}: trained on other {info.name} weights than the installed ones")
    return zoo.with_decoder(base, ck["decoder"], ck["config"].get("Ns"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def run(ckpts: list[Path], data: Path, limit: int, qualities: list[int]) -> dict[str, Any]:
    first = torch.load(ckpts[0], map_location="cpu", weights_only=False)["config"]["base"]
    base, info = zoo.load_codec(first)
    codecs = {"base": base, **{c.stem: _codec(base, c) for c in ckpts}}
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in walked_extensions())
    files = files[:: max(1, len(files) // limit)][:limit]
    rows: dict[str, dict[int, list[tuple[float, float]]]] = {k: {q: [] for q in qualities} for k in codecs}
    for f in files:
        px = np.ascontiguousarray(load(f).pixels[..., :3])
        if px.dtype != np.uint8 or px.ndim != 3:
            continue
        h, w = px.shape[:2]
        for q in qualities:
            payload = base.encode(px, q - 1)
            for name, c in codecs.items():
                rec = c.decode(payload, q - 1, h, w)
                rows[name][q].append((_psnr(px, rec), float(ssimulacra2(px, rec))))
    means = {k: {q: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for q, v in d.items()}
             for k, d in rows.items()}
    return {"base": info.name, "data": str(data), "images": [f.name for f in files], "means": means}


def render(res: dict[str, Any]) -> str:
    lines = [f"# Decoder fine-tunes of `{res['base']}` — {len(res['images'])} images from {res['data']}", "",
             "| decoder | q | PSNR dB | Δ vs base | SSIMULACRA2 | Δ vs base |", "|---|---|---|---|---|---|"]
    base = res["means"]["base"]
    for name, per in res["means"].items():
        for q, (p, s) in per.items():
            lines.append(f"| {name} | {q} | {p:.3f} | {p - base[q][0]:+.3f} | {s:.2f} | {s - base[q][1]:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpts")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--qualities", default="1,4,7")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = run([Path(c) for c in a.ckpts.split(",") if c], a.data, a.limit, [int(q) for q in a.qualities.split(",")])
    print(render(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
