// Every CUDA op (src/cuda/*.cu) against its float32 CPU reference (src/ops/*.c)
// on fresh random inputs, including the shapes that break bounds assumptions
// (C = 1200, d_in = 341, N = 4096, odd sizes). Needs a GPU; run by tests/run_gpu.sh,
// not by tests/run.sh.
//
// Outputs that an op writes are poisoned with NaN on the GPU before the call, so
// an element it forgets stays NaN and fails the check. Outputs that accumulate
// (dV, dU, ddelta, dw) start from the same random values on both sides, and the
// check compares what each side added. Bound: norm-relative 1e-5. Both sides
// compute in float32 (unit roundoff 6e-8); products and sums over K terms summed
// in different orders differ by about u sqrt(K) in norm, under 1e-5 for K <= 4096.
// Philox fills and the RoPE tables must be bit-identical. A last check captures
// several ops in a CUDA graph (no host round trips, no plain allocations inside
// ops) and replays it.
#define SPD_CUDA
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/device.h"
#include "core/philox.h"
#include "cuda/attention_tc.h"
#include "cuda/backend.h"
#include "cuda/gemm.h"
#include "cuda/masked_b2b_sm90.h"
#include "cuda/masked_gemm_sm90.h"
#include "cuda/weight_layouts.h"
#include "cuda/wgrad_stored_sm90.h"
#include "ops/adamw.h"
#include "ops/add.h"
#include "ops/attention.h"
#include "ops/components.h"
#include "ops/embedding.h"
#include "ops/fill.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "ops/transfer.h"
#include "testing.h"

// The float32 CPU references (the headers above declare the _cuda names only).
void matmul_f32(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a, bool trans_b,
                float alpha, float beta);
void matmul_f64(double *C, const double *A, const double *B, int M, int N, int K, bool trans_a, bool trans_b,
                double alpha, double beta);
void linear_forward_f32(float *out, const float *x, const float *W, const float *bias, int N, int d_in, int d_out);
void linear_backward_f32(float *dx, const float *dout, const float *W, int N, int d_in, int d_out, bool add_dx);
void embedding_forward_f32(float *out, const int32_t *tokens, const float *wte, int N, int d);
void components_forward_f32(float *out, float *a, const float *x, const float *V, const float *U,
                            const float *mask, const float *delta, const float *delta_mask, int N, int d_in, int C,
                            int d_out, float *scratch);
void components_backward_f32(float *dx, float *dV, float *dU, float *ddelta, float *dmask, float *ddelta_mask,
                             const float *dout, const float *x, const float *a, const float *V, const float *U,
                             const float *mask, const float *delta, const float *delta_mask, int N, int d_in,
                             int C, int d_out, float *scratch, bool add_dx);
// (components_member holds floats in both backends.)
void components_forward_group_f32(int G, const components_member *m, const float *x, int N, int d_in, int C,
                                  int d_out);
void components_backward_group_f32(int G, const components_member *m, float *dx, bool add_dx, const float *x, int N,
                                   int d_in, int C, int d_out);
void weight_delta_forward_f32(float *delta, const float *W, const float *V, const float *U, int d_in, int C,
                              int d_out);
void weight_delta_backward_f32(float *dV, float *dU, const float *ddelta, const float *V, const float *U, int d_in,
                               int C, int d_out);
void embedding_components_forward_f32(float *out, float *a, const int32_t *tokens, const float *V, const float *U,
                                      const float *mask, const float *delta, const float *delta_mask, int N,
                                      int vocab, int C, int d, float *scratch);
void embedding_components_backward_f32(float *dV, float *dU, float *ddelta, float *dmask, float *ddelta_mask,
                                       const float *dout, const int32_t *tokens, const float *a, const float *V,
                                       const float *U, const float *mask, const float *delta,
                                       const float *delta_mask, int N, int vocab, int C, int d, float *scratch);
void embedding_weight_delta_forward_f32(float *delta, const float *W, const float *V, const float *U, int vocab,
                                        int C, int d);
void embedding_weight_delta_backward_f32(float *dV, float *dU, const float *ddelta, const float *V, const float *U,
                                         int vocab, int C, int d);
void rmsnorm_forward_f32(float *out, float *rstd, const float *x, const float *w, int N, int d, double eps);
void rmsnorm_backward_f32(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int d, bool add_dx);
void rope_tables_f32(float *cos_t, float *sin_t, int n_ctx, int hd, double base, bool adjacent_pairs);
void rope_forward_f32(float *x, const float *cos_t, const float *sin_t, int B, int S, int n_heads, int hd,
                      int n_ctx, bool adjacent_pairs);
void rope_backward_f32(float *dx, const float *cos_t, const float *sin_t, int B, int S, int n_heads, int hd,
                       int n_ctx, bool adjacent_pairs);
void attention_forward_f32(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                           int nh, int nkv, int hd);
void attention_backward_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *att, int B, int S, int nh, int nkv, int hd);
void swiglu_forward_f32(float *out, const float *gate, const float *up, int64_t n);
void swiglu_backward_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         int64_t n);
void mean_loss_forward_f32(float *loss, const float *logits, int64_t n);
void mean_loss_backward_f32(float *dlogits, int64_t n);
void mse_loss_forward_f32(float *loss, const float *y, const float *target, int64_t n);
void mse_loss_backward_f32(float *dy, const float *y, const float *target, int64_t n);
void mse_loss_forward_backward_f32(float *loss, float *dy, const float *y, const float *target, int64_t n);
void adamw_step_f32(float *param, const float *grad, float *m, float *v, size_t n, const spd_adamw_config *cfg,
                    int64_t t);
void add_f32(float *out, const float *a, const float *b, int64_t n);
void add_inplace_f32(float *acc, const float *x, int64_t n);
void fill_uniform_f32(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);

#define TOL 1e-5
static double tol = TOL;  // raised to spd_cuda_norm_bound() while testing TF32 products
#define SEED 20251124

// ---- host and device buffers -------------------------------------------------

static void *host_allocs[4096], *dev_allocs[4096];
static int n_host, n_dev;

static void *hmalloc(size_t bytes) {
    if (n_host == 4096) {
        fprintf(stderr, "test_gpu_ops: too many host allocations\n");
        exit(1);
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test_gpu_ops: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return host_allocs[n_host++] = p;
}

static void *dmalloc(size_t bytes) {
    if (n_dev == 4096) {
        fprintf(stderr, "test_gpu_ops: too many device allocations\n");
        exit(1);
    }
    return dev_allocs[n_dev++] = spd_device_malloc(bytes ? bytes : 4);
}

static void free_all(void) {
    spd_device_synchronize();
    while (n_host) free(host_allocs[--n_host]);
    while (n_dev) spd_device_free(dev_allocs[--n_dev]);
}

// A tensor on both sides: h for the CPU reference, d for the GPU, init (accumulated
// outputs only) the starting values that the check subtracts. n == 0: absent (NULL).
typedef struct {
    float *h, *d, *init;
    long n;
} pair;

static const pair none = {0};
#define H(p) ((p).n ? (p).h : NULL)
#define D(p) ((p).n ? (p).d : NULL)

static uint64_t next_stream = 1;

static float *host_uniform(long n, float lo, float hi) {
    float *p = hmalloc((size_t)n * sizeof(float));
    spd_philox_fill_uniform_f32(SEED, next_stream++, 0, (size_t)n, p);
    for (long i = 0; i < n; i++) p[i] = lo + (hi - lo) * p[i];
    return p;
}

static float *to_device(const float *h, long n) {
    float *d = dmalloc((size_t)n * sizeof(float));
    spd_device_upload(d, h, (size_t)n * sizeof(float));
    return d;
}

// Input: the same random values on both sides.
static pair input(long n, float lo, float hi) {
    pair p = {host_uniform(n, lo, hi), NULL, NULL, n};
    p.d = to_device(p.h, n);
    return p;
}

// Written output: NaN on both sides.
static pair output(long n) {
    pair p = {hmalloc((size_t)n * sizeof(float)), NULL, NULL, n};
    for (long i = 0; i < n; i++) p.h[i] = NAN;
    p.d = to_device(p.h, n);
    return p;
}

// Accumulated output: the same random start on both sides, kept in init.
static pair accum(long n) {
    pair p = input(n, -1, 1);
    p.init = hmalloc((size_t)n * sizeof(float));
    memcpy(p.init, p.h, (size_t)n * sizeof(float));
    return p;
}

// Re-poisons the GPU side of a written output (before a second GPU call).
static void poison(pair p) {
    float *nan = hmalloc((size_t)p.n * sizeof(float));
    for (long i = 0; i < p.n; i++) nan[i] = NAN;
    spd_device_upload(p.d, nan, (size_t)p.n * sizeof(float));
}

static int32_t *host_tokens(long n, int vocab) {
    int32_t *t = hmalloc((size_t)n * sizeof(int32_t));
    float *u = host_uniform(n, 0, 1);
    for (long i = 0; i < n; i++) {
        t[i] = (int32_t)(u[i] * vocab);
        if (t[i] >= vocab) t[i] = vocab - 1;
    }
    return t;
}

static int32_t *device_tokens(const int32_t *h, long n) {
    int32_t *d = dmalloc((size_t)n * sizeof(int32_t));
    spd_device_upload(d, h, (size_t)n * sizeof(int32_t));
    return d;
}

static float *download(const float *d, long n) {
    float *h = hmalloc((size_t)n * sizeof(float));
    spd_device_download(h, d, (size_t)n * sizeof(float));
    return h;
}

// Norm-relative error of the GPU side against the CPU side (of what each added,
// for accumulated outputs); reported as one check.
static double check(const char *name, pair p) {
    float *got = download(p.d, p.n);
    double *a = hmalloc((size_t)p.n * sizeof(double)), *b = hmalloc((size_t)p.n * sizeof(double));
    for (long i = 0; i < p.n; i++) {
        double base = p.init ? p.init[i] : 0;
        a[i] = (double)got[i] - base;
        b[i] = (double)p.h[i] - base;
    }
    double err = test_rel_norm_err(a, b, p.n);
    char full[512];
    snprintf(full, sizeof full, "%s (norm-rel err %.2e, bound %.0e)", name, err, tol);
    test_report(err <= tol, full, "error above bound");
    return err;
}

// Bit-identical check of float buffers.
static void check_bits(const char *name, const float *got, const float *want, long n) {
    long bad = -1;
    for (long i = 0; i < n && bad < 0; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) bad = i;
    if (bad < 0) test_report(1, name, NULL);
    else test_report(0, name, "first difference at %ld: %.9g vs %.9g", bad, got[bad], want[bad]);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// ---- matmul and linear ---------------------------------------------------------

static void test_matmul(void) {
    // {1200, 341, 4096}: rows of 341 floats; fused mode runs it through a padded output (matmul.cu).
    static const int shapes[][3] = {{37, 1200, 341}, {341, 1200, 4096}, {1200, 341, 4096}, {1, 1, 1}, {5, 3, 7},
                                    {64, 257, 0}, {1200, 33, 129}};
    static const float coefs[][2] = {{1, 0}, {-1, 1}, {0.5f, 2}};
    int which = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const float alpha = coefs[which % 3][0], beta = coefs[which % 3][1];
                which++;
                pair A = input((long)M * K, -1, 1), B = input((long)K * N, -1, 1);
                pair C = beta == 0 ? output((long)M * N) : input((long)M * N, -1, 1);
                if (beta == 0)  // the CPU side must not read C either: give it finite values
                    for (long i = 0; i < C.n; i++) C.h[i] = 1;
                matmul_f32(C.h, A.h, B.h, M, N, K, ta, tb, alpha, beta);
                matmul_cuda(C.d, A.d, B.d, M, N, K, ta, tb, alpha, beta);
                char name[160];
                snprintf(name, sizeof name, "matmul M=%d N=%d K=%d ta=%d tb=%d alpha=%g beta=%g%s", M, N, K, ta, tb,
                         alpha, beta, spd_cuda_mode_get() == SPD_CUDA_FUSED ? " fused (cuBLASLt)" : "");
                check(name, C);
                free_all();
            }
    }
    // K = 0 scales C by beta.
    pair C = input(7 * 9, -1, 1);
    matmul_f32(C.h, NULL, NULL, 7, 9, 0, false, false, 1, 0.25f);
    matmul_cuda(C.d, NULL, NULL, 7, 9, 0, false, false, 1, 0.25f);
    check("matmul K=0 beta=0.25 scales C", C);
    free_all();
}

