#!/usr/bin/env bash
# Set up .venv (idempotent) and reconstruct the bundled example image with the embedded default
# model; prints where the result bundle (depth, albedo, light, mesh) was written.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f weights/default/generator.pt ]; then
    echo "demo: the embedded default weights (weights/default/generator.pt) are not built yet" >&2
    exit 3
fi
.venv/bin/python -m engine reconstruct examples/head.png --depth-gt examples/head_depth.npy \
    --preset default --out out/demo "$@"
