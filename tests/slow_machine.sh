#!/usr/bin/env bash
# The README's first command and the timing-sensitive tests on a slow machine: one core
# (taskset -c 0) and a cold Prefect home (a new, empty PREFECT_HOME for each run), as a user's
# fresh laptop or a small CI runner has them.  Prints each part's wall time; exits non-zero on
# the first failure.
#
#   bash tests/slow_machine.sh            # demo --fast, demo, then pytest -m timing
#   SLOW_PARTS="demo-fast" bash tests/slow_machine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
CORE="${SLOW_CORE:-0}"
PARTS="${SLOW_PARTS:-demo-fast demo timing-tests}"
if command -v uv >/dev/null 2>&1 && uv --version >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
command -v taskset >/dev/null || { echo "error: taskset not found (Debian package util-linux)"; exit 2; }

run_part() {
  local name="$1"; shift
  local home; home="$(mktemp -d -t ats-cold-prefect-XXXXXX)"
  local started; started=$(date +%s)
  echo "=== ${name}: taskset -c ${CORE}, cold PREFECT_HOME=${home}"
  if PREFECT_HOME="${home}" taskset -c "${CORE}" "${UV[@]}" run "$@"; then
    echo "=== ${name}: passed in $(( $(date +%s) - started )) s"
    rm -rf "${home}"
  else
    echo "=== ${name}: FAILED after $(( $(date +%s) - started )) s"
    rm -rf "${home}"
    return 1
  fi
}

for part in ${PARTS}; do
  case "${part}" in
    demo-fast)    run_part "ats demo --fast" ats demo --fast ;;
    demo)         run_part "ats demo" ats demo ;;
    timing-tests) run_part "pytest -m timing" pytest -m timing -q -p no:cacheprovider --timeout=600 ;;  # one core: minutes per test
    *) echo "error: unknown part ${part} (demo-fast, demo, timing-tests)"; exit 2 ;;
  esac
done