static void test_linear(void) {
    static const int shapes[][3] = {{4096, 341, 1200}, {3, 5, 7}};
    for (int s = 0; s < 2; s++) {
        const int N = shapes[s][0], d_in = shapes[s][1], d_out = shapes[s][2];
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            pair x = input((long)N * d_in, -1, 1), W = input((long)d_out * d_in, -0.1f, 0.1f);
            pair bias = with_bias ? input(d_out, -1, 1) : none, out = output((long)N * d_out);
            linear_forward_f32(out.h, x.h, W.h, H(bias), N, d_in, d_out);
            linear_forward_cuda(out.d, x.d, W.d, D(bias), N, d_in, d_out);
            char name[160];
            snprintf(name, sizeof name, "linear_forward N=%d d_in=%d d_out=%d bias=%d", N, d_in, d_out, with_bias);
            check(name, out);
            free_all();
        }
        for (int add = 0; add < 2; add++) {  // dx written, or added onto random values (add_dx)
            pair dout = input((long)N * d_out, -1, 1), W = input((long)d_out * d_in, -0.1f, 0.1f);
            pair dx = add ? accum((long)N * d_in) : output((long)N * d_in);
            linear_backward_f32(dx.h, dout.h, W.h, N, d_in, d_out, add);
            linear_backward_cuda(dx.d, dout.d, W.d, N, d_in, d_out, add);
            char name[160];
            snprintf(name, sizeof name, "linear_backward N=%d d_in=%d d_out=%d add_dx=%d", N, d_in, d_out, add);
            check(name, dx);
            free_all();
        }
    }
}

static void test_embedding(void) {
    const int N = 4099, vocab = 1000, d = 341;
    int32_t *tok = host_tokens(N, vocab);
    int32_t *tok_d = device_tokens(tok, N);
    pair wte = input((long)vocab * d, -1, 1), out = output((long)N * d);
    embedding_forward_f32(out.h, tok, wte.h, N, d);
    embedding_forward_cuda(out.d, tok_d, wte.d, N, d);
    check("embedding_forward N=4099 vocab=1000 d=341", out);
    free_all();
}

// ---- components ----------------------------------------------------------------

// mask / delta / delta_mask: which optional inputs are given; bwd: 0 all outputs,
// 1 dx NULL (delta path needs its own temporary), 2 parameter gradients only, 3 all
// outputs with dx added onto random values (add_dx).
static void test_components(int N, int d_in, int C, int d_out, bool use_mask, bool use_delta, bool use_dmask,
                            int bwd) {
    char tag[160], name[256];
    const bool fused = spd_cuda_mode_get() == SPD_CUDA_FUSED;
    snprintf(tag, sizeof tag, "N=%d d_in=%d C=%d d_out=%d mask=%d delta=%d delta_mask=%d%s", N, d_in, C, d_out,
             use_mask, use_delta, use_delta && use_dmask, fused ? " fused" : "");
    pair x = input((long)N * d_in, -1, 1), V = input((long)d_in * C, -0.1f, 0.1f);
    pair U = input((long)C * d_out, -0.1f, 0.1f);
    pair mask = use_mask ? input((long)N * C, 0, 1) : none;
    pair delta = use_delta ? input((long)d_out * d_in, -0.1f, 0.1f) : none;
    pair dm = use_delta && use_dmask ? input(N, 0, 1) : none;
    pair out = output((long)N * d_out), a = output((long)N * C), scratch = output((long)N * C);
    components_forward_f32(out.h, a.h, x.h, V.h, U.h, H(mask), H(delta), H(dm), N, d_in, C, d_out, scratch.h);
    components_forward_cuda(out.d, a.d, x.d, V.d, U.d, D(mask), D(delta), D(dm), N, d_in, C, d_out, scratch.d);
    snprintf(name, sizeof name, "components_forward out %s", tag);
    check(name, out);
    snprintf(name, sizeof name, "components_forward a %s", tag);
    check(name, a);

    pair dout = input((long)N * d_out, -1, 1);
    pair dx = bwd == 0 ? output((long)N * d_in) : bwd == 3 ? accum((long)N * d_in) : none;
    pair dV = accum((long)d_in * C), dU = accum((long)C * d_out);
    pair ddelta = use_delta ? accum((long)d_out * d_in) : none;
    pair dmask = bwd != 2 ? output((long)N * C) : none;
    pair ddm = use_delta && bwd != 2 ? output(N) : none;
    if (!fused) poison(scratch);  // fused mode reads a * mask back from the forward's scratch
    components_backward_f32(H(dx), dV.h, dU.h, H(ddelta), H(dmask), H(ddm), dout.h, x.h, a.h, V.h, U.h, H(mask),
                            H(delta), H(dm), N, d_in, C, d_out, scratch.h, bwd == 3);
    // The GPU reads its own saved activations a.
    components_backward_cuda(D(dx), dV.d, dU.d, D(ddelta), D(dmask), D(ddm), dout.d, x.d, a.d, V.d, U.d, D(mask),
                             D(delta), D(dm), N, d_in, C, d_out, scratch.d, bwd == 3);
    const pair outs[] = {dx, dV, dU, ddelta, dmask, ddm};
    const char *names[] = {"dx", "dV", "dU", "ddelta", "dmask", "ddelta_mask"};
    for (int i = 0; i < 6; i++) {
        if (!outs[i].n) continue;
        snprintf(name, sizeof name, "components_backward %s %s bwd=%d", names[i], tag, bwd);
        check(name, outs[i]);
    }
    free_all();
}

// Fused mode without mask gradients: the forward gets a == NULL (nothing saves
// a = x @ V), the backward dmask == NULL; outputs and gradients as the CPU's.
static void test_components_no_acts(int N, int d_in, int C, int d_out) {
    char tag[160], name[256];
    snprintf(tag, sizeof tag, "N=%d d_in=%d C=%d d_out=%d, a not saved (%s)", N, d_in, C, d_out,
             spd_cuda_matmul_precision_name());
    pair x = input((long)N * d_in, -1, 1), V = input((long)d_in * C, -0.1f, 0.1f);
    pair U = input((long)C * d_out, -0.1f, 0.1f), mask = input((long)N * C, 0, 1);
    pair out = output((long)N * d_out), a = output((long)N * C), scratch = output((long)N * C);
    components_forward_f32(out.h, a.h, x.h, V.h, U.h, mask.h, NULL, NULL, N, d_in, C, d_out, scratch.h);
    components_forward_cuda(out.d, NULL, x.d, V.d, U.d, mask.d, NULL, NULL, N, d_in, C, d_out, scratch.d);
    snprintf(name, sizeof name, "components_forward out %s", tag);
    check(name, out);
    pair dout = input((long)N * d_out, -1, 1), dx = output((long)N * d_in);
    pair dV = accum((long)d_in * C), dU = accum((long)C * d_out);
    components_backward_f32(dx.h, dV.h, dU.h, NULL, NULL, NULL, dout.h, x.h, a.h, V.h, U.h, mask.h, NULL, NULL, N,
                            d_in, C, d_out, scratch.h, false);
    components_backward_cuda(dx.d, dV.d, dU.d, NULL, NULL, NULL, dout.d, x.d, NULL, V.d, U.d, mask.d, NULL, NULL, N,
                             d_in, C, d_out, scratch.d, false);
    const pair outs[] = {dx, dV, dU};
    const char *names[] = {"dx", "dV", "dU"};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "components_backward %s %s", names[i], tag);
        check(name, outs[i]);
    }
    free_all();
}

// The fused kernels give the same bits on every run (their split sums are added in a fixed
// order): the forward's out and the backward's dx, dV, dU (from the same start each run) and
// dmask of one module, R runs on the same inputs. A race in a kernel shows here first: its
// errors stayed under the TF32 bound (session 18: a mask stage released before its loads
// completed, with C split).
static void test_components_repeat(int N, int d_in, int C, int d_out, bool dmask_on, int R) {
    char name[256];
    snprintf(name, sizeof name, "components N=%d d_in=%d C=%d d_out=%d dmask=%d (%s): the same bits in %d runs", N,
             d_in, C, d_out, dmask_on, spd_cuda_matmul_precision_name(), R);
    pair x = input((long)N * d_in, -1, 1), V = input((long)d_in * C, -0.1f, 0.1f);
    pair U = input((long)C * d_out, -0.1f, 0.1f), mask = input((long)N * C, 0, 1);
    pair out = output((long)N * d_out), a = output((long)N * C), scratch = output((long)N * C);
    pair dout = input((long)N * d_out, -1, 1), dx = output((long)N * d_in), dm = output((long)N * C);
    pair dV = accum((long)d_in * C), dU = accum((long)C * d_out);
    float *first[5] = {NULL, NULL, NULL, NULL, NULL};
    const pair outs[5] = {out, dx, dV, dU, dm};
    int differ = -1;
    for (int r = 0; r < R && differ < 0; r++) {
        spd_device_upload(dV.d, dV.init, (size_t)dV.n * sizeof(float));
        spd_device_upload(dU.d, dU.init, (size_t)dU.n * sizeof(float));
        components_forward_cuda(out.d, dmask_on ? a.d : NULL, x.d, V.d, U.d, mask.d, NULL, NULL, N, d_in, C, d_out,
                                scratch.d);
        float *got0 = download(out.d, out.n);  // before the backward overwrites scratch
        components_backward_cuda(dx.d, dV.d, dU.d, NULL, dmask_on ? dm.d : NULL, NULL, dout.d, x.d,
                                 dmask_on ? a.d : NULL, V.d, U.d, mask.d, NULL, NULL, N, d_in, C, d_out, scratch.d,
                                 false);
        for (int k = 0; k < (dmask_on ? 5 : 4); k++) {
            float *got = k == 0 ? got0 : download(outs[k].d, outs[k].n);
            if (!first[k]) first[k] = got;
            else if (memcmp(first[k], got, (size_t)outs[k].n * sizeof(float)) != 0) differ = r;
        }
    }
    test_report(differ < 0, name, "run %d differs from the first", differ);
    free_all();
}

