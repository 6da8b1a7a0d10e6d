#!/usr/bin/env bash
# One device call of the GPU performance work (issue 3), run from the snapshot root
# on the GPU machine: build, bench rows (with A/B switches for each change), an nsys
# kernel summary of the fused 64x256 step, then the GPU suite. Writes under $OUT.
# Usage: bash dev/perf/device_run.sh [quick]
set -u
source scripts/device-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
S=./build/spd
full() { env "$@" 2>&1; }
B="--device cuda --tf32"
{
    echo "# $(cat "$OUT/gpu.txt"), commit $(cat COMMIT)"
    for row in 16x128 64x256; do
        $S bench full $B --mode fused --batch ${row%x*} --seq ${row#*x} --steps 20 --warmup 3 2>&1
    done
    for d in 2048 4096; do
        $S bench linear $B --mode fused --batch 64 --seq 256 --d_in $d --d_out $d --C $d --steps 50 --warmup 5 2>&1
    done
    echo "# A/B switches (64x256 fused, no ceilings)"
    for sw in "SPD_CUDA_MASKED_GEMM=0" "SPD_CUDA_MASKED_GEMM=0 SPD_CUDA_PAD=0" "SPD_CUDA_MASKED_GEMM=0 SPD_CUDA_GEMM=sgemm" \
        "SPD_CUDA_MASKED_GEMM=0 SPD_CUDA_GEMM=sgemm SPD_CUDA_PAD=0"; do
        echo "## $sw"
        env $sw $S bench full $B --mode fused --batch 64 --seq 256 --steps 20 --warmup 3 --no-ceilings 2>&1 | grep -E "^bench|RESULT"
    done
    for d in 2048 4096; do
        echo "## SPD_CUDA_GEMM=sgemm linear $d"
        env SPD_CUDA_GEMM=sgemm $S bench linear $B --mode fused --batch 64 --seq 256 --d_in $d --d_out $d --C $d \
            --steps 50 --warmup 5 --no-ceilings 2>&1 | grep -E "^bench|RESULT"
    done
} >"$OUT/bench.txt"
grep "^bench" "$OUT/bench.txt"
# Kernel map: nsys when present, else ncu over one 16x128 fused step (the summary also
# counts the eager warm-up run and the GEMM tuning launches that precede the graph).
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
    timeout 90 "$NSYS" profile --cuda-graph-trace=node -o /tmp/perf_prof -f true $S bench full $B --mode fused \
        --batch 64 --seq 256 --steps 5 --warmup 1 --no-ceilings >"$OUT/nsys.log" 2>&1
    "$NSYS" stats -q -r cuda_gpu_kern_sum -f csv -o "$OUT/kern" /tmp/perf_prof.nsys-rep >>"$OUT/nsys.log" 2>&1
else
    timeout 100 ncu --metrics gpu__time_duration.sum --print-summary per-kernel $S bench full $B --mode fused \
        --batch 16 --seq 128 --steps 1 --warmup 0 --no-ceilings >"$OUT/ncu.txt" 2>&1
    echo "ncu rc $?" >>"$OUT/ncu.txt"
fi
[ "${1:-}" = quick ] && exit 0
timeout 150 bash tests/run_gpu.sh >"$OUT/gpu_tests.log" 2>&1
grep -E "^not ok|passed" "$OUT/gpu_tests.log" | tail -15
