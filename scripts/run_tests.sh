#!/usr/bin/env bash
# The README's test command: set up each host (idempotent), install test-only dependencies and the
# headless browser, then run the host-free core suite (tests/core) in a venv with no host, ruff, and
# the whole suite against each real host in turn:
#   - ComfyUI 0.3.75 in .host with .venv, as users get it (scripts/setup_host.sh);
#   - ComfyUI 0.12.1 and 0.33.0 in .host-VERSION with .venv-VERSION, from ../shared/hosts/comfyui-VERSION.tar.gz
#     beside the clone. Without such a file that host is skipped with a note, unless
#     FOCAL_REQUIRE_NEWER_HOST is set (CI), where that is a failure.
# Fails if any suite fails (pytest's exit 5, no tests collected, included). Extra args go to pytest.
set -euo pipefail
PACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$PACK_DIR"
NEWER_CORES=(0.12.1 0.33.0)   # tested beside 0.3.75, oldest first
PYTEST_ARGS=("$@")
passed=()
failed=()

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

# tests/core in .venv-core, which holds only torch, numpy, kornia and the test packages: proof that
# focal_core imports no host. torch 2.13.0 is the CPU wheel the machine image keeps on disk (the host
# venvs need torch 2.14.1 with torchvision instead, see setup_host.sh).
run_core() {
  local began=$SECONDS
  echo "run_tests: ===== core (no host) ====="
  [ -x .venv-core/bin/python ] || python3 -m venv .venv-core
  .venv-core/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 numpy -r requirements.txt \
    pytest esda libpysal
  if .venv-core/bin/python -m pytest tests/core -q "${PYTEST_ARGS[@]}"; then
    passed+=("core ($((SECONDS - began)) s)")
  else
    failed+=("core ($((SECONDS - began)) s)")
  fi
}

# run_suite NAME HOST_DIR VENV [setup_host.sh args]: set up that host, then run pytest on it.
run_suite() {
  local name="$1" host="$2" venv="$3" began=$SECONDS
  shift 3
  echo "run_tests: ===== $name ====="
  bash scripts/setup_host.sh "$@"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
  if FOCAL_COMFYUI="$host/ComfyUI" "$venv/bin/python" -m pytest tests -q "${PYTEST_ARGS[@]}"; then
    passed+=("$name ($((SECONDS - began)) s)")
  else
    failed+=("$name ($((SECONDS - began)) s)")
  fi
}

# Lint with the pinned ruff (pyproject.toml [tool.ruff]), in the core venv.
run_lint() {
  echo "run_tests: ===== lint (ruff) ====="
  .venv-core/bin/python -m pip install --quiet --disable-pip-version-check "$(grep -m1 -E '^ruff==' requirements-test.txt)"
  if .venv-core/bin/python -m ruff check .; then passed+=("lint"); else failed+=("lint"); fi
}

run_core
run_lint
run_suite "ComfyUI 0.3.75" .host .venv
for version in "${NEWER_CORES[@]}"; do
  tarball="$PACK_DIR/../shared/hosts/comfyui-$version.tar.gz"
  if [ -f "$tarball" ]; then
    run_suite "ComfyUI $version" ".host-$version" ".venv-$version" --core "$tarball"
  elif [ -n "${FOCAL_REQUIRE_NEWER_HOST:-}" ]; then
    echo "run_tests: ERROR: $tarball is missing (CI expects ../shared/hosts/ beside the clone)" >&2
    failed+=("ComfyUI $version (no tarball)")
  else
    echo "run_tests: NOTE: $tarball not found, so ComfyUI $version is not tested here (CI tests it)"
  fi
done

echo "run_tests: passed: ${passed[*]:-none}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_tests: FAILED: ${failed[*]}" >&2
  exit 1
fi
