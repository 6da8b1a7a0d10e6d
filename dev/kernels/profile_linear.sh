#!/usr/bin/env bash
# One device call: where `spd bench linear` (fused TF32, 64x256) spends its step: the
# benchmark rows with their floors, the same with the masked product off (SPD_CUDA_WGMMA=0),
# and ncu's kernel map of one step. A shape is D (d_in = d_out = C = D) or D_IN:D_OUT:C. From
# the repository root on the GPU machine; logs go to $OUT.
# Usage: bash dev/kernels/profile_linear.sh [SHAPE ...]   (default 2048 4096)
set -uo pipefail
source dev/kernels/device_prelude.sh build/spd
dims=("$@")
[ ${#dims[@]} -eq 0 ] && dims=(2048 4096)
for d in "${dims[@]}"; do
    IFS=: read -r di dout c <<<"$d"
    args=(--device cuda --mode fused --tf32 --batch 64 --seq 256 --d_in "$di" --d_out "${dout:-$di}" --C "${c:-$di}")
    for v in 1 0 1; do
        echo "SPD_CUDA_WGMMA=$v linear d=$d"
        SPD_CUDA_WGMMA=$v ./build/spd bench linear "${args[@]}" --steps 50 --warmup 5 2>&1 | grep -E "^bench|floor"
    done
    ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum \
        ./build/spd bench linear "${args[@]}" --no-ceilings --steps 1 --warmup 2 >"$OUT/ncu_linear_$d.csv" 2>&1
    python3 bench/kernel_times.py "$OUT/ncu_linear_$d.csv" 40 | tee "$OUT/kernels_linear_$d.txt"
done 2>&1 | tee "$OUT/profile.txt"
echo "done ($((SECONDS - t0)) s)"
