// spd bench linear|full: the seed's benchmark protocol (spd/bench.h). Prints a
// human-readable summary and one machine-readable line starting "RESULT " that
// bench/make_results.py turns into the tables of bench/RESULTS.md.
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/build_info.h"
#include "cli/commands.h"
#include "cli/launch.h"
#include "core/error.h"
#include "spd/bench.h"
#include "spd/dist.h"
#ifdef SPD_HAVE_CUDA
#include "cuda/backend.h"
#endif

static void usage(FILE *out) {
    fputs("usage: spd bench linear|full [options]\n"
          "  --d_in N --d_out N --C N   LinearComponents shape (linear; default 512 512 512)\n"
          "  --C N                       components per module (full; default 1200)\n"
          "  --batch N --seq N           positions per step (default 4 x 256 linear, 2 x 128 full)\n"
          "  --steps N --warmup N        timed and untimed steps (default 20 and 3)\n"
          "  --seed N                    Philox seed of weights, inputs and masks (default 0)\n"
          "  --device cpu|cuda           where to run (default cpu)\n"
          "  --mode unfused|fused        GPU: one kernel per primitive, or fused kernels and the\n"
          "                              step captured as a CUDA graph (default fused)\n"
          "  --tf32                      GPU: TF32 tensor-core products (PyTorch's \"high\")\n"
          "  --bf16                      GPU: bf16 operands, float32 accumulation in every product\n"
          "                              (SPD's autocast_bf16); everything else float32\n"
          "  --no-ceilings               GPU: skip measuring the matrix rate and bandwidth (no floor;\n"
          "                              for runs under compute-sanitizer)\n"
          "  --gpus N                    full, GPU: data parallel over N GPUs (NCCL, one process each):\n"
          "                              --batch is global, batch / N rows per rank, the gradient\n"
          "                              all-reduce timed with the step; rank 0 reports (spd/dist.h)\n"
          "Seed protocol: masks uniform in [0,1) drawn outside the timed region; forward, loss\n"
          "(linear: MSE to a random target; full: mean of logits), backward and AdamW timed.\n",
          out);
}

typedef enum { BENCH_FP32, BENCH_TF32, BENCH_BF16 } spd_bench_precision;

// The command line as run ("spd bench full --batch 64 ..."), JSON-safe (options are plain words).
static char command_line[1024];

static void record_command(int argc, char **argv) {
    size_t used = (size_t)snprintf(command_line, sizeof command_line, "spd");
    for (int i = 0; i < argc && used < sizeof command_line; i++)
        used += (size_t)snprintf(command_line + used, sizeof command_line - used, " %s", argv[i]);
}

#ifdef SPD_HAVE_CUDA
// A number for a RESULT line: fmt of v, or null when v is not finite (JSON has no inf).
static const char *json_number(char *buf, size_t n, const char *fmt, double v) {
    if (!isfinite(v)) snprintf(buf, n, "null");
    else snprintf(buf, n, fmt, v);
    return buf;
}

