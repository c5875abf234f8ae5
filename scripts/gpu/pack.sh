#!/usr/bin/env bash
# Pack what a GPU session's training needs into .device/ (git-ignored), for the device tool's `carry`:
#   .device/train/   lossless training images from ../shared/datasets/train, as many as fit the 64 MiB the
#                    device tool carries (tracked files count too); a fixed, spread-out subset (by name hash)
#   .device/val/     the first 8 validation images (model selection, as on the CPU)
#   .device/whl/     constriction for CPython 3.12 (the GPU image has torch, numpy, Pillow, scikit-image)
#   .device/init.pt  model weights to start from, if INIT is given (a checkpoint or zoo .pt); without it the
#                    device run starts from the committed zoo weights, which travel as tracked files
# Usage: bash scripts/gpu/pack.sh [INIT]      then see scripts/gpu/README.md
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
SHARED=${SHARED:-../shared/datasets}
rm -rf .device && mkdir -p .device/train .device/val .device/whl
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/whl "constriction==$(python -c 'import importlib.metadata as m; print(m.version("constriction"))')"
ls "$SHARED/validation" | sort | head -8 | while read -r f; do cp "$SHARED/validation/$f" .device/val/; done
if [ $# -ge 1 ]; then
  python - "$1" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
weights = state.get("state_dict", state.get("model", state))
out = {"state_dict": weights}
if "architecture" in state:
    out["architecture"] = state["architecture"]
torch.save(out, ".device/init.pt")
print(f"init weights from {sys.argv[1]}")
PY
fi
python - "$SHARED/train" <<'PY'
import hashlib, os, shutil, subprocess, sys
from pathlib import Path
src = Path(sys.argv[1])
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        capture_output=True, check=True).stdout.split(b"\0")
tracked = sum(os.path.getsize(p) for p in listed if p and os.path.isfile(p))
carried = sum(p.stat().st_size for p in Path(".device").rglob("*") if p.is_file())
budget = 64 * 2**20 - tracked - carried - 2 * 2**20  # 2 MiB margin
files = sorted(src.iterdir(), key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
used = n = 0
for p in files:
    size = p.stat().st_size
    if used + size > budget:
        continue
    shutil.copy2(p, Path(".device/train") / p.name)
    used += size; n += 1
print(f"train: {n} of {len(files)} images, {used / 2**20:.1f} MiB; tracked files {tracked / 2**20:.1f} MiB; "
      f"other carried {carried / 2**20:.1f} MiB")
PY
du -sh .device
