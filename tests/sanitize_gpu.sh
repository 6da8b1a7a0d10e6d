#!/usr/bin/env bash
# compute-sanitizer memcheck and racecheck over `spd check --device cuda` on a
# reference file, over a few benchmark steps in both GPU modes and over 3 GPU training
# steps (small shapes:
# the sanitizer slows kernels down 10-100x). Needs a GPU and `make gpu-tests`.
# Prints "ok - ..." / "not ok - ..." lines and "N passed, N failed". SANITIZE_ONLY=REGEX runs
# only the checks whose names match.
set -u
cd "$(dirname "$0")/.."
SPD=${SPD_BIN:-$PWD/build/spd}
CS=${COMPUTE_SANITIZER:-compute-sanitizer}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0 failed=0
run() {  # name, then the command (skipped when SANITIZE_ONLY, a regex, does not match the name)
    local name=$1
    shift
    [[ -n ${SANITIZE_ONLY:-} && ! $name =~ $SANITIZE_ONLY ]] && return
    "$@" >"$log" 2>&1
    local status=$?
    # memcheck ends "ERROR SUMMARY: 0 errors", racecheck "RACECHECK SUMMARY: 0 hazards displayed (0 errors, ...)"
    if [ $status -eq 0 ] && grep -qE "ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards displayed \(0 errors" "$log"; then
        echo "ok - $name"
        passed=$((passed + 1))
    else
        echo "not ok - $name (exit $status)"
        grep -E "ERROR SUMMARY|Invalid|Race|hazard|spd:" "$log" | head -10 | sed 's/^/#   /'
        failed=$((failed + 1))
    fi
}
ref=tests/refs/ref_delta.safetensors
for tool in memcheck racecheck; do
    run "$tool: spd check --device cuda $(basename $ref)" $CS --tool $tool --error-exitcode 9 "$SPD" check --device cuda $ref
    for mode in unfused fused; do
        run "$tool: bench full --mode $mode (1 step)" $CS --tool $tool --error-exitcode 9 "$SPD" bench full --device cuda \
            --mode $mode --tf32 --no-ceilings --batch 2 --seq 64 --C 96 --steps 1 --warmup 1
        run "$tool: bench linear --mode $mode (1 step)" $CS --tool $tool --error-exitcode 9 "$SPD" bench linear \
            --device cuda --mode $mode --tf32 --no-ceilings --batch 2 --seq 64 --d_in 96 --d_out 80 --C 112 --steps 1 --warmup 1
    done
done
# The back-to-back masked product (its components split 3 ways: one chunk each) and the
# two weight-gradient kernels in a fused TF32 step, at this small size too
# (SPD_CUDA_WGRAD_STORED_MIN_N=0: by default that one runs from 4096 tokens); the
# stored-activation one alone in the isolated op.
small=(SPD_CUDA_B2B=1 SPD_CUDA_B2B_MIN_M=0 SPD_CUDA_B2B_SPLIT=3 SPD_CUDA_WGRAD_MIN_N=0 SPD_CUDA_WGRAD_STORED_MIN_N=0)
for tool in memcheck racecheck; do
    run "$tool: bench full --mode fused, back-to-back and weight-gradient kernels (1 step)" env "${small[@]}" $CS \
        --tool $tool --error-exitcode 9 "$SPD" bench full --device cuda --mode fused --tf32 --no-ceilings --batch 2 \
        --seq 64 --C 96 --steps 1 --warmup 1
    run "$tool: bench linear --mode fused, stored-activation weight gradients (1 step)" env "${small[@]}" $CS \
        --tool $tool --error-exitcode 9 "$SPD" bench linear --device cuda --mode fused --tf32 --no-ceilings \
        --batch 2 --seq 67 --d_in 96 --d_out 200 --C 132 --steps 1 --warmup 1
done
# The memory-lean attention of fused mode over partial 64-row tiles (S = 132: three query and
# key tiles, the last of 4 rows) with two query heads per kv head.
for tool in memcheck racecheck; do
    run "$tool: bench full --mode fused, memory-lean attention on partial tiles (1 step)" $CS --tool $tool \
        --error-exitcode 9 "$SPD" bench full --device cuda --mode fused --tf32 --no-ceilings --batch 1 --seq 132 \
        --C 96 --steps 1 --warmup 1
done
# The transposed mask passes and the side stream (kmajor_route: both widths past 512), forced
# onto a short step: partial 64 x 64 tiles (12 tokens, 1028 components), captured as a graph
# (products this small stay on cublasSgemm: no tuning runs under the sanitizer).
for tool in memcheck racecheck; do
    run "$tool: bench linear --mode fused, transposed mask passes (1 step)" env SPD_CUDA_KMAJOR_MIN_N=0 $CS \
        --tool $tool --error-exitcode 9 "$SPD" bench linear --device cuda --mode fused --tf32 --no-ceilings \
        --batch 2 --seq 6 --d_in 516 --d_out 520 --C 1028 --steps 1 --warmup 1
done
# Training on the GPU (a ResidMLP with an inserted identity, SPD's test config: CI
# functions, masks, losses, AdamW and the identity site), 3 steps.
train_tmp=$(mktemp -d)
for tool in memcheck racecheck; do
    run "$tool: spd train --device cuda (resid_mlp_identity, 3 steps)" env SPD_OUT_DIR="$train_tmp/$tool" $CS --tool $tool \
        --error-exitcode 9 "$SPD" train tests/configs/resid_mlp_identity.yaml --device cuda --steps 3
done
rm -rf "$train_tmp"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