static int bench_gpu(const bench_options *opt, const char *kind, bool fused, spd_bench_precision prec_opt, bool ceilings) {
    bench_options o = *opt;
    spd_cuda_init();
    spd_cuda_set_matmul_precision(prec_opt == BENCH_TF32   ? SPD_MATMUL_TF32
                                  : prec_opt == BENCH_BF16 ? SPD_MATMUL_BF16
                                                           : SPD_MATMUL_FP32);
    spd_cuda_set_mode(fused ? SPD_CUDA_FUSED : SPD_CUDA_UNFUSED);
    o.graph = fused;
    const char *gpu = spd_cuda_device_name(), *prec = spd_cuda_matmul_precision_name();
    // The two ceilings, measured here: a large matrix product and a large copy.
    double tflops_peak = ceilings ? bench_matmul_gflops_cuda(8192, 5) / 1e3 : INFINITY;
    double gbs_peak = ceilings ? bench_bandwidth_gbs_cuda((size_t)1 << 30, 10) : INFINITY;
    bench_result r;
    bench_run_cuda(&o, &r, stderr);
    double bytes = bench_step_bytes(&o);
    double flop_floor = r.flops / (tflops_peak * 1e12) * 1e3, byte_floor = bytes / (gbs_peak * 1e9) * 1e3;
    double floor_ms = flop_floor > byte_floor ? flop_floor : byte_floor;
    const char *mode = fused ? "fused" : "unfused";
    printf("bench %s %s %s %s: mean %.3f ms, median %.3f ms, min %.3f ms per step\n", kind, gpu, mode, prec, r.mean_ms,
           r.median_ms, r.min_ms);
    printf("  %.1f TFLOP/s (%.3g GFLOP per step), %.0f GB/s of the %.3g GB floor bytes, peak GPU memory %.1f MiB\n",
           r.flops / (r.median_ms * 1e-3) / 1e12, r.flops / 1e9, bytes / (r.median_ms * 1e-3) / 1e9, bytes / 1e9,
           spd_cuda_peak_bytes() / 1048576.0);
    printf("  floor %.3f ms = max(FLOPs at the measured %s rate %.0f TFLOP/s: %.3f ms, bytes at the measured %.0f GB/s: "
           "%.3f ms); %.0f%% of it reached; loss %.6g\n",
           floor_ms, prec, tflops_peak, flop_floor, gbs_peak, byte_floor, 100.0 * floor_ms / r.median_ms, r.loss);
    char j_tf[32], j_bw[32], j_fl[32];  // null, not inf, where --no-ceilings skipped a ceiling (valid JSON)
    printf("RESULT {\"bench\":\"%s\",\"device\":\"%s\",\"impl\":\"spd.c\",\"variant\":\"%s\",\"precision\":\"%s\","
           "\"d_in\":%d,\"d_out\":%d,\"C\":%d,\"batch\":%d,\"seq\":%d,\"steps\":%d,\"warmup\":%d,"
           "\"mean_ms\":%.4f,\"median_ms\":%.4f,\"min_ms\":%.4f,\"gflop_per_step\":%.4f,\"floor_bytes\":%.0f,"
           "\"matmul_tflops\":%s,\"bandwidth_gbs\":%s,\"floor_ms\":%s,\"peak_mem_bytes\":%zu,\"loss\":%.8g,"
           "\"commit\":\"%s\",\"command\":\"%s\"}\n",
           kind, gpu, mode, prec, o.d_in, o.d_out, o.C, o.batch, o.seq, o.steps, o.warmup, r.mean_ms, r.median_ms,
           r.min_ms, r.flops / 1e9, bytes, json_number(j_tf, sizeof j_tf, "%.2f", tflops_peak),
           json_number(j_bw, sizeof j_bw, "%.1f", gbs_peak), json_number(j_fl, sizeof j_fl, "%.4f", ceilings ? floor_ms : NAN),
           spd_cuda_peak_bytes(), r.loss,
           spd_build_commit(), command_line);
    return 0;
}
#else
static int bench_gpu(const bench_options *o, const char *kind, bool fused, spd_bench_precision prec_opt, bool ceilings) {
    spd_die_input("bench: --device cuda: this spd was built without CUDA (nvcc not found at build time)");
}
#endif

static void bench_allreduce(void *ctx, float *grad, size_t n) { spd_dist_allreduce_avg_f32(ctx, grad, n); }

