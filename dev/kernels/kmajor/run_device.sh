#!/usr/bin/env bash
# One device call for the transposed mask passes (kmajor_route, src/cuda/components.cu): build,
# the GPU op checks, `spd check --device cuda --mode fused --tf32` with the route forced onto
# the references' small shapes, `spd bench linear` at d = C = 2048 and 4096 with the route on
# on, with the side stream off, and off (or the settings in ARMS), alternating; ncu's kernel map of one step with it on;
# SANITIZE=1: tests/sanitize_gpu.sh. From the repository root
# on the GPU machine; logs go to $OUT. Usage: bash dev/kernels/kmajor/run_device.sh [D ...]
set -uo pipefail
source dev/kernels/device_prelude.sh gpu-tests
dims=("$@")
[ ${#dims[@]} -eq 0 ] && dims=(2048 4096)
./build/tests/gpu/test_gpu_ops >"$OUT/gpu_ops.log" 2>&1
echo "test_gpu_ops rc $? ok $(grep -c '^ok' "$OUT/gpu_ops.log") not ok $(grep -c '^not ok' "$OUT/gpu_ops.log")" \
    "($((SECONDS - t0)) s)"
grep "^not ok" "$OUT/gpu_ops.log" | head -8
grep -E "mse_loss_forward_backward|d_in=5(16|76)|d_in=1024" "$OUT/gpu_ops.log" | head -40
for r in tests/refs/*.safetensors ${SHARED_DIR:-.debs/shared}/refs/*.safetensors; do
    [ -f "$r" ] || continue
    SPD_CUDA_KMAJOR_MIN_D=0 SPD_CUDA_KMAJOR_MIN_N=0 ./build/spd check --device cuda --mode fused --tf32 "$r" \
        >"$OUT/check.log" 2>&1
    echo "spd check forced route $(basename "$r"): rc $?"
done
bench() { ./build/spd bench linear --device cuda --mode fused --tf32 --no-ceilings --batch 64 --seq 256 "$@" 2>&1 |
    grep -E "^bench .*mean"; }
read -r -a arms <<<"${ARMS:-SPD_CUDA_KMAJOR=1 SPD_CUDA_SIDE_STREAM=0 SPD_CUDA_KMAJOR=0}"
for d in "${dims[@]}"; do
    for rep in 1 2; do
        for arm in "${arms[@]}"; do
            echo "$arm linear d=C=$d"
            env ${arm//,/ } bash -c "$(declare -f bench); bench --d_in $d --d_out $d --C $d --steps 50 --warmup 5"
        done
    done
done 2>&1 | tee "$OUT/ab.txt"
echo "bench done ($((SECONDS - t0)) s)"
for d in "${dims[@]}"; do
    ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum ./build/spd bench linear \
        --device cuda --mode fused --tf32 --no-ceilings --batch 64 --seq 256 --d_in "$d" --d_out "$d" --C "$d" \
        --steps 1 --warmup 2 >"$OUT/ncu_$d.csv" 2>&1
    python3 bench/kernel_times.py "$OUT/ncu_$d.csv" 30 | tee "$OUT/kernels_$d.txt"
done
[ "${SANITIZE:-0}" = 1 ] && bash tests/sanitize_gpu.sh 2>&1 | tail -25
echo "done ($((SECONDS - t0)) s)"
