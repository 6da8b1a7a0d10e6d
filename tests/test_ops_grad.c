// The CPU reference ops against finite differences in float64, plus forward
// checks against naive loops, float32 against float64, AdamW against a
// trajectory worked out by hand, and matmul against loops.
//
// Gradient checks: L = sum(out * R) for a random R, so dL/dout = R is fed to
// the backward. Central differences with h = 1e-6 have truncation error
// ~h^2 |f'''| ~ 1e-12 and rounding error ~eps |L| / h ~ 1e-16 * 10 / 1e-6
// = 1e-9 per entry on gradients of order 1, so a correct backward lands near
// 1e-9 in relative norm and a wrong one near 1: the bound is 1e-6.
// Parameter gradients are pre-filled with random values (they must accumulate),
// activation gradients with NaN (they must be written).
#define SPD_F64
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/philox.h"
#include "ops/adamw.h"
#include "ops/attention.h"
#include "ops/components.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "testing.h"

// The float32 twins (the headers above declare the _f64 names only).
void matmul_f32(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a, bool trans_b,
                float alpha, float beta);
void attention_forward_f32(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                           int nh, int nkv, int hd);
void attention_backward_f32(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *att, int B, int S, int nh, int nkv, int hd);
void components_forward_f32(float *out, float *a, const float *x, const float *V, const float *U,
                            const float *mask, const float *delta, const float *delta_mask, int N, int d_in, int C,
                            int d_out, float *scratch);
void components_backward_f32(float *dx, float *dV, float *dU, float *ddelta, float *dmask, float *ddelta_mask,
                             const float *dout, const float *x, const float *a, const float *V, const float *U,
                             const float *mask, const float *delta, const float *delta_mask, int N, int d_in,
                             int C, int d_out, float *scratch, bool add_dx);
void adamw_step_f32(float *param, const float *grad, float *m, float *v, size_t n, const spd_adamw_config *cfg,
                    int64_t t);

#define FD_H 1e-6
#define FD_TOL 1e-6
#define SEED 1234

#define TEST_NAME "test_ops_grad"
#define TEST_SEED SEED
#include "test_inputs.h"

// ---- matmul -------------------------------------------------------------------

static void test_matmul(void) {
    const int M = 5, N = 7, K = 3;
    for (int variant = 0; variant < 4; variant++) {
        bool ta = variant & 1, tb = variant & 2;
        double *A = normal((long)M * K, 1), *B = normal((long)K * N, 1), *C0 = normal((long)M * N, 1);
        double alpha = 0.7, beta = 0.3;
        double *want = tmalloc((size_t)M * N * sizeof(double));
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int p = 0; p < K; p++) s += (ta ? A[p * M + i] : A[i * K + p]) * (tb ? B[j * K + p] : B[p * N + j]);
                want[i * N + j] = alpha * s + beta * C0[i * N + j];
            }
        double *C = copy(C0, (long)M * N);
        matmul_f64(C, A, B, M, N, K, ta, tb, alpha, beta);
        char name[96];
        snprintf(name, sizeof name, "matmul f64 trans_a=%d trans_b=%d vs loops", ta, tb);
        report_err(name, max_rel_err(C, want, (long)M * N), 1e-14);
        float *Cf = to_f32(C0, (long)M * N);
        matmul_f32(Cf, to_f32(A, (long)M * K), to_f32(B, (long)K * N), M, N, K, ta, tb, (float)alpha, (float)beta);
        snprintf(name, sizeof name, "matmul f32 trans_a=%d trans_b=%d vs loops", ta, tb);
        report_err(name, max_rel_err(to_f64(Cf, (long)M * N), want, (long)M * N), 1e-6);
    }
    // K = 0: the product is empty, C = beta * C.
    double C[6] = {1, 2, 3, 4, 5, 6}, want[6] = {0.5, 1, 1.5, 2, 2.5, 3};
    matmul_f64(C, NULL, NULL, 2, 3, 0, false, false, 1, 0.5);
    report_err("matmul K=0 scales C by beta", max_rel_err(C, want, 6), 1e-15);
    free_all();
}

// ---- components ------------------------------------------------------------------

typedef struct {
    int N, d_in, C, d_out;
    double *x, *V, *U, *mask, *delta, *delta_mask, *R, *W;  // W: delta = W - (V U)^T recomputed
    double *out, *a, *scratch;
} comp_ctx;

static double comp_loss(void *p) {
    comp_ctx *c = p;
    if (c->W) weight_delta_forward_f64(c->delta, c->W, c->V, c->U, c->d_in, c->C, c->d_out);
    components_forward_f64(c->out, c->a, c->x, c->V, c->U, c->mask, c->delta, c->delta_mask, c->N, c->d_in, c->C,
                           c->d_out, c->scratch);
    return dot(c->out, c->R, (long)c->N * c->d_out);
}

