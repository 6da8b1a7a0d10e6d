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
    bool graph;  // GPU: capture the step (zero grad, forward, loss, backward) as one CUDA graph
    // Data parallel (spd bench full --gpus N, spd/dist.h): batch is this rank's rows
    // (rank * batch * seq is its first token's global index); after the body and
    // before AdamW, inside the timed region, `allreduce` averages the flat gradient
    // buffer over the ranks (NULL: one process).
    int rank;
    void (*allreduce)(void *ctx, float *grad, size_t n);
    void *allreduce_ctx;
} bench_options;

typedef struct {
    double mean_ms, median_ms, min_ms;
    double flops;        // per step
    double loss;         // after the last step, to show the step ran on real numbers
    double bytes_alloc;  // spec-table memory (all roles)
} bench_result;

// Runs the benchmark in float32 (the seed's precision) on the CPU or the GPU
// (the CUDA backend's mode and matrix precision apply). Prints the memory
// account to `log`.
void bench_run_f32(const bench_options *opt, bench_result *res, FILE *log);
void bench_run_cuda(const bench_options *opt, bench_result *res, FILE *log);

// Measured matrix rate of this machine in GFLOP/s (float32: sgemm), from
// square products of size n, median of `reps`: the floor's denominator.
double bench_matmul_gflops_f32(int n, int reps);
double bench_matmul_gflops_cuda(int n, int reps);
// Measured memory bandwidth in GB/s (bytes read plus bytes written) of a large
// copy of `bytes` bytes, median of `reps`.
double bench_bandwidth_gbs_f32(size_t bytes, int reps);
double bench_bandwidth_gbs_cuda(size_t bytes, int reps);

// Matrix-product FLOPs of one step (forward, backward with dx, no target
// weight gradients), the floor's numerator. Elementwise work is not counted.
double bench_step_flops(const bench_options *opt);
// The fewest bytes one step must move through memory in the seed protocol: the
// float32 masks and inputs read once, parameters, gradients and both Adam
// moments read and written once, the logits (or output) written once.
double bench_step_bytes(const bench_options *opt);

#endif
