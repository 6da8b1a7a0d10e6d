#!/usr/bin/env python3
"""Reads cupti_trace.c's CSV of a `spd bench` run in graph mode and prints, per timed
step (median over the steps), the span from the first kernel's start to the last one's
end, the time some kernel was running (busy), the sum of kernel times (more than busy
where the side stream overlaps), the idle time between them with the largest gaps, and
the kernels by total time. A step is one graph launch (its kernels share a correlation
id) plus what runs after it up to the next launch; kernels matching --untimed (the
masks drawn before each step) are left out.
Usage: step_trace.py TRACE.csv [--top N] [--untimed REGEX]"""
import argparse
import csv
import re
import shutil
import statistics
import subprocess
from collections import defaultdict


def demangle(names):
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def short(name):
    """Kernel name without its parameter list; template arguments kept (they tell variants apart)."""
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # the parameter list is the last top-level '(...)'
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
    s = name[:cut].replace("(anonymous namespace)::", "")
    s = re.sub(r"^void ", "", s)
    return s if len(s) <= 90 else s[:87] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--untimed", default="fill_uniform")
    args = ap.parse_args()
    recs = []
    with open(args.trace) as f:
        for r in csv.DictReader(f):
            recs.append((int(r["start_ns"]), int(r["end_ns"]), r["kind"], int(r["correlation"]), int(r["graph"]),
                         r["name"], int(r["stream"])))
    recs.sort()
    names = demangle(sorted({r[5] for r in recs if r[2] == "kernel"}))
    untimed = re.compile(args.untimed)
    # Graph launches: the first start of each correlation id among graph records.
    launch = {}
    for r in recs:
        if r[4] and r[3] not in launch:
            launch[r[3]] = r[0]
    starts = sorted(launch.values())
    if len(starts) < 3:
        raise SystemExit("fewer than 3 graph launches in %s: run spd bench in graph mode (fused) with --steps >= 2"
                         % args.trace)
    steps = []  # drop the last launch: what follows it is not a step
    for i in range(len(starts) - 1):
        lo, hi = starts[i], starts[i + 1]
        rows = [r for r in recs if lo <= r[0] < hi and not untimed.search(names.get(r[5], r[5]))]
        steps.append(rows)
    steps = steps[1:] if len(steps) > 2 else steps  # the first launch uploads the graph
    spans, busys, sums, counts, per_name, gaps_all = [], [], [], [], [], []
    for rows in steps:
        first, last = rows[0][0], max(r[1] for r in rows)
        busy, cur_s, cur_e = 0, None, None
        gaps = []
        prev_name = None
        for s, e, kind, _, _, name, _ in rows:
            label = short(names.get(name, name)) if kind == "kernel" else kind
            if cur_e is None:
                cur_s, cur_e = s, e
            elif s > cur_e:
                busy += cur_e - cur_s
                gaps.append((s - cur_e, prev_name, label))
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
            if cur_e == e:
                prev_name = label
        busy += cur_e - cur_s
        spans.append(last - first)
        busys.append(busy)
        sums.append(sum(r[1] - r[0] for r in rows))
        counts.append(len(rows))
        by = defaultdict(lambda: [0, 0])
        for s, e, kind, _, _, name, _ in rows:
            label = short(names.get(name, name)) if kind == "kernel" else kind
            by[label][0] += e - s
            by[label][1] += 1
        per_name.append(by)
        gaps_all.append(gaps)
    med = statistics.median
    k = spans.index(sorted(spans)[len(spans) // 2])  # the median step, for its gaps
    us = 1e-3
    print("steps analysed: %d (graph launches %d)" % (len(steps), len(starts)))
    print("per step, median: span %.1f us, busy %.1f us, kernel sum %.1f us, idle %.1f us, records %d"
          % (med(spans) * us, med(busys) * us, med(sums) * us, (med(spans) - med(busys)) * us, med(counts)))
    g = gaps_all[k]
    print("median step's gaps: %d, total %.1f us; > 2 us: %d, total %.1f us"
          % (len(g), sum(x[0] for x in g) * us, sum(1 for x in g if x[0] > 2000), sum(x[0] for x in g if x[0] > 2000) * us))
    print("largest gaps (us, after -> before):")
    for d, a, b in sorted(g, reverse=True)[:10]:
        print("  %7.1f  %s -> %s" % (d * us, a, b))
    labels = set().union(*per_name)
    table = []
    for lab in labels:
        t = med([p[lab][0] if lab in p else 0 for p in per_name]) * us
        c = med([p[lab][1] if lab in p else 0 for p in per_name])
        table.append((t, c, lab))
    table.sort(reverse=True)
    print("%9s %6s %8s  kernel" % ("us", "calls", "us/call"))
    for t, c, lab in table[:args.top]:
        print("%9.1f %6d %8.1f  %s" % (t, c, t / c if c else 0, lab))
    rest = sum(t for t, _, _ in table[args.top:])
    print("%9.1f %6s %8s  (the other %d kernels)" % (rest, "", "", max(0, len(table) - args.top)))


if __name__ == "__main__":
    main()