static comp_ctx comp_setup(int N, int d_in, int C, int d_out, bool use_mask, bool use_delta) {
    comp_ctx c = {.N = N, .d_in = d_in, .C = C, .d_out = d_out};
    c.x = normal((long)N * d_in, 1);
    c.V = normal((long)d_in * C, 0.5);
    c.U = normal((long)C * d_out, 0.5);
    c.mask = use_mask ? uniform((long)N * C, 0, 1) : NULL;
    c.delta = use_delta ? normal((long)d_out * d_in, 0.3) : NULL;
    c.delta_mask = use_delta ? uniform(N, 0, 1) : NULL;
    c.R = normal((long)N * d_out, 1);
    c.out = filled((long)N * d_out, NAN);
    c.a = filled((long)N * C, NAN);
    c.scratch = filled((long)N * C, NAN);
    return c;
}

// Independent forward: out = ((x V) * mask) U + delta_mask * x delta^T with plain loops.
static void comp_forward_naive(const comp_ctx *c, double *out) {
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->d_out; o++) {
            double s = 0;
            for (int k = 0; k < c->C; k++) {
                double a = 0;
                for (int i = 0; i < c->d_in; i++) a += c->x[n * c->d_in + i] * c->V[i * c->C + k];
                s += a * (c->mask ? c->mask[n * c->C + k] : 1) * c->U[k * c->d_out + o];
            }
            if (c->delta) {
                double dd = 0;
                for (int i = 0; i < c->d_in; i++) dd += c->x[n * c->d_in + i] * c->delta[o * c->d_in + i];
                s += c->delta_mask[n] * dd;
            }
            out[n * c->d_out + o] = s;
        }
}

static void test_components(const char *tag, bool use_mask, bool use_delta) {
    const int N = 6, d_in = 5, C = 4, d_out = 3;
    comp_ctx c = comp_setup(N, d_in, C, d_out, use_mask, use_delta);
    char name[128];
    comp_loss(&c);
    double *want = tmalloc((size_t)N * d_out * sizeof(double));
    comp_forward_naive(&c, want);
    snprintf(name, sizeof name, "components %s: forward vs loops", tag);
    report_err(name, max_rel_err(c.out, want, (long)N * d_out), 1e-13);

    double *dV0 = normal((long)d_in * C, 1), *dU0 = normal((long)C * d_out, 1);
    double *ddelta0 = normal((long)d_out * d_in, 1);
    double *dx = filled((long)N * d_in, NAN), *dV = copy(dV0, (long)d_in * C), *dU = copy(dU0, (long)C * d_out);
    double *ddelta = use_delta ? copy(ddelta0, (long)d_out * d_in) : NULL;
    double *dmask = use_mask ? filled((long)N * C, NAN) : NULL;
    double *ddelta_mask = use_delta ? filled(N, NAN) : NULL;
    components_backward_f64(dx, dV, dU, ddelta, dmask, ddelta_mask, c.R, c.x, c.a, c.V, c.U, c.mask, c.delta,
                            c.delta_mask, N, d_in, C, d_out, c.scratch, false);
    subtract(dV, dV0, (long)d_in * C);
    subtract(dU, dU0, (long)C * d_out);
    snprintf(name, sizeof name, "components %s: dx", tag);
    check_fd(name, comp_loss, &c, c.x, dx, (long)N * d_in);
    snprintf(name, sizeof name, "components %s: dV", tag);
    check_fd(name, comp_loss, &c, c.V, dV, (long)d_in * C);
    snprintf(name, sizeof name, "components %s: dU", tag);
    check_fd(name, comp_loss, &c, c.U, dU, (long)C * d_out);
    if (use_mask) {
        snprintf(name, sizeof name, "components %s: dmask", tag);
        check_fd(name, comp_loss, &c, c.mask, dmask, (long)N * C);
    }
    {  // add_dx: the same dx added onto what dx held (the delta path then needs its own workspace)
        const long nx = (long)N * d_in;
        double *dx0 = normal(nx, 1), *dx_add = copy(dx0, nx), *want_add = copy(dx0, nx);
        for (long i = 0; i < nx; i++) want_add[i] += dx[i];
        double *ddm_add = use_delta ? filled(N, NAN) : NULL;
        components_backward_f64(dx_add, NULL, NULL, NULL, NULL, ddm_add, c.R, c.x, c.a, c.V, c.U, c.mask, c.delta,
                                c.delta_mask, N, d_in, C, d_out, c.scratch, true);
        double e = max_rel_err(dx_add, want_add, nx);
        if (use_delta) e = fmax(e, max_rel_err(ddm_add, ddelta_mask, N));
        snprintf(name, sizeof name, "components %s: add_dx adds the written dx", tag);
        report_err(name, e, 1e-14);
    }
    if (use_delta) {
        subtract(ddelta, ddelta0, (long)d_out * d_in);
        snprintf(name, sizeof name, "components %s: ddelta", tag);
        check_fd(name, comp_loss, &c, c.delta, ddelta, (long)d_out * d_in);
        snprintf(name, sizeof name, "components %s: ddelta_mask", tag);
        check_fd(name, comp_loss, &c, c.delta_mask, ddelta_mask, N);
        // Without dx the delta path runs in a temporary: same ddelta, ddelta_mask.
        double *ddelta2 = copy(ddelta0, (long)d_out * d_in), *ddm2 = filled(N, NAN);
        components_backward_f64(NULL, NULL, NULL, ddelta2, NULL, ddm2, c.R, c.x, c.a, c.V, c.U, c.mask, c.delta,
                                c.delta_mask, N, d_in, C, d_out, c.scratch, false);
        subtract(ddelta2, ddelta0, (long)d_out * d_in);
        double e = fmax(max_rel_err(ddelta2, ddelta, (long)d_out * d_in), max_rel_err(ddm2, ddelta_mask, N));
        snprintf(name, sizeof name, "components %s: dx NULL gives the same delta grads", tag);
        report_err(name, e, 1e-14);
    }
    free_all();
}

