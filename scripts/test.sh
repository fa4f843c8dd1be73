#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole test suite. This is the command CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DISTILL_CACHE=${DISTILL_CACHE:-$HOME/.cache/distill}
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
