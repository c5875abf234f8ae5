"""How often ``--policy controlled`` chooses the learned stage on photos the model never saw (issue #15).

Usage::

    python benchmarks/controlled_wins.py --data ../shared/datasets/validation[,MY/PHOTOS] [--limit N]
        [--models hp-ctx,hp-gain] [--effort balanced|fast|max] [--out DIR] [--json OUT.json] [--md OUT.md]

Issue #15's target: on natural photos the model never saw, ``controlled`` chooses the learned stage — smaller than
the best classical candidate at the same floors — on at least 25% of them. This runs the *real* pipeline
(:func:`inverity.pipeline.compress_one`, in-process, one image at a time) under the built-in ``controlled`` policy
and reads each decision record: what was chosen, every learned attempt and why it lost.

``--data`` takes one or more folders (comma-separated: the validation set plus photos of your own); each is
walked the way ``inverity compress`` walks a folder (by content). Only 8-bit RGB images are measured (grey,
alpha and 16-bit images are listed as skipped, with the reason); ``--limit N`` measures the first N of each
folder. Every measured image counts in N, also one the classifier does not call a photo or the OOD gate calls
out of distribution: the learned stage then never runs, and the row says why (the router's condition, read from
the record's profile).

Per image: size (MP), content kind and the OOD gate (score / threshold), the chosen stage and its bytes (the
output file's size, checked against the record), the smallest *passing* learned attempt, or why none passed —
the floors its highest verified quality failed and its SSIMULACRA 2 (a "½-scale screen" value is that of the
cheap half-resolution pre-check, an upper bound), or that its probes were not verified because they were
already larger than the best passing classical output — the smallest passing classical attempt, and the
learned/classical byte ratio. When the learned stage wins, the search does not verify the classical candidates
that cannot beat it; the script then reruns the image with the learned stage excluded (``exclude_stages``,
same policy and floors) to get the classical size (column source ``rerun``).

``--models hp-ctx,hp-gain`` repeats the run once per zoo model (``inverity.stages.learned.zoo.list_models()``),
each under a derived user policy (TOML: ``extends = "controlled"``, ``model = "NAME"``, nothing else changed).
Without it the built-in ``controlled`` policy runs as shipped (the zoo's default model). Note: the policy's
``model`` key is the way to pick the model; a preference entry ``learned?model=NAME`` would be overridden by
the router, which sets ``model`` from the policy. The OOD gate is the analysis' (the zoo default's statistics)
whatever the model.

Summary per model: learned wins k/N, how often the learned stage passed the floors at all, how often the router
skipped it, the median learned/classical ratio (over the images where both passed), and the wall-clock time
per image (the pipeline call; the reruns are counted apart). Times are one run each on a possibly shared CPU.
Outputs go to a temporary folder removed at the end, unless ``--out DIR`` keeps them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

#: issue #15: the learned stage should win on at least this share of unseen photos
TARGET = 0.25
#: the SSIMULACRA 2 value in a verifier reason (``ssimulacra2 50.2 < 70``; the half-scale screen says so first)
_S2 = re.compile(r"ssimulacra2 (-?[0-9.]+) ")


# --------------------------------------------------------------------------------------------------------------
# Reading one decision record
# --------------------------------------------------------------------------------------------------------------
def _s2(entry: dict[str, Any]) -> tuple[float | None, bool]:
    """(SSIMULACRA 2 of an attempt as its reasons state it, whether that was the half-scale screen's value)."""
    for r in entry.get("reasons") or []:
        m = _S2.search(str(r))
        if m:
            return float(m.group(1)), str(r).startswith("½-scale screen")
    return None, False


def _skipped_by_router(profile: dict[str, Any], reasons: list[str]) -> str:
    """Why the learned stage has no attempt: the router's conditions (route._learned_check), from the profile."""
    noted = next((r for r in reasons if r.startswith("learned not tried")), None)
    if noted:
        return noted
    if profile.get("kind_source") == "fallback":
        return "content kind unknown (no kind classifier)"
    if profile.get("kind") != "photo":
        return f"content is {profile.get('kind')}, not a natural photo"
    ood, thr = profile.get("ood_score"), profile.get("ood_threshold")
    if profile.get("in_distribution") is None:
        return f"in_distribution unknown (no OOD statistics for {profile.get('ood_model')!r})"
    if profile.get("in_distribution") is False:
        return f"out of distribution: ood {ood:.1f} > {thr:.1f}" if ood is not None and thr is not None \
            else "out of distribution"
    return "not in the plan (decode budget or model missing: see the record's reasons)"


def learned_outcome(record: dict[str, Any]) -> dict[str, Any]:
    """What the learned stage came to in one record.

    ``status``: ``won``, ``passed`` (but a classical output was smaller), ``failed`` (the floors, or an encode
    error), ``larger`` (every probe was already larger than the best passing classical output, so none was
    verified) or ``skipped`` (the router never planned it). ``bytes``/``quality``: its smallest passing attempt;
    ``best_ssimulacra2`` (``screen``: the half-scale pre-check's value) and ``failed_checks`` at its highest
    verified quality; ``why``: one line.
    """
    mine = [a for a in record.get("attempts") or [] if a.get("stage") == "learned"]
    out: dict[str, Any] = {"status": "skipped", "bytes": None, "quality": None, "best_ssimulacra2": None,
                           "screen": False, "failed_checks": [], "tried": [a.get("quality") for a in mine],
                           "why": "", "model": next((a["options"]["model"] for a in mine
                                                    if "model" in (a.get("options") or {})), None)}
    if not mine:
        out["why"] = _skipped_by_router(record.get("profile") or {}, record.get("reasons") or [])
        return out
    passing = [a for a in mine if a.get("passed") is True]
    if passing:
        best = min(passing, key=lambda a: (a["bytes"], a["quality"]))
        out.update(bytes=best["bytes"], quality=best["quality"])
        out["status"] = "won" if record.get("stage") == "learned" else "passed"
        out["best_ssimulacra2"] = max((v for v in (_s2(a)[0] for a in passing) if v is not None), default=None)
        out["why"] = "chosen" if out["status"] == "won" else \
            f"passed at q={best['quality']} but {record.get('stage')} {record.get('bytes'):,} B was smaller"
        return out
    verified = [a for a in mine if a.get("verified") != "skipped" and a.get("passed") is False]
    larger = [a for a in mine if a.get("verified") == "skipped"]
    if verified:
        top = max(verified, key=lambda a: a.get("quality") or 0)
        s2, screen = _s2(top)
        out.update(status="failed", best_ssimulacra2=s2, screen=screen,
                   failed_checks=list(top.get("failures") or []))
        first = str((top.get("reasons") or ["failed"])[0])
        fails = ", ".join(out["failed_checks"]) or first
        size = f"{top['bytes']:,} B, " if top.get("bytes") else ""
        out["why"] = f"q={top.get('quality')} ({size}highest verified) fails {fails}"
        if larger:
            q = ", ".join(str(a.get("quality")) for a in larger)
            out["why"] += f"; q={q} not verified: already larger than the best passing output"
    else:
        out["status"] = "larger"
        smallest = min((a for a in larger if a.get("bytes")), key=lambda a: a["bytes"], default=None)
        out["bytes_tried_min"] = smallest["bytes"] if smallest else None
        out["why"] = (f"not verified: its smallest probe (q={smallest['quality']}, {smallest['bytes']:,} B) was "
                      "already larger than the best passing output") if smallest else "no probe verified"
    return out


def classical_best(record: dict[str, Any]) -> dict[str, Any] | None:
    """The smallest passing non-learned attempt of a record (``stage``, ``quality``, ``bytes``) or None."""
    ok = [a for a in record.get("attempts") or [] if a.get("stage") != "learned" and a.get("passed") is True
          and a.get("bytes")]
    if not ok:
        return None
    a = min(ok, key=lambda a: (a["bytes"], a.get("quality") or 0))
    return {"stage": a["stage"], "quality": a.get("quality"), "bytes": a["bytes"]}


# --------------------------------------------------------------------------------------------------------------
# Running the pipeline
# --------------------------------------------------------------------------------------------------------------
def policies(models: list[str] | None, work: Path) -> list[tuple[str, str, str | None]]:
    """(label, policy spec for compress_one, model name) per run: the built-in ``controlled`` when ``models`` is
    None, else a derived TOML per zoo model (written under ``work``)."""
    if not models:
        return [("controlled", "controlled", None)]
    from inverity.stages.learned import zoo

    known = [m.name for m in zoo.list_models()]
    out = []
    for name in models:
        if name not in known:
            raise SystemExit(f"--models: {name!r} is not in the zoo (installed: {', '.join(known) or 'none'})")
        path = work / f"controlled-{name}.toml"
        path.write_text(f'name = "controlled-{name}"\nextends = "controlled"\nmodel = "{name}"\n'
                        f'description = "controlled with learned model {name} (benchmarks/controlled_wins.py)"\n')
        out.append((f"controlled, model {name}", str(path), name))
    return out


def collect(folders: list[Path], limit: int | None) -> tuple[list[tuple[Path, Any, Any]], list[dict[str, str]]]:
    """([(folder, asset, loaded image)], skipped) — 8-bit RGB images only, at most ``limit`` per folder."""
    from inverity.errors import InverityError
    from inverity.image import load
    from inverity.pipeline import collect_assets

    chosen: list[tuple[Path, Any, Any]] = []
    skipped: list[dict[str, str]] = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"--data: {folder} is not a folder")
        n = 0
        for asset in collect_assets([folder]):
            if limit is not None and n >= limit:
                break
            name = f"{folder.name}/{asset.input}"
            try:
                image = load(asset.path)
            except InverityError as exc:
                skipped.append({"image": name, "reason": str(exc)})
                continue
            if image.bit_depth != 8 or image.channels != 3:
                skipped.append({"image": name, "reason": f"not 8-bit RGB ({image.channels} channel(s), "
                                                         f"{image.bit_depth}-bit)"})
                continue
            chosen.append((folder, asset, image))
            n += 1
    return chosen, skipped


