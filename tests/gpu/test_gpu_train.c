// SPD training on the GPU against the float32 CPU trainer (src/spd/train.c
// compiled twice, _f32 and _cuda): first the training ops one by one on fresh
// random inputs (never zeros), then whole training steps of TMS and ResidMLP
// targets covering all 13 loss terms, every CI-function type, both samplings,
// both output losses, routing and PGD, compared term by term and gradient by
// gradient, then a few updates compared parameter by parameter.
//
// Bounds: Philox draws, masks and routing decisions must be bit-identical.
// Op outputs: norm-relative 1e-5 (float32 both sides; erff/expf and the sums'
// order differ by a few ulps). Whole steps: loss values 1e-4 relative,
// gradients 1e-4 norm-relative, parameters after 3 AdamW steps 1e-4: the
// step chains many float32 ops and AdamW's first steps move every parameter by
// about lr whatever the gradient's size, so a tiny gradient difference near 0
// can flip an update's sign; measured values are printed.
// Needs a GPU; run by tests/run_gpu.sh.
#define SPD_CUDA
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/spec_mirror.h"
#include "cuda/backend.h"
#include "models/resid_mlp.h"
#include "models/tms.h"
#include "models/toy_data.h"
#include "ops/bias_act.h"
#include "ops/ci_fn.h"
#include "ops/gelu.h"
#include "ops/grad_clip.h"
#include "ops/importance_minimality.h"
#include "ops/masks.h"
#include "ops/output_loss.h"
#include "ops/routing.h"
#include "ops/sigmoid.h"
#include "spd/target_resid_mlp.h"
#include "spd/target_tms.h"
#include "spd/train.h"
#include "testing.h"

// The float32 CPU references (the headers above declare the _cuda names only;
// real is float in both, so the structs are shared).
void gelu_forward_f32(float *y, const float *x, long n);
void gelu_backward_f32(float *dx, const float *dy, const float *x, long n);
void sigmoid_forward_f32(spd_sigmoid_fn f, float *y, const float *x, long n);
void sigmoid_backward_f32(spd_sigmoid_fn f, float *dx, const float *dy, const float *x, long n);
void sample_draws_f32(float *r, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream);
void mask_sample_f32(float *m, const float *ci, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream);
void ci_forward_philox_f32(float *ci_lower, float *ci_upper, const float *pre, long n, spd_sigmoid_pair sig,
                           spd_mask_sampling sampling, uint64_t seed, uint64_t stream);
void ci_backward_philox_f32(float *dpre, const float *dci_lower, const float *dci_upper, const float *pre, long n,
                            spd_sigmoid_pair sig, spd_mask_sampling sampling, uint64_t seed, uint64_t stream);
void mask_interpolate_backward_f32(float *dci, float *ds, const float *dm, const float *ci, const float *s, int N,
                                   int C, int ld);
void ci_fn_forward_f32(ci_fn *f, float *pre_sigmoid, const float *in, int N);
void ci_fn_backward_f32(ci_fn *f, float *din, const float *dpre_sigmoid, const float *in, int N);
double output_loss_sum_f32(spd_divergence kind, int64_t *count, const float *pred, const float *target, int64_t n_pos,
                           int64_t dim);
void output_loss_backward_f32(spd_divergence kind, float *dpred, const float *pred, const float *target,
                              int64_t n_pos, int64_t dim, double scale);
double importance_minimality_forward_f32(double *S, const float *const *ci_upper, const int *C, int n_modules,
                                         int64_t N, double p, double eps, double beta, double world_size);
void importance_minimality_backward_f32(float *const *dci_upper, const float *const *ci_upper, const double *S,
                                        const int *C, int n_modules, int64_t N, double p, double eps, double beta,
                                        double world_size, double scale);
void bias_grad_f32(float *db, const float *dy, int N, int d);
void tms_declare_f32(tms_model *m, spd_spec *spec, const tms_config *cfg, const tms_options *opt);
void tms_bind_f32(tms_model *m, const spd_spec *spec);
void tms_init_params_f32(tms_model *m, uint64_t seed);
void tms_free_f32(tms_model *m);
spd_target spd_target_tms_f32(tms_model *m);
void resid_mlp_declare_f32(resid_mlp_model *m, spd_spec *spec, const resid_mlp_config *cfg,
                           const resid_mlp_options *opt);
