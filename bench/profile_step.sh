#!/usr/bin/env bash
# Kernel-time map of one timed benchmark step on the GPU: ncu times every kernel of
# `spd bench full` (only the timed steps: --profile-from-start off) and
# bench/kernel_times.py groups them by kernel. Usage, from the repository root after
# `make gpu`:  bash bench/profile_step.sh OUTDIR [BATCH SEQ]
# Writes OUTDIR/kernels-<mode>-<precision>-<batch>x<seq>.txt for fused TF32, fused bf16 and
# unfused TF32. Clocks are left free (--clock-control none), as in the benchmark itself.
set -euo pipefail
out=${1:?usage: profile_step.sh OUTDIR [BATCH SEQ]}
batch=${2:-64} seq=${3:-256}
mkdir -p "$out"
for run in "fused --tf32" "fused --bf16" "unfused --tf32"; do
    set -- $run
    tag="$1-${2#--}-${batch}x${seq}"
    ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum \
        ./build/spd bench full --device cuda --mode "$1" "$2" --no-ceilings --batch "$batch" --seq "$seq" \
        --steps 1 --warmup 0 >"$out/ncu-$tag.csv" 2>"$out/ncu-$tag.err"
    python3 bench/kernel_times.py "$out/ncu-$tag.csv" 30 >"$out/kernels-$tag.txt"
    rm -f "$out/ncu-$tag.csv"
done