// One forward and backward of G modules of one shape (G = 1: components_forward and
// components_backward; else the group calls) from the same gradient start; every result (out,
// dx, dV, dU) downloaded into one buffer (n floats).
static float *layouts_run(int G, const components_member *md, const pair *dV, const pair *dU, const pair *out,
                          pair x, pair dx, int N, int d_in, int C, int d_out, long *n) {
    for (int g = 0; g < G; g++) {
        spd_device_upload(dV[g].d, dV[g].init, (size_t)dV[g].n * sizeof(float));
        spd_device_upload(dU[g].d, dU[g].init, (size_t)dU[g].n * sizeof(float));
    }
    if (G == 1) {
        const components_member *e = md;
        components_forward_cuda(e->out, NULL, x.d, e->V, e->U, e->mask, NULL, NULL, N, d_in, C, d_out, e->scratch);
        components_backward_cuda(dx.d, e->dV, e->dU, NULL, NULL, NULL, e->dout, x.d, NULL, e->V, e->U, e->mask, NULL,
                                 NULL, N, d_in, C, d_out, e->scratch, false);
    } else {
        components_forward_group_cuda(G, md, x.d, N, d_in, C, d_out);
        components_backward_group_cuda(G, md, dx.d, false, x.d, N, d_in, C, d_out);
    }
    *n = dx.n;
    for (int g = 0; g < G; g++) *n += out[g].n + dV[g].n + dU[g].n;
    float *all = hmalloc((size_t)*n * sizeof(float)), *at = all;
    spd_device_download(at, dx.d, (size_t)dx.n * sizeof(float));
    at += dx.n;
    for (int g = 0; g < G; g++) {
        const pair parts[3] = {out[g], dV[g], dU[g]};
        for (int i = 0; i < 3; i++) {
            spd_device_download(at, parts[i].d, (size_t)parts[i].n * sizeof(float));
            at += parts[i].n;
        }
    }
    return all;
}

// The weights' layouts made for a model's forward and backward in one launch
// (components_weights_prepare, src/cuda/weight_layouts.cu): the same bits as the copies
// each call makes for itself, again after the weights change and are prepared anew; and no
// layout read after the release (weights changed with no prepare since: the result is the new
// weights', from the calls' own copies).
static void test_weight_layouts(int G, int N, int d_in, int C, int d_out, int layouts) {
    char tag[200], name[300];
    snprintf(tag, sizeof tag, "G=%d N=%d d_in=%d C=%d d_out=%d (%s)", G, N, d_in, C, d_out,
             spd_cuda_matmul_precision_name());
    pair x = input((long)N * d_in, -1, 1), dx = output((long)N * d_in);
    components_member md[COMPONENTS_GROUP_MAX];
    pair V[COMPONENTS_GROUP_MAX], U[COMPONENTS_GROUP_MAX], out[COMPONENTS_GROUP_MAX], dV[COMPONENTS_GROUP_MAX],
        dU[COMPONENTS_GROUP_MAX];
    const float *W[2 * COMPONENTS_GROUP_MAX];
    for (int g = 0; g < G; g++) {
        V[g] = input((long)d_in * C, -0.1f, 0.1f);
        U[g] = input((long)C * d_out, -0.1f, 0.1f);
        pair mask = input((long)N * C, 0, 1), scratch = output((long)N * C), dout = input((long)N * d_out, -1, 1);
        out[g] = output((long)N * d_out);
        dV[g] = accum((long)d_in * C);
        dU[g] = accum((long)C * d_out);
        md[g] = (components_member){V[g].d, U[g].d, mask.d, NULL, NULL, NULL, scratch.d, out[g].d, dout.d, dV[g].d,
                                    dU[g].d, NULL, NULL, NULL};
        W[2 * g] = V[g].d;
        W[2 * g + 1] = U[g].d;
    }
    // New weights of the same sizes, uploaded in place.
    float *const fresh = host_uniform((long)(d_in + d_out) * C, -0.1f, 0.1f);
    long n;
#define RUN() layouts_run(G, md, dV, dU, out, x, dx, N, d_in, C, d_out, &n)
    components_weights_prepare_cuda(2 * G, W);
    float *own = RUN();  // the first step: each call's own copies (and the layouts asked for)
    components_weights_release_cuda();
    components_weights_prepare_cuda(2 * G, W);
    snprintf(name, sizeof name, "weight layouts: %d made for the calls that read them %s", layouts, tag);
    test_report(weight_layouts_made() == layouts, name, "%d made", weight_layouts_made());
    float *prepared = RUN();
    components_weights_release_cuda();
    snprintf(name, sizeof name, "weight layouts prepared: the same bits as each call's copies %s", tag);
    check_bits(name, prepared, own, n);
    for (int g = 0; g < G; g++) {
        spd_device_upload(V[g].d, fresh, (size_t)V[g].n * sizeof(float));
        spd_device_upload(U[g].d, fresh + V[g].n, (size_t)U[g].n * sizeof(float));
    }
    components_weights_prepare_cuda(2 * G, W);
    prepared = RUN();
    components_weights_release_cuda();
    components_weights_forget_cuda(2 * G, W);
    own = RUN();
    snprintf(name, sizeof name, "weight layouts prepared again for new weights: the same bits %s", tag);
    check_bits(name, prepared, own, n);
    // Layouts made, then the window closed and the weights changed (back to the old values
    // scaled): a call with no prepare must not read them.
    components_weights_prepare_cuda(2 * G, W);
    RUN();
    components_weights_release_cuda();
    for (int g = 0; g < G; g++) {
        for (long i = 0; i < V[g].n; i++) V[g].h[i] *= 0.5f;
        spd_device_upload(V[g].d, V[g].h, (size_t)V[g].n * sizeof(float));
    }
    float *unprepared = RUN();
    components_weights_forget_cuda(2 * G, W);
    own = RUN();
    snprintf(name, sizeof name, "weight layouts not read after the release %s", tag);
    check_bits(name, unprepared, own, n);
#undef RUN
    free_all();
}

// A group of G modules of one shape on one x (components_forward_group and
// components_backward_group): each member's outputs and gradients, and the summed dx, against
// the CPU's members one after another. delta: every member has a weight delta; dmask: mask
// gradients (else a not saved: the forward gets a == NULL, as linear_site passes it in fused
// mode); add_dx: dx added onto its values; param_grads: dU and dV wanted.
static void test_components_group(int G, int N, int d_in, int C, int d_out, bool delta, bool dmask, bool add_dx,
                                  bool param_grads) {
    char tag[200], name[300];
    snprintf(tag, sizeof tag, "G=%d N=%d d_in=%d C=%d d_out=%d delta=%d dmask=%d add_dx=%d param_grads=%d (%s)", G, N,
             d_in, C, d_out, delta, dmask, add_dx, param_grads, spd_cuda_matmul_precision_name());
    pair x = input((long)N * d_in, -1, 1), dx = add_dx ? accum((long)N * d_in) : output((long)N * d_in);
    components_member mh[COMPONENTS_GROUP_MAX], md[COMPONENTS_GROUP_MAX];
    pair out[COMPONENTS_GROUP_MAX], a[COMPONENTS_GROUP_MAX], dV[COMPONENTS_GROUP_MAX], dU[COMPONENTS_GROUP_MAX],
        ddelta[COMPONENTS_GROUP_MAX], dm[COMPONENTS_GROUP_MAX], ddm[COMPONENTS_GROUP_MAX];
    for (int g = 0; g < G; g++) {
        pair V = input((long)d_in * C, -0.1f, 0.1f), U = input((long)C * d_out, -0.1f, 0.1f);
        pair mask = input((long)N * C, 0, 1), scratch = output((long)N * C), dout = input((long)N * d_out, -1, 1);
        pair dl = delta ? input((long)d_out * d_in, -0.1f, 0.1f) : none, dlm = delta ? input(N, 0, 1) : none;
        out[g] = output((long)N * d_out);
        a[g] = output((long)N * C);
        dV[g] = param_grads ? accum((long)d_in * C) : none;
        dU[g] = param_grads ? accum((long)C * d_out) : none;
        ddelta[g] = delta && param_grads ? accum((long)d_out * d_in) : none;
        dm[g] = dmask ? output((long)N * C) : none;
        ddm[g] = delta && dmask ? output(N) : none;
        mh[g] = (components_member){V.h, U.h, mask.h, H(dl), H(dlm), a[g].h, scratch.h, out[g].h, dout.h,
                                    H(dV[g]), H(dU[g]), H(ddelta[g]), H(dm[g]), H(ddm[g])};
        md[g] = (components_member){V.d, U.d, mask.d, D(dl), D(dlm), dmask ? a[g].d : NULL, scratch.d, out[g].d,
                                    dout.d, D(dV[g]), D(dU[g]), D(ddelta[g]), D(dm[g]), D(ddm[g])};
    }
    components_forward_group_f32(G, mh, x.h, N, d_in, C, d_out);
    components_forward_group_cuda(G, md, x.d, N, d_in, C, d_out);
    for (int g = 0; g < G; g++) {
        snprintf(name, sizeof name, "components_forward_group out[%d] %s", g, tag);
        check(name, out[g]);
        if (dmask) {
            snprintf(name, sizeof name, "components_forward_group a[%d] %s", g, tag);
            check(name, a[g]);
        }
    }
    components_backward_group_f32(G, mh, dx.h, add_dx, x.h, N, d_in, C, d_out);
    components_backward_group_cuda(G, md, dx.d, add_dx, x.d, N, d_in, C, d_out);
    snprintf(name, sizeof name, "components_backward_group dx %s", tag);
    check(name, dx);
    for (int g = 0; g < G; g++) {
        const pair outs[] = {dV[g], dU[g], ddelta[g], dm[g], ddm[g]};
        const char *names[] = {"dV", "dU", "ddelta", "dmask", "ddelta_mask"};
        for (int i = 0; i < 5; i++) {
            if (!outs[i].n) continue;
            snprintf(name, sizeof name, "components_backward_group %s[%d] %s", names[i], g, tag);
            check(name, outs[i]);
        }
    }
    free_all();
}

static void test_weight_delta(void) {
    const int d_in = 341, C = 1200, d_out = 257;
    pair W = input((long)d_out * d_in, -1, 1), V = input((long)d_in * C, -0.1f, 0.1f);
    pair U = input((long)C * d_out, -0.1f, 0.1f), delta = output((long)d_out * d_in);
    weight_delta_forward_f32(delta.h, W.h, V.h, U.h, d_in, C, d_out);
    weight_delta_forward_cuda(delta.d, W.d, V.d, U.d, d_in, C, d_out);
    check("weight_delta_forward d_in=341 C=1200 d_out=257", delta);
    pair ddelta = input((long)d_out * d_in, -1, 1), dV = accum((long)d_in * C), dU = accum((long)C * d_out);
    weight_delta_backward_f32(dV.h, dU.h, ddelta.h, V.h, U.h, d_in, C, d_out);
    weight_delta_backward_cuda(dV.d, dU.d, ddelta.d, V.d, U.d, d_in, C, d_out);
    check("weight_delta_backward dV d_in=341 C=1200 d_out=257", dV);
    check("weight_delta_backward dU d_in=341 C=1200 d_out=257", dU);
    free_all();

    const int vocab = 1000, d = 341;
    pair We = input((long)vocab * d, -1, 1), Ve = input((long)vocab * C, -0.1f, 0.1f);
    pair Ue = input((long)C * d, -0.1f, 0.1f), de = output((long)vocab * d);
    embedding_weight_delta_forward_f32(de.h, We.h, Ve.h, Ue.h, vocab, C, d);
    embedding_weight_delta_forward_cuda(de.d, We.d, Ve.d, Ue.d, vocab, C, d);
    check("embedding_weight_delta_forward vocab=1000 C=1200 d=341", de);
    pair dde = input((long)vocab * d, -1, 1), dVe = accum((long)vocab * C), dUe = accum((long)C * d);
    embedding_weight_delta_backward_f32(dVe.h, dUe.h, dde.h, Ve.h, Ue.h, vocab, C, d);
    embedding_weight_delta_backward_cuda(dVe.d, dUe.d, dde.d, Ve.d, Ue.d, vocab, C, d);
    check("embedding_weight_delta_backward dV vocab=1000 C=1200 d=341", dVe);
    check("embedding_weight_delta_backward dU vocab=1000 C=1200 d=341", dUe);
    free_all();
}