void resid_mlp_bind_f32(resid_mlp_model *m, const spd_spec *spec);
void resid_mlp_init_params_f32(resid_mlp_model *m, uint64_t seed);
void resid_mlp_free_f32(resid_mlp_model *m);
spd_target spd_target_resid_mlp_f32(resid_mlp_model *m);
int spd_trainer_declare_f32(spd_trainer *t, spd_spec *spec, const spd_train_options *opt, const spd_target *target,
                            const int *site, const int *C, int n);
void spd_trainer_bind_f32(spd_trainer *t, const spd_target *target);
void spd_trainer_init_params_f32(spd_trainer *t, uint64_t seed);
double spd_train_step_f32(spd_trainer *t, int64_t step);
void spd_train_update_f32(spd_trainer *t, int64_t step);
void spd_trainer_free_f32(spd_trainer *t);

#define OP_BOUND 1e-5
#define STEP_BOUND 1e-4

static uint64_t next_stream = 1;

// Fresh random floats in [lo, hi) (Philox, test seed 2024).
static float *randf(long n, double lo, double hi) {
    float *p = spd_malloc((size_t)(n ? n : 1) * sizeof(float));
    uint64_t s = next_stream++;
    for (long i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * spd_philox_uniform_f64(2024, s, (uint64_t)i));
    return p;
}

static float *dev_of(const float *h, long n) {
    float *d = spd_device_malloc((size_t)(n ? n : 1) * sizeof(float));
    spd_device_upload(d, h, (size_t)n * sizeof(float));
    return d;
}

