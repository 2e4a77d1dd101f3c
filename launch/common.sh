# Shared by the launch scripts: `run` executes a command, or only prints it under --dry-run (DRY_RUN=1).
# Printed commands are shell-quoted, so a dry run's output can be pasted and run as is.
run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# gpu.sh / local.sh: [--dry-run] CONFIG [key=value ...] → a .venv with the given pip installs, then train.
venv_and_train() {
  local pkgs=("$@"); set -- "${ARGS[@]}"
  DRY_RUN=0
  [ "${1:-}" = "--dry-run" ] && { DRY_RUN=1; shift; }
  [ $# -ge 1 ] || die "missing CONFIG"
  cd "$(dirname "$0")/.."
  [ -x .venv/bin/python ] || run python3 -m venv .venv
  local p words
  for p in "${pkgs[@]}"; do read -ra words <<< "$p"; run .venv/bin/pip install -q "${words[@]}"; done
  run .venv/bin/jaxretrieval train "$@"
}
