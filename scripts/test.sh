#!/usr/bin/env bash
# Installs the test dependencies and runs the whole test suite (what CI runs), as root.
#
#   bash scripts/test.sh [PYTEST ARGS]          everything: apt + pip, ruff, mypy, pytest
#   bash scripts/test.sh --unit [PYTEST ARGS]   the unit tier only (tests marked `unit`): pip
#                                               into ./.venv, ruff, mypy, pytest -m unit; needs
#                                               no root, Docker engine or peers
set -euo pipefail
cd "$(dirname "$0")/.."
unit=0
if [ "${1:-}" = "--unit" ]; then
  unit=1
  shift
fi
if [ "$unit" = 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
  fi
  if ! .venv/bin/python -c 'import builder, registry, layerstore, boto3, psycopg, pytest, ruff, mypy' 2>/dev/null
  then
    echo "== pip install -e .[test]"
    .venv/bin/pip install -q -e ".[test]"
  fi
else
  bash scripts/install.sh
fi
echo "== ruff check"
.venv/bin/ruff check .
echo "== mypy layerstore (strict), registry, builder"
.venv/bin/mypy layerstore registry builder
echo "== pytest"
if [ "$unit" = 1 ]; then
  exec .venv/bin/python -m pytest -p no:cacheprovider -m unit "$@"
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
