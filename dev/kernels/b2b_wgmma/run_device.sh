#!/usr/bin/env bash
# One device call for the back-to-back wgmma kernel (NOTES.md): build, the GPU op
# checks (default and with Y tiles past 128 columns), every reference through
# `spd check --device cuda --mode fused --tf32`, A/B timings, compute-sanitizer.
# Run from the repository root on the GPU machine; logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source scripts/device-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cat COMMIT
t0=$SECONDS
make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build $((SECONDS - t0)) s"
ops() {  # log name, then environment assignments
    local log=$1
    shift
    env "$@" ./build/tests/gpu/test_gpu_ops >"$OUT/$log" 2>&1
    echo "test_gpu_ops $* rc $? ok $(grep -c '^ok' "$OUT/$log") not ok $(grep -c '^not ok' "$OUT/$log") ($((SECONDS - t0)) s)"
    grep "^not ok" "$OUT/$log" | head -8
}
ops gpu_ops.log SPD_CUDA_B2B=1
ops gpu_ops_k2.log SPD_CUDA_B2B_MAX_K2=384
refs=(tests/refs/*.safetensors .debs/shared/refs/*.safetensors)
for k2 in 128 384; do
    if SPD_CUDA_B2B_MAX_K2=$k2 ./build/spd check --device cuda --mode fused --tf32 "${refs[@]}" >"$OUT/check_$k2.log" 2>&1; then
        echo "spd check fused tf32 (max K2 $k2): all pass"
    else
        echo "spd check fused tf32 (max K2 $k2) FAILED"; grep -E "FAIL|spd:" "$OUT/check_$k2.log" | head -5
    fi
done
bench() { ./build/spd bench "$@" --no-ceilings 2>&1 | grep -E "^bench .*mean"; }
{
    for row in 64x256 16x128 128x256; do
        for e in SPD_CUDA_B2B=1 SPD_CUDA_B2B=0 SPD_CUDA_B2B_MAX_K2=384; do
            echo "$e full $row"
            env $e bash -c "$(declare -f bench); bench full --device cuda --mode fused --tf32 --batch ${row%x*} --seq ${row#*x} --steps 20 --warmup 3"
        done
    done
    for e in SPD_CUDA_B2B=1 SPD_CUDA_B2B=0; do
        echo "$e linear 512"
        env $e bash -c "$(declare -f bench); bench linear --device cuda --mode fused --tf32 --batch 64 --seq 256 --d_in 512 --d_out 512 --C 512 --steps 50 --warmup 5"
    done
} 2>&1 | tee "$OUT/ab.txt"
echo "bench done ($((SECONDS - t0)) s)"
timeout 200 bash tests/sanitize_gpu.sh >"$OUT/sanitize.log" 2>&1
echo "sanitize rc $?: $(tail -1 "$OUT/sanitize.log")"; grep "^not ok" "$OUT/sanitize.log" | head
