#!/usr/bin/env bash
# Runs every test program in $BUILD/tests and every tests/cli_*.sh script,
# counts their "ok - " / "not ok - " lines, and ends with "N passed, N failed".
# A program that exits non-zero without reporting a failure counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export SPD_BIN="$PWD/$BUILD/spd" SHARED_DIR="${SHARED_DIR:-$PWD/../shared}"
passed=0 failed=0
log=$(mktemp)
run_one() {
    local name=$1; shift
    "$@" >"$log" 2>&1
    local status=$?
    cat "$log"
    local p f
    p=$(grep -c '^ok - ' "$log")
    f=$(grep -c '^not ok - ' "$log")
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $name: exited with status $status"
        f=1
    fi
    passed=$((passed + p)) failed=$((failed + f))
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in tests/cli_*.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s")" bash "$s"
done
rm -f "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