// delta = W - (V U)^T recomputed inside the loss: the direct grads plus
// weight_delta_backward must give the total dV, dU.
static void test_weight_delta_chain(void) {
    const int N = 6, d_in = 5, C = 4, d_out = 3;
    comp_ctx c = comp_setup(N, d_in, C, d_out, true, true);
    c.W = normal((long)d_out * d_in, 0.5);
    comp_loss(&c);
    double *want = copy(c.W, (long)d_out * d_in);
    for (int o = 0; o < d_out; o++)
        for (int i = 0; i < d_in; i++)
            for (int k = 0; k < C; k++) want[o * d_in + i] -= c.V[i * C + k] * c.U[k * d_out + o];
    report_err("weight_delta_forward vs loops", max_rel_err(c.delta, want, (long)d_out * d_in), 1e-14);

    double *dx = filled((long)N * d_in, NAN), *dV = filled((long)d_in * C, 0), *dU = filled((long)C * d_out, 0);
    double *ddelta = filled((long)d_out * d_in, 0);
    components_backward_f64(dx, dV, dU, ddelta, NULL, NULL, c.R, c.x, c.a, c.V, c.U, c.mask, c.delta, c.delta_mask,
                            N, d_in, C, d_out, c.scratch, false);
    weight_delta_backward_f64(dV, dU, ddelta, c.V, c.U, d_in, C, d_out);
    check_fd("weight_delta chain: total dV", comp_loss, &c, c.V, dV, (long)d_in * C);
    check_fd("weight_delta chain: total dU", comp_loss, &c, c.U, dU, (long)C * d_out);
    check_fd("weight_delta chain: dx", comp_loss, &c, c.x, dx, (long)N * d_in);
    free_all();
}

// ---- embedding components -----------------------------------------------------------

typedef struct {
    int N, vocab, C, d;
    int32_t *tokens;
    double *V, *U, *mask, *delta, *delta_mask, *R, *W;
    double *out, *a, *scratch;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    if (c->W) embedding_weight_delta_forward_f64(c->delta, c->W, c->V, c->U, c->vocab, c->C, c->d);
    embedding_components_forward_f64(c->out, c->a, c->tokens, c->V, c->U, c->mask, c->delta, c->delta_mask, c->N,
                                     c->vocab, c->C, c->d, c->scratch);
    return dot(c->out, c->R, (long)c->N * c->d);
}

static emb_ctx emb_setup(void) {
    emb_ctx c = {.N = 8, .vocab = 5, .C = 4, .d = 3};
    static const int32_t tokens[8] = {3, 0, 3, 4, 1, 3, 0, 2};  // repeats: dV and ddelta scatter-add
    c.tokens = tmalloc(sizeof tokens);
    memcpy(c.tokens, tokens, sizeof tokens);
    c.V = normal((long)c.vocab * c.C, 0.5);
    c.U = normal((long)c.C * c.d, 0.5);
    c.mask = uniform((long)c.N * c.C, 0, 1);
    c.delta = normal((long)c.vocab * c.d, 0.3);
    c.delta_mask = uniform(c.N, 0, 1);
    c.R = normal((long)c.N * c.d, 1);
    c.out = filled((long)c.N * c.d, NAN);
    c.a = filled((long)c.N * c.C, NAN);
    c.scratch = filled((long)c.N * c.C, NAN);
    return c;
}

