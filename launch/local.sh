#!/usr/bin/env bash
# Train on this machine's CPU (or whatever jax finds): a .venv with the package, then `jaxretrieval train`.
# XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices for trying meshes.
#
#   launch/local.sh [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && { DRY_RUN=1; shift; }
[ $# -ge 1 ] || die "missing CONFIG"
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || run python3 -m venv .venv
run .venv/bin/pip install -q -e .
run .venv/bin/jaxretrieval train "$@"
