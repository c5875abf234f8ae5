"""How fast is the routed search at each effort, and what does it cost in bytes? ``fast``/``balanced`` vs ``max``.

    python benchmarks/routing_speed.py --shared ../shared/datasets [--policy auto] [--max-mp 0.4] [--jobs 2]

The mixed folder: photos (a few ``train`` images the search model was *not* fitted on, two Kodak photos — test
only — and scikit-image's coffee), every kind of ``ood/*`` (an aerial, two manga pages, a texture, synthetic
text; note: the search model was fitted on every ``ood`` image, downscaled), a scanned page (skimage ``page``)
and a medical image (pydicom's ``CT_small.dcm``, DICOM → diagnostic, lossless). Images larger than ``--max-mp``
are box-downscaled first (this ran on a shared, loaded machine).

Per effort, every asset goes through :func:`inverity.pipeline.compress_one` under the same policy (``effort``
set on it), and we report: encodes per asset (median, p95; from the decision record), wall time per megapixel,
the bytes ratio to ``max`` (regret; ``max`` is the pipeline's old exhaustive bisection, kept as the reference),
and floor violations: each written output is decoded again and verified here, independently of the pipeline,
against the floors of the candidate that wrote it (must be 0). Then ``balanced`` over the whole folder with
:func:`inverity.pipeline.compress` at ``--jobs 1`` and ``--jobs N``. Writes ``benchmarks/results/routing_speed.md``
and ``.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import imagecodecs
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def _downscale(px: np.ndarray, max_mp: float) -> np.ndarray:
    mp = px.shape[0] * px.shape[1] / 1e6
    if mp <= max_mp or px.dtype != np.uint8:
        return px
    from PIL import Image as PILImage

    f = math.sqrt(max_mp / mp)
    pil = PILImage.fromarray(px[:, :, 0] if px.shape[2] == 1 else px)
    small = np.asarray(pil.resize((int(px.shape[1] * f), int(px.shape[0] * f)), PILImage.Resampling.BOX))
    return small[:, :, None] if small.ndim == 2 else small


def build(folder: Path, shared: Path, max_mp: float, n_train: int) -> None:
    from pydicom.data import get_testdata_file
    from skimage import data

    from inverity.image import load

    folder.mkdir(parents=True, exist_ok=True)

    def put(name: str, px: np.ndarray) -> None:
        px = _downscale(px if px.ndim == 3 else px[:, :, None], max_mp)
        imagecodecs.imwrite(folder / name, px[:, :, 0] if px.shape[2] == 1 else px)

    picks: list[tuple[str, Path]] = []
    train = sorted((shared / "train").iterdir()) if (shared / "train").is_dir() else []
    # the fit drew its train images with numpy's default_rng(seed).choice; take others, spread over the set
    fitted: set[int] = set()
    try:
        from inverity.search import search_model_path

        prov = json.loads(search_model_path().read_text())["provenance"]
        rng = np.random.default_rng(int(prov["seed"]))
        fitted = set(int(i) for i in rng.choice(len(train), size=min(int(prov["train_images"]), len(train)),
                                                replace=False))
    except Exception:  # noqa: BLE001 - no model: any train image is unseen
        pass
    free = [i for i in range(len(train)) if i not in fitted]
    for i in free[:: max(1, len(free) // max(1, n_train))][:n_train]:
        picks.append((f"train_{train[i].stem}.png", train[i]))
    for p in sorted((shared / "kodak").glob("*.png"))[:2] if (shared / "kodak").is_dir() else []:
        picks.append((f"kodak_{p.name}", p))
    for sub, names in (("aerial", ("2.1.01.png",)), ("drawing", ("BEMADER_P.png", "OL_Lunch.png")),
                       ("texture", ("1.1.01.png",)), ("synthetic", ("text.png",))):
        for n in names:
            p = shared / "ood" / sub / n
            if p.exists():
                picks.append((f"{sub}_{n}", p))
    for name, p in picks:
        put(name, load(p.read_bytes(), name=str(p)).pixels)
    put("skimage_coffee.png", data.coffee())
    put("skimage_page.png", data.page())
    ct = get_testdata_file("CT_small.dcm", download=False)
    if ct:
        shutil.copy(ct, folder / "CT_small.dcm")


def _floors_of(tk: Any, image: Any, rec: dict[str, Any]) -> Any:
    """The floors of the candidate that wrote ``rec``'s output (re-planned from the same profile and policy)."""
    prof = tk.analyse(image)
    pol = tk.get_policy(rec["policy_resolved"])
    opts = {k: v for k, v in (rec.get("options") or {}).items() if k not in ("speed", "effort", "method")}
    for c in tk.plan(prof, pol, image):
        copts = {k: v for k, v in (c.options or {}).items() if k != "model"}
        if c.codec_id == rec["stage"] and all(opts.get(k) == v for k, v in copts.items()):
            return c.floors
    return pol.floors