static void test_embedding_components(void) {
    emb_ctx c = emb_setup();
    const int N = c.N, vocab = c.vocab, C = c.C, d = c.d;
    emb_loss(&c);
    double *want = tmalloc((size_t)N * d * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int i = 0; i < d; i++) {
            double s = c.delta_mask[n] * c.delta[c.tokens[n] * d + i];
            for (int k = 0; k < C; k++) s += c.V[c.tokens[n] * C + k] * c.mask[n * C + k] * c.U[k * d + i];
            want[n * d + i] = s;
        }
    report_err("embedding components: forward vs loops", max_rel_err(c.out, want, (long)N * d), 1e-13);

    double *dV0 = normal((long)vocab * C, 1), *dU0 = normal((long)C * d, 1), *ddelta0 = normal((long)vocab * d, 1);
    double *dV = copy(dV0, (long)vocab * C), *dU = copy(dU0, (long)C * d), *ddelta = copy(ddelta0, (long)vocab * d);
    double *dmask = filled((long)N * C, NAN), *ddelta_mask = filled(N, NAN);
    embedding_components_backward_f64(dV, dU, ddelta, dmask, ddelta_mask, c.R, c.tokens, c.a, c.V, c.U, c.mask,
                                      c.delta, c.delta_mask, N, vocab, C, d, c.scratch);
    subtract(dV, dV0, (long)vocab * C);
    subtract(dU, dU0, (long)C * d);
    subtract(ddelta, ddelta0, (long)vocab * d);
    check_fd("embedding components with delta: dV", emb_loss, &c, c.V, dV, (long)vocab * C);
    check_fd("embedding components with delta: dU", emb_loss, &c, c.U, dU, (long)C * d);
    check_fd("embedding components with delta: ddelta", emb_loss, &c, c.delta, ddelta, (long)vocab * d);
    check_fd("embedding components with delta: dmask", emb_loss, &c, c.mask, dmask, (long)N * C);
    check_fd("embedding components with delta: ddelta_mask", emb_loss, &c, c.delta_mask, ddelta_mask, N);

    // The chain through delta = W - V U.
    c.W = normal((long)vocab * d, 0.5);
    emb_loss(&c);
    dV = filled((long)vocab * C, 0), dU = filled((long)C * d, 0), ddelta = filled((long)vocab * d, 0);
    embedding_components_backward_f64(dV, dU, ddelta, NULL, NULL, c.R, c.tokens, c.a, c.V, c.U, c.mask, c.delta,
                                      c.delta_mask, N, vocab, C, d, c.scratch);
    embedding_weight_delta_backward_f64(dV, dU, ddelta, c.V, c.U, vocab, C, d);
    check_fd("embedding weight_delta chain: total dV", emb_loss, &c, c.V, dV, (long)vocab * C);
    check_fd("embedding weight_delta chain: total dU", emb_loss, &c, c.U, dU, (long)C * d);

    double *emb = filled((long)N * d, NAN);
    embedding_forward_f64(emb, c.tokens, c.W, N, d);
    double e = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < d; i++) e = fmax(e, fabs(emb[n * d + i] - c.W[c.tokens[n] * d + i]));
    test_report(e == 0, "embedding_forward gathers rows exactly", "max abs err %.3e", e);
    free_all();
}

// ---- rmsnorm ----------------------------------------------------------------------

typedef struct {
    int N, d;
    double *x, *w, *R, *out, *rstd;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    rmsnorm_forward_f64(c->out, c->rstd, c->x, c->w, c->N, c->d, 1e-6);
    return dot(c->out, c->R, (long)c->N * c->d);
}

static void test_rmsnorm(void) {
    rms_ctx c = {.N = 5, .d = 7};
    long n = (long)c.N * c.d;
    c.x = normal(n, 1), c.w = uniform(c.d, 0.5, 1.5), c.R = normal(n, 1);
    c.out = filled(n, NAN), c.rstd = filled(c.N, NAN);
    rms_loss(&c);
    double *want = tmalloc((size_t)n * sizeof(double));
    for (int r = 0; r < c.N; r++) {
        double ms = 0;
        for (int i = 0; i < c.d; i++) ms += c.x[r * c.d + i] * c.x[r * c.d + i] / c.d;
        for (int i = 0; i < c.d; i++) want[r * c.d + i] = c.w[i] * c.x[r * c.d + i] / sqrt(ms + 1e-6);
    }
    report_err("rmsnorm: forward vs loops", max_rel_err(c.out, want, n), 1e-14);
    double *dx = filled(n, NAN), *dw0 = normal(c.d, 1), *dw = copy(dw0, c.d);
    rmsnorm_backward_f64(dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.d, false);
    subtract(dw, dw0, c.d);
    check_fd("rmsnorm: dx", rms_loss, &c, c.x, dx, n);
    check_fd("rmsnorm: dw", rms_loss, &c, c.w, dw, c.d);
    // add_dx: the same gradient added onto what dx held, as a separate add would give it.
    double *dx0 = normal(n, 1), *dx_add = copy(dx0, n);
    rmsnorm_backward_f64(dx_add, NULL, c.R, c.x, c.w, c.rstd, c.N, c.d, true);
    long bad = -1;
    for (long i = 0; i < n && bad < 0; i++)
        if (dx_add[i] != dx0[i] + dx[i]) bad = i;
    if (bad < 0) test_report(1, "rmsnorm: add_dx adds the written dx, bit for bit", NULL);
    else test_report(0, "rmsnorm: add_dx adds the written dx, bit for bit", "first difference at %ld", bad);
    free_all();
}

// ---- rope ------------------------------------------------------------------------------

typedef struct {
    int B, S, nh, hd, n_ctx;
    bool adjacent;
    double *x, *y, *cos_t, *sin_t, *R;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    long n = (long)c->B * c->S * c->nh * c->hd;
    memcpy(c->y, c->x, (size_t)n * sizeof(double));
    rope_forward_f64(c->y, c->cos_t, c->sin_t, c->B, c->S, c->nh, c->hd, c->n_ctx, c->adjacent);
    return dot(c->y, c->R, n);
}

