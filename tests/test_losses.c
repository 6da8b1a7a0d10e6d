// The SPD loss pieces: output divergences (mse, kl), faithfulness, importance
// minimality (with p annealing), the learning-rate schedules and gradient
// clipping, against SPD_SPEC.md section 12's golden values, finite differences
// in float64 and float32.
//
// Gradient checks: the loss itself (times a scale, the coefficient the
// backward takes) is differenced centrally with h = 1e-6: truncation ~h^2 |f'''|
// and rounding ~1e-16 |L| / h put a correct backward near 1e-9 in relative
// norm and a wrong one near 1, so the bound is 1e-6 (tests/test_ops_grad.c).
// Accumulated gradients are pre-filled with random values, written ones with NaN.
//
// Golden values are printed to 10 decimals from inputs printed to 10 decimals
// (the CI values): bound 1e-9 absolute. Float32 against float64: the ops
// evaluate in float64 from storage-precision inputs, so on inputs rounded to
// float32 the two differ by one or two float32 roundings (2^-24 = 6e-8 each):
// bound 1e-6 relative.
#define SPD_F64
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/components.h"
#include "ops/faithfulness.h"
#include "ops/grad_clip.h"
#include "ops/importance_minimality.h"
#include "ops/output_loss.h"
#include "spd/schedule.h"
#include "testing.h"

// The float32 twins (the headers above declare the _f64 names only).
double output_loss_sum_f32(spd_divergence kind, int64_t *count, const float *pred, const float *target,
                           int64_t n_pos, int64_t dim);
void output_loss_backward_f32(spd_divergence kind, float *dpred, const float *pred, const float *target,
                              int64_t n_pos, int64_t dim, double scale);
double faithfulness_loss_forward_f32(const float *const *deltas, const int64_t *numel, int n_modules);
void faithfulness_loss_backward_f32(float *const *ddeltas, const float *const *deltas, const int64_t *numel,
                                    int n_modules, double scale);
double importance_minimality_forward_f32(double *S, const float *const *ci_upper, const int *C, int n_modules,
                                         int64_t N, double p, double eps, double beta, double world_size);
void importance_minimality_backward_f32(float *const *dci_upper, const float *const *ci_upper, const double *S,
                                        const int *C, int n_modules, int64_t N, double p, double eps,
                                        double beta, double world_size, double scale);
double grad_norm_f32(const float *const *grads, const int64_t *numel, int n_bufs);
double clip_grad_norm_f32(float *const *grads, const int64_t *numel, int n_bufs, double max_norm);

#define FD_H 1e-6
#define FD_TOL 1e-6
#define SEED 2718

#define TEST_NAME "test_losses"
#define TEST_SEED SEED
#include "test_inputs.h"

#define GOLDEN_TOL 1e-9
#define F32_TOL 1e-6

static void report_abs(const char *name, double got, double want, double tol) {
    char full[256];
    snprintf(full, sizeof full, "%s (got %.12g, want %.12g)", name, got, want);
    test_report(fabs(got - want) <= tol, full, NULL);
}

static double *rounded_f32(double *p, long n) {
    for (long i = 0; i < n; i++) p[i] = (float)p[i];
    return p;
}

static void report_abs_err(const char *name, double err, double tol) {
    char full[256];
    snprintf(full, sizeof full, "%s (abs err %.2e, bound %.0e)", name, err, tol);
    test_report(err <= tol, full, NULL);
}

// |a - b| / |b| for scalars (0 when both are 0).
static double scalar_rel_err(double a, double b) {
    if (a == b) return 0;
    return fabs(a - b) / fabs(b);
}

// ---- output divergences -------------------------------------------------------

static void test_kl_golden(void) {
    const double pred[6] = {1, 0, -1, 0.5, 0.5, 0}, target[6] = {0, 1, 0, 2, -1, 0.5};
    const double want[2] = {0.4322781353, 0.4240806793};
    for (int n = 0; n < 2; n++) {
        char name[64];
        snprintf(name, sizeof name, "kl golden: position %d", n);
        report_abs(name, output_loss_sum_f64(SPD_DIVERGENCE_KL, NULL, pred + 3 * n, target + 3 * n, 1, 3), want[n],
                   GOLDEN_TOL);
    }
    int64_t count = -1;
    double sum = output_loss_sum_f64(SPD_DIVERGENCE_KL, &count, pred, target, 2, 3);
    test_report(count == 2, "kl count = positions", "count %lld", (long long)count);
    report_abs("kl golden: mean over positions", sum / (double)count, 0.4281794073, GOLDEN_TOL);
    // KL(p || p) = 0 and stable for huge logits (max subtraction).
    const double big[3] = {1000, 999, -1000};
    report_abs("kl of a distribution with itself, logits ~1e3",
               output_loss_sum_f64(SPD_DIVERGENCE_KL, NULL, big, big, 1, 3), 0, 1e-15);
}

