// The seed's benchmark protocol (shared/seed/BENCHMARK_RESULTS.md) on the CPU:
// masks uniform in [0, 1) drawn outside the timed region, one forward, the
// loss, the backward and the AdamW step inside it.
#ifndef SPD_BENCH_H
#define SPD_BENCH_H

#include <stdbool.h>
#include <stdio.h>

typedef enum { BENCH_LINEAR, BENCH_FULL } bench_kind;

typedef struct {
    bench_kind kind;
    int d_in, d_out, C;  // linear: one LinearComponents; full: C of all 28 modules
    int batch, seq;
    int steps, warmup;
    unsigned long long seed;
} bench_options;

typedef struct {
    double mean_ms, median_ms, min_ms;
    double flops;        // per step
    double loss;         // after the last step, to show the step ran on real numbers
    double bytes_alloc;  // spec-table memory (all roles)
} bench_result;

// Runs the benchmark in float32 (the seed's precision). Prints the resolved
// settings to `log`.
void bench_run_f32(const bench_options *opt, bench_result *res, FILE *log);

// Measured matrix rate of this machine in GFLOP/s (float32: sgemm), from
// square products of size n, median of `reps`: the floor's denominator.
double bench_matmul_gflops_f32(int n, int reps);

// Matrix-product FLOPs of one step (forward, backward with dx, no target
// weight gradients), the floor's numerator. Elementwise work is not counted.
double bench_step_flops(const bench_options *opt);

#endif
