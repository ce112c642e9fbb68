#!/usr/bin/env bash
# Installs the test dependencies and runs the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "== ruff check"
.venv/bin/ruff check .
echo "== mypy layerstore (strict)"
.venv/bin/mypy layerstore
echo "== pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