// Values from torch (CPU, float64): F.kl_div(log_softmax(pred), softmax(target),
// reduction="none").sum(), and the gradient of 0.5 times it; the second
// target puts ~e^-1000 = 0 on its middle class. Same forms and order of
// evaluation: equal up to libm's last bit (bitwise with glibc).
static void test_kl_vs_torch(void) {
    const double pred[6] = {1, 0, -1, 0.5, 0.5, 0}, target[6] = {0, 1, 0, 2, -1e3, 0.5};
    const double want_grad[6] = {0.22664969907886817,  -0.16569420685551572, -0.06095549222335252,
                                 -0.21696137250154646, 0.19182586559527537,  0.02513550690627117};
    double grad[6];
    double sum = output_loss_sum_f64(SPD_DIVERGENCE_KL, NULL, pred, target, 2, 3);
    output_loss_backward_f64(SPD_DIVERGENCE_KL, grad, pred, target, 2, 3, 0.5);
    report_err("kl sum vs torch float64", scalar_rel_err(sum, 1.0064594214360834), 1e-15);
    report_err("kl backward vs torch float64 autograd", max_rel_err(grad, want_grad, 6), 1e-15);
}

static void test_mse_values(void) {
    const double pred[6] = {1, 2, 3, 4, 5, 6}, target[6] = {1, 0, 3, 5, 5, 3};
    int64_t count = -1;
    double sum = output_loss_sum_f64(SPD_DIVERGENCE_MSE, &count, pred, target, 2, 3);
    test_report(sum == 14 && count == 6, "mse sum and count = numel", "sum %g count %lld", sum, (long long)count);
}

typedef struct {
    spd_divergence kind;
    double *pred, *target, scale;
    long n_pos, dim;
} out_ctx;

static double out_loss(void *p) {
    out_ctx *c = p;
    return c->scale * output_loss_sum_f64(c->kind, NULL, c->pred, c->target, c->n_pos, c->dim);
}

static void test_output_grad(spd_divergence kind, const char *label) {
    const long n_pos = 5, dim = 7, n = n_pos * dim;
    out_ctx c = {.kind = kind, .pred = normal(n, 1.5), .target = normal(n, 2), .scale = 0.37, .n_pos = n_pos,
                 .dim = dim};
    if (kind == SPD_DIVERGENCE_KL) {
        c.target[1 * dim + 3] = -INFINITY;  // p = 0 exactly: this class adds nothing
        c.target[3 * dim + 0] = -800;       // exp underflows to 0 in float64
        double s = output_loss_sum_f64(kind, NULL, c.pred, c.target, n_pos, dim);
        char name[128];
        snprintf(name, sizeof name, "%s forward finite with zero-probability target classes", label);
        test_report(isfinite(s) && s > 0, name, "sum %g", s);
    }
    double *dpred = filled(n, NAN);
    output_loss_backward_f64(kind, dpred, c.pred, c.target, n_pos, dim, c.scale);
    char name[128];
    snprintf(name, sizeof name, "%s backward (scale 0.37)%s", label,
             kind == SPD_DIVERGENCE_KL ? ", incl. zero-probability target classes" : "");
    check_fd(name, out_loss, &c, c.pred, dpred, n);

    // float32 against float64 on rounded inputs (finite targets only).
    if (kind == SPD_DIVERGENCE_KL) c.target[1 * dim + 3] = -30;
    rounded_f32(c.pred, n);
    rounded_f32(c.target, n);
    double s64 = output_loss_sum_f64(kind, NULL, c.pred, c.target, n_pos, dim);
    double s32 = output_loss_sum_f32(kind, NULL, to_f32(c.pred, n), to_f32(c.target, n), n_pos, dim);
    snprintf(name, sizeof name, "%s f32 vs f64: forward", label);
    report_err(name, scalar_rel_err(s32, s64), F32_TOL);
    float *dpred32 = tmalloc(n * sizeof(float));
    output_loss_backward_f64(kind, dpred, c.pred, c.target, n_pos, dim, c.scale);
    output_loss_backward_f32(kind, dpred32, to_f32(c.pred, n), to_f32(c.target, n), n_pos, dim, c.scale);
    snprintf(name, sizeof name, "%s f32 vs f64: backward", label);
    report_err(name, test_rel_norm_err(to_f64(dpred32, n), dpred, n), F32_TOL);
    free_all();
}

