#!/usr/bin/env bash
# The accelerator benchmark in one command, under a deadline (8 minutes on one H100/H200 by design):
#   benchmarks/gpu_suite.sh [--smoke] [gpu_suite.py options]
# Run from the repository root with the project's Python on PATH (or PYTHON=...); prints the table last.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec timeout "${GPU_SUITE_DEADLINE:-480}" "$PYTHON" benchmarks/gpu_suite.py "$@"
