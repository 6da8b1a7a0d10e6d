#!/usr/bin/env bash
# ms/step of `spd train CONFIG` on the GPU (--device cuda, float32) and the CPU
# (float64). The config is copied with train_log_freq LOG (default 50); the run
# stops at GPU_STOP / CPU_STOP (defaults 4 LOG / 2 LOG) and the number reported
# is the last log line's ms/step: the mean over the LOG steps since the previous
# log (batch generation and logging included, warm-up and start-up excluded).
# Usage: bench/train_gpu_vs_cpu.sh CONFIG [spd train options...]
# (the target must exist: spd train-target --experiment NAME, or pass
# --random-target to null pretrained_model_path and give the sizes as options).
set -u
cd "$(dirname "$0")/.."
SPD=${SPD:-build/spd}
LOG=${LOG:-50}
GPU_STOP=${GPU_STOP:-$((4 * LOG))}
CPU_STOP=${CPU_STOP:-$((2 * LOG))}
cfg=$1; shift
random=0
if [ "${1:-}" = "--random-target" ]; then random=1; shift; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
c="$out/$(basename "$cfg")"
sed -E "s/^train_log_freq:.*/train_log_freq: $LOG/" "$cfg" >"$c"
[ "$random" -eq 1 ] && sed -i -E 's/^pretrained_model_path:.*/pretrained_model_path: null/' "$c"
for dev in cuda cpu; do
    stop=$([ "$dev" = cuda ] && echo "$GPU_STOP" || echo "$CPU_STOP")
    log="$out/$dev.log"
    SPD_OUT_DIR="$out/runs" "$SPD" train "$c" --device "$dev" --stop-at "$stop" "$@" >"$log" 2>&1
    rc=$?
    last=$(grep -E '^step ' "$log" | tail -1)
    ms=$(echo "$last" | sed -nE 's/.* ([0-9.]+) ms\/step.*/\1/p')
    printf '%-20s %-4s rc %d  %9s ms/step  (steps %d..%d)\n' "$(basename "$cfg")" "$dev" "$rc" "${ms:-?}" \
        $((stop - LOG + 1)) "$stop"
    [ "$rc" -eq 0 ] || tail -n 5 "$log"
done