// ---- SPD_SPEC.md section 12's problem -------------------------------------------

static const double W1[6] = {0.5, -1, 1.5, 0.25, -0.75, 1};        // [3, 2]
static const double W2[6] = {1, 0.5, -0.5, -0.25, 0.75, 1.25};     // [2, 3]
static const double V1[4] = {0.3, -0.8, 0.6, 0.4};                 // [2, 2]
static const double U1[6] = {0.7, 0.9, -0.2, -0.5, 0.1, 0.6};      // [2, 3]
static const double V2[6] = {0.2, -0.4, 0.5, 0.3, -0.6, 0.8};      // [3, 2]
static const double U2[4] = {0.9, -0.3, 0.4, 0.7};                 // [2, 2]
// ci_upper = pre_sigmoid except fc2[1, 1] = 0 (upper_leaky_hard clamps -1.73 to 0).
static const double CI_FC1[4] = {0.0236750618, 0.0565344966, 0.5283426723, 0.2480891553};
static const double CI_FC2[4] = {0.6593065107, 0.1460432486, 0.5404871381, 0};

static void test_faithfulness_golden(void) {
    double d1[6], d2[6];
    weight_delta_forward_f64(d1, W1, V1, U1, 2, 2, 3);
    weight_delta_forward_f64(d2, W2, V2, U2, 3, 2, 2);
    const double *deltas[2] = {d1, d2};
    const int64_t numel[2] = {6, 6};
    report_abs("faithfulness golden (section 12)", faithfulness_loss_forward_f64(deltas, numel, 2), 0.4943333333,
               GOLDEN_TOL);
}

static void test_importance_golden(void) {
    const double *ci[2] = {CI_FC1, CI_FC2};
    const int C[2] = {2, 2};
    double S[4];
    report_abs("importance minimality golden p=2 eps=0 beta=0",
               importance_minimality_forward_f64(S, ci, C, 2, 2, 2.0, 0, 0, 1), 0.5462954591, GOLDEN_TOL);
    report_abs("importance minimality golden p=1 eps=0 beta=0.5",
               importance_minimality_forward_f64(S, ci, C, 2, 2, 1.0, 0, 0.5, 1), 1.5663019988, GOLDEN_TOL);
    // The eval path: the same sums through importance_minimality_from_sums.
    double S2[4] = {0};
    importance_minimality_sums_f64(S2, CI_FC1, 2, 2, 1.0, 0);
    importance_minimality_sums_f64(S2 + 2, CI_FC2, 2, 2, 1.0, 0);
    report_abs("importance minimality from sums (eval path) = forward",
               importance_minimality_from_sums(S2, C, 2, 2, 0.5, 1), 1.5663019988, GOLDEN_TOL);
}

// ---- faithfulness ----------------------------------------------------------------

typedef struct {
    double *d[2];
    int64_t numel[2];
    double scale;
} faith_ctx;

static double faith_loss(void *p) {
    faith_ctx *c = p;
    return c->scale * faithfulness_loss_forward_f64((const double *const *)c->d, c->numel, 2);
}

