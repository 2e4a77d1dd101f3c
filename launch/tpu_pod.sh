#!/usr/bin/env bash
# Train on a Cloud TPU VM slice, everything staged through GCS (a TPU VM's disk is gone after a preemption):
#  1. here: check the config and resolve it (base: files and key=value overrides applied), requiring every path in
#     it to be gs:// (models, data, output_dir: what the workers can read); with --topology (the slice's shape,
#     e.g. v5e:4x4 for v5litepod-16), compile its train and encode steps for that slice (`jaxretrieval compile`,
#     libtpu installed here) and refuse a config that does not fit the chips' HBM; --check-only stops there; then
#     build a wheel of this checkout;
#  2. copy the wheel and the resolved config to STAGE (a gs:// folder, e.g. the run's own: gs://b/runs/x/launch);
#  3. create the slice (--spot for Spot capacity), and on every worker install jax[tpu] and the staged wheel;
#  4. run `jaxretrieval train` on all workers at once (jax.distributed initializes from the TPU environment).
# A slice that is preempted while training (its state turns PREEMPTED) is deleted, created again and the same
# command run again, which resumes from the run's newest checkpoint in gs://, up to --max-restarts times (default 3).
#
#   launch/tpu_pod.sh --name NAME --zone ZONE --accelerator-type v5litepod-16 --runtime v2-alpha-tpuv5-lite \
#       --stage gs://BUCKET/runs/NAME/launch [--project P] [--spot] [--delete-on-exit] [--max-restarts N] \
#       [--topology v5e:4x4 [--check-only]] [--dry-run] CONFIG [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
NAME="" ZONE="" TYPE="" RUNTIME="" PROJECT="" STAGE="" SPOT=0 DELETE=0 DRY_RUN=0 RESTARTS=3 TOPOLOGY="" CHECK_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME=$2; shift 2 ;;
    --zone) ZONE=$2; shift 2 ;;
    --accelerator-type) TYPE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --project) PROJECT=$2; shift 2 ;;
    --stage) STAGE=${2%/}; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --delete-on-exit) DELETE=1; shift ;;
    --max-restarts) RESTARTS=$2; shift 2 ;;
    --topology) TOPOLOGY=$2; shift 2 ;;
    --check-only) CHECK_ONLY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    --*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "missing CONFIG (e.g. configs/scifact_mnrl.yaml)"
for v in NAME ZONE TYPE RUNTIME STAGE; do [ -n "${!v}" ] || die "--$(echo $v | tr A-Z a-z | sed 's/type/accelerator-type/') is required"; done
[[ "$STAGE" == gs://* ]] || die "--stage must be a gs:// folder (the workers install from it), got $STAGE"
CONFIG=$1; shift
EXTRA=(--zone "$ZONE")
[ -n "$PROJECT" ] && EXTRA+=(--project "$PROJECT")
[[ "$RESTARTS" =~ ^[0-9]+$ ]] || die "--max-restarts takes a whole number, got $RESTARTS"
[ "$CHECK_ONLY" = 0 ] || [ -n "$TOPOLOGY" ] || die "--check-only needs --topology (the slice to compile for)"
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}  # one with this package installed
LOCAL=$(mktemp -d); trap 'rm -rf "$LOCAL"' EXIT
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml")
WHEEL="jaxretrieval-$VERSION-py3-none-any.whl"  # named exactly: an older wheel left in STAGE is never installed
# On each worker: ~/jaxretrieval holds the staged wheel and config, and a venv; the checkout is not copied. uv
# makes the venv because TPU VM images may ship a Python older than the package needs (>= 3.11) and no venv module.
SETUP="mkdir -p ~/jaxretrieval && cd ~/jaxretrieval && gcloud storage cp $(printf '%q ' "$STAGE/$WHEEL" "$STAGE/config.yaml") . && python3 -m pip install -q --user uv && ~/.local/bin/uv venv -q -p 3.11 .venv && ~/.local/bin/uv pip install -q -p .venv 'jax[tpu]' ./$WHEEL"
TRAIN="set -o pipefail; cd ~/jaxretrieval && JAXRETRIEVAL_DISTRIBUTED=1 .venv/bin/jaxretrieval train config.yaml"

stage() {
  run "$PYTHON" -m jaxretrieval.cli config "$CONFIG" "$@" --require-remote --out "$LOCAL/config.yaml"
  if [ -n "$TOPOLOGY" ]; then  # exit 2, before any slice exists, when the steps do not fit
    run "$PYTHON" -m jaxretrieval.cli compile "$LOCAL/config.yaml" --topology "$TOPOLOGY" \
      || die "$CONFIG does not compile for $TOPOLOGY (above); no slice was created"
    [ "$CHECK_ONLY" = 1 ] && { echo "compile check passed for $TOPOLOGY; --check-only: nothing created"; exit 0; }
  fi
  run rm -rf "$REPO/build"  # setuptools builds in build/lib and never prunes it: a deleted module would still ship
  run "$PYTHON" -m pip wheel -q --no-deps -w "$LOCAL/dist" "$REPO"
  run gcloud storage cp "$LOCAL/dist/$WHEEL" "$LOCAL/config.yaml" "$STAGE/"
}
create() {
  local spot=(); [ "$SPOT" = 1 ] && spot=(--spot)
  run gcloud compute tpus tpu-vm create "$NAME" "${EXTRA[@]}" --accelerator-type "$TYPE" --version "$RUNTIME" "${spot[@]}"
}
set_up() { run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${EXTRA[@]}" --command "$SETUP"; }

stage "$@"
create
if [ "$DELETE" = 1 ]; then
  if [ "$DRY_RUN" = 1 ]; then echo "# on exit:"; run gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet
  else trap 'rm -rf "$LOCAL"; gcloud compute tpus tpu-vm delete "$NAME" "${EXTRA[@]}" --quiet' EXIT; fi
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
