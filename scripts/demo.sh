#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole distillation on the bundled contract task, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/distill run "${1:-configs/demo.yaml}"
