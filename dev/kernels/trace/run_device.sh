#!/usr/bin/env bash
# One device call: build spd and the CUPTI tracer, then trace `spd bench` runs (each
# preceded by the same run untraced, to show what tracing costs) and print step_trace.py's
# map of each. From the repository root on the GPU machine; logs and traces in $OUT.
# Usage: bash dev/kernels/trace/run_device.sh ["BENCH ARGS" ...]
# (default: the full model at 64x256 in fused TF32 and bf16, and the linear op at d = 2048)
set -uo pipefail
source dev/kernels/device_prelude.sh build/spd
lib=$(ls /usr/local/cuda/lib64/libcupti.so /usr/local/cuda/extras/CUPTI/lib64/libcupti.so 2>/dev/null | head -1)
[ -n "$lib" ] || { echo "libcupti.so not found under /usr/local/cuda"; exit 1; }
inc=$(dirname "$(ls /usr/local/cuda/include/cupti.h /usr/local/cuda/extras/CUPTI/include/cupti.h 2>/dev/null | head -1)")
gcc -std=c11 -O2 -Wall -shared -fPIC -I"$inc" dev/kernels/trace/cupti_trace.c -L"$(dirname "$lib")" -lcupti \
    -Wl,-rpath,"$(dirname "$lib")" -o "$OUT/libcupti_trace.so" || exit 1
if [ $# -eq 0 ]; then
    set -- "full --tf32 --batch 64 --seq 256" "full --bf16 --batch 64 --seq 256" \
        "linear --tf32 --d_in 2048 --d_out 2048 --C 2048 --batch 64 --seq 256"
fi
i=0
for run in "$@"; do
    i=$((i + 1))
    cmd="./build/spd bench $run --device cuda --mode fused --no-ceilings --steps 12 --warmup 3"
    echo "== $run"
    $cmd 2>&1 | grep -E "^bench .*mean" | sed 's/^/untraced: /'
    CUDA_INJECTION64_PATH=$OUT/libcupti_trace.so SPD_TRACE_OUT=$OUT/trace_$i.csv $cmd >"$OUT/traced_$i.log" 2>&1
    grep -E "^bench .*mean|cupti_trace" "$OUT/traced_$i.log" | sed 's/^/traced:   /'
    python3 dev/kernels/trace/step_trace.py "$OUT/trace_$i.csv" --top 30 >"$OUT/map_$i.txt" 2>&1
    cat "$OUT/map_$i.txt"
    gzip -f "$OUT/trace_$i.csv"
done
echo "done ($((SECONDS - t0)) s)"
