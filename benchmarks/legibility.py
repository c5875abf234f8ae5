"""Does the verifier catch plausible-but-wrong reconstructions, and leave good ones alone?

Usage::

    python benchmarks/legibility.py [--seeds 10] [--floors controlled] [--data DIR ...] [--max-side 384]
                                    [--csv out.csv] [--markdown out.md]

For every image of the built-in corpus (scikit-image photos, medical images incl. pydicom CT/MR, drawings incl.
synthesised line art / engineering drawings / UI screenshots / text; see :mod:`inverity.bench.planted`) and every
seed it plants each edit (lesion-like spot removed, line or text block shifted 1–3 px, text region blurred,
texture patch replaced — each keeping global PSNR ≥ 35 dB, then passed through a benign codec) and makes each
benign reconstruction (JPEG q90–98 4:4:4 / 4:2:0, JPEG XL d0.3–1.0, WebP q90–98). It prints the detection rate
per edit type and the false-alarm rate per benign codec, per content kind, and which check fired.

``--data DIR`` adds the images of a folder (``kind=photo`` unless the folder path names ``drawing``, ``medical``,
``aerial``, ``texture`` or ``synthetic``); e.g. ``--data ../shared/datasets/ood``. Thresholds were developed on
the built-in corpus and ../shared/datasets/train + ood, never on Kodak; Kodak may be added for reporting only.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from inverity.bench.planted import BENIGN, EDITS, Sample, builtin_corpus, make_case, _shrink
from inverity.verify import PRESETS, Floors, verify

_KIND_WORDS = ("drawing", "medical", "aerial", "texture", "synthetic", "photo")


def folder_samples(root: Path, max_side: int, limit: int | None) -> list[Sample]:
    from inverity.bench._data import list_images, read_pixels

    out = []
    for p in list_images(root, limit):
        rel = p.relative_to(root).as_posix()
        kind = next((w for w in _KIND_WORDS if w in (root / rel).as_posix().lower()), "photo")
        px = read_pixels(p)
        if px.dtype != np.uint8:
            px = (px.astype(np.float64) / px.max() * 255).round().astype(np.uint8)
        if px.shape[2] in (2, 4):
            px = px[:, :, :-1]
        out.append(Sample(f"{root.name}/{rel}", kind, np.ascontiguousarray(_shrink(px, max_side))))
    return out


def run(samples: list[Sample], seeds: list[int], floors: Floors, progress: bool = True) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    t_start = time.time()
    for i, s in enumerate(samples):
        for seed in seeds:
            for e in EDITS + BENIGN:
                try:
                    case = make_case(s.pixels, e, seed, kind=s.kind, name=s.name)
                except ValueError:
                    continue
                t0 = time.process_time()
                v = verify(case.original, case.candidate, floors)
                dt = (time.process_time() - t0) * 1000
                ck = v.checks
                rows.append({"name": s.name, "kind": s.kind, "seed": seed, "label": case.label, "edit": e,
                             "flagged": not v.passed, "failures": "+".join(v.failures), "ms": round(dt, 1),
                             "psnr_edit": round(case.psnr_edit, 2), "psnr": round(float(ck.get("psnr", np.inf)), 2),
                             "ssimulacra2": round(float(ck.get("ssimulacra2", np.nan)), 2),
                             "worst_tile_psnr": round(float(ck.get("worst_tile_psnr", np.inf)), 2),
                             "local_snr": round(float(ck.get("local_snr", np.inf)), 2),
                             "local_structure": round(float(ck.get("local_structure", np.inf)), 2),
                             "tile_band_kept": round(float(ck.get("tile_band_kept", np.nan)), 3),
                             "edge_missing": round(float(ck.get("edge_missing", np.nan)), 3),
                             "edge_invented": round(float(ck.get("edge_invented", np.nan)), 3),
                             "description": case.description,
                             "first_reason": v.reasons[0] if v.reasons else ""})
        if progress:
            print(f"  [{i + 1}/{len(samples)}] {s.name} ({time.time() - t_start:.0f} s)", file=sys.stderr)
    return rows


def moderate(samples: list[Sample], settings: list[str], floors: Floors) -> list[dict[str, Any]]:
    """Delivery-grade reconstructions (e.g. ``jpeg:75``, ``avif:60``): how often the floors pass them. Not part
    of the benign set — they show what the floors demand of a codec at ordinary web quality."""
    import imagecodecs

    rows = []
    for s in samples:
        rgb = np.repeat(s.pixels, 3, axis=2) if s.pixels.shape[2] == 1 else s.pixels
        for st in settings:
            codec, q = st.split(":")
            enc = (imagecodecs.jpeg8_encode(rgb, level=int(q)) if codec == "jpeg"
                   else imagecodecs.avif_encode(rgb, level=int(q)))
            out = np.asarray(imagecodecs.imread(enc))[:, :, :3]
            v = verify(rgb, out, floors)
            rows.append({"name": s.name, "kind": s.kind, "setting": st, "passed": v.passed,
                         "ssimulacra2": v.checks.get("ssimulacra2"), "failures": "+".join(v.failures)})
    return rows


def moderate_table(rows: list[dict[str, Any]]) -> str:
    kinds = sorted({r["kind"] for r in rows})
    lines = ["| setting | " + " | ".join(kinds) + " | median SSIMULACRA 2 | most common failure |",
             "|---|" + "---|" * (len(kinds) + 2)]
    for st in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == st]
        cells = []
        for k in kinds:
            ks = [r for r in sel if r["kind"] == k]
            cells.append(f"{100 * sum(r['passed'] for r in ks) / max(1, len(ks)):.0f}% pass" if ks else "–")
        fails: dict[str, int] = defaultdict(int)
        for r in sel:
            for f in filter(None, r["failures"].split("+")):
                fails[f] += 1
        common = max(fails, key=fails.get) if fails else "–"
        med = float(np.median([r["ssimulacra2"] for r in sel if r["ssimulacra2"] is not None]))
        lines.append(f"| {st} | " + " | ".join(cells) + f" | {med:.1f} | {common} |")
    return "\n".join(lines)


def _rate(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "–"
    k = sum(r["flagged"] for r in rows)
    return f"{100 * k / len(rows):.1f}% ({k}/{len(rows)})"


def table(rows: list[dict[str, Any]]) -> str:
    kinds = sorted({r["kind"] for r in rows})
    lines = ["| case | " + " | ".join(kinds) + " | all |", "|---|" + "---|" * (len(kinds) + 1)]
    for label, names, what in (("planted", EDITS, "detected"), ("benign", BENIGN, "flagged")):
        for e in names:
            sel = [r for r in rows if r["edit"] == e]
            lines.append(f"| {e} ({what}) | " + " | ".join(_rate([r for r in sel if r["kind"] == k]) for k in kinds)
                         + f" | {_rate(sel)} |")
        sel = [r for r in rows if r["label"] == label]
        lines.append(f"| **all {label} ({what})** | " + " | ".join(_rate([r for r in sel if r["kind"] == k])
                                                                  for k in kinds) + f" | **{_rate(sel)}** |")
    return "\n".join(lines)


def fired(rows: list[dict[str, Any]]) -> str:
    """Which checks fire, per case type (a case can trip several)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for f in filter(None, r["failures"].split("+")):
            counts[r["edit"]][f] += 1
    names = sorted({f for c in counts.values() for f in c})
    lines = ["| case | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for e in EDITS + BENIGN:
        n = sum(1 for r in rows if r["edit"] == e)
        lines.append(f"| {e} | {n} | " + " | ".join(str(counts[e].get(f, 0)) for f in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds per image (default 10)")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--floors", default="controlled", help=f"preset: {', '.join(PRESETS)} (default controlled)")
    ap.add_argument("--data", action="append", default=[], help="extra image folder(s)")
    ap.add_argument("--limit", type=int, default=None, help="images per --data folder")
    ap.add_argument("--no-builtin", action="store_true", help="only the --data images")
    ap.add_argument("--max-side", type=int, default=384)
    ap.add_argument("--moderate", default="",
                    help="also report pass rates of delivery-grade codecs, e.g. 'jpeg:75,avif:60' (informative)")
    ap.add_argument("--csv", help="write every case as a CSV row")
    ap.add_argument("--markdown", help="write the tables as Markdown")
    args = ap.parse_args(argv)
    floors = PRESETS[args.floors]
    samples = [] if args.no_builtin else builtin_corpus(max_side=args.max_side)
    for d in args.data:
        samples += folder_samples(Path(d), args.max_side, args.limit)
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    t0 = time.time()
    rows = run(samples, seeds, floors)
    wall = time.time() - t0
    ms = sorted(r["ms"] for r in rows)
    head = (f"{len(samples)} images × {len(seeds)} seeds: {sum(r['label'] == 'planted' for r in rows)} planted, "
            f"{sum(r['label'] == 'benign' for r in rows)} benign cases; floors `{args.floors}` "
            f"({', '.join(floors.checked())}); verify median {ms[len(ms) // 2]:.0f} ms CPU per case "
            f"(images ≤ {args.max_side} px); {wall:.0f} s total.")
    out = "\n\n".join([head, "Detection (planted) and false-alarm (benign) rate per content kind:", table(rows),
                       "Checks that fired:", fired(rows)])
    print(out)
    if args.moderate:
        mod = moderate_table(moderate(samples, [x for x in args.moderate.split(",") if x], floors))
        out += "\n\nDelivery-grade reconstructions (not benign-by-construction; informative):\n\n" + mod
        print("\nDelivery-grade reconstructions (not benign-by-construction; informative):\n\n" + mod)
    missed = [r for r in rows if r["label"] == "planted" and not r["flagged"]]
    false = [r for r in rows if r["label"] == "benign" and r["flagged"]]
    if missed:
        print("\nmissed planted edits (first 15):")
        for r in missed[:15]:
            print(f"  {r['name']} seed {r['seed']}: {r['description']} (local_snr {r['local_snr']}, "
                  f"worst tile {r['worst_tile_psnr']} dB)")
    if false:
        print("\nfalse alarms (first 15):")
        for r in false[:15]:
            print(f"  {r['name']} seed {r['seed']} {r['edit']}: {r['first_reason']}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.markdown:
        Path(args.markdown).write_text("# Verifier legibility\n\n" + out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
