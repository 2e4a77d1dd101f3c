#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create it, copy this checkout to every worker, install the package with the TPU
# build of jax, run `jaxretrieval train` on all workers at once (jax.distributed initializes from the TPU
# environment; each host reads its own data shards), stream the logs, and optionally delete the slice at the end.
#
#   launch/tpu_pod.sh --name NAME --zone ZONE --accelerator-type v5litepod-16 --runtime v2-alpha-tpuv5-lite \
#       [--project P] [--delete-on-exit] [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
NAME="" ZONE="" TYPE="" RUNTIME="" PROJECT="" DELETE=0 DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME=$2; shift 2 ;;
    --zone) ZONE=$2; shift 2 ;;
    --accelerator-type) TYPE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    --delete-on-exit) DELETE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    --*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "missing CONFIG (e.g. configs/scifact_mnrl.yaml)"
for v in NAME ZONE TYPE RUNTIME; do [ -n "${!v}" ] || die "--$(echo $v | tr A-Z a-z | sed 's/type/accelerator-type/') is required"; done
CONFIG=$1; shift
EXTRA=(--zone "$ZONE")
[ -n "$PROJECT" ] && EXTRA+=(--project "$PROJECT")
TRAIN="cd ~/jaxretrieval && JAXRETRIEVAL_DISTRIBUTED=1 .venv/bin/jaxretrieval train $(printf '%q ' "$CONFIG" "$@")"
SETUP="cd ~/jaxretrieval && python3 -m venv .venv && .venv/bin/pip install -q 'jax[tpu]' && .venv/bin/pip install -q -e ."

run gcloud compute tpus tpu-vm create "$NAME" "${EXTRA[@]}" --accelerator-type "$TYPE" --version "$RUNTIME"
if [ "$DELETE" = 1 ]; then
  if [ "$DRY_RUN" = 1 ]; then echo "# on exit:"; run gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet
  else trap 'gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet' EXIT; fi
fi
run gcloud compute tpus tpu-vm scp --recurse "$(cd "$(dirname "$0")/.." && pwd)" "$NAME":~/jaxretrieval \
    --worker=all "${EXTRA[@]}"
run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${EXTRA[@]}" --command "$SETUP"
run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${EXTRA[@]}" --command "$TRAIN 2>&1 | tee train.log"
