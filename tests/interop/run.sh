#!/usr/bin/env bash
# Runs every tests/interop/NN-*.sh in order, each in its own process, and
# reports pass/fail per script and a last line "N passed, M failed".
# Exits non-zero if any script failed. Needs root and the peers installed
# (see .ci/run). Usage: tests/interop/run.sh [PATTERN]   e.g. run.sh 20
# Env: BERTH (binary to test), INTEROP_TIMEOUT (seconds per script, 1200).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
pattern="${1:-}"
timeout_s="${INTEROP_TIMEOUT:-1200}"
passed=0
failed=0
failed_names=()

if [[ "$(id -u)" != 0 ]]; then
    echo "tests/interop needs root (it starts dockerd)" >&2
    exit 2
fi

for script in "$here"/[0-9][0-9]-*.sh; do
    [[ -e "$script" ]] || continue
    name="$(basename "$script")"
    [[ -z "$pattern" || "$name" == *"$pattern"* ]] || continue
    echo "=== $name"
    start=$SECONDS
    # No stdin: a command waiting for input must fail, not hang.
    if timeout --kill-after=30 "$timeout_s" bash "$script" </dev/null; then
        echo "=== PASS $name ($((SECONDS - start))s)"
        passed=$((passed + 1))
    else
        rc=$?
        ((rc == 124)) && echo "=== timed out after ${timeout_s}s"
        echo "=== FAIL $name (exit $rc, $((SECONDS - start))s)"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
done

if ((passed + failed == 0)); then
    echo "no interop scripts matched" >&2
    exit 2
fi
((failed == 0)) || echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
