#!/usr/bin/env bash
# Train on all local NVIDIA GPUs: a .venv with the CUDA 12 build of jax and this package, then
# `jaxretrieval train` (one process; the mesh spans every visible GPU; bf16 compute is set in the config).
#
#   launch/gpu.sh [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
ARGS=("$@")
venv_and_train 'jax[cuda12]' '-e .'