static void test_embedding_components(int N, int vocab, int C, int d, bool use_mask, bool use_delta,
                                      bool use_dmask) {
    char tag[160], name[256];
    snprintf(tag, sizeof tag, "N=%d vocab=%d C=%d d=%d mask=%d delta=%d delta_mask=%d", N, vocab, C, d, use_mask,
             use_delta, use_delta && use_dmask);
    int32_t *tok = host_tokens(N, vocab);
    int32_t *tok_d = device_tokens(tok, N);
    pair V = input((long)vocab * C, -1, 1), U = input((long)C * d, -0.1f, 0.1f);
    pair mask = use_mask ? input((long)N * C, 0, 1) : none;
    pair delta = use_delta ? input((long)vocab * d, -0.1f, 0.1f) : none;
    pair dm = use_delta && use_dmask ? input(N, 0, 1) : none;
    pair out = output((long)N * d), a = output((long)N * C), scratch = output((long)N * C);
    embedding_components_forward_f32(out.h, a.h, tok, V.h, U.h, H(mask), H(delta), H(dm), N, vocab, C, d,
                                     scratch.h);
    embedding_components_forward_cuda(out.d, a.d, tok_d, V.d, U.d, D(mask), D(delta), D(dm), N, vocab, C, d,
                                      scratch.d);
    snprintf(name, sizeof name, "embedding_components_forward out %s", tag);
    check(name, out);
    snprintf(name, sizeof name, "embedding_components_forward a %s", tag);
    check(name, a);

    pair dout = input((long)N * d, -1, 1);
    pair dV = accum((long)vocab * C), dU = accum((long)C * d);
    pair ddelta = use_delta ? accum((long)vocab * d) : none;
    pair dmask = output((long)N * C), ddm = use_delta ? output(N) : none;
    poison(scratch);
    embedding_components_backward_f32(dV.h, dU.h, H(ddelta), dmask.h, H(ddm), dout.h, tok, a.h, V.h, U.h, H(mask),
                                      H(delta), H(dm), N, vocab, C, d, scratch.h);
    embedding_components_backward_cuda(dV.d, dU.d, D(ddelta), dmask.d, D(ddm), dout.d, tok_d, a.d, V.d, U.d,
                                       D(mask), D(delta), D(dm), N, vocab, C, d, scratch.d);
    const pair outs[] = {dV, dU, ddelta, dmask, ddm};
    const char *names[] = {"dV", "dU", "ddelta", "dmask", "ddelta_mask"};
    for (int i = 0; i < 5; i++) {
        if (!outs[i].n) continue;
        snprintf(name, sizeof name, "embedding_components_backward %s %s", names[i], tag);
        check(name, outs[i]);
    }
    free_all();
}

// ---- transformer ops -----------------------------------------------------------

static void test_rmsnorm(void) {
    static const int shapes[][2] = {{4096, 341}, {3, 1}, {5, 2048}, {1, 1200}, {16387, 128}};
    for (int s = 0; s < 5; s++) {
        const int N = shapes[s][0], d = shapes[s][1];
        char name[160];
        pair x = input((long)N * d, -2, 2), w = input(d, 0.5f, 1.5f);
        pair out = output((long)N * d), rstd = output(N);
        rmsnorm_forward_f32(out.h, rstd.h, x.h, w.h, N, d, 1e-6);
        rmsnorm_forward_cuda(out.d, rstd.d, x.d, w.d, N, d, 1e-6);
        snprintf(name, sizeof name, "rmsnorm_forward out N=%d d=%d", N, d);
        check(name, out);
        snprintf(name, sizeof name, "rmsnorm_forward rstd N=%d d=%d", N, d);
        check(name, rstd);
        for (int v = 0; v < 3; v++) {  // dx written, written with dw, added to
            const bool with_dw = v == 1, add_dx = v == 2;
            pair dout = input((long)N * d, -1, 1), dx = add_dx ? accum((long)N * d) : output((long)N * d);
            pair dw = with_dw ? accum(d) : none;
            rmsnorm_backward_f32(dx.h, H(dw), dout.h, x.h, w.h, rstd.h, N, d, add_dx);
            rmsnorm_backward_cuda(dx.d, D(dw), dout.d, x.d, w.d, rstd.d, N, d, add_dx);
            snprintf(name, sizeof name, "rmsnorm_backward dx N=%d d=%d dw=%d add_dx=%d", N, d, with_dw, add_dx);
            check(name, dx);
            if (with_dw) {
                snprintf(name, sizeof name, "rmsnorm_backward dw N=%d d=%d", N, d);
                check(name, dw);
            }
        }
        free_all();
    }
}

static void test_rope(void) {
    static const int shapes[][5] = {{3, 67, 5, 34, 50}, {2, 16, 4, 32, 16}, {1, 3, 1, 2, 8}};  // B S heads hd n_ctx
    for (int s = 0; s < 3; s++)
        for (int adj = 0; adj < 2; adj++) {
            const int B = shapes[s][0], S = shapes[s][1], nh = shapes[s][2], hd = shapes[s][3], n_ctx = shapes[s][4];
            char name[160];
            const long nt = (long)n_ctx * hd, nx = (long)B * S * nh * hd;
            float *c = hmalloc((size_t)nt * sizeof(float)), *sn = hmalloc((size_t)nt * sizeof(float));
            rope_tables_f32(c, sn, n_ctx, hd, 10000.0, adj);
            pair cd = output(nt), sd = output(nt);
            rope_tables_cuda(cd.d, sd.d, n_ctx, hd, 10000.0, adj);
            snprintf(name, sizeof name, "rope_tables n_ctx=%d hd=%d adjacent=%d bit-identical", n_ctx, hd, adj);
            check_bits(name, download(cd.d, nt), c, nt);
            check_bits(name, download(sd.d, nt), sn, nt);
            pair x = input(nx, -1, 1);
            rope_forward_f32(x.h, c, sn, B, S, nh, hd, n_ctx, adj);
            rope_forward_cuda(x.d, cd.d, sd.d, B, S, nh, hd, n_ctx, adj);
            snprintf(name, sizeof name, "rope_forward B=%d S=%d heads=%d hd=%d n_ctx=%d adjacent=%d", B, S, nh, hd,
                     n_ctx, adj);
            check(name, x);
            pair g = input(nx, -1, 1);
            rope_backward_f32(g.h, c, sn, B, S, nh, hd, n_ctx, adj);
            rope_backward_cuda(g.d, cd.d, sd.d, B, S, nh, hd, n_ctx, adj);
            snprintf(name, sizeof name, "rope_backward B=%d S=%d heads=%d hd=%d n_ctx=%d adjacent=%d", B, S, nh, hd,
                     n_ctx, adj);
            check(name, g);
            free_all();
        }
}

// Returns the forward output's error (test_attention_tc reads it). Where the kernels run
// memory-lean (att holds row statistics, not P) att is not compared; the backward's results
// depend on it.
static double test_attention(int B, int S, int nh, int nkv, int hd) {
    char tag[128], name[256];
    const bool lean = attention_tc_lean(S, hd);
    snprintf(tag, sizeof tag, "B=%d S=%d nh=%d nkv=%d hd=%d%s", B, S, nh, nkv, hd, lean ? " lean" : "");
    const long nq = (long)B * S * nh * hd, nk = (long)B * S * nkv * hd;
    pair q = input(nq, -1, 1), k = input(nk, -1, 1), v = input(nk, -1, 1);
    pair out = output(nq), att = output((long)B * nh * S * S);
    attention_forward_f32(out.h, att.h, q.h, k.h, v.h, B, S, nh, nkv, hd);
    attention_forward_cuda(out.d, att.d, q.d, k.d, v.d, B, S, nh, nkv, hd);
    snprintf(name, sizeof name, "attention_forward out %s", tag);
    const double err = check(name, out);
    if (!lean) {
        snprintf(name, sizeof name, "attention_forward att %s", tag);
        check(name, att);
    }
    pair dout = input(nq, -1, 1), dq = output(nq), dk = output(nk), dv = output(nk);
    attention_backward_f32(dq.h, dk.h, dv.h, dout.h, q.h, k.h, v.h, out.h, att.h, B, S, nh, nkv, hd);
    attention_backward_cuda(dq.d, dk.d, dv.d, dout.d, q.d, k.d, v.d, out.d, att.d, B, S, nh, nkv, hd);
    snprintf(name, sizeof name, "attention_backward dq %s", tag);
    check(name, dq);
    snprintf(name, sizeof name, "attention_backward dk %s", tag);
    check(name, dk);
    snprintf(name, sizeof name, "attention_backward dv %s", tag);
    check(name, dv);
    free_all();
    return err;
}

// Wall time per call of the GPU attention at the benchmark's shape (informational).
static void time_attention(int B, int S, int nh, int nkv, int hd) {
    const long nq = (long)B * S * nh * hd, nk = (long)B * S * nkv * hd;
    pair q = input(nq, -1, 1), k = input(nk, -1, 1), v = input(nk, -1, 1), dout = input(nq, -1, 1);
    pair out = output(nq), att = output((long)B * nh * S * S), dq = output(nq), dk = output(nk), dv = output(nk);
    const int reps = 20;
    double fwd = 0, bwd = 0;
    for (int pass = 0; pass < 2; pass++) {  // the first pass warms up
        spd_device_synchronize();
        double t0 = now_ms();
        for (int r = 0; r < reps; r++) attention_forward_cuda(out.d, att.d, q.d, k.d, v.d, B, S, nh, nkv, hd);
        spd_device_synchronize();
        double t1 = now_ms();
        for (int r = 0; r < reps; r++)
            attention_backward_cuda(dq.d, dk.d, dv.d, dout.d, q.d, k.d, v.d, out.d, att.d, B, S, nh, nkv, hd);
        spd_device_synchronize();
        double t2 = now_ms();
        fwd = (t1 - t0) / reps;
        bwd = (t2 - t1) / reps;
    }
    printf("# attention B=%d S=%d nh=%d nkv=%d hd=%d%s: forward %.3f ms, backward %.3f ms (mean of %d, host clock)\n",
           B, S, nh, nkv, hd, attention_tc_lean(S, hd) ? " lean" : "", fwd, bwd, reps);
    free_all();
}

