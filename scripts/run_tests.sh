#!/usr/bin/env bash
# The README's test command: set up the host (idempotent), install test-only dependencies and
# the headless browser, then run the whole suite against the real host. Extra args go to pytest.
set -euo pipefail
PACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$PACK_DIR"

bash scripts/setup_host.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt

# Debian's Chromium drives the frontend test (Playwright never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run_tests: installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "run_tests: chromium is missing and cannot be installed here; install Debian's chromium" >&2
  fi
fi
export FOCAL_REQUIRE_BROWSER="${FOCAL_REQUIRE_BROWSER:-1}"

exec .venv/bin/python -m pytest tests -q "$@"
