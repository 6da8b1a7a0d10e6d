#!/usr/bin/env bash
# Device call: build, op checks, references, the isolated 128 x 128 module (C = 1200)
# with and without the kernel, and ncu of the kernel against the path it replaces.
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
if ./build/spd check --device cuda --mode fused --tf32 tests/refs/*.safetensors .debs/shared/refs/*.safetensors >"$OUT/check.log" 2>&1; then
    echo "spd check fused tf32: all pass"
else
    echo "spd check fused tf32 FAILED"; grep -E "FAIL|spd:" "$OUT/check.log" | head -5
fi
grep -E "k_proj.(V|U) " "$OUT/check.log" | head -4
lin() { ./build/spd bench linear --device cuda --mode fused --tf32 --no-ceilings --d_in 128 --d_out 128 --C 1200 "$@" 2>&1 | grep -E "^bench .*mean"; }
for bs in "64 256" "16 128"; do
    set -- $bs
    for e in 1 0; do echo "B2B=$e linear 128x128 C=1200 batch $1 seq $2"; SPD_CUDA_B2B=$e lin --batch $1 --seq $2 --steps 50 --warmup 5; done
done | tee "$OUT/ab.txt"
for e in 1 0; do
    SPD_CUDA_B2B=$e ncu --metrics gpu__time_duration.sum ./build/spd bench linear --device cuda --mode fused --tf32 --no-ceilings \
        --d_in 128 --d_out 128 --C 1200 --batch 64 --seq 256 --steps 1 --warmup 0 >"$OUT/ncu_time_$e.txt" 2>&1
    echo "== B2B=$e kernels (us)"; grep -E "^  [a-zA-Z_].*\(|gpu__time_duration" "$OUT/ncu_time_$e.txt" | paste - - | \
        sed -E 's/ *\([0-9]+, [0-9]+, [0-9]+\)x\([0-9]+, [0-9]+, [0-9]+\).*gpu__time_duration.sum +/  /' | cut -c1-150
done
ncu --kernel-name regex:masked_b2b --launch-count 2 --section SpeedOfLight --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section Occupancy --section SchedulerStats \
    ./build/spd bench linear --device cuda --mode fused --tf32 --no-ceilings --d_in 128 --d_out 128 --C 1200 \
    --batch 64 --seq 256 --steps 1 --warmup 0 >"$OUT/ncu_b2b.txt" 2>&1
grep -E "Duration|Throughput|Pipe|Stall|Warp Cycles|Issued|Eligible|Active Warps|L2 Hit|Mem Busy|Max Bandwidth" "$OUT/ncu_b2b.txt" | head -60
echo "done ($((SECONDS - t0)) s)"