static void test_rope(bool adjacent) {
    const char *tag = adjacent ? "adjacent pairs" : "rotate half";
    // S > n_ctx: the last rows use position n_ctx - 1.
    rope_ctx c = {.B = 2, .S = 6, .nh = 3, .hd = 8, .n_ctx = 4, .adjacent = adjacent};
    long n = (long)c.B * c.S * c.nh * c.hd;
    const double base = 10000;
    const int h = c.hd / 2;
    c.x = normal(n, 1), c.y = filled(n, NAN), c.R = normal(n, 1);
    c.cos_t = filled((long)c.n_ctx * c.hd, NAN), c.sin_t = filled((long)c.n_ctx * c.hd, NAN);
    rope_tables_f64(c.cos_t, c.sin_t, c.n_ctx, c.hd, base, adjacent);
    rope_loss(&c);
    // x' = x cos + rot(x) sin, written straight from SPD_SPEC 7.1.
    double *want = tmalloc((size_t)n * sizeof(double));
    for (int b = 0; b < c.B; b++)
        for (int s = 0; s < c.S; s++)
            for (int hh = 0; hh < c.nh; hh++) {
                const double *xh = c.x + ((b * c.S + s) * c.nh + hh) * c.hd;
                double pos = s < c.n_ctx ? s : c.n_ctx - 1;
                for (int i = 0; i < c.hd; i++) {
                    int j = adjacent ? i / 2 : i % h;
                    double rot;
                    if (adjacent) rot = i % 2 == 0 ? -xh[i + 1] : xh[i - 1];
                    else rot = i < h ? -xh[i + h] : xh[i - h];
                    double angle = pos * pow(base, -(double)j / h);
                    want[((b * c.S + s) * c.nh + hh) * c.hd + i] = xh[i] * cos(angle) + rot * sin(angle);
                }
            }
    char name[96];
    snprintf(name, sizeof name, "rope %s: forward vs formula", tag);
    report_err(name, max_rel_err(c.y, want, n), 1e-13);
    double *dx = copy(c.R, n);
    rope_backward_f64(dx, c.cos_t, c.sin_t, c.B, c.S, c.nh, c.hd, c.n_ctx, adjacent);
    snprintf(name, sizeof name, "rope %s: dx", tag);
    check_fd(name, rope_loss, &c, c.x, dx, n);
    free_all();
}

// ---- attention --------------------------------------------------------------------------

typedef struct {
    int B, S, nh, nkv, hd;
    double *q, *k, *v, *out, *att, *R;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward_f64(c->out, c->att, c->q, c->k, c->v, c->B, c->S, c->nh, c->nkv, c->hd);
    return dot(c->out, c->R, (long)c->B * c->S * c->nh * c->hd);
}

// Independent forward: repeat_interleave the kv heads, masked softmax with -inf.
static void att_forward_naive(const att_ctx *c, double *out, double *att) {
    const int S = c->S, hd = c->hd, rep = c->nh / c->nkv;
    for (int b = 0; b < c->B; b++)
        for (int hq = 0; hq < c->nh; hq++) {
            int hk = hq / rep;
            for (int s = 0; s < S; s++) {
                double *p = att + ((b * c->nh + hq) * S + s) * S;
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t < S; t++) {
                    double sc = -INFINITY;
                    if (t <= s) {
                        sc = 0;
                        for (int i = 0; i < hd; i++)
                            sc += c->q[((b * S + s) * c->nh + hq) * hd + i] * c->k[((b * S + t) * c->nkv + hk) * hd + i];
                        sc /= sqrt(hd);
                    }
                    p[t] = sc;
                    mx = fmax(mx, sc);
                }
                for (int t = 0; t < S; t++) sum += p[t] = exp(p[t] - mx);
                for (int t = 0; t < S; t++) p[t] /= sum;
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int t = 0; t < S; t++) o += p[t] * c->v[((b * S + t) * c->nkv + hk) * hd + i];
                    out[((b * S + s) * c->nh + hq) * hd + i] = o;
                }
            }
        }
}

