#!/usr/bin/env bash
# Train on this machine's CPU (or whatever jax finds): a .venv with the package, then `jaxretrieval train`.
# XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices for trying meshes.
#
#   launch/local.sh [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
ARGS=("$@")
venv_and_train '-e .'
