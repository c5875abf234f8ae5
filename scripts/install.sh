#!/usr/bin/env bash
# Create .venv (if needed) and install inverity with pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
# PyTorch first: the CPU build of 2.13.0 (a plain 'torch' would pull a multi-GB CUDA build)
python -m pip install -q torch==2.13.0
python -m pip install -q -c requirements-pinned.txt -e '.[server,test,ray]'