static void test_attention(int nh, int nkv) {
    att_ctx c = {.B = 2, .S = 5, .nh = nh, .nkv = nkv, .hd = 4};
    long nq = (long)c.B * c.S * nh * c.hd, nk = (long)c.B * c.S * nkv * c.hd, na = (long)c.B * nh * c.S * c.S;
    c.q = normal(nq, 1), c.k = normal(nk, 1), c.v = normal(nk, 1), c.R = normal(nq, 1);
    c.out = filled(nq, NAN), c.att = filled(na, NAN);
    att_loss(&c);
    double *want_out = tmalloc((size_t)nq * sizeof(double)), *want_att = tmalloc((size_t)na * sizeof(double));
    att_forward_naive(&c, want_out, want_att);
    char name[96];
    snprintf(name, sizeof name, "attention nh=%d nkv=%d: forward out vs naive", nh, nkv);
    report_err(name, max_rel_err(c.out, want_out, nq), 1e-13);
    // exact zeros above the diagonal are part of the contract: compare bitwise there
    double e = max_rel_err(c.att, want_att, na);
    for (long i = 0; i < na; i++)
        if ((i % c.S) > (i / c.S) % c.S && c.att[i] != 0) e = INFINITY;
    snprintf(name, sizeof name, "attention nh=%d nkv=%d: forward att vs naive, zero above diagonal", nh, nkv);
    report_err(name, e, 1e-13);

    double *dq = filled(nq, NAN), *dk = filled(nk, NAN), *dv = filled(nk, NAN);
    attention_backward_f64(dq, dk, dv, c.R, c.q, c.k, c.v, c.out, c.att, c.B, c.S, nh, nkv, c.hd);
    snprintf(name, sizeof name, "attention nh=%d nkv=%d: dq", nh, nkv);
    check_fd(name, att_loss, &c, c.q, dq, nq);
    snprintf(name, sizeof name, "attention nh=%d nkv=%d: dk", nh, nkv);
    check_fd(name, att_loss, &c, c.k, dk, nk);
    snprintf(name, sizeof name, "attention nh=%d nkv=%d: dv", nh, nkv);
    check_fd(name, att_loss, &c, c.v, dv, nk);
    free_all();
}

// ---- swiglu, linear, losses -----------------------------------------------------------------

typedef struct {
    long n;
    double *gate, *up, *out, *R;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    swiglu_forward_f64(c->out, c->gate, c->up, c->n);
    return dot(c->out, c->R, c->n);
}

static void test_swiglu(void) {
    swiglu_ctx c = {.n = 40};
    c.gate = normal(c.n, 3), c.up = normal(c.n, 1), c.out = filled(c.n, NAN), c.R = normal(c.n, 1);
    swiglu_loss(&c);
    double *want = tmalloc((size_t)c.n * sizeof(double));
    for (long i = 0; i < c.n; i++) want[i] = c.gate[i] / (1 + exp(-c.gate[i])) * c.up[i];
    report_err("swiglu: forward vs formula", max_rel_err(c.out, want, c.n), 1e-14);
    double *dgate = filled(c.n, NAN), *dup = filled(c.n, NAN);
    swiglu_backward_f64(dgate, dup, c.R, c.gate, c.up, c.n);
    check_fd("swiglu: dgate", swiglu_loss, &c, c.gate, dgate, c.n);
    check_fd("swiglu: dup", swiglu_loss, &c, c.up, dup, c.n);
    free_all();
}

typedef struct {
    int N, d_in, d_out;
    double *x, *W, *bias, *out, *R;
} linear_ctx;

static double linear_loss(void *p) {
    linear_ctx *c = p;
    linear_forward_f64(c->out, c->x, c->W, c->bias, c->N, c->d_in, c->d_out);
    return dot(c->out, c->R, (long)c->N * c->d_out);
}

static void test_linear(void) {
    linear_ctx c = {.N = 6, .d_in = 5, .d_out = 4};
    long nx = (long)c.N * c.d_in, no = (long)c.N * c.d_out;
    c.x = normal(nx, 1), c.W = normal((long)c.d_out * c.d_in, 1), c.bias = normal(c.d_out, 1);
    c.out = filled(no, NAN), c.R = normal(no, 1);
    linear_loss(&c);
    double *want = tmalloc((size_t)no * sizeof(double));
    for (int n = 0; n < c.N; n++)
        for (int o = 0; o < c.d_out; o++) {
            double s = c.bias[o];
            for (int i = 0; i < c.d_in; i++) s += c.x[n * c.d_in + i] * c.W[o * c.d_in + i];
            want[n * c.d_out + o] = s;
        }
    report_err("linear: forward with bias vs loops", max_rel_err(c.out, want, no), 1e-14);
    double *dx = filled(nx, NAN);
    linear_backward_f64(dx, c.R, c.W, c.N, c.d_in, c.d_out, false);
    check_fd("linear: dx", linear_loss, &c, c.x, dx, nx);
    double *dx0 = normal(nx, 1), *dx_add = copy(dx0, nx), *want_add = copy(dx0, nx);
    for (long i = 0; i < nx; i++) want_add[i] += dx[i];
    linear_backward_f64(dx_add, c.R, c.W, c.N, c.d_in, c.d_out, true);
    report_err("linear: add_dx adds the written dx", max_rel_err(dx_add, want_add, nx), 1e-14);
    free_all();
}

typedef struct {
    long n;
    double *y, *target;
} loss_ctx;

static double mse_loss(void *p) {
    loss_ctx *c = p;
    double loss;
    mse_loss_forward_f64(&loss, c->y, c->target, c->n);
    return loss;
}

static double mean_loss(void *p) {
    loss_ctx *c = p;
    double loss;
    mean_loss_forward_f64(&loss, c->y, c->n);
    return loss;
}

