#!/usr/bin/env bash
# One device call to A/B a kernel switch: build, the GPU op checks (VAR=1), then `spd bench full`
# (fused TF32) at 64x256, 32x256 and 128x256 and `spd bench linear` at LlamaSimple's
# module shapes with VAR=1 and VAR=0 alternating in the same call, and ncu's kernel map of
# the 64x256 step both ways (the kernels matching REGEX printed). From the repository
# root on the GPU machine; logs go to $OUT. Usage: bash dev/kernels/ab_device.sh VAR REGEX
set -uo pipefail
var=${1:?usage: ab_device.sh VAR REGEX} regex=${2:?usage: ab_device.sh VAR REGEX}
source dev/kernels/device_prelude.sh gpu-tests
env "$var=1" ./build/tests/gpu/test_gpu_ops >"$OUT/gpu_ops.log" 2>&1
echo "$var=1 test_gpu_ops rc $? ok $(grep -c '^ok' "$OUT/gpu_ops.log")" \
    "not ok $(grep -c '^not ok' "$OUT/gpu_ops.log") ($((SECONDS - t0)) s)"
grep "^not ok" "$OUT/gpu_ops.log" | head -8
bench() { ./build/spd bench "$@" --device cuda --mode fused --tf32 --no-ceilings 2>&1 | grep -E "^bench .*mean"; }
{
    for row in "64 256" "32 256" "128 256"; do
        set -- $row
        for v in 1 0 1 0; do
            echo "$var=$v full $1x$2"
            env "$var=$v" bash -c "$(declare -f bench); bench full --batch $1 --seq $2 --steps 20 --warmup 3"
        done
    done
    for shape in "128 128" "128 341" "341 128"; do
        set -- $shape
        for v in 1 0; do
            echo "$var=$v linear $1 -> $2, C=1200, 64x256"
            env "$var=$v" bash -c "$(declare -f bench); bench linear --d_in $1 --d_out $2 --C 1200 --batch 64 --seq 256 --steps 50 --warmup 5"
        done
    done
} 2>&1 | tee "$OUT/ab.txt"
echo "bench done ($((SECONDS - t0)) s)"
for v in 1 0; do
    env "$var=$v" ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum \
        ./build/spd bench full --device cuda --mode fused --tf32 --no-ceilings --batch 64 --seq 256 --steps 1 \
        --warmup 0 >"$OUT/ncu_$v.csv" 2>&1
    python3 bench/kernel_times.py "$OUT/ncu_$v.csv" 30 >"$OUT/kernels_$v.txt"
    echo "$var=$v kernel map (64x256 step):"
    grep -E "launches|$regex" "$OUT/kernels_$v.txt"
done
echo "done ($((SECONDS - t0)) s)"
