#!/usr/bin/env bash
# ms/step of `spd train CONFIG` on the GPU (--device cuda, float32) and the CPU
# (float64) over the first STOP steps (--stop-at; the log line at STOP averages
# the steps since the previous log, batch generation and logging included).
# Usage: bench/train_gpu_vs_cpu.sh STOP CONFIG... (targets must exist:
# spd train-target --experiment NAME). Prints one line per config and device.
set -u
cd "$(dirname "$0")/.."
SPD=${SPD:-build/spd}
stop=$1; shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for cfg in "$@"; do
    for dev in cuda cpu; do
        log="$out/$(basename "$cfg" .yaml)-$dev.log"
        start=$(date +%s.%N)
        SPD_OUT_DIR="$out/runs" "$SPD" train "$cfg" --device "$dev" --stop-at "$stop" >"$log" 2>&1
        rc=$?
        end=$(date +%s.%N)
        last=$(grep -E '^step ' "$log" | tail -1)
        ms=$(echo "$last" | sed -nE 's/.* ([0-9.]+) ms\/step.*/\1/p')
        printf '%-24s %-5s rc %d  %s ms/step (last log window)  wall %.1f s  | %s\n' "$(basename "$cfg")" "$dev" \
            "$rc" "${ms:-?}" "$(echo "$end - $start" | bc)" "$(echo "$last" | cut -c1-150)"
        [ "$rc" -eq 0 ] || tail -5 "$log"
    done
done