// With TF32 (or bf16) products, head dims 32 and 64 and S % 4 == 0 run on the tensor-core
// kernels (attention_tc.cu): checked at the products' bound, on partial tiles (S = 40, 132,
// 260), groups of 1, 2 and 4 query heads per kv head, and the benchmark's shape. The error
// must also show TF32 rounding (> 1e-6), so that a silent fall back to the float32 kernels
// cannot pass for the tensor-core path. In both modes: unfused saves P in att, fused runs
// the memory-lean kernels.
static void test_attention_tc(void) {
    static const int shapes[][5] = {{64, 256, 4, 2, 32}, {3, 40, 4, 4, 32}, {2, 132, 4, 2, 64}, {1, 260, 4, 1, 32}};
    const spd_cuda_mode mode = spd_cuda_mode_get();
    for (int fused = 0; fused < 2; fused++) {
        spd_cuda_set_mode(fused ? SPD_CUDA_FUSED : SPD_CUDA_UNFUSED);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const int *s = shapes[i];
            const double err = test_attention(s[0], s[1], s[2], s[3], s[4]);
            char name[160];
            snprintf(name, sizeof name,
                     "attention B=%d S=%d nh=%d nkv=%d hd=%d %s%s ran on the tensor cores (err %.2e > 1e-6)", s[0],
                     s[1], s[2], s[3], s[4], spd_cuda_matmul_precision_name(), fused ? " fused" : "", err);
            test_report(err > 1e-6, name, "error too small for TF32 products");
        }
        time_attention(64, 256, 4, 2, 32);
    }
    spd_cuda_set_mode(mode);
    test_attention(2, 67, 6, 2, 34);  // hd 34, S odd: the float32 kernels
}

// The outputs from element o on (what the kernels wrote).
static pair from(pair p, int o) { return (pair){p.h + o, p.d + o, NULL, p.n - o}; }

// Offset 0: 16-byte accesses with a scalar tail (n % 4 = 3); offset 1: pointers off the
// 16-byte grid, the scalar kernels.
static void test_swiglu(void) {
    const long n = 1000003;
    for (int o = 0; o < 2; o++) {
        pair gate = input(n, -6, 6), up = input(n, -2, 2), out = output(n);
        swiglu_forward_f32(out.h + o, gate.h + o, up.h + o, n - o);
        swiglu_forward_cuda(out.d + o, gate.d + o, up.d + o, n - o);
        char name[96];
        snprintf(name, sizeof name, "swiglu_forward n=%ld offset %d", n - o, o);
        check(name, from(out, o));
        pair dout = input(n, -1, 1), dgate = output(n), dup = output(n);
        swiglu_backward_f32(dgate.h + o, dup.h + o, dout.h + o, gate.h + o, up.h + o, n - o);
        swiglu_backward_cuda(dgate.d + o, dup.d + o, dout.d + o, gate.d + o, up.d + o, n - o);
        snprintf(name, sizeof name, "swiglu_backward dgate n=%ld offset %d", n - o, o);
        check(name, from(dgate, o));
        snprintf(name, sizeof name, "swiglu_backward dup n=%ld offset %d", n - o, o);
        check(name, from(dup, o));
        free_all();
    }
}

static void test_losses(void) {
    static const long sizes[] = {4096L * 1200 + 7, 1, 1000};
    for (int s = 0; s < 3; s++) {
        const long n = sizes[s];
        char name[128];
        // Logits with a non-zero mean, so that the relative error of the mean is meaningful.
        pair y = input(n, -0.5f, 1.5f), t = input(n, -1, 1), loss = output(1), g = output(n);
        mean_loss_forward_f32(loss.h, y.h, n);
        mean_loss_forward_cuda(loss.d, y.d, n);
        snprintf(name, sizeof name, "mean_loss_forward n=%ld", n);
        check(name, loss);
        mean_loss_backward_f32(g.h, n);
        mean_loss_backward_cuda(g.d, n);
        snprintf(name, sizeof name, "mean_loss_backward n=%ld", n);
        check(name, g);
        poison(loss);
        mse_loss_forward_f32(loss.h, y.h, t.h, n);
        mse_loss_forward_cuda(loss.d, y.d, t.d, n);
        snprintf(name, sizeof name, "mse_loss_forward n=%ld", n);
        check(name, loss);
        poison(g);
        mse_loss_backward_f32(g.h, y.h, t.h, n);
        mse_loss_backward_cuda(g.d, y.d, t.d, n);
        snprintf(name, sizeof name, "mse_loss_backward n=%ld", n);
        check(name, g);
        poison(loss);
        poison(g);
        mse_loss_forward_backward_f32(loss.h, g.h, y.h, t.h, n);
        mse_loss_forward_backward_cuda(loss.d, g.d, y.d, t.d, n);
        snprintf(name, sizeof name, "mse_loss_forward_backward loss n=%ld", n);
        check(name, loss);
        snprintf(name, sizeof name, "mse_loss_forward_backward dy n=%ld", n);
        check(name, g);
        free_all();
    }
}

static void test_adamw(void) {
    const long n = 1000003;
    const spd_adamw_config cfg = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    static const int64_t steps[] = {1, 7, 1000};
    for (int s = 0; s < 3; s++) {
        pair p = input(n, -1, 1), g = input(n, -1, 1), m = input(n, -0.1f, 0.1f), v = input(n, 0, 0.01f);
        adamw_step_f32(p.h, g.h, m.h, v.h, (size_t)n, &cfg, steps[s]);
        adamw_step_cuda(p.d, g.d, m.d, v.d, (size_t)n, &cfg, steps[s]);
        char name[128];
        snprintf(name, sizeof name, "adamw_step param n=%ld t=%lld", n, (long long)steps[s]);
        check(name, p);
        snprintf(name, sizeof name, "adamw_step m n=%ld t=%lld", n, (long long)steps[s]);
        check(name, m);
        snprintf(name, sizeof name, "adamw_step v n=%ld t=%lld", n, (long long)steps[s]);
        check(name, v);
        free_all();
    }
}

static void test_add(void) {
    const long n = 1000003;
    pair a = input(n, -1, 1), b = input(n, -1, 1), out = output(n);
    add_f32(out.h, a.h, b.h, n);
    add_cuda(out.d, a.d, b.d, n);
    check("add n=1000003", out);
    add_inplace_f32(a.h, b.h, n);
    add_inplace_cuda(a.d, b.d, n);
    check("add_inplace n=1000003", a);
    free_all();
}

static void test_fill_transfer(void) {
    pair z = output(1000003);
    fill_zero_cuda(z.d, z.n);
    float *got = download(z.d, z.n);
    long bad = 0;
    for (long i = 0; i < z.n; i++) bad += got[i] != 0 || signbit(got[i]);
    test_report(bad == 0, "fill_zero n=1000003", "%ld elements not +0", bad);

    // fill_value at every start alignment (float4 body, scalar head and tail): the range gets
    // the value, its neighbours keep theirs.
    for (int off = 0; off < 4; off++) {
        const long n = 1000001;
        pair f = input(n + 8, -1, 1);
        fill_value_cuda(f.d + off, n, 0.25);
        float *g = download(f.d, f.n);
        long wrong = 0;
        for (long i = 0; i < f.n; i++) wrong += g[i] != (i >= off && i < off + n ? 0.25f : f.h[i]);
        char name[96];
        snprintf(name, sizeof name, "fill_value n=%ld at a start %d floats past 16 bytes", n, off);
        test_report(wrong == 0, name, "%ld elements wrong", wrong);
    }

    static const struct {
        long n;
        uint64_t seed, stream, offset;
    } cases[] = {{1001, 1, 2, 13}, {3, 7, 0, 2}, {1, 7, 3, 3}, {4194305, 0xdeadbeefcafef00dULL, 0x1234567890ULL, 0},
                 {4097, 42, 5, (1ULL << 33) + 1}};
    for (int c = 0; c < 5; c++) {
        const long n = cases[c].n;
        float *want = hmalloc((size_t)n * sizeof(float));
        fill_uniform_f32(want, n, cases[c].seed, cases[c].stream, cases[c].offset);
        pair u = output(n);
        fill_uniform_cuda(u.d, n, cases[c].seed, cases[c].stream, cases[c].offset);
        char name[160];
        snprintf(name, sizeof name, "fill_uniform n=%ld offset=%llu bit-identical to CPU", n,
                 (unsigned long long)cases[c].offset);
        check_bits(name, download(u.d, n), want, n);
    }

    const long n = 100003;
    pair x = input(n, -1e30f, 1e30f), y = output(n);
    double *h64 = hmalloc((size_t)n * sizeof(double));
    copy_to_host_f64_cuda(h64, x.d, n);
    long diff = 0;
    for (long i = 0; i < n; i++) diff += h64[i] != (double)x.h[i];
    test_report(diff == 0, "copy_to_host_f64 n=100003 exact", "%ld elements differ", diff);
    copy_cuda(y.d, x.d, n);
    check_bits("copy n=100003 exact", download(y.d, n), x.h, n);
    free_all();
}

// ---- graph capture ---------------------------------------------------------------

// Captures ops that use the stream-ordered temporary (components_backward with dx NULL
// and the delta path), the workspace (attention backward, losses) and cuBLAS, replays
// the graph, and requires the replay to reproduce the eager results bit for bit.
// Graph-capture checks: run the same ops eagerly (pass 0), then captured and replayed twice
// (pass 1, outputs poisoned first; the second replay frees and reallocates the temporaries);
// capture_pass_begin/end bracket the ops, capture_pass_end also saves pass 0's outputs, and
// capture_diffs counts the outputs whose replayed bits differ from the eager ones.
static void capture_pass_begin(int pass, const pair *results, int n) {
    if (pass != 1) return;
    for (int i = 0; i < n; i++) poison(results[i]);
    spd_cuda_graph_begin();
}

static void capture_pass_end(int pass, const pair *results, int n, float **eager) {
    if (pass == 1) {
        spd_cuda_graph_end();
        spd_cuda_graph_launch();
        spd_cuda_graph_launch();
    }
    spd_device_synchronize();
    for (int i = 0; i < n && pass == 0; i++) eager[i] = download(results[i].d, results[i].n);
}

static long capture_diffs(const pair *results, int n, float *const *eager) {
    long diff = 0;
    for (int i = 0; i < n; i++) {
        float *got = download(results[i].d, results[i].n);
        diff += memcmp(got, eager[i], (size_t)results[i].n * sizeof(float)) != 0;
    }
    spd_cuda_graph_destroy();
    return diff;
}

