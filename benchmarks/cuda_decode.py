"""Cross-device decode check of the learned stage: does CUDA reproduce the CPU reference decode bit for bit?

Usage (on a GPU machine; ``scripts/gpu/device_run.sh`` runs it after training)::

    python benchmarks/cuda_decode.py [--device cuda] [--model hp-ctx|hp-gain] [--data FOLDER] [--limit 4]
                                     [--crop 256] [--json OUT.json]

``--model`` defaults to the zoo's default model (``hp-ctx``, with the checkerboard context). Each image is
encoded on the CPU at every quality, then decoded with the model's decoder networks — h_s, the context net's
second pass for a checkerboard model, g_s — on ``--device`` in float64 (what the CPU decoder uses) and
float32, twice each; ``inverity.stages.learned.crossdevice`` says what is counted. The σ-index column
counts both passes; "ctx pass" is the non-anchors' share (``-`` for a model without context). Without
``--data`` the images are scikit-image's bundled photos (present on the GPU image and here); ``--crop``
keeps a centred square of each, for a quick run. On a machine without CUDA, ``--device cpu`` checks the CPU
against itself (all zeros expected in float64), e.g. ``--device cpu --limit 1 --crop 64``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; before CUDA starts

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inverity.stages.learned import zoo  # noqa: E402
from inverity.stages.learned.crossdevice import compare_decode  # noqa: E402

SUFFIXES = {".png", ".ppm", ".tif", ".tiff", ".bmp", ".webp"}


def images(data: str | None, limit: int) -> list[tuple[str, np.ndarray]]:
    if data is None:
        from skimage import data as skdata

        names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry"]
        return [(n, np.ascontiguousarray(getattr(skdata, n)()[:, :, :3])) for n in names[:limit]]
    from inverity.stages.learned.train import load_folder

    arrays, names = load_folder(data)
    return list(zip(names, arrays))[:limit]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--crop", type=int, help="keep a centred square of this side (a quick run)")
    ap.add_argument("--model")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("cuda_decode: no CUDA device here (use --device cpu for the CPU self-check)", file=sys.stderr)
        return 2
    codec, info = zoo.load_codec(a.model)
    dev_name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# learned decode on {a.device} ({dev_name}, torch {torch.__version__}) vs the CPU float64 reference; "
          f"model {info.name} v{info.version}")
    print("| image | q | dtype | σ-index mismatches | ctx pass | desynced | px differ (g_s only) | px differ (full) "
          "| max |Δ| | identical | run-to-run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, px in images(a.data, a.limit):
        if a.crop:
            y0, x0 = max(0, (px.shape[0] - a.crop) // 2), max(0, (px.shape[1] - a.crop) // 2)
            px = np.ascontiguousarray(px[y0 : y0 + a.crop, x0 : x0 + a.crop])
        h, w = px.shape[:2]
        for q in range(codec.num_qualities):
            payload = codec.encode(px, q)
            for dtype in (torch.float64, torch.float32):
                r = compare_decode(codec, payload, q, h, w, a.device, dtype)
                r["image"] = name
                rows.append(r)
                ctx = (f"{r['context_index_mismatches']}/{r['context_latents']}" if r["context_latents"] else "-")
                print(f"| {name} | {q + 1} | {r['dtype']} | {r['scale_index_mismatches']}/{r['latents']} | {ctx} | "
                      f"{'yes' if r['desynced'] else 'no'} | {r['pixels_differ_synthesis']}/{r['pixels']} | "
                      f"{r['pixels_differ_full']} | {r['max_abs_diff_full']} | {'yes' if r['identical'] else 'NO'} | "
                      f"{'yes' if r['run_to_run_identical'] else 'NO'} |", flush=True)
    for dt in ("float64", "float32"):
        sel = [r for r in rows if r["dtype"] == dt]
        print(f"\n{dt}: {sum(r['identical'] for r in sel)}/{len(sel)} decodes identical to the CPU; "
              f"{sum(r['scale_index_mismatches'] > 0 for r in sel)} with σ-index mismatches "
              f"({sum(r['context_index_mismatches'] > 0 for r in sel)} in the context pass); "
              f"{sum(r['run_to_run_identical'] for r in sel)}/{len(sel)} identical run to run")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": a.device, "device_name": dev_name,
                                            "torch": torch.__version__, "model": info.name,
                                            "model_version": info.version, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