static void test_losses(void) {
    loss_ctx c = {.n = 30};
    c.y = normal(c.n, 1), c.target = normal(c.n, 1);
    double want = 0;
    for (long i = 0; i < c.n; i++) want += (c.y[i] - c.target[i]) * (c.y[i] - c.target[i]) / c.n;
    report_err("mse loss: forward vs formula", fabs(mse_loss(&c) - want) / want, 1e-14);
    double *dy = filled(c.n, NAN);
    mse_loss_backward_f64(dy, c.y, c.target, c.n);
    check_fd("mse loss: dy", mse_loss, &c, c.y, dy, c.n);
    // The one-pass value and gradient (the isolated benchmark's loss) give the same numbers.
    double *dy1 = filled(c.n, NAN), loss1;
    mse_loss_forward_backward_f64(&loss1, dy1, c.y, c.target, c.n);
    test_report(loss1 == mse_loss(&c), "mse loss: one pass, the forward's value bit for bit", "differs");
    test_report(memcmp(dy1, dy, (size_t)c.n * sizeof *dy) == 0, "mse loss: one pass, the backward's dy bit for bit",
                "differs");
    mean_loss_backward_f64(dy, c.n);
    check_fd("mean loss: dlogits", mean_loss, &c, c.y, dy, c.n);
    free_all();
}

// ---- float32 against float64 --------------------------------------------------------------

// Inputs rounded to float32 first, so the two runs see the same numbers and
// the difference is the float32 arithmetic alone (float32 eps 6e-8 times
// sums of ~100 terms): bound 1e-5.
static void report_f32(const char *name, const float *got, const double *want, long n) {
    report_err(name, test_rel_norm_err(to_f64(got, n), want, n), 1e-5);
}

static double *rounded_f32(double *p, long n) {
    for (long i = 0; i < n; i++) p[i] = (float)p[i];
    return p;
}

static void test_attention_f32(void) {
    // the CPU benchmark's shape
    const int B = 2, S = 128, nh = 4, nkv = 2, hd = 32;
    long nq = (long)B * S * nh * hd, nk = (long)B * S * nkv * hd, na = (long)B * nh * S * S;
    double *q = rounded_f32(normal(nq, 1), nq), *k = rounded_f32(normal(nk, 1), nk);
    double *v = rounded_f32(normal(nk, 1), nk), *g = rounded_f32(normal(nq, 1), nq);
    double *out = tmalloc(nq * sizeof(double)), *att = tmalloc(na * sizeof(double));
    double *dq = tmalloc(nq * sizeof(double)), *dk = tmalloc(nk * sizeof(double)), *dv = tmalloc(nk * sizeof(double));
    attention_forward_f64(out, att, q, k, v, B, S, nh, nkv, hd);
    attention_backward_f64(dq, dk, dv, g, q, k, v, out, att, B, S, nh, nkv, hd);
    float *qf = to_f32(q, nq), *kf = to_f32(k, nk), *vf = to_f32(v, nk), *gf = to_f32(g, nq);
    float *outf = tmalloc(nq * sizeof(float)), *attf = tmalloc(na * sizeof(float));
    float *dqf = tmalloc(nq * sizeof(float)), *dkf = tmalloc(nk * sizeof(float)), *dvf = tmalloc(nk * sizeof(float));
    attention_forward_f32(outf, attf, qf, kf, vf, B, S, nh, nkv, hd);
    attention_backward_f32(dqf, dkf, dvf, gf, qf, kf, vf, outf, attf, B, S, nh, nkv, hd);
    report_f32("attention f32 vs f64 (B=2 S=128 nh=4 nkv=2 hd=32): out", outf, out, nq);
    report_f32("attention f32 vs f64: att", attf, att, na);
    report_f32("attention f32 vs f64: dq", dqf, dq, nq);
    report_f32("attention f32 vs f64: dk", dkf, dk, nk);
    report_f32("attention f32 vs f64: dv", dvf, dv, nk);
    free_all();
}