def run_effort(folder: Path, policy: Any, effort: str, outdir: Path) -> list[dict[str, Any]]:
    from inverity.bench.routing import _reverify
    from inverity.pipeline import Toolkit, compress_one

    tk = Toolkit.default()
    pol = dataclasses.replace(tk.get_policy(policy), effort=effort)
    rows = []
    for f in sorted(folder.iterdir()):
        image = tk.load(f.read_bytes(), name=str(f))
        t0, c0 = time.perf_counter(), time.process_time()
        rec = compress_one(f, pol, outdir=outdir / effort).record
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        written = SimpleNamespace(output=rec["output"], stage=rec["stage"], quality=rec["quality"],
                                  options=rec.get("options"))   # what _reverify reads of a DecisionRecord
        ok, why = _reverify(tk, image, written, _floors_of(tk, image, rec))
        rows.append({"asset": f.name, "effort": effort, "policy": rec["policy_resolved"],
                     "kind": rec["profile"].get("kind"), "mp": image.width * image.height / 1e6,
                     "stage": rec["stage"], "quality": rec["quality"], "bytes": rec["bytes"],
                     "encodes": (rec.get("search") or {}).get("encodes"), "attempts": len(rec["attempts"]),
                     "seconds": wall, "cpu_seconds": cpu, "reverified": ok, "violation": ok is False, "why": "" if ok else why})
        print(f"{effort:8s} {f.name:34s} {rec['stage']:14s} q={rec['quality']} {rec['bytes']:>8} B "
              f"{rows[-1]['encodes']:>3} enc {wall:6.2f} s {'OK' if ok else 'VIOLATION ' + why}",
              file=sys.stderr, flush=True)
    return rows


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs, float), p)) if xs else float("nan")


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ref = {r["asset"]: r for r in rows if r["effort"] == "max"}
    out = []
    for effort in ("max", "balanced", "fast"):
        rs = [r for r in rows if r["effort"] == effort]
        if not rs:
            continue
        mp = sum(r["mp"] for r in rs)
        ratios = [r["bytes"] / ref[r["asset"]]["bytes"] for r in rs if r["asset"] in ref]
        out.append({"effort": effort, "assets": len(rs),
                    "encodes_median": statistics.median(r["encodes"] for r in rs),
                    "encodes_p95": _pct([r["encodes"] for r in rs], 95),
                    "s_per_mp": sum(r["seconds"] for r in rs) / mp,
                    "cpu_s_per_mp": sum(r["cpu_seconds"] for r in rs) / mp,
                    "bytes_total_ratio": sum(r["bytes"] for r in rs) / sum(ref[r["asset"]]["bytes"] for r in rs),
                    "regret_median": statistics.median(ratios), "regret_max": max(ratios),
                    "violations": sum(r["violation"] for r in rs)})
    base = next(s["s_per_mp"] for s in out if s["effort"] == "max")
    cbase = next(s["cpu_s_per_mp"] for s in out if s["effort"] == "max")
    for s in out:
        s["speedup_vs_max"] = base / s["s_per_mp"]
        s["cpu_speedup_vs_max"] = cbase / s["cpu_s_per_mp"]
    return out


def write(rows: list[dict[str, Any]], summary: list[dict[str, Any]], jobs: dict[str, float], args: Any) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "routing_speed.json").write_text(json.dumps({"summary": summary, "jobs": jobs, "rows": rows}, indent=1))
    L = ["# Routing speed: search effort vs the exhaustive reference (`max`)", "",
         f"`python benchmarks/routing_speed.py --policy {args.policy} --max-mp {args.max_mp} --jobs {args.jobs}` — "
         f"{len({r['asset'] for r in rows})} assets (photos, line art, aerial, texture, synthetic text, a scanned "
         f"page, a CT slice), each downscaled to ≤ {args.max_mp} MP. Run once, small, on a shared 2-core machine "
         "under load (another process training on one core): absolute times are noisy, ratios less so.", "",
         "Wall time suffers from the other processes on the machine; CPU time (this process, all its threads) "
         "measures the work.", "",
         "| effort | assets | encodes/asset median | p95 | wall s per MP | speed-up | CPU s per MP | speed-up "
         "| bytes vs max (total) | regret median / max | floor violations |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        L.append(f"| {s['effort']} | {s['assets']} | {s['encodes_median']:g} | {s['encodes_p95']:.1f} | "
                 f"{s['s_per_mp']:.2f} | {s['speedup_vs_max']:.2f}× | {s['cpu_s_per_mp']:.2f} | "
                 f"{s['cpu_speedup_vs_max']:.2f}× | {s['bytes_total_ratio']:.4f} | "
                 f"{s['regret_median']:.4f} / {s['regret_max']:.4f} | {s['violations']} |")
    if jobs:
        L += ["", f"`balanced` through `compress()` over the folder: --jobs 1 {jobs['jobs1']:.1f} s, --jobs "
                  f"{args.jobs} {jobs['jobsN']:.1f} s ({jobs['jobs1'] / jobs['jobsN']:.2f}× on a loaded 2-core "
                  "machine)."]
    L += ["", "## Per asset", "",
          "| asset | kind | policy | effort | stage q | bytes | encodes | wall s | CPU s | re-verified |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["asset"], r["effort"])):
        L.append(f"| {r['asset']} | {r['kind']} | {r['policy']} | {r['effort']} | {r['stage']} {r['quality']} | "
                 f"{r['bytes']} | {r['encodes']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                 f"{'ok' if r['reverified'] else 'FAIL'} |")
    (OUT / "routing_speed.md").write_text("\n".join(L) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--policy", default="auto")
    ap.add_argument("--max-mp", type=float, default=0.4)
    ap.add_argument("--train", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--efforts", default="max,balanced,fast")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inverity-speed-") as tmp:
        folder = Path(tmp) / "in"
        build(folder, args.shared, args.max_mp, args.train)
        rows: list[dict[str, Any]] = []
        for effort in args.efforts.split(","):
            rows += run_effort(folder, args.policy, effort, Path(tmp) / "out")
        jobs: dict[str, float] = {}
        if args.jobs > 1:
            from inverity.pipeline import compress

            for key, n in (("jobs1", 1), ("jobsN", args.jobs)):
                t0 = time.perf_counter()
                compress([folder], Path(tmp) / f"batch{n}", policy=args.policy, jobs=n)
                jobs[key] = time.perf_counter() - t0
        summary = summarise(rows)
        write(rows, summary, jobs, args)
        for s in summary:
            print(json.dumps(s), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
