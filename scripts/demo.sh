#!/usr/bin/env bash
# README command 1: install, then run the main job on the built-in sample set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
inverity demo "${1:-demo-out}"
