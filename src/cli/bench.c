// spd bench linear|full: the seed's benchmark protocol (spd/bench.h). Prints a
// human-readable summary and one machine-readable line starting "RESULT " that
// bench/make_results.py turns into the tables of bench/RESULTS.md.
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "spd/bench.h"

static void usage(FILE *out) {
    fputs("usage: spd bench linear|full [options]\n"
          "  --d_in N --d_out N --C N   LinearComponents shape (linear; default 512 512 512)\n"
          "  --C N                       components per module (full; default 1200)\n"
          "  --batch N --seq N           positions per step (default 4 x 256 linear, 2 x 128 full)\n"
          "  --steps N --warmup N        timed and untimed steps (default 20 and 3)\n"
          "  --seed N                    Philox seed of weights, inputs and masks (default 0)\n"
          "  --device cpu                where to run (the CUDA backend comes with the GPU engine)\n"
          "Seed protocol: masks uniform in [0,1) drawn outside the timed region; forward, loss\n"
          "(linear: MSE to a random target; full: mean of logits), backward and AdamW timed.\n",
          out);
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SPD_EXIT_INPUT : 0;
    }
    bench_options o = {.steps = 20, .warmup = 3, .seed = 0};
    if (strcmp(argv[1], "linear") == 0) {
        o.kind = BENCH_LINEAR;
        o.d_in = o.d_out = o.C = 512;
        o.batch = 4;
        o.seq = 256;
    } else if (strcmp(argv[1], "full") == 0) {
        o.kind = BENCH_FULL;
        o.C = 1200;
        o.batch = 2;
        o.seq = 128;
    } else {
        spd_die_input("bench: expected 'linear' or 'full', found '%s'", argv[1]);
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) spd_die_input("bench: option '%s' needs a value (see spd bench --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--d_in") == 0 && o.kind == BENCH_LINEAR) o.d_in = (int)spd_arg_int(a, v, 1, 1 << 16);
        else if (strcmp(a, "--d_out") == 0 && o.kind == BENCH_LINEAR) o.d_out = (int)spd_arg_int(a, v, 1, 1 << 16);
        else if (strcmp(a, "--C") == 0) o.C = (int)spd_arg_int(a, v, 1, 1 << 16);
        else if (strcmp(a, "--batch") == 0) o.batch = (int)spd_arg_int(a, v, 1, 1 << 16);
        else if (strcmp(a, "--seq") == 0) o.seq = (int)spd_arg_int(a, v, 1, o.kind == BENCH_FULL ? 512 : 1 << 16);
        else if (strcmp(a, "--steps") == 0) o.steps = (int)spd_arg_int(a, v, 1, 1000000);
        else if (strcmp(a, "--warmup") == 0) o.warmup = (int)spd_arg_int(a, v, 0, 1000000);
        else if (strcmp(a, "--seed") == 0) o.seed = (unsigned long long)spd_arg_int(a, v, 0, 1L << 62);
        else if (strcmp(a, "--device") == 0) {
            if (strcmp(v, "cpu") != 0) spd_die_input("bench: --device: only 'cpu' is built in yet, found '%s'", v);
        } else
            spd_die_input("bench %s: unknown option '%s' (see spd bench --help)", argv[1], a);
    }
    if ((double)o.batch * o.seq > (1 << 24)) spd_die_input("bench: --batch x --seq must be at most 16777216");

    const char *kind = o.kind == BENCH_LINEAR ? "linear" : "full";
    if (o.kind == BENCH_LINEAR)
        fprintf(stderr, "bench linear: d_in %d, d_out %d, C %d, batch %d, seq %d, steps %d (+%d warm-up), float32\n",
                o.d_in, o.d_out, o.C, o.batch, o.seq, o.steps, o.warmup);
    else
        fprintf(stderr, "bench full: LlamaSimple 4L, C %d, batch %d, seq %d, steps %d (+%d warm-up), float32\n", o.C,
                o.batch, o.seq, o.steps, o.warmup);
    double gflops_peak = bench_matmul_gflops_f32(1024, 5);
    bench_result r;
    bench_run_f32(&o, &r, stderr);
    double floor_ms = r.flops / (gflops_peak * 1e9) * 1e3;
    double achieved = r.flops / (r.median_ms * 1e-3) / 1e9;
    printf("bench %s cpu float32: mean %.3f ms, median %.3f ms, min %.3f ms per step\n", kind, r.mean_ms, r.median_ms,
           r.min_ms);
    printf("  %.3g GFLOP per step, %.1f GFLOP/s achieved; sgemm 1024^3 measures %.1f GFLOP/s here\n", r.flops / 1e9,
           achieved, gflops_peak);
    printf("  floor %.3f ms (FLOPs at the sgemm rate): %.0f%% of it reached; loss after last step %.6g\n", floor_ms,
           100.0 * floor_ms / r.median_ms, r.loss);
    printf("RESULT {\"bench\":\"%s\",\"device\":\"cpu\",\"mode\":\"reference\",\"precision\":\"float32\","
           "\"d_in\":%d,\"d_out\":%d,\"C\":%d,\"batch\":%d,\"seq\":%d,\"steps\":%d,\"warmup\":%d,"
           "\"mean_ms\":%.4f,\"median_ms\":%.4f,\"min_ms\":%.4f,\"gflop_per_step\":%.4f,\"achieved_gflops\":%.2f,"
           "\"matmul_gflops\":%.2f,\"floor_ms\":%.4f,\"bytes\":%.0f,\"loss\":%.8g}\n",
           kind, o.d_in, o.d_out, o.C, o.batch, o.seq, o.steps, o.warmup, r.mean_ms, r.median_ms, r.min_ms,
           r.flops / 1e9, achieved, gflops_peak, floor_ms, r.bytes_alloc, r.loss);
    return 0;
}
