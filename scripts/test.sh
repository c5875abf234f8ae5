#!/usr/bin/env bash
# README command 2 (and CI): install everything from scratch, then run the test suite.
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
exit $rc
