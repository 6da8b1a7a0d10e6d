#!/usr/bin/env bash
# One device call: ncu's speed-of-light, memory and compute sections for the kernels of
# one 64x256 fused TF32 step of the full model that match REGEX, summarized per kernel
# (median over its calls): what limits each. From the repository root on the GPU machine.
# Usage: bash dev/kernels/trace/sol_device.sh [REGEX] [BENCH ARGS]
set -uo pipefail
regex=${1:-"masked_gemm_kernel|masked_b2b_kernel|masked_wgrad_kernel|wgrad_stored_kernel"}
args=${2:-"full --tf32 --batch 64 --seq 256"}
source dev/kernels/device_prelude.sh build/spd
ncu --profile-from-start off --clock-control none -k "regex:$regex" \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section Occupancy \
    --csv --page details ./build/spd bench $args --device cuda --mode fused --no-ceilings --steps 1 --warmup 0 \
    >"$OUT/sol.csv" 2>"$OUT/sol.err" || { tail -5 "$OUT/sol.err"; }
python3 - "$OUT/sol.csv" <<'PY'
import csv, statistics, sys, re
from collections import defaultdict
want = ["Duration", "Compute (SM) Throughput", "Memory Throughput", "DRAM Throughput", "L2 Cache Throughput",
        "L1/TEX Cache Throughput", "Achieved Occupancy", "Registers Per Thread", "Issue Slots Busy",
        "Executed Ipc Active", "L2 Hit Rate", "Mem Busy", "Max Bandwidth"]
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
hdr = rows[0]
ki, ni, vi, ui, idi = (hdr.index(h) for h in ("Kernel Name", "Metric Name", "Metric Value", "Metric Unit", "ID"))
vals = defaultdict(lambda: defaultdict(list))
units = {}
for r in rows[1:]:
    name = re.sub(r"\(.*$", "", r[ki])[:60]
    if r[ni] in want:
        try:
            vals[name][r[ni]].append(float(r[vi].replace(",", "")))
            units[r[ni]] = r[ui]
        except ValueError:
            pass
for name, m in vals.items():
    print("==", name, "calls", len(m.get("Duration", [])))
    for w in want:
        if w in m:
            print("   %-26s %10.2f %s" % (w, statistics.median(m[w]), units[w]))
PY
echo "done ($((SECONDS - t0)) s)"