static void test_faithfulness_grad(void) {
    faith_ctx c = {.d = {normal(12, 0.7), normal(20, 0.3)}, .numel = {12, 20}, .scale = 1.7};
    double *g0[2] = {normal(12, 1), normal(20, 1)};
    double *g[2] = {copy(g0[0], 12), copy(g0[1], 20)};
    faithfulness_loss_backward_f64(g, (const double *const *)c.d, c.numel, 2, c.scale);
    subtract(g[0], g0[0], 12);
    subtract(g[1], g0[1], 20);
    check_fd("faithfulness backward (accumulated, scale 1.7): delta 0", faith_loss, &c, c.d[0], g[0], 12);
    check_fd("faithfulness backward (accumulated, scale 1.7): delta 1", faith_loss, &c, c.d[1], g[1], 20);

    rounded_f32(c.d[0], 12);
    rounded_f32(c.d[1], 20);
    const float *d32[2] = {to_f32(c.d[0], 12), to_f32(c.d[1], 20)};
    report_err("faithfulness f32 vs f64: forward",
               scalar_rel_err(faithfulness_loss_forward_f32(d32, c.numel, 2),
                              faithfulness_loss_forward_f64((const double *const *)c.d, c.numel, 2)),
               F32_TOL);
    double *g64[2] = {filled(12, 0), filled(20, 0)};
    float *g32[2] = {to_f32(g64[0], 12), to_f32(g64[1], 20)};
    faithfulness_loss_backward_f64(g64, (const double *const *)c.d, c.numel, 2, c.scale);
    faithfulness_loss_backward_f32(g32, d32, c.numel, 2, c.scale);
    report_err("faithfulness f32 vs f64: backward", test_rel_norm_err(to_f64(g32[1], 20), g64[1], 20), F32_TOL);
    free_all();
}

// ---- importance minimality -----------------------------------------------------------

#define IM_N 6
typedef struct {
    double *ci[2];
    int C[2];
    double p, eps, beta, W, scale;
} im_ctx;

static double im_loss(void *p) {
    im_ctx *c = p;
    double S[16];
    return c->scale * importance_minimality_forward_f64(S, (const double *const *)c->ci, c->C, 2, IM_N, c->p,
                                                        c->eps, c->beta, c->W);
}

static void test_importance_grad(double p, double beta, double W) {
    // Away from 0 (p < 1 is steep there) and past 1 (upper_leaky_hard lets CI exceed 1).
    im_ctx c = {.ci = {uniform(IM_N * 3, 0.05, 1.2), uniform(IM_N * 5, 0.05, 1.2)}, .C = {3, 5}, .p = p,
                .eps = 1e-12, .beta = beta, .W = W, .scale = 0.8};
    double S[8];
    importance_minimality_forward_f64(S, (const double *const *)c.ci, c.C, 2, IM_N, p, c.eps, beta, W);
    double *g[2] = {filled(IM_N * 3, NAN), filled(IM_N * 5, NAN)};
    importance_minimality_backward_f64(g, (const double *const *)c.ci, S, c.C, 2, IM_N, p, c.eps, beta, W, c.scale);
    for (int l = 0; l < 2; l++) {
        char name[128];
        snprintf(name, sizeof name, "importance minimality backward p=%g beta=%g W=%g: module %d", p, beta, W, l);
        check_fd(name, im_loss, &c, c.ci[l], g[l], (long)IM_N * c.C[l]);
    }
    free_all();
}

// The derivative of (x + eps)^p at x = 0, as torch's pow_backward gives it.
static void test_importance_at_zero(void) {
    const double ci[2] = {0, 0.5};  // [N = 2, C = 1]
    const double *cis[1] = {ci};
    const int C[1] = {1};
    double S[1], g[2];
    double *gs[1] = {g};
    // beta = 0, N = 2: dL/dS = 1/2, so g = 1/2 p (x + eps)^(p-1).
    importance_minimality_forward_f64(S, cis, C, 1, 2, 0.5, 1e-12, 0, 1);
    importance_minimality_backward_f64(gs, cis, S, C, 1, 2, 0.5, 1e-12, 0, 1, 1.0);
    report_err("importance minimality d/dci at ci = 0, p = 0.5, eps = 1e-12: 0.5 * 0.5 * 1e6 (finite)",
               scalar_rel_err(g[0], 0.25 * pow(1e-12, -0.5)), 1e-12);
    importance_minimality_forward_f64(S, cis, C, 1, 2, 0.5, 0, 0, 1);
    importance_minimality_backward_f64(gs, cis, S, C, 1, 2, 0.5, 0, 0, 1, 1.0);
    test_report(isinf(g[0]) && g[0] > 0, "importance minimality d/dci at ci = 0, p = 0.5, eps = 0: +inf as torch",
                "got %g", g[0]);
    importance_minimality_forward_f64(S, cis, C, 1, 2, 1.0, 0, 0, 1);
    importance_minimality_backward_f64(gs, cis, S, C, 1, 2, 1.0, 0, 0, 1, 1.0);
    test_report(g[0] == 0.5 && g[1] == 0.5, "importance minimality d/dci at ci = 0, p = 1, eps = 0: 1/N", "got %g %g",
                g[0], g[1]);
    double L = importance_minimality_forward_f64(S, cis, C, 1, 2, 0.0, 0, 0, 1);
    importance_minimality_backward_f64(gs, cis, S, C, 1, 2, 0.0, 0, 0, 1, 1.0);
    test_report(L == 1 && g[0] == 0 && g[1] == 0, "importance minimality p = 0: 0^0 = 1, zero gradient (pow_backward)",
                "L %g, g %g %g", L, g[0], g[1]);
}

