#!/usr/bin/env bash
# Regenerate every benchmark table and figure of inverity.
#
#   benchmarks/run_all.sh --data ../shared/datasets/kodak            # full run -> benchmarks/results/
#   benchmarks/run_all.sh --data ../shared/datasets/kodak --quick    # ~15 min: 2 images, 4 corruptions
#
# Cost on 2 shared CPU cores: the quick run took 15 min (the learned stage's CPU encode/decode dominates);
# the full run (24 clean images × 46 settings, 45 corrupted conditions × 6 images × 24 settings, routing of 24
# images under 3 policies) is several hours.
#
# Options:
#   --data DIR        clean images (required)
#   --quick           few images, few corruptions, sparse quality grids (development); results go to
#                     benchmarks/results/tmp/quick/ unless --out is given
#   --out DIR         where the Markdown summaries and small PNGs go (default benchmarks/results)
#   --anchors DIR     CompressAI result JSONs to overlay (default ../shared/anchors/compressai-kodak if present)
#   --seed S          corruption seed (default 0)
#   --policies "P…"   routing policies to benchmark (default "auto delivery controlled")
#   --skip STEP       skip corruptions|rd|routing (repeatable)
# Environment: CORRUPTED_LIMIT (images per corrupted condition in the full run, default 6),
#              SEVERITIES (full run, default "1,3,5"), PYTHON (interpreter, default python).
#
# Everything bulky (corrupted images, per-image CSV/JSON) stays in benchmarks/results/tmp/ (git-ignored); only
# Markdown and small figures land in the results folder. Corrupted images are reused between runs (--resume).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

PY="${PYTHON:-python}"
DATA=""
QUICK=0
OUT=""
ANCHORS=""
SEED=0
POLICIES="auto delivery controlled"
SKIP=" "
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) DATA="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --anchors) ANCHORS="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --policies) POLICIES="$2"; shift 2 ;;
        --skip) SKIP="$SKIP$2 "; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n "$DATA" ]] || { echo "run_all.sh: --data DIR is required" >&2; exit 2; }
[[ -d "$DATA" ]] || { echo "run_all.sh: $DATA is not a directory" >&2; exit 2; }
if [[ -z "$ANCHORS" && -d "$repo/../shared/anchors/compressai-kodak" ]]; then
    ANCHORS="$repo/../shared/anchors/compressai-kodak"
fi

TMP="benchmarks/results/tmp"
if [[ $QUICK -eq 1 ]]; then
    OUT="${OUT:-$TMP/quick}"
    WORK="$TMP/quick-work"
else
    OUT="${OUT:-benchmarks/results}"
    WORK="$TMP/full-work"
fi
mkdir -p "$OUT" "$WORK"

