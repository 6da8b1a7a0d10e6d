#!/usr/bin/env bash
# The GPU suite (needs a GPU; not part of tests/run.sh, which CI runs without one):
# every test program in $BUILD/tests/gpu, then `spd check --device cuda` on every
# reference file (tests/refs and $SHARED_DIR/refs when present, and the training
# references tests/refs/train), then tests/gpu/dist_train.sh (--gpus N over NCCL). Counts the
# "ok - " / "not ok - " lines and ends with "N passed, N failed".
# Build first with `make gpu-tests`.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SPD="$PWD/$BUILD/spd"
SHARED_DIR=${SHARED_DIR:-$PWD/../shared}
passed=0 failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count() {  # $1 name, $2 exit status: adds the log's ok / not ok lines to the totals
    local p f
    p=$(grep -c '^ok - ' "$log")
    f=$(grep -c '^not ok - ' "$log")
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $1: exited with status $2"
        f=1
    fi
    passed=$((passed + p)) failed=$((failed + f))
}
n_progs=0
for t in "$BUILD"/tests/gpu/test_*; do
    [ -x "$t" ] || continue
    n_progs=$((n_progs + 1))
    "$t" >"$log" 2>&1
    status=$?
    cat "$log"
    count "$(basename "$t")" "$status"
done
if [ "$n_progs" -eq 0 ]; then
    echo "not ok - GPU test programs: none in $BUILD/tests/gpu (run make gpu-tests)"
    failed=$((failed + 1))
fi
# Every reference in exact float32 products (bound 1e-5), in TF32 (bound 5e-3) and
# with bf16 operands (bound 3e-2), both modes.
for r in tests/refs/*.safetensors "$SHARED_DIR"/refs/*.safetensors; do
    [ -f "$r" ] || continue
    for flags in "" "--tf32" "--bf16" "--mode fused" "--mode fused --tf32" "--mode fused --bf16"; do
        "$SPD" check --device cuda $flags "$r" >"$log" 2>&1
        status=$?
        if [ "$status" -eq 0 ]; then
            echo "ok - spd check --device cuda $flags $(basename "$r")"
            passed=$((passed + 1))
        else
            echo "not ok - spd check --device cuda $flags $(basename "$r"): exit $status"
            grep -E 'FAIL|spd:|CUDA' "$log" | head -20 | sed 's/^/#   /'
            failed=$((failed + 1))
        fi
    done
done
# Training references (spd-ref-train-v1): the step or run in float32 on the GPU
# (bound 1e-4; docs/spd-ref-train-v1.md).
for r in tests/refs/train/*.safetensors; do
    [ -f "$r" ] || continue
    "$SPD" check --device cuda "$r" >"$log" 2>&1
    status=$?
    if [ "$status" -eq 0 ]; then
        echo "ok - spd check --device cuda $(basename "$r")"
        passed=$((passed + 1))
    else
        echo "not ok - spd check --device cuda $(basename "$r"): exit $status"
        grep -E 'FAIL|spd:|CUDA' "$log" | head -20 | sed 's/^/#   /'
        failed=$((failed + 1))
    fi
done
# Data parallel training through NCCL (spd train --gpus N): tests/gpu/dist_train.sh.
if ! nm "$BUILD/libspd.a" 2>/dev/null | grep -q " U ncclAllReduce"; then
    echo "not ok - spd train --gpus: this build has no NCCL (set NCCL_HOME)"
    failed=$((failed + 1))
else
    BUILD=$BUILD bash tests/gpu/dist_train.sh >"$log" 2>&1
    status=$?
    cat "$log"
    count "tests/gpu/dist_train.sh" "$status"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
