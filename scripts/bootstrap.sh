#!/usr/bin/env bash
# Bootstrap a working environment on a fresh machine (called by `make train` / `make test`):
#   1. headless GL for MuJoCo: probe EGL / OSMesa; if neither works, install the Debian libraries
#      when root, otherwise print the exact apt line and stop;
#   2. .venv: create it if missing or broken; (re)install when pyproject.toml changed (stale);
#      without a GPU, the CPU build of torch first (smaller and faster on CPUs).
# Variables: PYTHON (python3), VENV (.venv), EXTRAS (dev,bench), TORCH_SPEC, TORCH_INDEX_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,bench}
APT_PACKAGES="libegl1 libgl1-mesa-dri libosmesa6"

gl_works() {  # the same probe envs/backend.py runs, loaded without importing dm_control
  "$PYTHON" - <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("backend", "envs/backend.py")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
sys.exit(0 if (mod._egl_works() or mod._osmesa_works()) else 1)
PY
}

if [ -z "${MUJOCO_GL:-}" ] && ! gl_works; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing headless GL libraries for MuJoCo: $APT_PACKAGES"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $APT_PACKAGES
  else
    echo "bootstrap: MuJoCo needs headless OpenGL (EGL or OSMesa), which this machine lacks. Run:" >&2
    echo "    sudo apt-get install -y $APT_PACKAGES" >&2
    exit 1
  fi
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "import sys" 2>/dev/null; then
  echo "bootstrap: $VENV is broken; recreating it"; rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1) $EXTRAS"
stamp="$VENV/.aime-installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if [ -n "${TORCH_SPEC:-}" ]; then
    torch_spec=$TORCH_SPEC
  elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    torch_spec="torch"
  else
    torch_spec="torch==2.13.0"  # the CPU build on this workplace's disk; elsewhere set TORCH_INDEX_URL
  fi
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "bootstrap: installing $torch_spec"
    "$VENV/bin/python" -m pip install -q "$torch_spec" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
  echo "bootstrap: installing aime-agent[$EXTRAS]"
  "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi
