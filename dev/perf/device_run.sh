#!/usr/bin/env bash
# One device call of the GPU performance work (issue 3), run from the snapshot root
# on the GPU machine: build, bench rows (with A/B switches for each change), the GPU
# suite, then an ncu kernel summary of one fused 64x256 step (bench starts the
# profiler at its timed steps). Writes under $OUT; times in $OUT/times.txt.
# Switches for A/B rows: SPD_CUDA_PAD=0 (no 341 -> 344 padding), SPD_CUDA_GEMM=sgemm
# (cublasSgemm instead of tuned cuBLASLt in fused mode).
# Usage: bash dev/perf/device_run.sh
set -u
source scripts/device-env.sh
T0=$(date +%s)
mark() { echo "$1 $(($(date +%s) - T0)) s" >>"$OUT/times.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
mark build
S=./build/spd
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
    for sw in "SPD_CUDA_PAD=0" "SPD_CUDA_GEMM=sgemm" "SPD_CUDA_PAD=0 SPD_CUDA_GEMM=sgemm"; do
        echo "## $sw"
        env $sw $S bench full $B --mode fused --batch 64 --seq 256 --steps 20 --warmup 3 --no-ceilings 2>&1 | grep -E "^bench|RESULT"
    done
} >"$OUT/bench.txt"
grep "^bench\|^#" "$OUT/bench.txt"
mark bench
timeout 150 bash tests/run_gpu.sh >"$OUT/gpu_tests.log" 2>&1
grep -E "^not ok|passed" "$OUT/gpu_tests.log" | tail -15
mark gpu_suite
timeout 75 ncu --profile-from-start off --metrics gpu__time_duration.sum --print-summary per-kernel $S bench full $B \
    --mode fused --batch 64 --seq 256 --steps 1 --warmup 0 --no-ceilings >"$OUT/ncu.txt" 2>&1
echo "ncu rc $?" >>"$OUT/ncu.txt"
mark ncu
cat "$OUT/times.txt"
