"""SSIMULACRA 2: agreement with and speed against the reference Python package, and the verifier's cost.

Usage::

    pip install ssimulacra2==0.3.0        # the reference, for this benchmark only (never a runtime dependency)
    python benchmarks/ssimulacra2_check.py --data ../shared/datasets/kodak [--limit 6] [--markdown out.md]

For each image × codec × quality (JPEG q30/50/70/90, AVIF q40/60/80) it prints the package's score, ours
(fast default and ``exact=True``), the deviation and the CPU time of each (``time.process_time``, best of
``--repeat`` runs for ours; the machine may be shared, so CPU time is the fairer comparison). It then times
:func:`inverity.verify.verify` with ``Floors.controlled()`` on each image (a JPEG q90 reconstruction) against a
JPEG q85 encode of the same image (imagecodecs), which is the yardstick the verifier's cost is quoted in.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import imagecodecs
import numpy as np

from inverity.metrics import ssimulacra2
from inverity.verify import Floors, verify

CODECS: list[tuple[str, int]] = [("jpeg", 30), ("jpeg", 50), ("jpeg", 70), ("jpeg", 90),
                                 ("avif", 40), ("avif", 60), ("avif", 80)]


def cpu(f: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """(result, best CPU ms over ``repeat`` runs)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.process_time()
        out = f()
        best = min(best, time.process_time() - t0)
    return out, best * 1000


def encode(a: np.ndarray, codec: str, q: int) -> np.ndarray:
    data = imagecodecs.jpeg8_encode(a, level=q) if codec == "jpeg" else imagecodecs.avif_encode(a, level=q)
    return np.asarray(imagecodecs.imread(data))[:, :, :3]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder of PNG images (e.g. ../shared/datasets/kodak)")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    try:
        from ssimulacra2 import compute_ssimulacra2
    except ImportError:
        print("the reference package is missing: pip install ssimulacra2==0.3.0", file=sys.stderr)
        return 2
    files = sorted(Path(args.data).glob("*.png"))[:args.limit]
    if not files:
        print(f"no PNG images in {args.data}", file=sys.stderr)
        return 2
    lines = ["| image | codec | q | package | ours (fast) | Δ | ours (exact) | Δ | package ms | ours ms | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    devs, devs_exact, speedups, ref_ms, our_ms = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = Path(tmp) / "a.png", Path(tmp) / "b.png"
        for f in files:
            a = np.asarray(imagecodecs.imread(f))[:, :, :3]
            imagecodecs.imwrite(pa, a)
            for codec, q in CODECS:
                b = encode(a, codec, q)
                imagecodecs.imwrite(pb, b)
                ref, t_ref = cpu(lambda: compute_ssimulacra2(str(pa), str(pb)), 1)
                ours, t_ours = cpu(lambda: ssimulacra2(a, b), args.repeat)
                exact = ssimulacra2(a, b, exact=True)
                devs.append(ours - ref)
                devs_exact.append(exact - ref)
                speedups.append(t_ref / t_ours)
                ref_ms.append(t_ref)
                our_ms.append(t_ours)
                lines.append(f"| {f.name} | {codec} | {q} | {ref:.3f} | {ours:.3f} | {ours - ref:+.4f} | {exact:.3f} | "
                             f"{exact - ref:+.4f} | {t_ref:.0f} | {t_ours:.1f} | {t_ref / t_ours:.1f}× |")
                print(lines[-1], flush=True)
    summary = (f"\n{len(devs)} pairs ({len(files)} images × {len(CODECS)} codec settings): max |Δ| fast "
               f"{max(map(abs, devs)):.4f}, exact {max(map(abs, devs_exact)):.4f}; CPU ms median package "
               f"{statistics.median(ref_ms):.0f}, ours {statistics.median(our_ms):.1f}; speed-up median "
               f"{statistics.median(speedups):.1f}× (min {min(speedups):.1f}×)")
    print(summary)

    vlines = ["", "| image | verify (controlled) ms | ssimulacra2 ms | JPEG q85 encode ms | verify / encode |",
              "|---|---|---|---|---|"]
    ratios, vms = [], []
    for f in files:
        a = np.asarray(imagecodecs.imread(f))[:, :, :3]
        b = encode(a, "jpeg", 90)
        v, t_v = cpu(lambda: verify(a, b, Floors.controlled()), args.repeat)
        _, t_s = cpu(lambda: ssimulacra2(a, b), args.repeat)
        _, t_e = cpu(lambda: imagecodecs.jpeg8_encode(a, level=85), args.repeat)
        ratios.append(t_v / t_e)
        vms.append(t_v)
        vlines.append(f"| {f.name} {a.shape[1]}×{a.shape[0]} | {t_v:.0f} | {t_s:.0f} | {t_e:.1f} | {t_v / t_e:.1f}× |")
        print(vlines[-1], flush=True)
    vsum = (f"verify (all controlled checks) median {statistics.median(vms):.0f} ms CPU per image, "
            f"{statistics.median(ratios):.1f}× a JPEG q85 encode")
    print(vsum)
    if args.markdown:
        Path(args.markdown).write_text("# SSIMULACRA 2 check\n\n" + "\n".join(lines) + "\n" + summary + "\n"
                                       + "\n".join(vlines) + "\n\n" + vsum + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