static void test_graph_capture(void) {
    const int N = 512, d_in = 341, C = 1200, d_out = 257, B = 4, S = 64, nh = 4, nkv = 2, hd = 32;
    pair x = input((long)N * d_in, -1, 1), V = input((long)d_in * C, -0.1f, 0.1f);
    pair U = input((long)C * d_out, -0.1f, 0.1f), mask = input((long)N * C, 0, 1);
    pair delta = input((long)d_out * d_in, -0.1f, 0.1f), dm = input(N, 0, 1), dout = input((long)N * d_out, -1, 1);
    pair out = output((long)N * d_out), a = output((long)N * C), scratch = output((long)N * C);
    pair dmask = output((long)N * C), ddm = output(N);
    const long nq = (long)B * S * nh * hd, nk = (long)B * S * nkv * hd;
    pair q = input(nq, -1, 1), k = input(nk, -1, 1), v = input(nk, -1, 1), g = input(nq, -1, 1);
    pair ao = output(nq), att = output((long)B * nh * S * S), dq = output(nq), dk = output(nk), dv = output(nk);
    pair loss = output(1);
    const pair results[] = {out, a, dmask, ddm, ao, att, dq, dk, dv, loss};
    const int n_results = 10;
    float *eager[10];
    for (int pass = 0; pass < 2; pass++) {
        capture_pass_begin(pass, results, n_results);
        components_forward_cuda(out.d, a.d, x.d, V.d, U.d, mask.d, delta.d, dm.d, N, d_in, C, d_out, scratch.d);
        components_backward_cuda(NULL, NULL, NULL, NULL, dmask.d, ddm.d, dout.d, x.d, a.d, V.d, U.d, mask.d, delta.d,
                                 dm.d, N, d_in, C, d_out, scratch.d, false);
        attention_forward_cuda(ao.d, att.d, q.d, k.d, v.d, B, S, nh, nkv, hd);
        attention_backward_cuda(dq.d, dk.d, dv.d, g.d, q.d, k.d, v.d, ao.d, att.d, B, S, nh, nkv, hd);
        mse_loss_forward_cuda(loss.d, ao.d, q.d, nq);
        capture_pass_end(pass, results, n_results, eager);
    }
    const long diff = capture_diffs(results, n_results, eager);
    test_report(diff == 0,
                spd_cuda_mode_get() == SPD_CUDA_FUSED
                    ? "CUDA graph capture and replay of components, attention, loss reproduce eager bits (fused)"
                    : "CUDA graph capture and replay of components, attention, loss reproduce eager bits",
                "%ld of %d outputs differ", diff, n_results);
    free_all();
}

// The transposed mask passes (kmajor_route) with the side stream: a captured graph replayed
// twice gives the eager run's bits (the fork and join of the side stream in capture; the
// weight gradients zeroed inside the region, so that they compare too).
static void test_graph_capture_kmajor(void) {
    const int N = 4096, d_in = 516, C = 1204, d_out = 520;
    pair x = input((long)N * d_in, -1, 1), V = input((long)d_in * C, -0.1f, 0.1f);
    pair U = input((long)C * d_out, -0.1f, 0.1f), mask = input((long)N * C, 0, 1), dout = input((long)N * d_out, -1, 1);
    pair out = output((long)N * d_out), a = output((long)N * C), scratch = output((long)N * C);
    pair dx = output((long)N * d_in), dmask = output((long)N * C);
    pair dV = output((long)d_in * C), dU = output((long)C * d_out);
    const pair results[] = {out, a, dx, dmask, dV, dU};
    const int n_results = 6;
    float *eager[6];
    for (int pass = 0; pass < 2; pass++) {
        capture_pass_begin(pass, results, n_results);
        spd_device_memset_zero(dV.d, (size_t)dV.n * sizeof(float));
        spd_device_memset_zero(dU.d, (size_t)dU.n * sizeof(float));
        components_forward_cuda(out.d, a.d, x.d, V.d, U.d, mask.d, NULL, NULL, N, d_in, C, d_out, scratch.d);
        components_backward_cuda(dx.d, dV.d, dU.d, NULL, dmask.d, NULL, dout.d, x.d, a.d, V.d, U.d, mask.d, NULL, NULL,
                                 N, d_in, C, d_out, scratch.d, false);
        capture_pass_end(pass, results, n_results, eager);
    }
    const long diff = capture_diffs(results, n_results, eager);
    test_report(diff == 0, "CUDA graph capture and replay of the transposed-mask-pass components (fused TF32)",
                "%ld of %d outputs differ", diff, n_results);
    free_all();
}

// bf16 products (SPD's autocast_bf16) against the float64 CPU product of the same
// float32 inputs, at the bf16 bound; and proof that the operands really are rounded
// to bf16 (an error far above float32's), so the option cannot silently run fp32.
static void test_matmul_bf16(void) {
    static const int shapes[][3] = {{37, 1200, 341}, {4096, 1200, 341}, {1200, 341, 4096}, {5, 3, 7}, {64, 257, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int t = 0; t < 4; t++) {
            const bool ta = t & 1, tb = t & 2;
            const float alpha = t == 3 ? -0.5f : 1, beta = t >= 2 ? 1 : 0;
            pair A = input((long)M * K, -1, 1), B = input((long)K * N, -1, 1), C = input((long)M * N, -1, 1);
            double *A64 = hmalloc((size_t)A.n * sizeof(double) + 8), *B64 = hmalloc((size_t)B.n * sizeof(double) + 8);
            double *C64 = hmalloc((size_t)C.n * sizeof(double));
            for (long i = 0; i < A.n; i++) A64[i] = A.h[i];
            for (long i = 0; i < B.n; i++) B64[i] = B.h[i];
            for (long i = 0; i < C.n; i++) C64[i] = C.h[i];
            matmul_f64(C64, A64, B64, M, N, K, ta, tb, alpha, beta);
            matmul_cuda(C.d, A.d, B.d, M, N, K, ta, tb, alpha, beta);
            float *got = download(C.d, C.n);
            double *g64 = hmalloc((size_t)C.n * sizeof(double));
            for (long i = 0; i < C.n; i++) g64[i] = got[i];
            const double err = test_rel_norm_err(g64, C64, C.n);
            char name[200];
            snprintf(name, sizeof name, "matmul bf16 vs float64 M=%d N=%d K=%d ta=%d tb=%d alpha=%g beta=%g %s "
                     "(norm-rel err %.2e, bound %.0e)", M, N, K, ta, tb, alpha, beta,
                     spd_cuda_mode_get() == SPD_CUDA_FUSED ? "fused" : "unfused", err, tol);
            test_report(err <= tol, name, "error above bound");
            if (K >= 341 && beta == 0) {  // a float32 product would be near 1e-7
                snprintf(name, sizeof name, "matmul bf16 M=%d N=%d K=%d ta=%d tb=%d rounds its operands to bf16 "
                         "(err %.2e > 1e-4)", M, N, K, ta, tb, err);
                test_report(err > 1e-4, name, "error too small for bf16 operands");
            }
            free_all();
        }
    }
}

// Products cuBLASLt has only align1 kernels for, which fused TF32 runs on the wgmma kernel
// of gemm_nt_sm90 (an H100 or H200): the 4019-wide logits (C's rows unaligned), the shape of
// their gradient (A's; routed with a 128 x 128 tile for 7/8 of the SMs, so at 16387 rows),
// K not a multiple of 4 (A read in 4-byte pieces, B's copy padded with zeros over junk that
// would be NaN), and an A that starts off a 16-byte boundary; against the float64 CPU
// product at the TF32 bound, after checking that the kernel is the one used (or, for A
// alone with few row blocks, that it is not).
static void test_matmul_nt(void) {
    static const struct {
        int M, N, K, a_off;
        bool tb, routed;
    } cases[] = {{4099, 4019, 128, 0, true, true}, {16387, 128, 1001, 0, false, true}, {300, 1001, 77, 0, true, true},
                 {14800, 130, 261, 0, false, true}, {1030, 257, 128, 1, true, true},
                 {4099, 128, 4019, 0, false, false}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int M = cases[c].M, N = cases[c].N, K = cases[c].K, off = cases[c].a_off;
        const bool tb = cases[c].tb;
        pair A = input((long)M * K + off, -1, 1), B = input((long)K * N, -1, 1), C = output((long)M * N);
        double *A64 = hmalloc((size_t)M * K * sizeof(double)), *B64 = hmalloc((size_t)B.n * sizeof(double));
        double *C64 = hmalloc((size_t)C.n * sizeof(double)), *g64 = hmalloc((size_t)C.n * sizeof(double));
        for (long i = 0; i < (long)M * K; i++) A64[i] = A.h[i + off];
        for (long i = 0; i < B.n; i++) B64[i] = B.h[i];
        matmul_f64(C64, A64, B64, M, N, K, false, tb, 1, 0);
        // A [N, K] B in rows of 16 bytes (which the kernel could read in place) with NaN past K.
        const int ldb = tb ? (K + 3) & ~3 : N;
        float *Bd = B.d;
        if (tb) {
            float *hb = hmalloc((size_t)N * ldb * sizeof(float));
            for (long i = 0; i < (long)N * ldb; i++) hb[i] = NAN;
            for (int n = 0; n < N; n++) memcpy(hb + (long)n * ldb, B.h + (long)n * K, (size_t)K * sizeof(float));
            Bd = to_device(hb, (long)N * ldb);
        }
        char name[200];
        const bool routed = cases[c].routed;
        snprintf(name, sizeof name, "matmul M=%d N=%d K=%d tb=%d A+%d %s gemm_nt_sm90", M, N, K, tb, off,
                 routed ? "runs on" : "stays off");
        test_report(!spd_cuda_is_sm90() || gemm_nt_sm90_ok(M, N, K, A.d + off, K, C.d, N) == routed, name,
                    routed ? "not routed to the kernel" : "routed to the kernel");
        matmul_cuda_ld(C.d, A.d + off, Bd, M, N, K, false, tb, 1, 0, K, ldb, N);
        float *got = download(C.d, C.n);
        for (long i = 0; i < C.n; i++) g64[i] = got[i];
        const double err = test_rel_norm_err(g64, C64, C.n);
        snprintf(name, sizeof name, "matmul TF32 vs float64 M=%d N=%d K=%d tb=%d A+%d (norm-rel err %.2e, bound %.0e)",
                 M, N, K, tb, off, err, tol);
        test_report(err <= tol, name, "error above bound");
        free_all();
    }
}

// The weight gradient from a stored activation (wgrad_stored_sm90.h) against the float64
// product at the TF32 bound: one and two column tiles (one partial), widths it is not
// routed (called directly), partial chunks of tokens and blocks of components, B with a
// row stride past Q (NaN there), D overwritten (NaN before) and accumulated, dV's
// transposed layout; the same bits on a second run (the splits are added in a fixed order).
static void test_wgrad_stored(void) {
    static const struct {
        int N, C, Q, ldb;
        bool transposed;
        float beta;
    } cases[] = {
        {16384, 1200, 341, 341, false, 1},  // dU of gate, up: (a * mask)^T dout
        {16384, 1200, 341, 341, true, 1},   // dV of down: x^T g_a
        {8192, 1200, 128, 128, true, 1},    // not routed (cuBLAS is as fast): called directly
        {4099, 1204, 176, 177, true, 0},    // one wide tile, a partial chunk of tokens
        {5000, 132, 352, 352, false, 0},    // two wide tiles, a partial block of components
        {4096, 1200, 129, 131, false, 1},   // the narrowest routed width
        {33, 64, 1, 3, false, 1},           // fewer tokens than one chunk (called directly)
    };
    if (!spd_cuda_is_sm90()) {
        printf("# wgrad_stored_sm90: not an sm_90 GPU, skipped\n");
        return;
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int N = cases[c].N, C = cases[c].C, Q = cases[c].Q, ldb = cases[c].ldb;
        const bool tr = cases[c].transposed;
        const float beta = cases[c].beta;
        pair A = input((long)N * C, -1, 1), B = input((long)N * Q, -1, 1);
        pair D = beta == 0 ? output((long)C * Q) : input((long)C * Q, -1, 1);
        float *hb = hmalloc((size_t)N * ldb * sizeof(float));
        for (long i = 0; i < (long)N * ldb; i++) hb[i] = NAN;
        for (int n = 0; n < N; n++) memcpy(hb + (long)n * ldb, B.h + (long)n * Q, (size_t)Q * sizeof(float));
        float *Bd = to_device(hb, (long)N * ldb);
        double *A64 = hmalloc((size_t)A.n * sizeof(double)), *B64 = hmalloc((size_t)B.n * sizeof(double));
        double *D64 = hmalloc((size_t)D.n * sizeof(double)), *g64 = hmalloc((size_t)D.n * sizeof(double));
        for (long i = 0; i < A.n; i++) A64[i] = A.h[i];
        for (long i = 0; i < B.n; i++) B64[i] = B.h[i];
        for (long i = 0; i < D.n; i++) D64[i] = beta == 0 ? 0.0 : D.h[i];
        if (tr) matmul_f64(D64, B64, A64, Q, C, N, true, false, 1, beta);
        else matmul_f64(D64, A64, B64, C, Q, N, true, false, 1, beta);
        char name[200];
        if (N >= 4096 && Q > 128) {
            snprintf(name, sizeof name, "wgrad_stored_sm90_ok N=%d C=%d Q=%d", N, C, Q);
            test_report(wgrad_stored_sm90_ok(N, C, Q, A.d), name, "the kernel does not take the shape");
        }
        float *D0 = download(D.d, D.n);  // the start, for the second run
        wgrad_stored_sm90(N, C, Q, A.d, Bd, ldb, D.d, tr, beta);
        float *got = download(D.d, D.n);
        for (long i = 0; i < D.n; i++) g64[i] = got[i];
        const double err = test_rel_norm_err(g64, D64, D.n);
        snprintf(name, sizeof name,
                 "wgrad_stored N=%d C=%d Q=%d ldb=%d%s beta=%g vs float64 (norm-rel err %.2e, bound %.0e)", N, C, Q,
                 ldb, tr ? " transposed" : "", beta, err, tol);
        test_report(err <= tol, name, "error above bound");
        spd_device_upload(D.d, D0, (size_t)D.n * sizeof(float));
        wgrad_stored_sm90(N, C, Q, A.d, Bd, ldb, D.d, tr, beta);
        float *again = download(D.d, D.n);
        snprintf(name, sizeof name, "wgrad_stored N=%d C=%d Q=%d: the same bits on a second run", N, C, Q);
        test_report(memcmp(got, again, (size_t)D.n * sizeof(float)) == 0, name, "the result changed");
        free_all();
    }
}

