"""Evaluate the OOD gate (v2: spectral + the learned model's own evidence) on content it was never fitted on.

Usage::

    python benchmarks/ood_gate.py [--shared ../shared/datasets] [--out benchmarks/results/ood_gate.md]
                                  [--crops 3] [--synth 24]

The gate's statistics (``scripts/fit_ood.py``) are fitted on the learned model's training photos only, so every
non-photo kind below is held out of the gate *entirely* (leave-one-kind-out holds trivially: no kind is ever
used for fitting, not even the others). Sets:

* **unseen photos** — ``datasets/validation`` (CBSD68; evaluation only, never read by the fit), and
  scikit-image's astronaut, camera (gray), coffee, chelsea; the training set *split by source*
  (leave-one-source-out distances from the fit, recorded in the statistics file);
* **non-photo content** — ``datasets/ood/{drawing,texture,synthetic}`` and aerials (whole images plus
  ``--crops`` random crops each); synthesised line art, charts, screenshots, scanned/photographed text and
  test patterns from ``scripts/fit_kind.py``'s generators with seeds (9000+) the kind classifier never saw;
  skimage ``page`` and ``text``.

Columns: the share judged *in* (photos) or *out* (the rest) by the spectral part alone, by the full gate
(spectral + model), and by the router's whole condition for the learned stage (kind = photo **and** gate in;
the kind classifier was fitted on other samples of these kinds, so that column is not leave-one-kind-out).
Costs: ``analyse`` wall time, and the model part's CPU time (one torch thread), per image.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from inverity.analyse import analyse, ood_stats_file  # noqa: E402
from inverity.image import Image  # noqa: E402

PHOTO_SETS = ("validation", "skimage photos")


def _sets(shared: Path, crops: int, synth: int) -> dict[str, list[tuple[str, Callable[[], np.ndarray]]]]:
    import fit_kind as fk
    import skimage.data as sd

    rng = np.random.default_rng(0)

    def read(p: Path) -> np.ndarray:
        return fk._imread(p)

    def with_crops(paths: list[Path]) -> list[tuple[str, Callable[[], np.ndarray]]]:
        out: list[tuple[str, Callable[[], np.ndarray]]] = []
        for p in paths:
            out.append((p.name, lambda p=p: read(p)))
            for i in range(crops):
                f, g = rng.uniform(0.3, 0.7, 2), rng.uniform(0, 1, 2)
                out.append((f"{p.name}#{i}", lambda p=p, f=f, g=g: _crop(read(p), f, g)))
        return out

    sets: dict[str, list[tuple[str, Callable[[], np.ndarray]]]] = {}
    val = shared / "validation"
    if val.is_dir():
        sets["validation"] = [(p.name, lambda p=p: read(p)) for p in sorted(val.iterdir())]
    sets["skimage photos"] = [(n, lambda n=n: fk._sk(n)()) for n in ("astronaut", "camera", "coffee", "chelsea")]
    for kind in ("drawing", "texture", "synthetic", "aerial"):
        folder = shared / "ood" / kind
        if folder.is_dir():
            sets[f"ood/{kind}"] = with_crops(sorted(folder.glob("*.png")))
    photos = [sd.coffee(), sd.chelsea()]
    base = 9000
    sets["synth line art"] = [(f"d{s}", lambda s=s: fk.synth_drawing(s))
                              for s in range(base, base + 4 * synth) if s % 4 != 3][:synth]
    sets["synth charts"] = [(f"c{s}", lambda s=s: fk.synth_drawing(s)) for s in range(base + 3, base + 4 * synth, 4)]
    sets["synth screenshots"] = [(f"s{s}", lambda s=s: fk.synth_screen(s, photos)) for s in range(base, base + synth)]
    sets["synth scanned text"] = [(f"t{s}", lambda s=s: fk.synth_document(s)) for s in range(base, base + synth)]
    sets["synth test patterns"] = [(f"y{s}", lambda s=s: fk.synth_synthetic(s)) for s in range(base, base + synth)]
    sets["skimage page/text"] = [(n, lambda n=n: fk._sk(n)()) for n in ("page", "text")]
    return sets


def _crop(a: np.ndarray, frac: np.ndarray, pos: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = max(64, int(h * frac[0])), max(64, int(w * frac[1]))
    ch, cw = min(ch, h), min(cw, w)
    y, x = int(pos[0] * (h - ch)), int(pos[1] * (w - cw))
    return np.ascontiguousarray(a[y:y + ch, x:x + cw])


def evaluate(sets: dict[str, list[tuple[str, Callable[[], np.ndarray]]]]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, items in sets.items():
        out = []
        for item, load in items:
            img = Image(load())
            t = time.perf_counter()
            prof = analyse(img)
            analyse_ms = (time.perf_counter() - t) * 1000
            spectral_in = prof.in_distribution
            c = time.thread_time()
            full_in = prof.learned_gate()
            gate_cpu_ms = (time.thread_time() - c) * 1000
            out.append({"image": item, "kind": prof.kind, "spectral_in": spectral_in, "full_in": full_in,
                        "router_in": bool(prof.kind == "photo" and full_in), "score": prof.ood_score,
                        "threshold": prof.ood_threshold, "evidence": prof.evidence, "analyse_ms": analyse_ms,
                        "gate_cpu_ms": gate_cpu_ms, "gate_ms": prof.evidence_ms,
                        "drivers": [d["feature"] for d in prof.drivers]})
        rows[name] = out
        print(f"  {name}: {len(out)}", file=sys.stderr, flush=True)
    return rows


def _share(rows: list[dict[str, Any]], key: str, want_in: bool) -> float:
    return 100.0 * statistics.fmean(1.0 if bool(r[key]) == want_in else 0.0 for r in rows)


def render(rows: dict[str, list[dict[str, Any]]], stats: dict[str, Any]) -> str:
    me = stats.get("model_evidence", {})
    lines = ["# OOD gate v2 — evaluation by content kind", "",
             f"Statistics `{stats.get('model')}` ({stats.get('format')}), weights "
             f"{str(me.get('weights_sha256'))[:12]}…, fitted on {stats['train']['images']} training photos; "
             f"thresholds: spectral {stats['threshold']:.2f}, spectral+model {me.get('threshold', float('nan')):.2f} "
             f"({stats.get('threshold_rule')}). Written by `benchmarks/ood_gate.py`.", "",
             "| set | n | judged | spectral only | spectral + model | router (photo ∧ gate) | analyse ms (median) "
             "| model part CPU ms (median) |", "|---|---|---|---|---|---|---|---|"]
    for name, rs in rows.items():
        photo = name in PHOTO_SETS
        want = "in" if photo else "out"
        lines.append(
            f"| {name} | {len(rs)} | {want} | {_share(rs, 'spectral_in', photo):.0f}% | "
            f"{_share(rs, 'full_in', photo):.0f}% | {_share(rs, 'router_in', photo):.0f}% | "
            f"{statistics.median(r['analyse_ms'] for r in rs):.0f} | "
            f"{statistics.median(r['gate_cpu_ms'] for r in rs):.0f} |")
    nonphoto = [r for n, rs in rows.items() if n not in PHOTO_SETS and n != "ood/aerial" for r in rs]
    photos = [r for n, rs in rows.items() if n in PHOTO_SETS for r in rs]
    lines += ["", f"**Totals** — unseen natural photos judged in: spectral {_share(photos, 'spectral_in', True):.1f}%, "
              f"spectral+model {_share(photos, 'full_in', True):.1f}% (n={len(photos)}); unseen non-photo content "
              f"(all sets above except photos and aerials) judged out: spectral "
              f"{_share(nonphoto, 'spectral_in', False):.1f}%, spectral+model {_share(nonphoto, 'full_in', False):.1f}%, "
              f"router {_share(nonphoto, 'router_in', False):.1f}% (n={len(nonphoto)}).", ""]
    oof = stats.get("train", {}).get("sources_in_out_of_fold")
    if oof:
        lines += ["Training set split by source (each source scored by statistics fitted on the others; share "
                  "judged in at the shipped thresholds):", "",
                  "| held-out source | n | spectral only | spectral + model |", "|---|---|---|---|"]
        for src, v in oof.items():
            lines.append(f"| {src} | {v['n']} | {v['spectral']:.0f}% | {v['model']:.0f}% |")
        lines.append("")
    missed = [(n, r) for n, rs in rows.items() for r in rs if (n in PHOTO_SETS) != bool(r["full_in"])]
    if missed:
        lines += ["Misjudged by the full gate (set, image, score/threshold, top drivers):", ""]
        for n, r in missed[:40]:
            lines.append(f"- {n} `{r['image']}`: {r['score']:.1f} / {r['threshold']:.1f} "
                         f"({', '.join(r['drivers'])})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ood_gate.md")
    p.add_argument("--crops", type=int, default=3)
    p.add_argument("--synth", type=int, default=24)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    stats = json.loads(ood_stats_file().read_text())
    if "model_evidence" not in stats:
        p.error(f"{ood_stats_file()} has no model part: run scripts/fit_ood.py first")
    rows = evaluate(_sets(a.shared, a.crops, a.synth))
    text = render(rows, stats)
    a.out.write_text(text)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
