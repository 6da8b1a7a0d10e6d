#!/usr/bin/env bash
# ms/step of `spd train CONFIG` on the GPU (--device cuda, float32) and the CPU
# (float64). The config is copied with train_log_freq GPU_LOG (default 100) /
# CPU_LOG (default 10); the run stops at 3 GPU_LOG / 2 CPU_LOG and the number
# reported is the last log line's ms/step: the mean over the steps since the
# previous log (batch generation and one log included; warm-up and start-up not).
# Usage: bench/train_gpu_vs_cpu.sh CONFIG [--random-target] [spd train options...]
# The target must exist (spd train-target --experiment NAME), or --random-target
# nulls pretrained_model_path and the options give the sizes (same cost per step).
set -u
cd "$(dirname "$0")/.."
SPD=${SPD:-build/spd}
GPU_LOG=${GPU_LOG:-100}
CPU_LOG=${CPU_LOG:-10}
cfg=$1; shift
random=0
if [ "${1:-}" = "--random-target" ]; then random=1; shift; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for dev in cuda cpu; do
    log_freq=$([ "$dev" = cuda ] && echo "$GPU_LOG" || echo "$CPU_LOG")
    stop=$([ "$dev" = cuda ] && echo $((3 * GPU_LOG)) || echo $((2 * CPU_LOG)))
    c="$out/$dev-$(basename "$cfg")"
    sed -E "s/^train_log_freq:.*/train_log_freq: $log_freq/" "$cfg" >"$c"
    [ "$random" -eq 1 ] && sed -i -E 's/^pretrained_model_path:.*/pretrained_model_path: null/' "$c"
    log="$out/$dev.log"
    SPD_OUT_DIR="$out/runs" "$SPD" train "$c" --device "$dev" --stop-at "$stop" "$@" >"$log" 2>&1
    rc=$?
    last=$(grep -E '^step ' "$log" | tail -1)
    ms=$(echo "$last" | sed -nE 's/.* ([0-9.]+) ms\/step.*/\1/p')
    printf '%-20s %-4s rc %d  %9s ms/step  (steps %d..%d)\n' "$(basename "$cfg")" "$dev" "$rc" "${ms:-?}" \
        $((stop - log_freq + 1)) "$stop"
    [ "$rc" -eq 0 ] || tail -n 5 "$log"
done
