#!/usr/bin/env bash
# Runs ON the GPU machine (device tool: repo root, carry [".device"], after scripts/gpu/pack.sh here):
# 1. trains the learned codec on CUDA for MINUTES, starting from .device/init.pt (or the committed zoo
#    weights), LR decaying over the wall-clock budget; 2. splits the checkpoint into $OUT (<16 MiB files);
# 3. runs the CUDA decode determinism check against the CPU reference (benchmarks/cuda_decode.py).
# Usage: bash scripts/gpu/device_run.sh MINUTES [extra train.py flags, e.g. --batch 32]
# (DEVICE=cpu OUT=/tmp/x bash scripts/gpu/device_run.sh 0.2 --batch 1 --crop 64: a dry run on this machine)
set -uo pipefail
MIN=${1:?usage: device_run.sh MINUTES [train flags]}; shift
OUT=${OUT:-/tmp/inverity-out}; mkdir -p "$OUT"
python3 -c 'import constriction' 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl \
  || { echo "device_run: could not install the carried wheels (run scripts/gpu/pack.sh first)"; exit 1; }
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
# INIT=none starts from scratch (e.g. a wider model: INIT=none ... --N 96 --M 144)
if [ "${MODE:-}" = dec ]; then
  # decoder fine-tune (train_dec.py): g_s of the default model trained on its exact latents; NS=128 widens it
  # first. Returns dec.pt (decoder tensors + step/config/history, no Adam state) for `train_dec export` here.
  NS_ARGS=(); [ -z "${NS:-}" ] || NS_ARGS=(--Ns "$NS")
  python3 -m inverity.stages.learned.train_dec train --data .device/train --val .device/val --out /tmp/ckpt/dec.pt \
    --device "${DEVICE:-cuda}" --max-minutes "$MIN" --batch 16 --lr 1e-4 --val-every 2000 "${NS_ARGS[@]}" "$@" \
    2>&1 | tee "$OUT/train.log"
  python3 -c 'import sys, torch; c = torch.load(sys.argv[1], weights_only=False); c.pop("opt", None); torch.save(c, sys.argv[2])' \
    /tmp/ckpt/dec.pt "$OUT/dec.pt"
  timeout 240 python3 benchmarks/cuda_decode.py --device "${DEVICE:-cuda}" --limit 2 --json "$OUT/cuda_decode.json" 2>&1 \
    | tee "$OUT/cuda_decode.md"
  exit 0
fi
INIT=${INIT:-.device/init.pt}; [ "$INIT" = none ] || [ -f "$INIT" ] || INIT=src/inverity/stages/learned/weights/hp-gain.pt
INIT_ARGS=(); [ "$INIT" = none ] || INIT_ARGS=(--init "$INIT")
python3 -m inverity.stages.learned.train .device/train --val-dir .device/val --ckpt /tmp/ckpt/learned.pt \
  "${INIT_ARGS[@]}" --device "${DEVICE:-cuda}" --max-minutes "$MIN" --steps 10000000 --N 64 --M 96 --crop 256 --batch 16 \
  --warmup 300 --lr 2e-4 --lr-min 1e-5 --decay-start 0.3 --val-every 2000 --val-images 8 --ckpt-every 1000 \
  "$@" 2>&1 | tee "$OUT/train.log"
[ -f /tmp/ckpt/learned.pt ] && python3 scripts/gpu/ckpt.py split /tmp/ckpt/learned.pt "$OUT"
timeout 240 python3 benchmarks/cuda_decode.py --device "${DEVICE:-cuda}" --limit 2 --json "$OUT/cuda_decode.json" 2>&1 \
  | tee "$OUT/cuda_decode.md"