// Split-K (src/cuda/matmul.cu, fused mode): products forced over S slices of K
// against the float64 CPU product, in fp32, TF32 and bf16 at each one's bound; K
// not divisible by S (a remainder slice), beta != 0, every transpose, an odd N
// (the scalar reduce); the same bits on a second run and from a CUDA graph; and S = 0, the tuner's own
// choice, on a weight-gradient shape.
static void test_matmul_splitk(void) {
    static const struct {
        int M, N, K, S;
        bool ta, tb;
        float alpha, beta;
    } cases[] = {
        {1200, 64, 16384, 8, true, false, 1, 1},       // dU = (a*mask)^T dout, K = 8 x 2048
        {344, 256, 4099, 4, true, false, -0.5f, 0.5f},  // 3 slices of 1056 and a remainder of 931
        {130, 1200, 5003, 16, false, true, 1, 0},       // 15 slices of 320 and a remainder of 203
        {97, 341, 8192, 32, true, true, 2, 1},          // odd N: the scalar reduce
        {128, 1200, 16384, 0, true, false, 1, 1},       // dV = x^T g_a: the tuner chooses
    };
    static const spd_matmul_precision precs[] = {SPD_MATMUL_FP32, SPD_MATMUL_TF32, SPD_MATMUL_BF16};
    const spd_cuda_mode mode = spd_cuda_mode_get();
    spd_cuda_set_mode(SPD_CUDA_FUSED);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int M = cases[c].M, N = cases[c].N, K = cases[c].K, S = cases[c].S;
        const bool ta = cases[c].ta, tb = cases[c].tb;
        const float alpha = cases[c].alpha, beta = cases[c].beta;
        pair A = input((long)M * K, -1, 1), B = input((long)K * N, -1, 1), C = input((long)M * N, -1, 1);
        double *A64 = hmalloc((size_t)A.n * sizeof(double)), *B64 = hmalloc((size_t)B.n * sizeof(double));
        double *C64 = hmalloc((size_t)C.n * sizeof(double)), *g64 = hmalloc((size_t)C.n * sizeof(double));
        for (long i = 0; i < A.n; i++) A64[i] = A.h[i];
        for (long i = 0; i < B.n; i++) B64[i] = B.h[i];
        for (long i = 0; i < C.n; i++) C64[i] = C.h[i];
        matmul_f64(C64, A64, B64, M, N, K, ta, tb, alpha, beta);
        for (size_t q = 0; q < sizeof precs / sizeof precs[0]; q++) {
            spd_cuda_set_matmul_precision(precs[q]);
            const double bound = spd_cuda_norm_bound();
            spd_cuda_splitk_force(S);
            float *got[3];
            long long runs = 0;
            for (int r = 0; r < 3; r++) {  // eager (tunes), eager again, captured in a graph and replayed
                spd_device_upload(C.d, C.h, (size_t)C.n * sizeof(float));
                const long long before = spd_cuda_splitk_count();
                if (r == 2) spd_cuda_graph_begin();
                matmul_cuda(C.d, A.d, B.d, M, N, K, ta, tb, alpha, beta);
                if (r == 2) {
                    spd_cuda_graph_end();
                    spd_cuda_graph_launch();
                    spd_cuda_graph_destroy();
                }
                if (r == 1) runs = spd_cuda_splitk_count() - before;  // r = 0 may include the tuner's runs
                got[r] = download(C.d, C.n);
            }
            spd_cuda_splitk_force(0);
            for (long i = 0; i < C.n; i++) g64[i] = got[0][i];
            const double err = test_rel_norm_err(g64, C64, C.n);
            char name[240];
            snprintf(name, sizeof name, "matmul split-K S=%d%s M=%d N=%d K=%d ta=%d tb=%d alpha=%g beta=%g %s vs "
                     "float64 (norm-rel err %.2e, bound %.0e)", S, S ? "" : " (tuner)", M, N, K, ta, tb, alpha, beta,
                     spd_cuda_matmul_precision_name(), err, bound);
            test_report(err <= bound, name, "error above bound");
            if (S) {
                snprintf(name, sizeof name, "matmul split-K S=%d M=%d N=%d K=%d %s ran split", S, M, N, K,
                         spd_cuda_matmul_precision_name());
                test_report(runs == 1, name, "%lld split products ran, expected 1", runs);
            } else {
                printf("# tuner's choice M=%d N=%d K=%d %s: %s\n", M, N, K, spd_cuda_matmul_precision_name(),
                       runs ? "split" : "plain");
            }
            snprintf(name, sizeof name, "matmul split-K S=%d M=%d N=%d K=%d %s: same bits on a second run", S, M, N,
                     K, spd_cuda_matmul_precision_name());
            check_bits(name, got[1], got[0], C.n);
            snprintf(name, sizeof name, "matmul split-K S=%d M=%d N=%d K=%d %s: same bits from a CUDA graph", S, M, N,
                     K, spd_cuda_matmul_precision_name());
            check_bits(name, got[2], got[0], C.n);
        }
        free_all();
    }
    spd_cuda_set_matmul_precision(SPD_MATMUL_FP32);
    spd_cuda_set_mode(mode);
}

