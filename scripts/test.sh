#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), check lint and formatting, then run the whole test suite.
# This is the command CI runs; it fails if ruff check, ruff format --check or any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "test: ruff check"
.venv/bin/ruff check .
echo "test: ruff format --check"
.venv/bin/ruff format --check .
export DISTILL_CACHE=${DISTILL_CACHE:-$HOME/.cache/distill}
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