def measure(folder: Path, asset: Any, image: Any, spec: str, outdir: Path, effort: str | None) -> dict[str, Any]:
    """One image under one policy: the pipeline's decision, read into a table row."""
    from inverity.errors import InverityError
    from inverity.pipeline import compress_one

    name = f"{folder.name}/{asset.input}"
    row: dict[str, Any] = {"image": name, "mp": round(image.width * image.height / 1e6, 3)}
    t0 = time.perf_counter()
    try:
        rec = compress_one(asset.path, spec, outdir=outdir, asset=asset, image=image, effort=effort).record
    except InverityError as exc:
        rec = getattr(exc, "record", None) or {}
        row["error"] = str(exc)
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    prof = rec.get("profile") or {}
    row.update(kind=prof.get("kind"), in_distribution=prof.get("in_distribution"), ood_score=prof.get("ood_score"),
               ood_threshold=prof.get("ood_threshold"), stage=rec.get("stage"), quality=rec.get("quality"),
               bytes=rec.get("bytes"), output=rec.get("output"))
    row["file_bytes"] = os.path.getsize(rec["output"]) if rec.get("output") else None
    row["learned"] = learned_outcome(rec)
    row["classical"] = classical_best(rec)
    if row["classical"] is not None:
        row["classical"]["source"] = "same run"
    elif row["learned"]["status"] == "won":   # the search did not verify what could not beat it: ask again
        t1 = time.perf_counter()
        try:
            again = compress_one(asset.path, spec, outdir=outdir / ".classical", asset=asset, image=image,
                                 effort=effort, exclude_stages=("learned",)).record
            row["classical"] = {"stage": again["stage"], "quality": again["quality"], "bytes": again["bytes"],
                                "source": "rerun"}
        except InverityError as exc:
            row["classical"] = {"stage": None, "quality": None, "bytes": None, "source": f"rerun failed: {exc}"}
        row["rerun_s"] = round(time.perf_counter() - t1, 2)
    lb, cb = row["learned"]["bytes"], (row["classical"] or {}).get("bytes")
    row["ratio"] = round(lb / cb, 3) if lb and cb else None
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary line's numbers."""
    n = len(rows)
    status = [r["learned"]["status"] for r in rows]
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    walls = [r["wall_s"] for r in rows]
    wins = status.count("won")
    return {"images": n, "wins": wins, "win_share": round(wins / n, 3) if n else None,
            "learned_passed": sum(s in ("won", "passed") for s in status),
            "learned_failed_floors": status.count("failed"), "learned_larger": status.count("larger"),
            "learned_skipped": status.count("skipped"), "errors": sum("error" in r for r in rows),
            "median_ratio": statistics.median(ratios) if ratios else None, "ratios": len(ratios),
            "wall_s_median": round(statistics.median(walls), 2) if walls else None,
            "wall_s_mean": round(statistics.fmean(walls), 2) if walls else None,
            "rerun_s_total": round(sum(r.get("rerun_s", 0.0) for r in rows), 2),
            "target": TARGET, "target_met": bool(n and wins / n >= TARGET)}


