#!/usr/bin/env bash
# Set up .venv (idempotent), lint, and run the whole test suite. Exit code = result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
