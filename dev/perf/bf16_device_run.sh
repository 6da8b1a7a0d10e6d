#!/usr/bin/env bash
# One device call of the bf16 work (issue 3 item 2), run from the snapshot root on
# the GPU machine: build, bench rows (TF32 and bf16 from the same call and build,
# and bf16 with SPD_CUDA_BF16_ACTS=0 as the A/B of the bf16 mask passes), the GPU
# suite, the bf16 checks' full outputs (measured errors), then an ncu kernel summary
# of one bf16 fused 64x256 step. Writes under $OUT; times in $OUT/times.txt.
# Usage: bash dev/perf/bf16_device_run.sh
set -u
source scripts/device-env.sh
T0=$(date +%s)
mark() { echo "$1 $(($(date +%s) - T0)) s" >>"$OUT/times.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
if ! make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >"$OUT/build.log" 2>&1; then
    # No libpng to link on this machine: bench, check and the GPU tests write no
    # figures, so link a throwaway stand-in (never in the repo) whose create fails.
    grep -q "undefined reference to .png_" "$OUT/build.log" || { tail -40 "$OUT/build.log"; exit 1; }
    echo "libpng missing: linking /tmp/pngstub.o (figures fail cleanly)" | tee -a "$OUT/times.txt"
    printf '%s\n' 'void *png_create_write_struct(){return 0;}' 'void *png_create_info_struct(){return 0;}' \
        'void png_destroy_write_struct(){}' 'void *png_set_longjmp_fn(){return 0;}' 'void png_init_io(){}' \
        'void png_set_IHDR(){}' 'void png_write_info(){}' 'void png_write_row(){}' 'void png_write_end(){}' \
        >/tmp/pngstub.c
    ${CC:-gcc} -c -o /tmp/pngstub.o /tmp/pngstub.c
    SPD_MAKE_ARGS[1]="${SPD_MAKE_ARGS[1]} /tmp/pngstub.o"
    make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi
mark build
S=./build/spd
export SHARED_DIR=$PWD/.debs/shared
{
    echo "# $(cat "$OUT/gpu.txt"), commit $(cat COMMIT)"
    for p in --tf32 --bf16; do
        for row in 16x128 64x256; do
            $S bench full --device cuda $p --mode fused --batch ${row%x*} --seq ${row#*x} --steps 20 --warmup 3 2>&1
        done
        for d in 2048 4096; do
            $S bench linear --device cuda $p --mode fused --batch 64 --seq 256 --d_in $d --d_out $d --C $d --steps 50 \
                --warmup 5 2>&1
        done
    done
    echo "# A/B: bf16 64x256 unfused, and fused with SPD_CUDA_BF16_ACTS=0 (no ceilings)"
    $S bench full --device cuda --bf16 --mode unfused --batch 64 --seq 256 --steps 20 --warmup 3 --no-ceilings 2>&1 |
        grep -E "^bench|RESULT"
    SPD_CUDA_BF16_ACTS=0 $S bench full --device cuda --bf16 --mode fused --batch 64 --seq 256 --steps 20 --warmup 3 \
        --no-ceilings 2>&1 | grep -E "^bench|RESULT"
} >"$OUT/bench.txt"
grep "^bench\|^#" "$OUT/bench.txt"
mark bench
timeout 120 bash tests/run_gpu.sh >"$OUT/gpu_tests.log" 2>&1
grep -E "^not ok|passed" "$OUT/gpu_tests.log" | tail -15
mark gpu_suite
for m in unfused fused; do
    $S check --device cuda --bf16 --mode $m tests/refs/*.safetensors "$SHARED_DIR"/refs/*.safetensors \
        >"$OUT/check-bf16-$m.txt" 2>&1
    echo "check bf16 $m rc $?" | tee -a "$OUT/check-bf16-$m.txt"
done
mark checks
timeout 50 ncu --profile-from-start off --metrics gpu__time_duration.sum --print-summary per-kernel $S bench full \
    --device cuda --bf16 --mode fused --batch 64 --seq 256 --steps 1 --warmup 0 --no-ceilings >"$OUT/ncu.txt" 2>&1
echo "ncu rc $?" >>"$OUT/ncu.txt"
mark ncu
cat "$OUT/times.txt"