inv() { "$PY" -c 'import sys; from inverity.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
skip() { [[ "$SKIP" == *" $1 "* ]]; }
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

if [[ $QUICK -eq 1 ]]; then
    LIMIT=(--limit 2)
    CORR="gaussian_noise,defocus_blur,fog,jpeg_compression"
    SEVS="1,3,5"
    RD_ARGS=(--quick --limit 2 --corrupted-limit 2 --corrupted-metrics psnr)
    ROUTE_ARGS=(--limit 2 --grid-step 10)
else
    LIMIT=()
    CORR=""
    SEVS="${SEVERITIES:-1,3,5}"
    RD_ARGS=(--corrupted-limit "${CORRUPTED_LIMIT:-6}"
             --corrupted-qualities "20,40,60,80,92;learned=1,3,5,7" --corrupted-metrics psnr,ssimulacra2)
    ROUTE_ARGS=(--grid-step 5)
fi

# 1. corrupted copies (Kodak-C style)
if ! skip corruptions; then
    stamp "corruptions -> $WORK/corrupted"
    args=(bench corruptions --data "$DATA" -o "$WORK/corrupted" --seed "$SEED" --severities "$SEVS" --resume)
    [[ -n "$CORR" ]] && args+=(--corruptions "$CORR")
    if [[ $QUICK -eq 1 ]]; then args+=("${LIMIT[@]}"); fi
    inv "${args[@]}"
fi

# 2. rate-distortion, BD-rate, spectra (clean + corrupted)
if ! skip rd; then
    stamp "rd -> $WORK/rd"
    args=(bench rd --data "$DATA" -o "$WORK/rd" --corrupted "$WORK/corrupted" --severities "$SEVS" "${RD_ARGS[@]}")
    [[ -n "$CORR" ]] && args+=(--corruptions "$CORR")
    [[ -n "$ANCHORS" ]] && args+=(--anchors "$ANCHORS")
    inv "${args[@]}"
    mkdir -p "$OUT/rd"
    rm -f "$OUT"/rd/*.png
    cp "$WORK/rd/rd.md" "$WORK"/rd/*.png "$OUT/rd/"
fi

# 3. routing against the oracle, per policy (needs the router; a missing piece is reported, not fatal)
if ! skip routing; then
    for pol in $POLICIES; do
        stamp "routing $pol -> $WORK/routing-$pol"
        if inv bench routing --data "$DATA" --policy "$pol" -o "$WORK/routing-$pol" "${ROUTE_ARGS[@]}"; then
            cp "$WORK/routing-$pol/routing.md" "$OUT/routing-$pol.md"
        else
            echo "run_all.sh: routing under '$pol' failed (see the error above); continuing" >&2
        fi
    done
fi

# 4. the one-page summary
stamp "summary -> $OUT/SUMMARY.md"
"$PY" - "$OUT" "$WORK" "$DATA" "$QUICK" <<'EOF'
import json, sys, time
from pathlib import Path

out, work, data, quick = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
L = [f"# inverity benchmarks ({'quick' if quick else 'full'} run)", "",
     f"Data `{data}`; generated {time.strftime('%Y-%m-%d %H:%M')} by `benchmarks/run_all.sh"
     f"{' --quick' if quick else ''}`.", ""]
rd = work / "rd" / "rd.json"
if rd.exists():
    doc = json.loads(rd.read_text())
    cfg = doc["config"]
    L += ["## Rate–distortion (clean)", "",
          f"{cfg['images']} images; codecs " + ", ".join(f"{k} ({v['library']})" for k, v in cfg["codecs"].items())
          + ". Details: [rd/rd.md](rd/rd.md).", "",
          "| codec | BD-rate vs JPEG (PSNR) | BD-PSNR | BD-rate (MS-SSIM) | BD-rate (SSIMULACRA 2) |", "|---|---|---|---|---|"]
    def cell(c, m, key="bd_rate", unit=" %"):
        r = next((b for b in doc["bd"] if b["condition"] == "clean" and b["codec"] == c and b["distortion"] == m), None)
        return "n/a" if not r or r.get(key) is None else f"{r[key]:+.1f}{unit}"
    for c in dict.fromkeys(b["codec"] for b in doc["bd"] if b["condition"] == "clean"):
        if c.startswith("anchor:") and c not in ("anchor:bmshj2018-hyperprior", "anchor:JPEG", "anchor:WebP", "anchor:AV1"):
            continue
        L.append(f"| {c} | {cell(c, 'psnr')} | {cell(c, 'psnr', 'bd_metric', ' dB')} | {cell(c, 'ms_ssim')} | "
                 f"{cell(c, 'ssimulacra2')} |")
    conds = cfg.get("conditions") or []
    if conds:
        codecs = [c for c in cfg["codecs"] if c != "jpeg"]
        L += ["", f"## BD-rate vs JPEG on corrupted images ({cfg['corrupted_images']} images per condition)", "",
              "PSNR against the corrupted input (codec fidelity); `n/a` where the curves do not overlap.", "",
              "| condition | " + " | ".join(codecs) + " |", "|---|" + "---|" * len(codecs)]
        for cond in conds:
            cells = []
            for c in codecs:
                r = next((b for b in doc["bd"] if b["condition"] == cond and b["codec"] == c
                          and b["distortion"] == "psnr_input"), None)
                cells.append("n/a" if not r or r.get("bd_rate") is None else f"{r['bd_rate']:+.1f}")
            L.append(f"| {cond} | " + " | ".join(cells) + " |")
    notes = [n for n in dict.fromkeys(doc.get("notes", [])) if "skipped" in n]
    if notes:
        L += ["", "Notes: " + "; ".join(notes)]
for rj in sorted(work.glob("routing-*/routing.json")):
    s = json.loads(rj.read_text())["summary"]
    pol = rj.parent.name.split("-", 1)[1]
    g = s.get("regret_geomean")
    L += ["", f"## Routing under `{pol}`", "",
          f"{s['images']} images: regret {'n/a' if g is None else f'{g:.3f}'} (geometric mean; max "
          f"{s.get('regret_max', float('nan')):.3f}), {s['violations']} floor violations, {s['router_failures']} "
          f"router failures, learned used {s['learned_used']} (where it lost: {s['learned_used_lost']}; skipped "
          f"where it won: {s['learned_skipped_won']}). Details: [routing-{pol}.md](routing-{pol}.md)."]
figs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
if figs:
    L += ["", "## Figures", ""] + [f"- [{f}]({f})" for f in figs]
(out / "SUMMARY.md").write_text("\n".join(L) + "\n")
EOF
stamp "done: $OUT/SUMMARY.md"
