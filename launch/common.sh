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
