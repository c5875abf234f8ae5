#!/usr/bin/env bash
# README command 2 (and CI): install everything from scratch, then run the test suite.
# With no arguments (CI) it also runs the checks below; with arguments it only runs pytest with them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# a real browser for the audit-page test (Debian chromium + chromedriver)
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/tmp/inverity-apt.log 2>&1 || echo "warning: could not install chromium (see /tmp/inverity-apt.log)"
  fi
fi
. .venv/bin/activate
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected: that is a failure of the suite, not a pass
if [ $# -gt 0 ] || [ "${INVERITY_CI_EXTRA:-1}" = 0 ]; then
  exit $rc
fi

step() { printf '\n== %s\n' "$*"; }
extra=0
# 1. every import is declared (an undeclared one, like click once, breaks a plain install)
step "deptry: imports vs declared dependencies"
deptry . || extra=1
# 2. SSIMULACRA 2 and the other metrics under OpenBLAS's Haswell kernels too (identical inputs must score 100)
step "metrics under OPENBLAS_CORETYPE=Haswell"
OPENBLAS_CORETYPE=Haswell python -m pytest -q -p no:cacheprovider tests/test_metrics.py src/inverity/metrics \
  || extra=1
# 3. a plain install (no extras, no constraints file) still prints one-line errors, no tracebacks
step "plain install: pip install torch==2.13.0 && pip install . (fresh venv), then the CLI's error paths"
t0=$SECONDS
plain=$(mktemp -d)
"${PYTHON:-python3}" -m venv "$plain/venv"
"$plain/venv/bin/python" -m pip install -q torch==2.13.0
"$plain/venv/bin/python" -m pip install -q . && rm -rf build   # setuptools builds in-tree
echo "plain install took $((SECONDS - t0)) s"
"$plain/venv/bin/python" scripts/plain_install_check.py || extra=1
rm -rf "$plain"
[ $rc -ne 0 ] && exit $rc
exit $extra
