#!/usr/bin/env bash
# The benchmark tables' device call: build, the GPU test suite, spd.c's rows
# (unfused and fused, TF32 as the seed's tables) and the PyTorch peer's rows,
# on the same GPU in the same call. Run on the GPU machine from the repo root,
# carrying .debs (scripts/fetch-device-debs.sh, plus .debs/shared = ../shared)
# and .peer/carry (bench/make_peer_carry.sh):
#   bash bench/device_bench.sh
# SPD_SKIP_SUITE=1: only the bf16 reference checks instead of tests/run_gpu.sh; SPD_SKIP_BF16=1: no bf16 rows.
# Files under $OUT (at most 8 come back from the device): build.log, gputests.log or check_bf16.log, spd_bench.txt, spd_bench.log and the
# peer's peer_full.txt, peer_linear.txt, peer_results.jsonl. Concatenate the
# .txt outputs into bench/results/<date>-<gpu>.txt and run bench/make_results.py.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/spd_out}
mkdir -p "$OUT"
source scripts/device-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
if [ -z "${SPD_SKIP_SUITE:-}" ]; then
    SHARED_DIR=$PWD/.debs/shared bash tests/run_gpu.sh >"$OUT/gputests.log" 2>&1
    tail -1 "$OUT/gputests.log"
else  # the suite ran in an earlier call on this commit's code: the reference checks only
    for m in unfused fused; do
        ./build/spd check --device cuda --bf16 --mode $m tests/refs/*.safetensors .debs/shared/refs/*.safetensors \
            >>"$OUT/check_bf16.log" 2>&1 && echo "spd check --device cuda --bf16 --mode $m: all pass" ||
            { echo "spd check --device cuda --bf16 --mode $m: FAILED"; grep -E "FAIL|spd:" "$OUT/check_bf16.log" | head; }
    done
fi
ROWS=${SPD_FULL_ROWS:-16x128 32x256 64x256 128x256}
DIMS=${SPD_LINEAR_DIMS:-512 2048 4096}
{
    for row in $ROWS; do
        for mode in unfused fused; do
            ./build/spd bench full --device cuda --mode $mode --tf32 --batch ${row%x*} --seq ${row#*x} --steps 20 --warmup 3
        done
    done
    for d in $DIMS; do
        for mode in unfused fused; do
            ./build/spd bench linear --device cuda --mode $mode --tf32 --batch 64 --seq 256 --d_in $d --d_out $d --C $d \
                --steps 50 --warmup 5
        done
    done
    # bf16 operands (float32 accumulation), fused mode: rows of their own (precision bf16)
    if [ -z "${SPD_SKIP_BF16:-}" ]; then
        for row in $ROWS; do
            ./build/spd bench full --device cuda --mode fused --bf16 --batch ${row%x*} --seq ${row#*x} --steps 20 --warmup 3
        done
        for d in $DIMS; do
            ./build/spd bench linear --device cuda --mode fused --bf16 --batch 64 --seq 256 --d_in $d --d_out $d --C $d \
                --steps 50 --warmup 5
        done
    fi
} 2>"$OUT/spd_bench.log" | tee "$OUT/spd_bench.txt" | grep -v '^RESULT'
[ -n "${SPD_SKIP_PEER:-}" ] || bash bench/device_peer.sh