int cmd_bench(int argc, char **argv) {
    record_command(argc, argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SPD_EXIT_INPUT : 0;
    }
    bench_options o = {.steps = 20, .warmup = 3, .seed = 0};
    bool cuda = false, fused = true, ceilings = true;
    spd_bench_precision prec = BENCH_FP32;
    int gpus = 0, rank = -1, world = 0;  // --gpus N (launcher); --rank R --world N (a rank, cli/launch.h)
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
        if (strcmp(a, "--tf32") == 0 || strcmp(a, "--bf16") == 0) {  // flags without a value
            spd_bench_precision p = a[2] == 't' ? BENCH_TF32 : BENCH_BF16;
            if (prec != BENCH_FP32 && prec != p) spd_die_input("bench: --tf32 and --bf16 exclude each other");
            prec = p;
            continue;
        }
        if (strcmp(a, "--no-ceilings") == 0) {
            ceilings = false;
            continue;
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
        else if (strcmp(a, "--gpus") == 0) gpus = (int)spd_arg_int(a, v, 1, SPD_DIST_MAX_WORLD);
        else if (strcmp(a, "--rank") == 0) rank = (int)spd_arg_int(a, v, 0, SPD_DIST_MAX_WORLD - 1);
        else if (strcmp(a, "--world") == 0) world = (int)spd_arg_int(a, v, 1, SPD_DIST_MAX_WORLD);
        else if (strcmp(a, "--device") == 0) {
            if (strcmp(v, "cuda") == 0) cuda = true;
            else if (strcmp(v, "cpu") != 0) spd_die_input("bench: --device: expected cpu or cuda, found '%s'", v);
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "unfused") == 0) fused = false;
            else if (strcmp(v, "fused") != 0) spd_die_input("bench: --mode: expected unfused or fused, found '%s'", v);
        } else
            spd_die_input("bench %s: unknown option '%s' (see spd bench --help)", argv[1], a);
    }
    if ((double)o.batch * o.seq > (1 << 24)) spd_die_input("bench: --batch x --seq must be at most 16777216");

    if (prec != BENCH_FP32 && !cuda)
        spd_die_input("bench: %s applies to --device cuda only", prec == BENCH_TF32 ? "--tf32" : "--bf16");
    const char *kind = o.kind == BENCH_LINEAR ? "linear" : "full";
    if (gpus || rank >= 0 || world) {  // ---- data parallel (spd/dist.h)
        if (o.kind != BENCH_FULL || !cuda) spd_die_input("bench: --gpus: data parallel runs bench full --device cuda");
        if ((rank >= 0) != (world > 0)) spd_die_input("bench: --rank and --world go together");
        if (rank >= 0 && gpus && gpus != world) spd_die_input("bench: --gpus %d and --world %d differ", gpus, world);
        int w = rank >= 0 ? world : gpus;
        int64_t row0, rows;
        if (spd_dist_rows(o.batch, w, rank >= 0 ? rank : 0, "bench: --batch", &row0, &rows)) spd_die_last_error();
        if (!spd_dist_built()) spd_dist_init(0, 1, NULL);  // dies: built without NCCL
        if (rank < 0) return spd_launch_ranks(gpus, argc, argv);
        spd_dist_id id;
        if (spd_dist_id_from_hex(&id, getenv("SPD_NCCL_ID"))) spd_die_input("bench --rank %d: %s", rank, spd_last_error());
        spd_dist *d = spd_dist_init(rank, world, &id);
        if (rank == 0)
            fprintf(stderr, "bench full: data parallel over %d ranks (NCCL), global batch %d, %" PRId64 " rows each\n",
                    world, o.batch, rows);
        o.batch = (int)rows;
        o.rank = rank;
        o.allreduce = bench_allreduce;
        o.allreduce_ctx = d;
        int rc = bench_gpu(&o, kind, fused, prec, ceilings);
        spd_dist_free(d);
        return rc;
    }
    if (o.kind == BENCH_LINEAR)
        fprintf(stderr, "bench linear: d_in %d, d_out %d, C %d, batch %d, seq %d, steps %d (+%d warm-up)\n", o.d_in,
                o.d_out, o.C, o.batch, o.seq, o.steps, o.warmup);
    else
        fprintf(stderr, "bench full: LlamaSimple 4L, C %d, batch %d, seq %d, steps %d (+%d warm-up)\n", o.C, o.batch,
                o.seq, o.steps, o.warmup);
    if (cuda) return bench_gpu(&o, kind, fused, prec, ceilings);
    double gflops_peak = bench_matmul_gflops_f32(1024, 20);
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
    printf("RESULT {\"bench\":\"%s\",\"device\":\"cpu\",\"impl\":\"spd.c\",\"variant\":\"cpu-reference\","
           "\"precision\":\"fp32\",\"d_in\":%d,\"d_out\":%d,\"C\":%d,\"batch\":%d,\"seq\":%d,\"steps\":%d,"
           "\"warmup\":%d,\"mean_ms\":%.4f,\"median_ms\":%.4f,\"min_ms\":%.4f,\"gflop_per_step\":%.4f,"
           "\"achieved_gflops\":%.2f,\"matmul_gflops\":%.2f,\"floor_ms\":%.4f,\"bytes\":%.0f,\"loss\":%.8g,"
           "\"commit\":\"%s\",\"command\":\"%s\"}\n",
           kind, o.d_in, o.d_out, o.C, o.batch, o.seq, o.steps, o.warmup, r.mean_ms, r.median_ms, r.min_ms,
           r.flops / 1e9, achieved, gflops_peak, floor_ms, r.bytes_alloc, r.loss, spd_build_commit(), command_line);
    return 0;
}