// A device buffer of n floats poisoned with NaN (so an element an op forgets fails).
static float *dev_nan(long n) {
    float *h = spd_malloc((size_t)(n ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++) h[i] = NAN;
    float *d = dev_of(h, n);
    free(h);
    return d;
}

static float *host_of(const float *d, long n) {
    float *h = spd_malloc((size_t)(n ? n : 1) * sizeof(float));
    spd_device_download(h, d, (size_t)n * sizeof(float));
    return h;
}

static double rel_err_f(const float *a, const float *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    double r = sqrt(num / den);
    return r == r ? r : INFINITY;
}

// The GPU result d [n] against the CPU's h [n]; frees d's host copy.
static void check_close(const char *name, const float *d, const float *h, long n, double bound) {
    float *g = host_of(d, n);
    double e = rel_err_f(g, h, n);
    test_report(e <= bound, name, "norm-relative error %.3g > %.0e", e, bound);
    free(g);
}

static void check_exact(const char *name, const float *d, const float *h, long n) {
    float *g = host_of(d, n);
    long bad = 0;
    for (long i = 0; i < n; i++) bad += memcmp(&g[i], &h[i], sizeof(float)) != 0;
    test_report(bad == 0, name, "%ld of %ld elements differ", bad, n);
    free(g);
}

static void check_scalar(const char *name, double got, double want, double bound) {
    double e = fabs(got - want) / fmax(fabs(want), 1e-30);
    test_report(e <= bound || got == want, name, "got %.10g, want %.10g (rel %.3g)", got, want, e);
}

// ---- ops ---------------------------------------------------------------------------------

static void test_draws_and_masks(void) {
    const long n = 4096 * 40 + 3;  // not a multiple of four
    for (int s = 0; s < 2; s++) {
        spd_mask_sampling sm = s ? SPD_MASK_BINOMIAL : SPD_MASK_CONTINUOUS;
        float *h = spd_malloc(n * sizeof(float));
        sample_draws_f32(h, n, sm, 17, 0x123456789ull);
        float *d = dev_nan(n);
        sample_draws_cuda(d, n, sm, 17, 0x123456789ull);
        check_exact(s ? "sample_draws binomial bit-identical" : "sample_draws continuous bit-identical", d, h, n);
        float *ci = randf(n, -0.1, 1.1), *dci = dev_of(ci, n);
        mask_sample_f32(h, ci, n, sm, 5, 99);
        mask_sample_cuda(d, dci, n, sm, 5, 99);
        check_exact(s ? "mask_sample binomial bit-identical" : "mask_sample continuous bit-identical", d, h, n);
        // CI from pre-sigmoid values with Philox jitter, and its backward.
        float *pre = randf(n, -0.5, 1.5), *dpre_in = dev_of(pre, n);
        float *lo = spd_malloc(n * sizeof(float)), *up = spd_malloc(n * sizeof(float));
        spd_sigmoid_pair sig = {SPD_SIGMOID_FN_LOWER_LEAKY_HARD, SPD_SIGMOID_FN_UPPER_LEAKY_HARD};
        ci_forward_philox_f32(lo, up, pre, n, sig, sm, 3, 44);
        float *dlo = dev_nan(n), *dup = dev_nan(n);
        ci_forward_philox_cuda(dlo, dup, dpre_in, n, sig, sm, 3, 44);
        check_close(s ? "ci_forward_philox binomial lower" : "ci_forward_philox continuous lower", dlo, lo, n, OP_BOUND);
        check_close("ci_forward_philox upper", dup, up, n, OP_BOUND);
        float *gl = randf(n, -1, 1), *gu = randf(n, -1, 1), *dgl = dev_of(gl, n), *dgu = dev_of(gu, n);
        float *dp = spd_malloc(n * sizeof(float)), *ddp = dev_nan(n);
        ci_backward_philox_f32(dp, gl, gu, pre, n, sig, sm, 3, 44);
        ci_backward_philox_cuda(ddp, dgl, dgu, dpre_in, n, sig, sm, 3, 44);
        check_close(s ? "ci_backward_philox binomial" : "ci_backward_philox continuous", ddp, dp, n, OP_BOUND);
        free(h), free(ci), free(pre), free(lo), free(up), free(gl), free(gu), free(dp);
        spd_device_free(d), spd_device_free(dci), spd_device_free(dpre_in), spd_device_free(dlo);
        spd_device_free(dup), spd_device_free(dgl), spd_device_free(dgu), spd_device_free(ddp);
    }
    // PGD sources shared across positions: ds [C] sums over positions in float64.
    const int N = 2048, C = 37;
    float *dm = randf((long)N * C, -1, 1), *ci = randf((long)N * C, 0, 1), *src = randf(C, 0, 1);
    float *dci = spd_malloc((size_t)N * C * sizeof(float)), *ds = spd_malloc(C * sizeof(float));
    mask_interpolate_backward_f32(dci, ds, dm, ci, src, N, C, 0);
    float *d_dm = dev_of(dm, (long)N * C), *d_ci = dev_of(ci, (long)N * C), *d_src = dev_of(src, C);
    float *d_dci = dev_nan((long)N * C), *d_ds = dev_nan(C);
    mask_interpolate_backward_cuda(d_dci, d_ds, d_dm, d_ci, d_src, N, C, 0);
    check_close("mask_interpolate_backward shared dci", d_dci, dci, (long)N * C, OP_BOUND);
    check_close("mask_interpolate_backward shared ds", d_ds, ds, C, OP_BOUND);
}

static void test_sigmoids_gelu(void) {
    const long n = 100003;
    float *x = randf(n, -2, 3), *dy = randf(n, -1, 1);
    float *dx_ = dev_of(x, n), *ddy = dev_of(dy, n), *dout = dev_nan(n);
    float *h = spd_malloc(n * sizeof(float));
    char name[96];
    for (int f = 0; f < SPD_SIGMOID_FN_COUNT; f++) {
        sigmoid_forward_f32((spd_sigmoid_fn)f, h, x, n);
        sigmoid_forward_cuda((spd_sigmoid_fn)f, dout, dx_, n);
        snprintf(name, sizeof name, "sigmoid_forward %s", spd_sigmoid_fn_name((spd_sigmoid_fn)f));
        check_close(name, dout, h, n, OP_BOUND);
        sigmoid_backward_f32((spd_sigmoid_fn)f, h, dy, x, n);
        sigmoid_backward_cuda((spd_sigmoid_fn)f, dout, ddy, dx_, n);
        snprintf(name, sizeof name, "sigmoid_backward %s", spd_sigmoid_fn_name((spd_sigmoid_fn)f));
        check_close(name, dout, h, n, OP_BOUND);
    }
    gelu_forward_f32(h, x, n);
    gelu_forward_cuda(dout, dx_, n);
    check_close("gelu_forward", dout, h, n, OP_BOUND);
    gelu_backward_f32(h, dy, x, n);
    gelu_backward_cuda(dout, ddy, dx_, n);
    check_close("gelu_backward", dout, h, n, OP_BOUND);
    free(x), free(dy), free(h);
    spd_device_free(dx_), spd_device_free(ddy), spd_device_free(dout);
}

static void test_routing(void) {
    const int L = 5;
    const long N = 3001;
    spd_router rs[2] = {{.kind = SPD_ROUTE_UNIFORM_K_SUBSET}, {.kind = SPD_ROUTE_STATIC_PROBABILITY, .p = 0.3}};
    for (int k = 0; k < 2; k++) {
        uint8_t *h = spd_malloc((size_t)L * N), *g = spd_malloc((size_t)L * N);
        uint8_t *d = spd_device_malloc((size_t)L * N);
        spd_route_sample(&rs[k], h, L, N, 11, 0xabcdef);
        route_sample_cuda(&rs[k], d, L, N, 11, 0xabcdef);
        spd_device_download(g, d, (size_t)L * N);
        test_report(memcmp(g, h, (size_t)L * N) == 0, k ? "route_sample static_probability bit-identical"
                                                        : "route_sample uniform_k_subset bit-identical", NULL);
        free(h), free(g), spd_device_free(d);
    }
}

static void test_ci_fns(void) {
    const int N = 1024, C = 23, d_in = 19;
    const int hidden[2] = {16, 8};
    for (int kind = 0; kind < SPD_CI_KIND_COUNT; kind++) {
        spd_ci_fn_arch arch;
        SPD_ASSERT(spd_ci_fn_arch_init(&arch, (spd_ci_fn_kind)kind, C, d_in, hidden, 2) == 0);
        ci_fn hf = {.arch = arch}, df = {.arch = arch};
        float *dW_h[SPD_CI_FN_MAX_LAYERS], *db_h[SPD_CI_FN_MAX_LAYERS];
        long nW[SPD_CI_FN_MAX_LAYERS], nb[SPD_CI_FN_MAX_LAYERS];
        for (int k = 0; k < arch.n_layers; k++) {
            int64_t shape[3];
            nW[k] = (long)spd_numel(spd_ci_fn_param_shape(&arch, k, false, shape), shape);
            nb[k] = (long)spd_numel(spd_ci_fn_param_shape(&arch, k, true, shape), shape);
            float *W = randf(nW[k], -0.5, 0.5), *b = randf(nb[k], -0.2, 0.2);
            hf.W[k] = W, hf.b[k] = b;
            df.W[k] = dev_of(W, nW[k]), df.b[k] = dev_of(b, nb[k]);
            dW_h[k] = randf(nW[k], -0.1, 0.1), db_h[k] = randf(nb[k], -0.1, 0.1);  // accumulate onto these
            df.dW[k] = dev_of(dW_h[k], nW[k]), df.db[k] = dev_of(db_h[k], nb[k]);
            hf.dW[k] = spd_malloc(nW[k] * sizeof(float)), hf.db[k] = spd_malloc(nb[k] * sizeof(float));
            memcpy(hf.dW[k], dW_h[k], nW[k] * sizeof(float));
            memcpy(hf.db[k], db_h[k], nb[k] * sizeof(float));
            if (k < arch.n_layers - 1) {
                size_t e = spd_ci_fn_hidden_elems(&arch, N, k);
                hf.pre[k] = spd_malloc(e * sizeof(float)), hf.post[k] = spd_malloc(e * sizeof(float));
                df.pre[k] = dev_nan((long)e), df.post[k] = dev_nan((long)e);
            }
        }
        size_t we = spd_ci_fn_workspace_elems(&arch, N);
        hf.work = spd_malloc(we * sizeof(float)), df.work = dev_nan((long)we);
        long nin = (long)N * spd_ci_fn_input_width(&arch);
        float *in = randf(nin, -1, 1), *din_d = dev_of(in, nin);
        float *pre = spd_malloc((size_t)N * C * sizeof(float)), *pre_d = dev_nan((long)N * C);
        ci_fn_forward_f32(&hf, pre, in, N);
        ci_fn_forward_cuda(&df, pre_d, din_d, N);
        char name[96];
        snprintf(name, sizeof name, "ci_fn_forward %s", spd_ci_fn_kind_name((spd_ci_fn_kind)kind));
        check_close(name, pre_d, pre, (long)N * C, OP_BOUND);
        float *g = randf((long)N * C, -1, 1), *g_d = dev_of(g, (long)N * C);
        float *gin = spd_malloc(nin * sizeof(float)), *gin_d = dev_nan(nin);
        ci_fn_backward_f32(&hf, gin, g, in, N);
        ci_fn_backward_cuda(&df, gin_d, g_d, din_d, N);
        snprintf(name, sizeof name, "ci_fn_backward %s d input", spd_ci_fn_kind_name((spd_ci_fn_kind)kind));
        check_close(name, gin_d, gin, nin, OP_BOUND);
        double worst = 0;
        for (int k = 0; k < arch.n_layers; k++) {  // compare what each side added
            float *gw = host_of(df.dW[k], nW[k]), *gb = host_of(df.db[k], nb[k]);
            for (long i = 0; i < nW[k]; i++) gw[i] -= dW_h[k][i], hf.dW[k][i] -= dW_h[k][i];
            for (long i = 0; i < nb[k]; i++) gb[i] -= db_h[k][i], hf.db[k][i] -= db_h[k][i];
            worst = fmax(worst, fmax(rel_err_f(gw, hf.dW[k], nW[k]), rel_err_f(gb, hf.db[k], nb[k])));
            free(gw), free(gb);
        }
        snprintf(name, sizeof name, "ci_fn_backward %s parameter gradients", spd_ci_fn_kind_name((spd_ci_fn_kind)kind));
        test_report(worst <= OP_BOUND, name, "norm-relative error %.3g", worst);
    }
}

static void test_losses(void) {
    const int N = 4096, dim = 40;
    const long n = (long)N * dim;
    float *p = randf(n, -2, 2), *t = randf(n, -2, 2), *dp = dev_of(p, n), *dt = dev_of(t, n);
    float *h = spd_malloc(n * sizeof(float)), *d = dev_nan(n);
    for (int k = 0; k < 2; k++) {
        spd_divergence kind = k ? SPD_DIVERGENCE_KL : SPD_DIVERGENCE_MSE;
        double want = output_loss_sum_f32(kind, NULL, p, t, N, dim);
        double got = output_loss_sum_cuda(kind, NULL, dp, dt, N, dim);
        check_scalar(k ? "output_loss_sum kl" : "output_loss_sum mse", got, want, 1e-10);
        output_loss_backward_f32(kind, h, p, t, N, dim, 0.37);
        output_loss_backward_cuda(kind, d, dp, dt, N, dim, 0.37);
        check_close(k ? "output_loss_backward kl" : "output_loss_backward mse", d, h, n, OP_BOUND);
    }
    // Importance minimality over two modules, p = 0.9 (pow in float64 on both sides).
    const int Cs[2] = {40, 7};
    float *ci[2], *dci_d[2], *ci_d[2], *dci_h[2];
    for (int l = 0; l < 2; l++) {
        ci[l] = randf((long)N * Cs[l], 0, 1.2);
        ci_d[l] = dev_of(ci[l], (long)N * Cs[l]);
        dci_d[l] = dev_nan((long)N * Cs[l]);
        dci_h[l] = spd_malloc((size_t)N * Cs[l] * sizeof(float));
    }
    double S[47];
    double *S_d = spd_device_malloc(sizeof S);
    double want = importance_minimality_forward_f32(S, (const float *const *)ci, Cs, 2, N, 0.9, 1e-12, 0.3, 1);
    double got = importance_minimality_forward_cuda(S_d, (const float *const *)ci_d, Cs, 2, N, 0.9, 1e-12, 0.3, 1);
    check_scalar("importance_minimality_forward", got, want, 1e-12);
    importance_minimality_backward_f32(dci_h, (const float *const *)ci, S, Cs, 2, N, 0.9, 1e-12, 0.3, 1, 0.5);
    importance_minimality_backward_cuda(dci_d, (const float *const *)ci_d, S_d, Cs, 2, N, 0.9, 1e-12, 0.3, 1, 0.5);
    check_close("importance_minimality_backward module 0", dci_d[0], dci_h[0], (long)N * Cs[0], OP_BOUND);
    check_close("importance_minimality_backward module 1", dci_d[1], dci_h[1], (long)N * Cs[1], OP_BOUND);
    // A bias gradient (the GPU sums rows in float64, the CPU in float32 order).
    float *db0 = randf(dim, -1, 1), *ddb = dev_of(db0, dim);
    bias_grad_f32(db0, p, N, dim);
    bias_grad_cuda(ddb, dp, N, dim);
    check_close("bias_grad", ddb, db0, dim, 1e-4);  // the CPU's float32 running sum over 4096 rows drifts ~1e-6
}

// Toy batches drawn on the GPU are the host's floats, bit for bit.
static void test_toy_batches(void) {
    const int B = 4096, F = 40;
    spd_toy_data d;
    for (int k = 0; k < 2; k++) {
        int rc = k ? spd_toy_data_init_resid_mlp(&d, F, 0.3, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 77)
                   : spd_toy_data_init_tms(&d, F, 0.05, SPD_TOY_AT_LEAST_ZERO_ACTIVE, 5);
        SPD_ASSERT(rc == 0);
        float *h = spd_malloc((size_t)B * F * sizeof(float)), *dx = dev_nan((long)B * F);
        spd_toy_batch_f32(&d, 123, k ? 2 : -1, k ? 17 : 0, B, h, NULL);
        rc = spd_toy_batch_cuda(&d, 123, k ? 2 : -1, k ? 17 : 0, B, dx);
        test_report(rc == 0, "spd_toy_batch_cuda draws at_least_zero_active", NULL);
        check_exact(k ? "toy batch (resid range, eval batch, row0 17) bit-identical"
                      : "toy batch (TMS range, training) bit-identical", dx, h, (long)B * F);
        free(h), spd_device_free(dx);
        spd_toy_data_free(&d);
    }
    SPD_ASSERT(spd_toy_data_init_tms(&d, F, 0.05, SPD_TOY_EXACTLY_ONE_ACTIVE, 5) == 0);
    test_report(spd_toy_batch_cuda(&d, 1, -1, 0, 8, NULL) == -1, "spd_toy_batch_cuda leaves exactly_one to the host",
                NULL);
    spd_toy_data_free(&d);
}

// ---- whole training steps ------------------------------------------------------------------

typedef struct {
    bool resid;  // ResidMLP (else TMS)
    spd_spec spec;
    tms_model tms;
    resid_mlp_model rm;
    spd_trainer tr;
} side;

// TMS F=40, H=10, one hidden layer (or ResidMLP F=30, D=12, M=20, 2 layers, GELU);
// every site decomposed. Host side initialised, the device side a copy.
static int build(side *s, bool gpu, bool resid, const spd_train_options *o, int B) {
    memset(s, 0, sizeof *s);
    s->resid = resid;
    spd_spec_init(&s->spec);
    s->spec.on_device = gpu;
    spd_target tg;
    int sites[4] = {0, 1, 2, 3}, Cs[4] = {24, 17, 20, 9}, n_sites;
    if (resid) {
        resid_mlp_config cfg = {.n_features = 30, .d_embed = 12, .d_mlp = 20, .n_layers = 2, .act = RESID_MLP_GELU,
                                .in_bias = true, .out_bias = true};
        resid_mlp_options ro = {.B = B, .prefix = "target_model."};
        if (gpu) resid_mlp_declare_cuda(&s->rm, &s->spec, &cfg, &ro);
        else resid_mlp_declare_f32(&s->rm, &s->spec, &cfg, &ro);
        tg = gpu ? spd_target_resid_mlp_cuda(&s->rm) : spd_target_resid_mlp_f32(&s->rm);
        n_sites = 4;
    } else {
        tms_config cfg = {.n_features = 40, .n_hidden = 10, .n_hidden_layers = 1};
        tms_options to = {.B = B, .prefix = "target_model."};
        if (gpu) tms_declare_cuda(&s->tms, &s->spec, &cfg, &to);
        else tms_declare_f32(&s->tms, &s->spec, &cfg, &to);
        tg = gpu ? spd_target_tms_cuda(&s->tms) : spd_target_tms_f32(&s->tms);
        n_sites = 3;
    }
    int rc = gpu ? spd_trainer_declare_cuda(&s->tr, &s->spec, o, &tg, sites, Cs, n_sites)
                 : spd_trainer_declare_f32(&s->tr, &s->spec, o, &tg, sites, Cs, n_sites);
    if (rc) return -1;
    spd_spec_alloc(&s->spec);
    if (resid) {
        if (gpu) resid_mlp_bind_cuda(&s->rm, &s->spec);
        else {
            resid_mlp_bind_f32(&s->rm, &s->spec);
            resid_mlp_init_params_f32(&s->rm, 5);
        }
        tg = gpu ? spd_target_resid_mlp_cuda(&s->rm) : spd_target_resid_mlp_f32(&s->rm);
    } else {
        if (gpu) tms_bind_cuda(&s->tms, &s->spec);
        else {
            tms_bind_f32(&s->tms, &s->spec);
            tms_init_params_f32(&s->tms, 5);
        }
        tg = gpu ? spd_target_tms_cuda(&s->tms) : spd_target_tms_f32(&s->tms);
    }
    if (gpu) {
        spd_trainer_bind_cuda(&s->tr, &tg);
    } else {
        spd_trainer_bind_f32(&s->tr, &tg);
        spd_trainer_init_params_f32(&s->tr, 9);
        // Sparse inputs in [0, 1): about half the features off.
        spd_tensor *x = spd_spec_get(&s->spec, "input.x");
        float *v = x->data;
        int64_t n = spd_tensor_numel(x);
        for (int64_t i = 0; i < n; i++) {
            double u = spd_philox_uniform_f64(31, 1, (uint64_t)i);
            v[i] = u < 0.5 ? 0.0f : (float)(2 * (u - 0.5));
        }
    }
    return 0;
}

static void side_free(side *s, bool gpu) {
    if (gpu) {
        spd_trainer_free_cuda(&s->tr);
        if (s->resid) resid_mlp_free_cuda(&s->rm);
        else tms_free_cuda(&s->tms);
    } else {
        spd_trainer_free_f32(&s->tr);
        if (s->resid) resid_mlp_free_f32(&s->rm);
        else tms_free_f32(&s->tms);
    }
    spd_spec_free(&s->spec);
}

// Every trained tensor's `part`, host and device, norm-relative; the worst.
static double compare_trained(const side *h, const side *d, spd_mirror_part part, char *worst_name) {
    double worst = 0;
    for (int i = 0; i < h->spec.count; i++) {
        const spd_tensor *t = &h->spec.tensors[i];
        if (t->role != SPD_ROLE_TRAINED) continue;
        const spd_tensor *u = spd_spec_get(&d->spec, t->name);
        int64_t n = spd_tensor_numel(t);
        double *a = spd_malloc((size_t)n * sizeof(double)), *b = spd_malloc((size_t)n * sizeof(double));
        spd_tensor_read_f64(&d->spec, u, part, a);
        spd_tensor_read_f64(&h->spec, t, part, b);
        double num = 0, den = 0;
        for (int64_t j = 0; j < n; j++) num += (a[j] - b[j]) * (a[j] - b[j]), den += b[j] * b[j];
        double e = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
        if (e != e) e = INFINITY;
        if (e > worst || (e == INFINITY && worst != INFINITY)) {
            worst = e;
            snprintf(worst_name, SPD_NAME_MAX, "%s", t->name);
        }
        free(a), free(b);
    }
    return worst;
}

static void run_case(const char *name, bool resid, const spd_train_options *o) {
    side h, d;
    const int B = 512;
    if (build(&h, false, resid, o, B) || build(&d, true, resid, o, B)) {
        test_report(0, name, "build: %s", spd_last_error());
        return;
    }
    bool ok = spd_spec_copy_role(&d.spec, &h.spec, SPD_ROLE_FROZEN, SPD_MIRROR_VALUES) == 0 &&
              spd_spec_copy_role(&d.spec, &h.spec, SPD_ROLE_TRAINED, SPD_MIRROR_VALUES) == 0;
    spd_tensor *xh = spd_spec_get(&h.spec, "input.x"), *xd = spd_spec_get(&d.spec, "input.x");
    spd_tensor_upload(&d.spec, xd, xh->data);
    test_report(ok, name, "mirror: %s", spd_last_error());
    char buf[256], worst_name[SPD_NAME_MAX] = "";
    for (int step = 0; step < 3; step++) {
        double th = spd_train_step_f32(&h.tr, step), td = spd_train_step_cuda(&d.tr, step);
        if (step == 0) {
            double wv = 0;
            int wi = 0;
            for (int i = 0; i < o->n_terms; i++) {
                double e = fabs(d.tr.values[i] - h.tr.values[i]) / fmax(fabs(h.tr.values[i]), 1e-6);
                if (!(e <= wv)) wv = e, wi = i;
            }
            snprintf(buf, sizeof buf, "%s: step 0 loss terms (worst %s)", name, spd_term_kind_name(o->terms[wi].kind));
            test_report(wv <= STEP_BOUND, buf, "relative error %.3g (gpu %.9g cpu %.9g)", wv, d.tr.values[wi],
                        h.tr.values[wi]);
            printf("#   %s: worst term error %.3g, total gpu %.9g cpu %.9g\n", name, wv, td, th);
            double eg = compare_trained(&h, &d, SPD_MIRROR_GRAD, worst_name);
            snprintf(buf, sizeof buf, "%s: step 0 gradients", name);
            test_report(eg <= STEP_BOUND, buf, "norm-relative error %.3g in %s", eg, worst_name);
            printf("#   %s: worst gradient error %.3g (%s)\n", name, eg, worst_name);
        }
        spd_train_update_f32(&h.tr, step);
        spd_train_update_cuda(&d.tr, step);
    }
    double ep = compare_trained(&h, &d, SPD_MIRROR_VALUES, worst_name);
    snprintf(buf, sizeof buf, "%s: parameters after 3 updates", name);
    test_report(ep <= STEP_BOUND, buf, "norm-relative error %.3g in %s", ep, worst_name);
    printf("#   %s: worst parameter error after 3 updates %.3g (%s)\n", name, ep, worst_name);
    side_free(&h, false);
    side_free(&d, true);
}

static void base_options(spd_train_options *o) {
    spd_train_options_default(o);
    o->steps = 100;
    o->seed = 3;
    o->lr.start_val = 1e-3;
    o->n_ci_hidden = 1;
    o->ci_hidden[0] = 16;
}

static spd_importance_minimality_config imp(double p) {
    return (spd_importance_minimality_config){.pnorm = p, .beta = 0.2, .p_anneal_start_frac = 1,
                                              .p_anneal_end_frac = 1, .eps = 1e-12};
}

static void test_steps(void) {
    spd_train_options o;
    // SPD's TMS / ResidMLP recipe: mlp CI fns, leaky_hard, continuous.
    base_options(&o);
    o.ci_kind = SPD_CI_MLP;
    o.n_terms = 4;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 3e-3, .imp = imp(1)};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON_LAYERWISE, .coeff = 1};
    o.terms[3] = (spd_train_term){.kind = SPD_TERM_FAITHFULNESS, .coeff = 0.5};
    run_case("tms mlp recipe", false, &o);
    run_case("resid_mlp mlp recipe", true, &o);
    // vector_mlp, binomial, 2 mask samples, the CI-masked / unmasked / hidden-acts terms, kl, clipping.
    base_options(&o);
    o.ci_kind = SPD_CI_VECTOR_MLP;
    o.sampling = SPD_MASK_BINOMIAL;
    o.n_mask_samples = 2;
    o.output_loss = SPD_DIVERGENCE_KL;
    o.grad_clip_components = 0.01;
    o.grad_clip_ci_fns = 0.01;
    o.n_terms = 6;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 1e-2, .imp = imp(0.9)};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_CI_MASKED_RECON, .coeff = 0.7};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_CI_MASKED_RECON_LAYERWISE, .coeff = 0.4};
    o.terms[3] = (spd_train_term){.kind = SPD_TERM_UNMASKED_RECON, .coeff = 0.3};
    o.terms[4] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON, .coeff = 0.6};
    o.terms[5] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON, .coeff = 1};
    run_case("tms vector_mlp binomial kl clipped", false, &o);
    // shared_mlp, swish_hard, routing and PGD.
    base_options(&o);
    o.ci_kind = SPD_CI_SHARED_MLP;
    spd_sigmoid_pair_parse("swish_hard", &o.sigmoid);
    o.n_terms = 6;
    o.terms[0] = (spd_train_term){.kind = SPD_TERM_IMPORTANCE_MINIMALITY, .coeff = 1e-3, .imp = imp(2)};
    o.terms[1] = (spd_train_term){.kind = SPD_TERM_STOCHASTIC_RECON_SUBSET, .coeff = 0.8,
                                  .router = {.kind = SPD_ROUTE_UNIFORM_K_SUBSET}};
    o.terms[2] = (spd_train_term){.kind = SPD_TERM_CI_MASKED_RECON_SUBSET, .coeff = 0.5,
                                  .router = {.kind = SPD_ROUTE_STATIC_PROBABILITY, .p = 0.5}};
    o.terms[3] = (spd_train_term){.kind = SPD_TERM_PGD_RECON, .coeff = 0.4,
                                  .pgd = {.init = SPD_PGD_INIT_RANDOM, .step_size = 0.1, .n_steps = 2,
                                          .mask_scope = SPD_MASK_SCOPE_UNIQUE_PER_DATAPOINT}};
    o.terms[4] = (spd_train_term){.kind = SPD_TERM_PGD_RECON_SUBSET, .coeff = 0.3,
                                  .router = {.kind = SPD_ROUTE_UNIFORM_K_SUBSET},
                                  .pgd = {.init = SPD_PGD_INIT_RANDOM, .step_size = 0.2, .n_steps = 1,
                                          .mask_scope = SPD_MASK_SCOPE_SHARED_ACROSS_BATCH}};
    o.terms[5] = (spd_train_term){.kind = SPD_TERM_PGD_RECON_LAYERWISE, .coeff = 0.25,
                                  .pgd = {.init = SPD_PGD_INIT_ZEROES, .step_size = 0.15, .n_steps = 2,
                                          .mask_scope = SPD_MASK_SCOPE_SHARED_ACROSS_BATCH}};
    run_case("resid_mlp shared_mlp swish routing pgd", true, &o);
}

int main(void) {
    if (!spd_device_available()) {
        printf("not ok - test_gpu_train: no GPU visible\n");
        return 1;
    }
    spd_cuda_init();
    printf("# device: %s\n", spd_cuda_device_name());
    test_draws_and_masks();
    test_sigmoids_gelu();
    test_routing();
    test_ci_fns();
    test_losses();
    test_toy_batches();
    test_steps();
    return test_exit();
}
