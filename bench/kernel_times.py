#!/usr/bin/env python3
"""Per-kernel time table from `ncu --csv --metrics gpu__time_duration.sum` output.

Usage: python3 bench/kernel_times.py NCU_CSV [TOP]
Groups the profiled launches by kernel name (template arguments cut off), prints calls,
total and mean microseconds, and the share of the total, largest first. Run the profiled
program with --profile-from-start off so that only the benchmark's timed steps count
(spd bench brackets them with cudaProfilerStart/Stop).
"""
import csv
import sys
from collections import defaultdict


def short(name):
    # "void foo<...>(args)" -> "foo<...>" kept short enough to read in one line
    name = name.replace("void ", "", 1)
    cut = name.find("(")
    if cut > 0:
        name = name[:cut]
    return name if len(name) <= 90 else name[:87] + "..."


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: kernel_times.py NCU_CSV [TOP]")
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    rows = []
    with open(sys.argv[1], newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]  # ncu prefixes its own log lines with ==
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "nsecond")
        scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(unit)
        if scale is None:
            sys.exit(f"kernel_times.py: unknown unit {unit!r} in {sys.argv[1]}")
        rows.append((short(r["Kernel Name"]), v * scale))
    if not rows:
        sys.exit(f"kernel_times.py: no gpu__time_duration.sum rows in {sys.argv[1]}")
    calls, total = defaultdict(int), defaultdict(float)
    for name, us in rows:
        calls[name] += 1
        total[name] += us
    grand = sum(total.values())
    print(f"{len(rows)} launches, {grand / 1e3:.3f} ms of kernel time")
    print(f"{'ms':>8} {'share':>6} {'calls':>6} {'mean us':>9}  kernel")
    for name in sorted(total, key=total.get, reverse=True)[:top]:
        print(f"{total[name] / 1e3:8.3f} {100 * total[name] / grand:5.1f}% {calls[name]:6d} "
              f"{total[name] / calls[name]:9.1f}  {name}")


if __name__ == "__main__":
    main()
