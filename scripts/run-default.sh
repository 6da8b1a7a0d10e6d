#!/usr/bin/env bash
# The built-in default job: check every shipped reference state against the CPU
# reference in float64 and float32, then a short CPU benchmark of both workloads.
set -euo pipefail
cd "$(dirname "$0")/.."
refs=(tests/refs/*.safetensors)
[ -d ../shared/refs ] && refs+=(../shared/refs/*.safetensors)
echo "== spd check (${#refs[@]} reference files)"
./build/spd check "${refs[@]}" | grep -E 'PASS|FAIL'
echo "== spd bench linear (CPU, short)"
./build/spd bench linear --steps 5 --warmup 1 2>/dev/null | grep -v '^RESULT'
echo "== spd bench full (CPU, short)"
./build/spd bench full --batch 2 --seq 64 --steps 3 --warmup 1 2>/dev/null | grep -v '^RESULT'
