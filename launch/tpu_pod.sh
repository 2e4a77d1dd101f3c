#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create it, copy this checkout to every worker, install the package with the TPU
# build of jax, run `jaxretrieval train` on all workers at once (jax.distributed initializes from the TPU
# environment; each host reads its own data shards), stream the logs, and optionally delete the slice at the end.
#
# A slice that is preempted while training (its state turns PREEMPTED) is deleted, created again and the same
# command run again, which resumes from the run's newest checkpoint (output_dir must outlive the slice: gs://),
# up to --max-restarts times (default 3).
#
#   launch/tpu_pod.sh --name NAME --zone ZONE --accelerator-type v5litepod-16 --runtime v2-alpha-tpuv5-lite \
#       [--project P] [--delete-on-exit] [--max-restarts N] [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
NAME="" ZONE="" TYPE="" RUNTIME="" PROJECT="" DELETE=0 DRY_RUN=0 RESTARTS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME=$2; shift 2 ;;
    --zone) ZONE=$2; shift 2 ;;
    --accelerator-type) TYPE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    --delete-on-exit) DELETE=1; shift ;;
    --max-restarts) RESTARTS=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    --*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "missing CONFIG (e.g. configs/scifact_mnrl.yaml)"
for v in NAME ZONE TYPE RUNTIME; do [ -n "${!v}" ] || die "--$(echo $v | tr A-Z a-z | sed 's/type/accelerator-type/') is required"; done
CONFIG=$1; shift
EXTRA=(--zone "$ZONE")
[ -n "$PROJECT" ] && EXTRA+=(--project "$PROJECT")
[[ "$RESTARTS" =~ ^[0-9]+$ ]] || die "--max-restarts takes a whole number, got $RESTARTS"
TRAIN="set -o pipefail; cd ~/jaxretrieval && JAXRETRIEVAL_DISTRIBUTED=1 .venv/bin/jaxretrieval train $(printf '%q ' "$CONFIG" "$@")"
SETUP="cd ~/jaxretrieval && python3 -m venv .venv && .venv/bin/pip install -q 'jax[tpu]' && .venv/bin/pip install -q -e ."

create() { run gcloud compute tpus tpu-vm create "$NAME" "${EXTRA[@]}" --accelerator-type "$TYPE" --version "$RUNTIME"; }
set_up() {
  run gcloud compute tpus tpu-vm scp --recurse "$(cd "$(dirname "$0")/.." && pwd)" "$NAME":~/jaxretrieval \
      --worker=all "${EXTRA[@]}"
  run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${EXTRA[@]}" --command "$SETUP"
}

create
if [ "$DELETE" = 1 ]; then
  if [ "$DRY_RUN" = 1 ]; then echo "# on exit:"; run gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet
  else trap 'gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet' EXIT; fi
fi
set_up
for attempt in $(seq 0 "$RESTARTS"); do
  if run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${EXTRA[@]}" --command "$TRAIN 2>&1 | tee -a train.log"
  then
    exit 0
  fi
  [ "$DRY_RUN" = 1 ] && { echo "# if the slice is then PREEMPTED: delete it, create it, set it up, run the same command"; exit 0; }
  state=$(gcloud compute tpus tpu-vm describe "$NAME" "${EXTRA[@]}" --format='value(state)')
  [ "$state" = PREEMPTED ] || die "training failed on $NAME (slice state ${state:-unknown}); see train.log"
  [ "$attempt" -lt "$RESTARTS" ] || die "$NAME was preempted $((attempt + 1)) times; giving up (--max-restarts)"
  echo "$NAME was preempted: creating it again and resuming ($((attempt + 1)) of $RESTARTS)" >&2
  gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet
  create
  set_up
done
