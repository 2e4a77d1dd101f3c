#!/usr/bin/env bash
# Train on all local NVIDIA GPUs: a .venv with the CUDA 12 build of jax and this package, then
# `jaxretrieval train` (one process; the mesh spans every visible GPU; bf16 compute is set in the config).
#
#   launch/gpu.sh [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && { DRY_RUN=1; shift; }
[ $# -ge 1 ] || die "missing CONFIG"
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || run python3 -m venv .venv
run .venv/bin/pip install -q 'jax[cuda12]'
run .venv/bin/pip install -q -e .
run .venv/bin/jaxretrieval train "$@"