def run(folders: list[Path], limit: int | None, models: list[str] | None, out: Path,
        effort: str | None = None) -> dict[str, Any]:
    """Every run (one per model) over the images of ``folders``; outputs are written under ``out``."""
    images, skipped = collect(folders, limit)
    runs = []
    (out / "policies").mkdir(parents=True, exist_ok=True)
    for label, spec, model in policies(models, out / "policies"):
        sub = out / (f"model-{model}" if model else "controlled")
        rows = [measure(folder, asset, image, spec, sub / f"{folders.index(folder)}-{folder.name}", effort)
                for folder, asset, image in images]
        how = "built-in policy" if model is None else f"extends controlled, model={model}"
        runs.append({"label": label, "policy": how, "model": model, "rows": rows, "summary": summarise(rows)})
    return {"data": [str(f) for f in folders], "limit": limit, "effort": effort, "date": date.today().isoformat(),
            "skipped": skipped, "runs": runs}


# --------------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------------
def _kb(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _row(r: dict[str, Any]) -> str:
    lo, cl = r["learned"], r["classical"] or {}
    gate = "—" if r["in_distribution"] is None else \
        f"{'yes' if r['in_distribution'] else 'no'} ({r['ood_score']:.1f}/{r['ood_threshold']:.1f})" \
        if r["ood_score"] is not None and r["ood_threshold"] is not None else str(r["in_distribution"])
    chosen = f"{r['stage']} q{r['quality']}" if r["stage"] else f"failed: {r.get('error', '?')}"
    learned = f"{_kb(lo['bytes'])} (q{lo['quality']})" if lo["bytes"] is not None else lo["status"]
    s2 = "—" if lo["best_ssimulacra2"] is None else f"{'≤' if lo['screen'] else ''}{lo['best_ssimulacra2']:.1f}"
    why = "" if lo["status"] == "won" else lo["why"]
    classical = "—" if cl.get("bytes") is None else \
        f"{cl['stage']} {_kb(cl['bytes'])}" + (" (rerun)" if cl.get("source") == "rerun" else "")
    ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
    return (f"| {r['image']} | {r['mp']:.2f} | {r['kind']} | {gate} | {chosen} | {_kb(r['bytes'])} | {learned} | "
            f"{s2} | {why.replace('|', '/')} | {classical} | {ratio} | {r['wall_s']:.1f} |")


def summary_line(s: dict[str, Any]) -> str:
    n = s["images"]
    pct = f"{100 * s['win_share']:.0f}%" if s["win_share"] is not None else "n/a"
    ratio = f"{s['median_ratio']:.2f} (over {s['ratios']} images where both passed)" if s["median_ratio"] else \
        "n/a (no image where both passed)"
    return (f"**learned wins {s['wins']}/{n} ({pct})** — target ≥ {100 * s['target']:.0f}%: "
            f"{'met' if s['target_met'] else 'not met'}; learned passed the floors on {s['learned_passed']}/{n}, "
            f"failed them on {s['learned_failed_floors']}/{n}, lost unverified (already larger) on "
            f"{s['learned_larger']}/{n}, skipped by the router on {s['learned_skipped']}/{n}"
            + (f", {s['errors']} asset(s) failed" if s["errors"] else "")
            + f"; median learned/classical bytes {ratio}; wall time {s['wall_s_median']} s/image median, "
            f"{s['wall_s_mean']} s mean" + (f" (+ {s['rerun_s_total']} s of classical reruns)"
                                              if s["rerun_s_total"] else ""))


def markdown(result: dict[str, Any]) -> str:
    """The house-style markdown report of :func:`run`'s result."""
    lines = [f"# controlled: how often the learned stage wins on unseen photos (benchmarks/controlled_wins.py, "
             f"{result['date']}, {os.cpu_count()} CPU cores)", "",
             f"data: {', '.join(result['data'])}" + (f" (first {result['limit']} of each)" if result["limit"] else "")
             + (f"; effort {result['effort']}" if result["effort"] else "; the policy's search effort"), ""]
    for run_ in result["runs"]:
        lines += [f"## {run_['label']} ({run_['policy']})", "",
                  "| image | MP | kind | in distribution (ood/threshold) | chosen | bytes | learned passing | "
                  "learned best SSIMULACRA 2 | learned: why not | classical passing | learned/classical | s |",
                  "|---|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
        lines += [_row(r) for r in run_["rows"]]
        lines += ["", summary_line(run_["summary"]), ""]
    if result["skipped"]:
        lines += ["skipped: " + "; ".join(f"{s['image']} ({s['reason']})" for s in result["skipped"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from inverity._atomic import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="image folder(s), comma-separated")
    ap.add_argument("--limit", type=int, default=None, help="at most N images from each folder")
    ap.add_argument("--models", default=None, help="zoo model names, comma-separated (default: controlled as is)")
    ap.add_argument("--effort", choices=("fast", "balanced", "max"), default=None,
                    help="the quality search's effort (default: the policy's)")
    ap.add_argument("--out", type=Path, default=None, help="keep the outputs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    a = ap.parse_args(argv)
    folders = [Path(p) for p in a.data.split(",") if p]
    models = [m for m in a.models.split(",") if m] if a.models else None
    out = a.out if a.out is not None else Path(tempfile.mkdtemp(prefix="inverity-controlled-wins-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = run(folders, a.limit, models, out, a.effort)
    finally:
        if a.out is None:
            shutil.rmtree(out, ignore_errors=True)
    text = markdown(result)
    print(text)
    if a.md:
        atomic_write_text(a.md, text + "\n")
    if a.json:
        atomic_write_text(a.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
