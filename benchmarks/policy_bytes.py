"""Bytes of ``--policy auto`` versus "everything JPEG q85", on a mixed folder, at the same floors.

    python benchmarks/policy_bytes.py --shared ../shared/datasets [--kodak 6] [--jobs 1]

The mixed folder: the first ``--kodak`` Kodak photos, every image of ``ood/*`` (drawings, aerials, textures,
synthetic), and medical/scientific images that packages ship (pydicom's CT and MR slices as DICOM,
scikit-image's retina, microaneurysms and Shepp-Logan phantom). ``auto`` routes each asset (DICOM/16-bit/medical
-> diagnostic, line art -> lossless-or-near-lossless delivery, photos -> delivery with a per-image quality search).

The baseline encodes each image as JPEG q85 (libjpeg-turbo, 4:2:0; 16-bit and DICOM images are scaled to 8 bits
because JPEG cannot hold them) and verifies it against the floors that ``auto``'s plan holds a JPEG to for that
asset (the policy's floors, stricter for line art; bit-exact where the resolved policy is lossless). Reported:
total bytes of each, how many JPEG q85 files fail those floors (a smaller JPEG that fails its floor is not a
saving), per-kind totals, and verification time as a ratio to the chosen stage's encode time.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import imagecodecs
import numpy as np


def _build(folder: Path, shared: Path, kodak: int) -> None:
    from pydicom.data import get_testdata_file
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    if (shared / "kodak").is_dir():
        for p in sorted((shared / "kodak").glob("*.png"))[:kodak]:
            shutil.copy(p, folder / f"kodak_{p.name}")
    for sub in sorted((shared / "ood").glob("*")) if (shared / "ood").is_dir() else []:
        for p in sorted(sub.glob("*.png")):
            shutil.copy(p, folder / f"{sub.name}_{p.name}")
    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = get_testdata_file(name, download=False)
        if path:
            shutil.copy(path, folder / name)
    imagecodecs.imwrite(folder / "retina.png", data.retina())
    imagecodecs.imwrite(folder / "microaneurysms.png", data.microaneurysms())
    phantom = (data.shepp_logan_phantom() * 65535).astype(np.uint16)
    imagecodecs.imwrite(folder / "phantom16.png", phantom)


def _to8(image) -> np.ndarray:  # type: ignore[no-untyped-def]
    px = image.pixels
    if px.dtype == np.uint16:
        lo, hi = np.percentile(px, (0.1, 99.9))
        px = np.clip((px.astype(np.float64) - lo) / max(hi - lo, 1) * 255 + 0.5, 0, 255).astype(np.uint8)
    if px.shape[2] in (2, 4):
        px = px[:, :, :-1]
    return np.ascontiguousarray(px[:, :, 0] if px.shape[2] == 1 else px)


def main(argv: list[str] | None = None) -> int:
    from inverity.analyse import analyse
    from inverity.image import Image, load
    from inverity.route import plan
    from inverity.pipeline import compress
    from inverity.policy import get_policy
    from inverity.verify import verify

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--kodak", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="inverity-policy-bytes-"))
    try:
        src = work / "mixed"
        _build(src, a.shared, a.kodak)
        recs = compress([src], work / "out", policy="auto", jobs=a.jobs)
        rows = []
        ratios = []
        for r in recs:
            if r["status"] != "done":
                rows.append((r["input"], "?", "failed", 0, 0, False))
                continue
            original = load(src / r["input"])
            policy = get_policy(r["policy_resolved"])
            # the floors the router holds a JPEG to for this asset (stricter for line art), else the policy's
            jpeg_cand = next((c for c in plan(analyse(original), policy) if c.codec_id == "jpeg"), None)
            floors = jpeg_cand.floors if jpeg_cand is not None else policy.floors
            px8 = _to8(original)
            jpeg = imagecodecs.jpeg8_encode(px8, level=85)
            recon = Image(imagecodecs.jpeg8_decode(jpeg))
            ref = original if original.pixels.dtype == np.uint8 and original.channels in (1, 3) else Image(px8)
            ok = verify(ref, recon, floors).passed
            rows.append((r["input"], r["profile"].get("kind"), f'{r["policy_resolved"]}/{r["stage"]}',
                         r["bytes"], len(jpeg), ok))
            chosen = next((t for t in r["attempts"] if t.get("chosen")), r["attempts"][-1] if r["attempts"] else None)
            if chosen and chosen.get("encode_ms") and chosen.get("verify_ms"):
                ratios.append(chosen["verify_ms"] / chosen["encode_ms"])
        auto_total = sum(r[3] for r in rows)
        jpeg_total = sum(r[4] for r in rows)
        jpeg_pass_total = sum(r[4] for r in rows if r[5])
        fails = [r for r in rows if not r[5]]
        print(f"\nmixed folder: {len(rows)} assets ({a.kodak} Kodak, ood/*, DICOM CT+MR, retina, microaneurysms, "
              f"16-bit phantom)\n")
        print("| kind | assets | auto bytes | JPEG q85 bytes | JPEG q85 failing the floors |")
        print("|---|---:|---:|---:|---:|")
        by = defaultdict(list)
        for r in rows:
            by[r[1]].append(r)
        for k, rs in sorted(by.items()):
            print(f"| {k} | {len(rs)} | {sum(x[3] for x in rs):,} | {sum(x[4] for x in rs):,} | "
                  f"{sum(not x[5] for x in rs)} |")
        print(f"| **all** | {len(rows)} | **{auto_total:,}** | **{jpeg_total:,}** | **{len(fails)}** |")
        print(f"\nauto / JPEG q85 bytes: {auto_total / jpeg_total:.3f} "
              f"(JPEG q85 passes the same floors on only {len(rows) - len(fails)}/{len(rows)} assets; "
              f"on those, auto {sum(r[3] for r in rows if r[5]):,} vs JPEG {jpeg_pass_total:,} bytes)")
        if ratios:
            print(f"verification time / chosen stage's encode time: median {statistics.median(ratios):.2f}, "
                  f"max {max(ratios):.2f} ({len(ratios)} assets)")
        print("\nJPEG q85 failing the floors auto applied:", ", ".join(f"{r[0]} ({r[2]})" for r in fails) or "none")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