// torch (CPU, float64): ci [3, 2], L = sum_c mu + 0.5 mu log2(1 + 2 S) with
// S = ((ci + 1e-12) ** 0.7).sum(0), and the gradient of 0.1 L (huge at ci = 0).
static void test_importance_vs_torch(void) {
    const double ci[6] = {0, 0.3, 1.1, 0.2, 0.7, 0.05};
    const double want_grad[6] = {249.27230072369548,  0.07334779392765248, 0.06084938827661323,
                                 0.08283510629467385, 0.06968585134417135, 0.12555454289892193};
    const double *cis[1] = {ci};
    const int C[1] = {2};
    double S[2], g[6];
    double *gs[1] = {g};
    double L = importance_minimality_forward_f64(S, cis, C, 1, 3, 0.7, 1e-12, 0.5, 2);
    importance_minimality_backward_f64(gs, cis, S, C, 1, 3, 0.7, 1e-12, 0.5, 2, 0.1);
    report_err("importance minimality vs torch float64 (p 0.7, eps 1e-12, beta 0.5, W 2)",
               scalar_rel_err(L, 1.8096251147252436), 1e-15);
    report_err("importance minimality backward vs torch float64 autograd, incl. ci = 0", max_rel_err(g, want_grad, 6),
               1e-15);
}

static void test_importance_f32(void) {
    const int C[2] = {3, 5};
    double *ci[2] = {rounded_f32(uniform(IM_N * 3, 0, 1.2), IM_N * 3),
                     rounded_f32(uniform(IM_N * 5, 0, 1.2), IM_N * 5)};
    ci[0][4] = 0;  // an exact zero, where eps matters
    const float *ci32[2] = {to_f32(ci[0], IM_N * 3), to_f32(ci[1], IM_N * 5)};
    double S64[8], S32[8];
    double l64 = importance_minimality_forward_f64(S64, (const double *const *)ci, C, 2, IM_N, 0.9, 1e-12, 0.5, 2);
    double l32 = importance_minimality_forward_f32(S32, ci32, C, 2, IM_N, 0.9, 1e-12, 0.5, 2);
    report_err("importance minimality f32 vs f64: forward (p 0.9, beta 0.5, W 2)", scalar_rel_err(l32, l64), F32_TOL);
    double *g64[2] = {filled(IM_N * 3, NAN), filled(IM_N * 5, NAN)};
    float *g32[2] = {tmalloc(IM_N * 3 * sizeof(float)), tmalloc(IM_N * 5 * sizeof(float))};
    importance_minimality_backward_f64(g64, (const double *const *)ci, S64, C, 2, IM_N, 0.9, 1e-12, 0.5, 2, 0.3);
    importance_minimality_backward_f32(g32, ci32, S32, C, 2, IM_N, 0.9, 1e-12, 0.5, 2, 0.3);
    report_err("importance minimality f32 vs f64: backward module 0",
               test_rel_norm_err(to_f64(g32[0], IM_N * 3), g64[0], IM_N * 3), F32_TOL);
    report_err("importance minimality f32 vs f64: backward module 1",
               test_rel_norm_err(to_f64(g32[1], IM_N * 5), g64[1], IM_N * 5), F32_TOL);
    free_all();
}

