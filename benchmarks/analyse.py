"""Benchmark ``inverity.analyse``: cost vs a JPEG encode, kind accuracy, and the OOD gate per folder.

Usage::

    python benchmarks/analyse.py [--shared ../shared/datasets] [--repeats 5] [--out benchmarks/results/analyse.md]
                                 [--limit N]

Reports

* **cost**: analysis time per image (best of ``--repeats`` — the machine may be shared, so the best run is the
  closest to the uncontended cost — and the median) next to a JPEG q85 encode of the same image through the
  ``jpeg`` stage, and the ratio, on one thread (numpy here is single-threaded);
* **kind accuracy** per labelled folder. Kodak and validation were never used to fit the classifier; the
  ``ood/*`` folders were (as random crops), so their numbers are *training* accuracy — the held-out,
  split-by-source cross-validation of the shipped model is quoted from its provenance;
* **OOD gate**: the fraction of each folder judged in distribution (photos: should be high) or out of
  distribution (ood/*: should be high) by the default learned model's statistics.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from inverity.analyse import analyse, kind_model_path, ood_stats_file  # noqa: E402
from inverity.image import Image, load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

#: folder -> (expected kinds, expected gate verdict: True = in distribution)
FOLDERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "kodak": (("photo",), True),
    "validation": (("photo",), True),
    "train": (("photo",), True),
    "ood/aerial": (("aerial",), False),
    "ood/texture": (("texture",), False),
    "ood/drawing": (("drawing",), False),
    "ood/synthetic": (("synthetic",), False),
}


def package_images() -> list[tuple[str, Image, tuple[str, ...]]]:
    import pydicom.data
    from skimage import data

    out = [(f"skimage/{n}", Image(getattr(data, n)()), ("photo",)) for n in ("astronaut", "camera", "coffee",
                                                                                 "chelsea", "rocket")]
    out += [(f"skimage/{n}", Image(getattr(data, n)()), ("screen", "drawing")) for n in ("page", "text")]
    out += [(f"skimage/{n}", Image(getattr(data, n)()), ("medical",)) for n in ("retina", "cell", "moon")]
    d = Path(pydicom.data.__file__).parent / "test_files"
    out += [(f"pydicom/{n}", load(d / n), ("medical",)) for n in ("CT_small.dcm", "MR_small.dcm")]
    return out


def time_it(fn, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return min(ts), statistics.median(ts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="images per folder (default all; train: every 8th)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown report (also writes .json beside it)")
    a = ap.parse_args(argv)

    from inverity.stages.base import get_stage

    jpeg = get_stage("jpeg", quality=85)
    lines: list[str] = ["# inverity analyse benchmark", ""]
    result: dict = {"kind_model": str(kind_model_path()), "ood_stats": str(ood_stats_file())}

    # -- cost on Kodak (768×512) -------------------------------------------------------------------------
    kodak = sorted((a.shared / "kodak").glob("*.png")) if (a.shared / "kodak").is_dir() else []
    cost_rows = []
    for p in kodak[: a.limit or len(kodak)]:
        img = load(p)
        analyse(img)                                          # warm caches (model JSON, FFT plans)
        an_best, an_med = time_it(lambda: analyse(img), a.repeats)
        jp_best, jp_med = time_it(lambda: jpeg.encode(img), a.repeats)
        cost_rows.append((p.name, an_best, an_med, jp_best, jp_med))
    if cost_rows:
        arr = np.array([r[1:] for r in cost_rows])
        med = np.median(arr, axis=0)
        result["cost_ms"] = {"analyse_best": med[0], "analyse_median": med[1], "jpeg_q85_best": med[2],
                             "jpeg_q85_median": med[3], "ratio_best": med[0] / med[2], "images": len(cost_rows),
                             "image_size": "768x512"}
        lines += ["## Cost (Kodak 768×512, median over images)", "",
                  "| | best of runs (ms) | median of runs (ms) |", "|---|---:|---:|",
                  f"| analyse | {med[0]:.1f} | {med[1]:.1f} |", f"| JPEG q85 encode | {med[2]:.1f} | {med[3]:.1f} |",
                  f"| ratio analyse / JPEG | {med[0] / med[2]:.2f} | {med[1] / med[3]:.2f} |", ""]

    # -- kinds and the gate per folder ------------------------------------------------------------------
    rows = []
    for folder, (kinds, want_in) in FOLDERS.items():
        d = a.shared / folder
        if not d.is_dir():
            continue
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".webp"))
        if folder == "train":
            files = files[::8]
        files = files[: a.limit or len(files)]
        profs = [analyse(load(p)) for p in files]
        acc = float(np.mean([p.kind in kinds for p in profs]))
        gate = [p.in_distribution for p in profs]
        frac_in = float(np.mean([g is True for g in gate]))
        counts: dict[str, int] = {}
        for p in profs:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        rows.append((folder, len(files), acc, frac_in, want_in, counts))
    pkg = package_images()
    pprofs = [(n, analyse(im), k) for n, im, k in pkg]
    result["folders"] = [{"folder": f, "images": n, "kind_accuracy": acc, "fraction_in_distribution": fi,
                          "expected": "in" if w else "out", "kinds": c} for f, n, acc, fi, w, c in rows]
    result["package_images"] = [{"image": n, "kind": p.kind, "p": round(p.kind_confidence, 3), "expected": k,
                                 "in_distribution": p.in_distribution,
                                 "ood_score": None if p.ood_score is None else round(p.ood_score, 2)}
                                for n, p, k in pprofs]
    lines += ["## Kind and OOD gate per folder", "",
              "| folder | images | kind accuracy | judged in distribution | judged out | wanted | kinds found |",
              "|---|---:|---:|---:|---:|---|---|"]
    for f, n, acc, fi, w, c in rows:
        note = " (fitted on crops)" if f.startswith("ood/") or f == "train" else ""
        kinds_txt = ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {f} | {n} | {acc:.2f}{note} | {fi:.2f} | {1 - fi:.2f} | {'in' if w else 'out'} | "
                     f"{kinds_txt} |")
    lines += ["", "## Package images (not used for fitting except where noted in the model provenance)", "",
              "| image | kind (p) | expected | in distribution | ood score |", "|---|---|---|---|---:|"]
    for n, p, k in pprofs:
        s = "-" if p.ood_score is None else f"{p.ood_score:.1f}"
        lines.append(f"| {n} | {p.kind} ({p.kind_confidence:.2f}) | {'/'.join(k)} | {p.in_distribution} | {s} |")
    try:
        prov = json.loads(kind_model_path().read_text())["provenance"]
        cv = prov["cv"]
        result["kind_cv"] = cv
        lines += ["", f"Kind classifier, held-out by source image ({cv['folds']}-fold grouped CV): accuracy "
                      f"{cv['accuracy']:.3f}, balanced {cv['balanced_accuracy']:.3f} "
                      f"({sum(prov['examples_per_kind'].values())} examples)."]
    except (OSError, KeyError, ValueError):
        pass
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        from inverity._atomic import atomic_write_text

        atomic_write_text(a.out, text)
        atomic_write_text(a.out.with_suffix(".json"), json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