int main(void) {
    // The back-to-back and weight-gradient kernels on every input, whatever their defaults
    // (the stored-operand weight gradients' starts at 4096 tokens).
    setenv("SPD_CUDA_B2B", "1", 0);
    setenv("SPD_CUDA_B2B_MIN_M", "0", 0);
    setenv("SPD_CUDA_WGRAD_MIN_N", "0", 0);
    setenv("SPD_CUDA_WGRAD_STORED_MIN_N", "0", 0);
    if (!spd_device_available()) {
        test_report(0, "test_gpu_ops", "no GPU visible");
        return 1;
    }
    spd_cuda_init();
    printf("# device: %s\n", spd_cuda_device_name());
    test_matmul();
    test_linear();
    test_embedding();
    for (int variant = 0; variant < 8; variant++) {
        const bool mask = variant & 1, delta = variant & 2, dmask = variant & 4;
        if (!delta && dmask) continue;
        test_components(4096, 341, 1200, 257, mask, delta, dmask, 0);
    }
    test_components(4096, 341, 1200, 257, true, true, true, 1);
    test_components(4096, 341, 1200, 257, true, true, false, 2);
    test_components(7, 5, 3, 11, true, true, true, 0);
    test_components(1, 1, 1, 1, false, true, false, 1);
    test_components(4096, 341, 1200, 257, true, true, true, 3);
    test_weight_delta();
    for (int variant = 0; variant < 8; variant++) {
        const bool mask = variant & 1, delta = variant & 2, dmask = variant & 4;
        if (!delta && dmask) continue;
        test_embedding_components(4096, 1000, 1200, 341, mask, delta, dmask);
    }
    test_embedding_components(9, 4, 3, 5, true, true, true);
    test_rmsnorm();
    test_rope();
    test_attention(2, 67, 6, 2, 34);
    test_attention(3, 40, 4, 4, 32);
    test_attention(1, 1, 2, 1, 8);
    test_attention(2, 33, 4, 1, 70);
    test_attention(1, 100, 3, 3, 5);
    test_attention(1, 130, 2, 2, 128);
    test_attention(64, 256, 4, 4, 32);
    test_attention(64, 256, 4, 2, 32);  // the benchmark's shape (resident path)
    test_attention(1, 700, 4, 2, 32);   // streaming path at hd 32
    test_attention(2, 300, 2, 1, 128);  // streaming path at hd 128
    test_attention(3, 129, 4, 2, 64);
    time_attention(64, 256, 4, 4, 32);
    time_attention(64, 256, 4, 2, 32);
    time_attention(128, 512, 4, 4, 32);
    test_swiglu();
    test_losses();
    test_adamw();
    test_add();
    test_fill_transfer();
    test_graph_capture();
    // --mode fused: cuBLASLt with tuned algorithms, padded 341-wide operands, one-pass mask gradients.
    spd_cuda_set_mode(SPD_CUDA_FUSED);
    test_matmul();
    for (int variant = 0; variant < 8; variant++) {
        const bool mask = variant & 1, delta = variant & 2, dmask = variant & 4;
        if (!delta && dmask) continue;
        test_components(4096, 341, 1200, 257, mask, delta, dmask, 0);
    }
    test_components(4096, 341, 1200, 257, true, true, true, 1);
    test_components(4096, 341, 1200, 257, true, true, false, 2);
    test_components(1024, 128, 1200, 341, true, false, false, 0);
    test_components(7, 5, 3, 11, true, true, true, 0);
    test_components(1, 1, 1, 1, false, true, false, 1);
    test_components(4096, 341, 1200, 257, true, true, true, 3);  // padded operands, delta, added dx
    test_components(1024, 128, 1200, 341, true, false, false, 3);
    test_components_no_acts(4096, 341, 1200, 257);
    test_graph_capture();
    // TF32 in fused mode (cuBLASLt TF32 with tuned algorithms, padded 341-wide
    // operands), checked against fp32 at the TF32 bound.
    spd_cuda_set_matmul_precision(SPD_MATMUL_TF32);
    tol = spd_cuda_norm_bound();
    printf("# fused mode, TF32 products (bound %.0e)\n", tol);
    for (int variant = 0; variant < 8; variant++) {
        const bool mask = variant & 1, delta = variant & 2, dmask = variant & 4;
        if (!delta && dmask) continue;
        test_components(4096, 128, 1200, 64, mask, delta, dmask, 0);
    }
    test_matmul_nt();
    test_wgrad_stored();
    test_components(4096, 128, 1200, 341, true, false, true, 0);
    test_components(4096, 341, 1200, 128, true, false, true, 0);
    test_components(4099, 96, 1202, 128, true, true, true, 1);  // partial tiles in M and N
    test_components(4096, 128, 1200, 128, true, false, false, 2);
    // The back-to-back kernel (masked_b2b_sm90) at each K1 sub-tile count (32, 64, 96, 128 wide)
    // with partial tiles in M and C (C % 8 != 0: the weight copy's padded columns).
    test_components(4099, 32, 1202, 96, true, true, true, 0);
    test_components(4096, 64, 1200, 128, true, false, true, 0);
    test_components(2053, 128, 1202, 128, true, true, false, 0);
    // C % 4 == 0 (the mask's rows through the TMA) with a partial last chunk of C.
    test_components(4099, 32, 1204, 96, true, true, true, 0);
    test_components(2053, 128, 1204, 128, true, true, false, 0);
    test_components(4099, 96, 1204, 64, true, false, true, 1);
    // Its wide column tiles (176, K2 in (128, 352]): two tiles, a partial one, the delta.
    test_components(4099, 128, 1204, 341, true, true, false, 0);
    test_components(2053, 64, 1200, 352, true, false, false, 1);
    test_components(4096, 96, 1202, 200, true, true, true, 2);
    test_components(4099, 341, 1204, 128, true, false, false, 0);  // dx: K1 = 128, K2 = 341
    // dx added onto its values (add_dx): back-to-back at 128 and 176 wide, with the delta.
    test_components(2053, 128, 1204, 128, true, true, true, 3);
    test_components(4099, 341, 1204, 128, true, false, true, 3);
    test_components(4099, 128, 1204, 341, true, true, false, 3);
    // A partial last row block: 176 wide with dmask, the delta and add_dx; 96 wide, C % 8 != 0.
    test_components(4000, 128, 1204, 341, true, true, true, 3);
    test_components(4000, 96, 1202, 128, true, false, true, 0);
    // The cases above split C to fill the SMs (4096 rows: 4 ways). Unsplit (as at 64x256:
    // 128 row blocks), split 3 ways (uneven shares) and more ways than C has chunks.
    const int b2b_splits[3] = {1, 3, 64};
    for (int i = 0; i < 3; i++) {
        masked_b2b_sm90_force_split(b2b_splits[i]);
        printf("# back-to-back kernel split %d ways\n", b2b_splits[i]);
        test_components(4099, 128, 1204, 341, true, true, true, 3);
        test_components(2053, 32, 1202, 96, true, true, true, 0);
        test_components(4000, 341, 1204, 128, true, false, true, 1);
        test_components_no_acts(4096, 128, 1200, 128);
    }
    masked_b2b_sm90_force_split(0);
    // Run to run, split as the SMs ask (32 row blocks: 4 ways): the variants without extra
    // outputs at 128 wide (out and dx), 176 wide with and without a * mask stored, mask
    // gradients; the weight-gradient kernel beside them.
    test_components_repeat(4096, 128, 1200, 64, false, 8);
    test_components_repeat(4096, 128, 1200, 128, false, 8);
    test_components_repeat(4096, 64, 1200, 128, false, 8);
    test_components_repeat(2053, 64, 1200, 352, false, 8);
    test_components_repeat(4099, 128, 1204, 341, false, 8);
    test_components_repeat(4096, 341, 1200, 128, true, 8);
    test_components_repeat(4096, 128, 1200, 128, true, 8);
    // The weights' layouts made for the model in one launch: LlamaSimple's shapes, alone
    // (q, down, gate) and in groups (k and v, gate and up).
    // (q: V^T and U's copy forward, V's backward; down: V^T padded, V's copy; gate: V^T, U's
    // copy, U padded for the backward's masked product.)
    test_weight_layouts(1, 4096, 128, 1200, 128, 3);
    test_weight_layouts(1, 4096, 341, 1200, 128, 2);
    test_weight_layouts(1, 4096, 128, 1200, 341, 3);
    test_weight_layouts(2, 4096, 128, 1200, 64, 6);
    test_weight_layouts(2, 4096, 128, 1200, 341, 6);
    // Groups of modules (one launch of each kernel for all): LlamaSimple's k and v (K2 = 64:
    // masked_wgrad and the summed dx), gate and up (176 wide, a * mask stored), three members,
    // partial tiles, the delta, mask gradients, dx added, no parameter gradients; split and not.
    for (int S = 0; S <= 3; S += 3) {
        masked_b2b_sm90_force_split(S == 0 ? 0 : 1);
        if (S) printf("# groups, back-to-back kernel unsplit\n");
        test_components_group(2, 4096, 128, 1200, 64, false, false, true, true);
        test_components_group(2, 2053, 128, 1204, 341, false, false, false, true);
        test_components_group(3, 4099, 64, 1204, 128, true, true, false, true);
        test_components_group(2, 3001, 128, 1202, 64, true, true, true, false);
    }
    masked_b2b_sm90_force_split(3);
    test_components_group(2, 4099, 128, 1204, 341, true, true, true, true);
    test_components_group(3, 2053, 64, 1200, 64, false, false, false, true);
    masked_b2b_sm90_force_split(0);
    test_components_group(2, 5, 64, 60, 64, false, true, false, true);
    test_components_group(2, 4096, 341, 1200, 128, false, false, false, true);  // not grouped: K1 = 341
    // The weight-gradient kernel (masked_wgrad_sm90: K1, K2 of 64 or 128, C % 4 == 0): fewer
    // tokens than a tile, fewer components than a block, delta, dx NULL, every width pair.
    test_components(5, 64, 60, 64, true, false, true, 0);
    test_components(3001, 128, 1204, 64, true, true, true, 1);
    test_components(4096, 64, 1200, 64, true, false, false, 0);
    test_components(2080, 64, 200, 128, true, true, false, 2);
    test_components_no_acts(4096, 128, 1200, 64);
    test_components_no_acts(4099, 341, 1202, 128);
    test_components_no_acts(4099, 341, 1204, 128);
    test_components_no_acts(4099, 128, 1204, 341);
    test_components_no_acts(2053, 64, 1200, 352);
    // Both widths past 512 with at least 4096 tokens (kmajor_route): a * mask and g_a written
    // transposed; partial 64 x 64 tiles (N, C not multiples of 64), dmask from the same pass,
    // the delta, dx NULL, and a not saved. N % 4 != 0 takes the other path.
    test_components(4100, 516, 1204, 644, true, false, false, 0);
    test_components(4100, 516, 1204, 644, true, true, true, 0);
    test_components(4096, 576, 1200, 520, true, true, true, 1);
    test_components(4096, 576, 1200, 520, true, false, true, 2);
    test_components(4099, 516, 1204, 644, true, false, true, 0);
    test_components(4096, 576, 1200, 520, true, true, true, 3);
    test_components_no_acts(4096, 1024, 1024, 1024);
    test_graph_capture_kmajor();
    test_attention_tc();
    test_graph_capture();
    // bf16 operands, float32 accumulation: unfused (every operand rounded by the
    // product) and fused (mask passes write the bf16 operands), at the bf16 bound.
    spd_cuda_set_matmul_precision(SPD_MATMUL_BF16);
    tol = spd_cuda_norm_bound();
    printf("# bf16 products (bound %.0e)\n", tol);
    for (int fused = 0; fused < 2; fused++) {
        spd_cuda_set_mode(fused ? SPD_CUDA_FUSED : SPD_CUDA_UNFUSED);
        test_matmul_bf16();
        test_linear();
        for (int variant = 0; variant < 8; variant++) {
            const bool mask = variant & 1, delta = variant & 2, dmask = variant & 4;
            if (!delta && dmask) continue;
            test_components(4096, 341, 1200, 257, mask, delta, dmask, 0);
        }
        test_components(4096, 341, 1200, 257, true, true, true, 1);
        test_components(4096, 341, 1200, 257, true, true, false, 2);
        test_components(1024, 128, 1200, 341, true, false, false, 0);
        test_components(4099, 96, 1202, 128, true, true, true, 1);  // C % 8 != 0: rounded by the products
        test_components(4096, 341, 1200, 257, true, true, true, 3);
        test_components(7, 5, 3, 11, true, true, true, 0);
        if (fused) {
            test_components_no_acts(4096, 341, 1200, 128);
            // The back-to-back kernel with bf16 operands (64-component chunks): one and two
            // 64-wide K1 sub-tiles (K1 = 96: the second half empty), a partial last chunk
            // (C = 1208) and row block, the 176-wide column tiles forward (K2 = 341) and
            // in dx (K1 = 128, K2 = 341), dmask, the delta and dx added in place.
            test_components(4099, 128, 1200, 341, true, true, false, 0);
            test_components(4099, 341, 1200, 128, true, false, true, 0);
            test_components(4099, 32, 1208, 96, true, true, true, 0);
            test_components(2053, 96, 1208, 128, true, false, true, 3);
            test_components(4096, 64, 1200, 64, true, false, false, 1);
            test_components(4000, 128, 1208, 341, true, true, true, 3);
            test_components(4000, 341, 1200, 128, true, true, false, 2);
            test_components_no_acts(4099, 128, 1200, 341);
            test_components_no_acts(4099, 341, 1208, 128);
            for (int S = 1; S <= 3; S += 2) {  // unsplit; 3 uneven shares
                masked_b2b_sm90_force_split(S);
                printf("# back-to-back kernel split %d ways\n", S);
                test_components(4000, 128, 1208, 341, true, true, true, 3);
                test_components(2053, 96, 1200, 128, true, false, true, 0);
                test_components_no_acts(4099, 341, 1208, 128);
            }
            masked_b2b_sm90_force_split(0);
            test_components_repeat(4096, 128, 1200, 128, false, 6);
            test_components_repeat(4099, 128, 1208, 341, true, 6);
            test_components_group(2, 4099, 128, 1208, 341, true, true, true, true);
            test_components_group(2, 2053, 128, 1200, 64, false, false, false, true);
            test_components_group(3, 4099, 100, 1208, 124, true, true, true, true);  // rows padded to 8
            test_components_group(2, 3001, 64, 1200, 128, false, true, false, false);
            // The weights' layouts made for the model in one launch, as bf16 (q: V^T and U^T
            // forward, U and V's copy backward; down: V^T for the masked product, U and V's
            // copy; gate: V^T, U^T, U for the backward's masked product).
            test_weight_layouts(1, 4096, 128, 1200, 128, 4);
            test_weight_layouts(1, 4096, 341, 1200, 128, 3);
            test_weight_layouts(1, 4096, 128, 1200, 341, 3);
            test_weight_layouts(2, 4096, 128, 1200, 64, 8);
            test_weight_layouts(2, 4096, 128, 1200, 341, 6);
        }
        test_embedding_components(4096, 1000, 1200, 341, true, true, true);
        test_weight_delta();
        test_graph_capture();
    }
    spd_cuda_set_matmul_precision(SPD_MATMUL_FP32);
    tol = TOL;
    test_matmul_splitk();
    spd_cuda_set_mode(SPD_CUDA_UNFUSED);
    printf("%s\n", testing_failures ? "# some checks failed" : "# all checks passed");
    return test_exit();
}