static void test_p_anneal(void) {
    const double frac[4] = {0, 0.25, 0.5, 1}, want[4] = {2.0, 1.575, 1.15, 0.3};
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        double e = fabs(importance_minimality_p(2.0, 0, true, 0.3, 1, frac[i]) - want[i]);
        if (e > worst) worst = e;
    }
    report_abs_err("p annealing 2.0 -> 0.3 over [0, 1] at frac 0, 0.25, 0.5, 1", worst, 1e-15);
    bool ok = importance_minimality_p(2.0, 0, false, 0, 1, 0.5) == 2.0 &&  // final_p None
              importance_minimality_p(2.0, 1.0, true, 0.3, 1, 1.0) == 2.0 &&  // start_frac >= 1: never anneals
              importance_minimality_p(2.0, 0.2, true, 0.3, 0.6, 0.1) == 2.0 &&  // before start
              importance_minimality_p(2.0, 0.2, true, 0.3, 0.6, 0.6) == 0.3 &&  // from end on
              importance_minimality_p(2.0, 0.2, true, 0.3, 0.6, 0.9) == 0.3 &&
              importance_minimality_p(2.0, 0.4, true, 0.3, 0.4, 0.399) == 2.0 &&  // end = start: a step
              importance_minimality_p(2.0, 0.4, true, 0.3, 0.4, 0.4) == 0.3;
    test_report(ok, "p annealing: no final_p, start >= 1, before start, after end, end = start", NULL);
}

// ---- schedules ------------------------------------------------------------------------

static void test_schedules(void) {
    const double cosine[11] = {0,          5e-4,       1e-3,       9.55436e-4, 8.305704e-4, 6.501344e-4,
                               4.498656e-4, 2.694296e-4, 1.44564e-4, 1e-4,       1.44564e-4};
    // printed to 6-7 significant digits
    double worst = 0;
    for (int s = 0; s <= 10; s++) {
        double e = scalar_rel_err(spd_schedule_value_at(SPD_SCHEDULE_COSINE, 1e-3, 0.2, 0.1, s, 10), cosine[s]);
        if (e > worst) worst = e;
    }
    report_err("cosine schedule T=10 warmup 0.2 final 0.1, steps 0..10 incl. step 10", worst, 1e-6);

    // SPD's get_scheduled_value in Python (numpy's cos) for the same schedule:
    // equal up to libm's last bit (bitwise with glibc).
    const double python[11] = {0.0, 0.0005, 0.001, 0.0009554359905560886, 0.0008305704108364302,
                               0.0006501344202803415, 0.0004498655797196586, 0.00026942958916356994,
                               0.00014456400944391147, 0.0001, 0.0001445640094439114};
    worst = 0;
    for (int s = 0; s <= 10; s++) {
        double e = scalar_rel_err(spd_schedule_value_at(SPD_SCHEDULE_COSINE, 1e-3, 0.2, 0.1, s, 10), python[s]);
        if (e > worst) worst = e;
    }
    report_err("cosine schedule vs SPD's Python float64", worst, 1e-15);

    const double linear[6] = {1, 0.75, 0.5, 0.25, 0, -0.25};
    worst = 0;
    for (int s = 0; s <= 5; s++) {
        double e = fabs(spd_schedule_value_at(SPD_SCHEDULE_LINEAR, 1, 0, 0, s, 5) - linear[s]);
        if (e > worst) worst = e;
    }
    report_abs_err("linear schedule T=5 start 1 final 0, steps 0..5 (step 5 extrapolates to -0.25)", worst, 1e-15);

    spd_schedule_config cfg = {
        .start_val = 3e-4, .warmup_pct = 0.29, .final_val_frac = 1, .fn_type = SPD_SCHEDULE_CONSTANT};
    // int(100 * 0.29) = int(28.999999999999996) = 28 in Python: step 28 is past warm-up.
    bool ok = spd_schedule_value(&cfg, 27, 100) == 3e-4 * (27.0 / 28.0) && spd_schedule_value(&cfg, 28, 100) == 3e-4 &&
              spd_schedule_value(&cfg, 100, 100) == 3e-4;
    test_report(ok, "constant schedule with warm-up: Wu = int(T * pct) truncates as Python", NULL);
    // Dd <= 1: no decay. T = 1 (steps 0, 1); T = 10 with warmup 0.9 (Wu 9, Dd 1).
    ok = spd_schedule_value_at(SPD_SCHEDULE_COSINE, 2, 0, 0, 0, 1) == 2 &&
         spd_schedule_value_at(SPD_SCHEDULE_COSINE, 2, 0, 0, 1, 1) == 2 &&
         spd_schedule_value_at(SPD_SCHEDULE_LINEAR, 2, 0.9, 0, 9, 10) == 2 &&
         spd_schedule_value_at(SPD_SCHEDULE_LINEAR, 2, 0.9, 0, 10, 10) == 2 &&
         spd_schedule_value_at(SPD_SCHEDULE_LINEAR, 2, 0.9, 0, 3, 10) == 2 * (3.0 / 9.0);
    test_report(ok, "schedule with 0 or 1 decay steps stays at start after warm-up", NULL);
}