static void test_components_f32(void) {
    const int N = 64, d_in = 48, C = 40, d_out = 32;
    long nx = (long)N * d_in, nV = (long)d_in * C, nU = (long)C * d_out, nm = (long)N * C, no = (long)N * d_out;
    long nd = (long)d_out * d_in;
    double *x = rounded_f32(normal(nx, 1), nx), *V = rounded_f32(normal(nV, 0.2), nV);
    double *U = rounded_f32(normal(nU, 0.2), nU), *mask = rounded_f32(uniform(nm, 0, 1), nm);
    double *delta = rounded_f32(normal(nd, 0.2), nd), *dm = rounded_f32(uniform(N, 0, 1), N);
    double *g = rounded_f32(normal(no, 1), no);
    double *out = tmalloc(no * sizeof(double)), *a = tmalloc(nm * sizeof(double)), *scr = tmalloc(nm * sizeof(double));
    double *dx = tmalloc(nx * sizeof(double)), *dV = filled(nV, 0), *dU = filled(nU, 0), *dd = filled(nd, 0);
    double *dmask = tmalloc(nm * sizeof(double)), *ddm = tmalloc(N * sizeof(double));
    components_forward_f64(out, a, x, V, U, mask, delta, dm, N, d_in, C, d_out, scr);
    components_backward_f64(dx, dV, dU, dd, dmask, ddm, g, x, a, V, U, mask, delta, dm, N, d_in, C, d_out, scr,
                            false);
    float *xf = to_f32(x, nx), *Vf = to_f32(V, nV), *Uf = to_f32(U, nU), *maskf = to_f32(mask, nm);
    float *deltaf = to_f32(delta, nd), *dmf = to_f32(dm, N), *gf = to_f32(g, no);
    float *outf = tmalloc(no * sizeof(float)), *af = tmalloc(nm * sizeof(float)), *scrf = tmalloc(nm * sizeof(float));
    float *dxf = tmalloc(nx * sizeof(float)), *dVf = to_f32(filled(nV, 0), nV), *dUf = to_f32(filled(nU, 0), nU);
    float *ddf = to_f32(filled(nd, 0), nd), *dmaskf = tmalloc(nm * sizeof(float)), *ddmf = tmalloc(N * sizeof(float));
    components_forward_f32(outf, af, xf, Vf, Uf, maskf, deltaf, dmf, N, d_in, C, d_out, scrf);
    components_backward_f32(dxf, dVf, dUf, ddf, dmaskf, ddmf, gf, xf, af, Vf, Uf, maskf, deltaf, dmf, N, d_in, C,
                            d_out, scrf, false);
    report_f32("components f32 vs f64 (mask, delta): out", outf, out, no);
    report_f32("components f32 vs f64: dx", dxf, dx, nx);
    report_f32("components f32 vs f64: dV", dVf, dV, nV);
    report_f32("components f32 vs f64: dU", dUf, dU, nU);
    report_f32("components f32 vs f64: ddelta", ddf, dd, nd);
    report_f32("components f32 vs f64: dmask", dmaskf, dmask, nm);
    report_f32("components f32 vs f64: ddelta_mask", ddmf, ddm, N);
    free_all();
}

// ---- AdamW ------------------------------------------------------------------------------------

// Expected values: torch.optim.AdamW's single-tensor update written out in
// Python floats (float64), exp_avg by lerp as torch does it:
//   p *= 1 - lr*wd; m += (1-b1)(g - m); v = b2 v + (1-b2) g^2
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// with lr 1e-2, betas (0.9, 0.999), eps 1e-8, wd 0.1. Step 1 by hand for
// p = 0.5, g = 0.1: p = 0.4995, m = 0.01, v = 1e-5, denom = 0.1 + 1e-8,
// p = 0.4995 - 0.01 (1 - 1e-7) = 0.489500001.
static void test_adamw(void) {
    const spd_adamw_config cfg = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    const double grads[2][4] = {{0.1, -0.3, 0.0, 1e-3}, {-0.2, 0.05, 0.7, 2.5}};
    const double want_p[2][4] = {{0.4895000009999999, -1.2387500003333334, 1.998, -0.009999900000999989},
                                 {0.49267153603784886, -1.2321258750641877, 1.988560631914631, -0.017433946592206123}};
    const double want_m[4] = {-0.011, -0.021999999999999995, 0.06999999999999998, 0.2500899999999999};
    const double want_v[4] = {4.9990000000000055e-05, 9.241000000000009e-05, 0.0004900000000000003,
                              0.0062500009990000055};
    double p[4] = {0.5, -1.25, 2.0, 0.0}, m[4] = {0}, v[4] = {0};
    float pf[4] = {0.5f, -1.25f, 2.0f, 0.0f}, mf[4] = {0}, vf[4] = {0};
    for (int t = 1; t <= 2; t++) {
        float gf[4];
        for (int i = 0; i < 4; i++) gf[i] = (float)grads[t - 1][i];
        adamw_step_f64(p, grads[t - 1], m, v, 4, &cfg, t);
        adamw_step_f32(pf, gf, mf, vf, 4, &cfg, t);
        char name[64];
        snprintf(name, sizeof name, "adamw f64 step %d params", t);
        report_err(name, max_rel_err(p, want_p[t - 1], 4), 1e-14);
        // float32 grads are the rounded ones, so the bound is float32's
        snprintf(name, sizeof name, "adamw f32 step %d params", t);
        double pd[4] = {pf[0], pf[1], pf[2], pf[3]};
        report_err(name, max_rel_err(pd, want_p[t - 1], 4), 1e-6);
    }
    double e = fmax(max_rel_err(m, want_m, 4), max_rel_err(v, want_v, 4));
    report_err("adamw f64 moments after 2 steps", e, 1e-14);
}

int main(void) {
    test_matmul();
    test_components("mask", true, false);
    test_components("no mask", false, false);
    test_components("mask+delta", true, true);
    test_weight_delta_chain();
    test_embedding_components();
    test_rmsnorm();
    test_rope(false);
    test_rope(true);
    test_attention(4, 2);
    test_attention(2, 2);
    test_swiglu();
    test_linear();
    test_losses();
    test_attention_f32();
    test_components_f32();
    test_adamw();
    return test_exit();
}
