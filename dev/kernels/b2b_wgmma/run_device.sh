#!/usr/bin/env bash
# One device call for the back-to-back wgmma kernel (NOTES.md): build, the GPU op
# checks, every reference through `spd check --device cuda --mode fused --tf32` with the
# kernel on at any size, A/B timings, ncu of the kernel, compute-sanitizer memcheck and
# racecheck of a benchmark step that runs it. The kernel is off by default: SPD_CUDA_B2B=1
# turns it on where a row compares. From the repository root on the GPU
# machine; logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source scripts/device-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cat COMMIT
t0=$SECONDS
make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
./build/tests/gpu/test_gpu_ops >"$OUT/gpu_ops.log" 2>&1
echo "test_gpu_ops rc $? ok $(grep -c '^ok' "$OUT/gpu_ops.log") not ok $(grep -c '^not ok' "$OUT/gpu_ops.log") ($((SECONDS - t0)) s)"
grep "^not ok" "$OUT/gpu_ops.log" | head -8
if SPD_CUDA_B2B=1 SPD_CUDA_B2B_MIN_M=0 ./build/spd check --device cuda --mode fused --tf32 tests/refs/*.safetensors .debs/shared/refs/*.safetensors >"$OUT/check.log" 2>&1; then
    echo "spd check fused tf32 (b2b at any size): all pass"
else
    echo "spd check fused tf32 FAILED"; grep -E "FAIL|spd:" "$OUT/check.log" | head -5
fi
full() { ./build/spd bench full --device cuda --mode fused --tf32 --no-ceilings --steps 20 --warmup 3 "$@" 2>&1 | grep -E "^bench .*mean"; }
{
    for row in "64 256" "128 256" "32 256"; do
        set -- $row
        for e in SPD_CUDA_B2B=1 SPD_CUDA_B2B=0; do
            echo "$e full $1x$2"; env $e bash -c "$(declare -f full); full --batch $1 --seq $2"
        done
    done
    for e in SPD_CUDA_B2B=1 SPD_CUDA_B2B=0; do
        echo "$e linear 128x128 C=1200 64x256"
        env $e ./build/spd bench linear --device cuda --mode fused --tf32 --no-ceilings --d_in 128 --d_out 128 --C 1200 \
            --batch 64 --seq 256 --steps 50 --warmup 5 2>&1 | grep -E "^bench .*mean"
    done
} 2>&1 | tee "$OUT/ab.txt"
echo "bench done ($((SECONDS - t0)) s)"
# Kernel times of one isolated 128 x 128 module step (C = 1200) with the kernel and with
# the two-kernel path it replaces (masked_gemm_kernel + cuBLAS's P @ U, the baseline).
for e in 1 0; do
    SPD_CUDA_B2B=$e ncu --metrics gpu__time_duration.sum ./build/spd bench linear --device cuda --mode fused --tf32 \
        --no-ceilings --d_in 128 --d_out 128 --C 1200 --batch 64 --seq 256 --steps 1 --warmup 0 >"$OUT/ncu_time_$e.txt" 2>&1
done
SPD_CUDA_B2B=1 ncu --kernel-name regex:masked_b2b --launch-count 2 --section SpeedOfLight --section WarpStateStats \
    ./build/spd bench linear --device cuda --mode fused --tf32 --no-ceilings --d_in 128 --d_out 128 --C 1200 \
    --batch 64 --seq 256 --steps 1 --warmup 0 >"$OUT/ncu_b2b.txt" 2>&1
grep -E "Duration|DRAM Throughput|Compute \(SM\)|Issued Warp|Eligible Warps" "$OUT/ncu_b2b.txt" | head -12
timeout 330 bash tests/sanitize_gpu.sh >"$OUT/sanitize.log" 2>&1
echo "sanitize_gpu.sh rc $?: $(tail -1 "$OUT/sanitize.log")"; grep "^not ok" "$OUT/sanitize.log" | head
echo "done ($((SECONDS - t0)) s)"