// ---- gradient clipping ---------------------------------------------------------------------

static void test_grad_clip(void) {
    // norm sqrt(9 + 16 + 144) = 13
    double a[2] = {3, 4}, b[3] = {0, -12, 0};
    double *g[2] = {a, b};
    const int64_t numel[2] = {2, 3};
    double n = clip_grad_norm_f64(g, numel, 2, 13.5);
    test_report(n == 13 && a[0] == 3 && a[1] == 4 && b[1] == -12, "clip_grad_norm: norm 13 < max 13.5 leaves grads",
                "norm %g", n);
    n = clip_grad_norm_f64(g, numel, 2, 13);  // coef 13 / (13 + 1e-6) < 1: torch clips even here
    double coef = 13 / (13 + 1e-6);
    test_report(n == 13 && a[0] == 3 * coef && b[1] == -12 * coef,
                "clip_grad_norm: max = norm still scales by max / (norm + 1e-6)", NULL);
    a[0] = 3, a[1] = 4, b[1] = -12;
    n = clip_grad_norm_f64(g, numel, 2, 6.5);
    coef = 6.5 / (13 + 1e-6);
    test_report(n == 13 && a[0] == 3 * coef && a[1] == 4 * coef && b[0] == 0 && b[1] == -12 * coef,
                "clip_grad_norm: max 6.5 scales every grad by 6.5 / (13 + 1e-6), returns the norm before", NULL);
    report_err("grad_norm after clipping ~ max_norm",
               scalar_rel_err(grad_norm_f64((const double *const *)g, numel, 2), 6.5), 1e-6);

    b[1] = NAN;  // a NaN norm: torch's clamp keeps the NaN coefficient and multiplies it in
    n = clip_grad_norm_f64(g, numel, 2, 6.5);
    test_report(isnan(n) && isnan(a[0]) && isnan(a[1]), "clip_grad_norm: a NaN norm turns every grad NaN, as torch",
                NULL);

    float af[2] = {3, 4}, bf[3] = {0, -12, 0};
    float *gf[2] = {af, bf};
    n = clip_grad_norm_f32(gf, numel, 2, 6.5);
    float cf = (float)(6.5 / (13 + 1e-6));
    test_report(n == 13 && af[0] == 3 * cf && af[1] == 4 * cf && bf[1] == -12 * cf,
                "clip_grad_norm f32: float32 coefficient, float64 norm", NULL);
    double big[5000];
    for (int i = 0; i < 5000; i++) big[i] = sin(0.37 * i) * 1e3;
    const double *bigs[1] = {big};
    float *bigf = to_f32(rounded_f32(big, 5000), 5000);
    const float *bigfs[1] = {bigf};
    const int64_t nb[1] = {5000};
    report_err("grad_norm f32 vs f64 (5000 entries, float64 accumulation)",
               scalar_rel_err(grad_norm_f32(bigfs, nb, 1), grad_norm_f64(bigs, nb, 1)), 1e-12);
    free_all();
}

int main(void) {
    test_kl_golden();
    test_kl_vs_torch();
    test_mse_values();
    test_output_grad(SPD_DIVERGENCE_KL, "kl");
    test_output_grad(SPD_DIVERGENCE_MSE, "mse");
    test_faithfulness_golden();
    test_faithfulness_grad();
    test_importance_golden();
    const double ps[3] = {2, 1, 0.5}, betas[2] = {0, 0.5}, Ws[2] = {1, 2};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 2; k++) test_importance_grad(ps[i], betas[j], Ws[k]);
    test_importance_at_zero();
    test_importance_vs_torch();
    test_importance_f32();
    test_p_anneal();
    test_schedules();
    test_grad_clip();
    return test_exit();
}
