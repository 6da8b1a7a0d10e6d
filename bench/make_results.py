#!/usr/bin/env python3
"""Builds bench/RESULTS.md from saved benchmark outputs.

Every file in bench/results/ holds the stdout of one run (one machine, one
device call): lines `RESULT {json}` printed by `spd bench` and by
bench/peer_torch.py. Rows compare only numbers taken in the same file, so our
times sit beside PyTorch's measured on the same GPU in the same call.

usage: python3 bench/make_results.py [RESULTS_DIR] > bench/RESULTS.md
"""
import glob
import json
import os
import sys


MACHINES = {}  # file -> its first "# " line: what machine the run was on


def load(path):
    rows = []
    for line in open(path, encoding="utf-8"):
        if line.startswith("# ") and os.path.basename(path) not in MACHINES:
            MACHINES[os.path.basename(path)] = line[2:].strip()
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            r["file"] = os.path.basename(path)
            rows.append(r)
    return rows


def ms(x):
    return "—" if x is None else f"{x:.3f}"


def cpu_table(rows):
    out = ["## CPU reference (float32, OpenBLAS)", "",
           "The floor is the step's matrix FLOPs at this machine's measured sgemm rate (1024^3, median of 20).",
           "Machines: " + "; ".join(f"`{f}`: {MACHINES[f]}" for f in sorted({r['file'] for r in rows}) if f in MACHINES),
           "",
           "| machine file | commit | command | median ms | mean ms | min ms | GFLOP/s | sgemm GFLOP/s | floor ms | floor / median |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['file']} | {r.get('commit', '?')} | `{r.get('command', '')}` | {ms(r['median_ms'])} | "
                   f"{ms(r['mean_ms'])} | {ms(r['min_ms'])} | {r['achieved_gflops']:.1f} | {r['matmul_gflops']:.1f} | "
                   f"{ms(r['floor_ms'])} | {r['floor_ms'] / r['median_ms']:.0%} |")
    return out


def key(r):
    dims = (r.get("d_in") or 0, r.get("d_out") or 0) if r["bench"] == "linear" else (0, 0)
    return (r["file"], r["bench"], r.get("precision"), r["batch"], r["seq"], r.get("C")) + dims


def gpu_table(rows, bench):
    groups = {}
    for r in rows:
        if r["bench"] == bench and r["device"] != "cpu":
            groups.setdefault(key(r), []).append(r)
    if not groups:
        return []
    title = "Full model: LlamaSimple 4L, 28 modules decomposed" if bench == "full" else "Isolated LinearComponents"
    out = [f"## GPU: {title}", "",
           "Median ms per step (forward, loss, backward, AdamW; masks drawn outside the timed region), TF32.",
           "`best torch` is the fastest PyTorch variant that ran (SPD cd23cf80's code; `-nogetattr` =",
           "`MaskedModule.__getattr__` removed, which lets dynamo capture one graph); the ratio is",
           "best torch / spd.c fused. The floor is max(FLOPs at the measured TF32 rate, bytes at the",
           "measured bandwidth) from the same run. Rows with prec bf16 are spd.c with `--bf16` (bf16 operands,",
           "float32 accumulation; floor at the measured bf16 rate); the PyTorch peer runs TF32 only, so they",
           "have no PyTorch columns.", "",
           "| GPU | file | batch x seq | shape | prec | spd.c unfused | spd.c fused | torch eager | torch compiled (best) | "
           "best torch | best torch / fused | eager / fused | floor ms | floor / fused | commit | command |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in sorted(groups, key=lambda k: (k[0], k[3], k[4], k[6] or 0)):
        g = groups[k]
        ours = {r["variant"]: r for r in g if r.get("impl") == "spd.c"}
        torch = [r for r in g if r.get("impl") == "torch" and not r.get("error")]
        # SPD's own module in eager mode ("eager"; "components-eager" for the isolated op);
        # "pure-*" is the seed's bare-tensor function, counted among the PyTorch variants.
        eager = next((r for r in torch if r["variant"] in ("eager", "components-eager")), None)
        compiled = [r for r in torch if not r["variant"].endswith("eager")]
        best_c = min(compiled, key=lambda r: r["median_ms"]) if compiled else None
        best = min(torch, key=lambda r: r["median_ms"]) if torch else None
        fused, unfused = ours.get("fused"), ours.get("unfused")
        ref = fused or unfused
        shape = f"C={k[5]}" if bench == "full" else f"{k[6]}x{k[7]}, C={k[5]}"
        ratio = f"{best['median_ms'] / fused['median_ms']:.2f}x" if best and fused else "—"
        eager_ratio = f"{eager['median_ms'] / fused['median_ms']:.2f}x" if eager and fused else "—"
        floor = ref["floor_ms"] if ref else None
        frac = f"{floor / fused['median_ms']:.0%}" if fused and floor else "—"
        comp = f"{ms(best_c['median_ms'])} ({best_c['variant']})" if best_c else "—"
        device = (ref or g[0])["device"]
        out.append(f"| {device} | {k[0]} | {k[3]}x{k[4]} | {shape} | {k[2]} | "
                   f"{ms(unfused and unfused['median_ms'])} | {ms(fused and fused['median_ms'])} | "
                   f"{ms(eager and eager['median_ms'])} | {comp} | {ms(best and best['median_ms'])} | {ratio} | {eager_ratio} | "
                   f"{ms(floor)} | {frac} | {ref.get('commit', '?') if ref else '?'} | "
                   f"`{ref.get('command', '') if ref else ''}` |")
    failed = [r for r in rows if r.get("impl") == "torch" and r.get("error") and r["bench"] == bench]
    for r in failed:
        out.append(f"\nPyTorch variant `{r['variant']}` at {r['batch']}x{r['seq']} did not run: {r['error'][:200]}")
    return out


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "*.txt"))):
        rows += load(path)
    lines = ["# Benchmark results", "",
             "Generated by `bench/make_results.py` from the raw outputs in `bench/results/`; do not edit by hand.",
             "Protocol: the seed's (`shared/seed/BENCHMARK_RESULTS.md`): float32 masks uniform in [0, 1) made",
             "outside the timed region; forward, loss (full: mean of logits; isolated: MSE to a random target),",
             "backward and the AdamW step inside it.", ""]
    cpu = [r for r in rows if r["device"] == "cpu" and r.get("impl") == "spd.c"]
    if cpu:
        lines += cpu_table(cpu) + [""]
    for bench in ("full", "linear"):
        t = gpu_table(rows, bench)
        if t:
            lines += t + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
