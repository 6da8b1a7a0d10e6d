#!/usr/bin/env bash
# One device call to A/B this tree against another commit's code in ./base (made on the
# host: git archive COMMIT | tar -x -C SNAPSHOT/base): build both, the GPU op checks here,
# then `spd bench full` (fused, PRECISION: --tf32 or --bf16) medians alternating this tree
# and base at 64x256 (three times), 32x256 and 128x256, and this tree's CUPTI kernel map
# of the 64x256 step. From the repository root on the GPU machine; logs in $OUT.
# Usage: bash dev/kernels/ab_base.sh [PRECISION] [skip-tests]
set -uo pipefail
prec=${1:---tf32}
source dev/kernels/device_prelude.sh gpu-tests
(cd base && make -j16 "${SPD_MAKE_ARGS[@]}" build/spd >"$OUT/build_base.log" 2>&1) || { tail -20 "$OUT/build_base.log"; exit 1; }
echo "built ($((SECONDS - t0)) s)"
if [ "${2:-}" != skip-tests ]; then
    ./build/tests/gpu/test_gpu_ops >"$OUT/gpu_ops.log" 2>&1
    echo "test_gpu_ops rc $? ok $(grep -c '^ok' "$OUT/gpu_ops.log") not ok $(grep -c '^not ok' "$OUT/gpu_ops.log") ($((SECONDS - t0)) s)"
    grep "^not ok" "$OUT/gpu_ops.log" | head -8
fi
for row in "64 256" "64 256" "32 256" "64 256" "128 256"; do
    set -- $row
    for which in new base; do
        bin=./build/spd
        [ $which = base ] && bin=./base/build/spd
        printf "%-4s full %sx%s %s: " "$which" "$1" "$2" "$prec"
        $bin bench full --device cuda --mode fused "$prec" --no-ceilings --batch "$1" --seq "$2" --steps 20 \
            --warmup 3 2>&1 | grep -E "^bench .*mean" | sed 's/.*: //'
    done
done | tee "$OUT/ab.txt"
echo "bench done ($((SECONDS - t0)) s)"
OUT=$OUT/trace bash dev/kernels/trace/run_device.sh "full $prec --batch 64 --seq 256" | grep -E "untraced|step|^ +[0-9.]+ +[0-9]+ " | head -40
echo "done ($((SECONDS - t0)) s)"
