#include "core/real.h"
#include "ops/ci_fn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "core/philox.h"
#include "ops/gelu.h"
#include "ops/matmul.h"

// Layouts: hidden activations of the parallel types are [N, C, h] (one row of
// C*h per position), so vector_mlp's first layer is a single GEMM
// x [N, d_in] @ W' [d_in, C*h] with W' = W0 permuted from [C, d_in, h] to
// [d_in, C, h] in the workspace: 2 N C d_in h flops at BLAS speed instead of C
// thin GEMMs. The later parallel layers are h x h' per (position, component):
// plain loops.
//
// Workspace: [W' (vector_mlp only): d_in * C * h1][g0][g1], g0/g1 the
// gradients of two consecutive hidden layers (g1 only with >= 2 hidden layers).

// Threads (OpenMP, when built with it) split the per-position loops over positions
// and the sums over positions by output column, so every value is computed in
// the same order as by one thread: results do not depend on the thread count.
#define PAR_MIN 16384  // elements below which a thread team costs more than it saves

// Precision-free helpers: this file is compiled once per precision, so they
// are defined in the float32 object only.

// ---- building blocks ----------------------------------------------------------

// W0 [C, d_in, h] -> Wt [d_in, C*h]
static void permute_first_layer(real *Wt, const real *W0, int C, int d_in, int h) {
    for (int c = 0; c < C; c++)
        for (int i = 0; i < d_in; i++)
            memcpy(Wt + ((size_t)i * C + c) * h, W0 + ((size_t)c * d_in + i) * h, (size_t)h * sizeof(real));
}

// y [N, cols] += b [cols] on every row
static void add_bias(real *y, const real *b, int N, long cols) {
#pragma omp parallel for schedule(static) if ((long)N * cols >= PAR_MIN)
    for (long n = 0; n < N; n++)
        for (long j = 0; j < cols; j++) y[n * cols + j] += b[j];
}

// db [cols] += sum over rows of g [N, cols], summed in float64
static void bias_grad(real *db, const real *g, int N, long cols) {
#pragma omp parallel if ((long)N * cols >= PAR_MIN && cols >= 64)
    {
        long j0 = 0, j1 = cols;  // this thread's columns
#ifdef _OPENMP
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        j0 = cols * id / nt;
        j1 = cols * (id + 1) / nt;
#endif
        double acc[256];
        for (long jb = j0; jb < j1; jb += 256) {
            long w = j1 - jb < 256 ? j1 - jb : 256;
            for (long j = 0; j < w; j++) acc[j] = 0;
            for (long n = 0; n < N; n++)
                for (long j = 0; j < w; j++) acc[j] += g[n * cols + jb + j];
            for (long j = 0; j < w; j++) db[jb + j] += (real)acc[j];
        }
    }
}

// ParallelLinear: in [N, C, wi], W [C, wi, wo], b [C, wo] -> out [N, C, wo]
static void parallel_forward(real *out, const real *in, const real *W, const real *b, int N, int C, int wi,
                             int wo) {
#pragma omp parallel for schedule(static) if ((long)N * C * (wi + wo) >= PAR_MIN)
    for (long n = 0; n < N; n++)
        for (long c = 0; c < C; c++) {
            const real *xi = in + (n * C + c) * wi, *Wc = W + c * wi * wo;
            real *yo = out + (n * C + c) * wo;
            for (int o = 0; o < wo; o++) {
                real s = 0;
                for (int i = 0; i < wi; i++) s += xi[i] * Wc[(long)i * wo + o];
                yo[o] = s + b[c * wo + o];
            }
        }
}

// g [N, C, wo] -> dW [C, wi, wo] += sum_n in^T g, db [C, wo] += sum_n g (float64 sums),
// gin [N, C, wi] = g W^T (written). Any output may be NULL.
static void parallel_backward(real *gin, real *dW, real *db, const real *g, const real *in, const real *W, int N,
                              int C, int wi, int wo) {
    double *accW = dW ? spd_calloc((size_t)C * wi * wo, sizeof(double)) : NULL;
    // Components are independent: each thread takes a range of them and walks the
    // positions in order (rows stay streamed), so every sum runs over n as with one thread.
#pragma omp parallel if ((long)N * C * wi * wo >= PAR_MIN && C >= 2)
    {
        long c0 = 0, c1 = C;
#ifdef _OPENMP
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        c0 = (long)C * id / nt;
        c1 = (long)C * (id + 1) / nt;
#endif
        for (long n = 0; n < N; n++)
            for (long c = c0; c < c1; c++) {
                const real *gc = g + (n * C + c) * wo, *xi = in + (n * C + c) * wi, *Wc = W + c * wi * wo;
                for (int i = 0; i < wi; i++) {
                    if (accW) {
                        double *a = accW + (c * wi + i) * wo;
                        for (int o = 0; o < wo; o++) a[o] += (double)xi[i] * gc[o];
                    }
                    if (gin) {
                        real s = 0;
                        for (int o = 0; o < wo; o++) s += gc[o] * Wc[(long)i * wo + o];
                        gin[(n * C + c) * wi + i] = s;
                    }
                }
            }
    }
    if (accW) {
        for (size_t j = 0; j < (size_t)C * wi * wo; j++) dW[j] += (real)accW[j];
        free(accW);
    }
    if (db) bias_grad(db, g, N, (long)C * wo);
}

// ---- mlp with one hidden layer, fused ----------------------------------------------
//
// SPD's default CI function (mlp, hidden [h]): per (position, component) a scalar
// a -> h GELU units -> 1. With f->cdf set, forward makes one pass per row and saves
// only Phi(pre) (cdf [N, C, h]); backward recomputes pre = a W0 + b0 and post =
// pre Phi(pre) from it (cheap) instead of reading them back: a third of the memory
// traffic of the layer-by-layer path. Every value is computed by the same
// expression in the same order as that path (layer_forward / gelu_forward_cdf /
// parallel_backward / bias_grad), so results are the same bits.

#ifdef SPD_F64
#define FUSED_ERF erf
#define FUSED_EXP exp
#else
#define FUSED_ERF erff
#define FUSED_EXP expf
#endif

static bool fused_mlp(const ci_fn *f) {
    return f->arch.kind == SPD_CI_MLP && f->arch.n_layers == 2 && f->cdf[0] && f->arch.width[2] == 1;
}

static void fused_mlp_forward(ci_fn *f, real *out, const real *a, int N) {
    const int C = f->arch.C, h = f->arch.width[1];
    const real *W0 = f->W[0], *b0 = f->b[0], *W1 = f->W[1], *b1 = f->b[1];
    const real rsqrt2 = (real)M_SQRT1_2;
    real *cdf = f->cdf[0];
#pragma omp parallel for schedule(static) if ((long)N * C * h >= PAR_MIN)
    for (long n = 0; n < N; n++)
        for (long c = 0; c < C; c++) {
            const real x = a[n * C + c];
            real *cd = cdf + (n * C + c) * h;
            real s = 0;
            for (int j = 0; j < h; j++) {
                real s0 = 0;
                s0 += x * W0[c * h + j];
                const real v = s0 + b0[c * h + j];
                const real e = (real)1 + FUSED_ERF(v * rsqrt2);
                cd[j] = (real)0.5 * e;
                s += v * (real)0.5 * e * W1[c * h + j];
            }
            out[n * C + c] = s + b1[c];
        }
}

static void fused_mlp_backward(ci_fn *f, real *din, const real *dout, const real *a, int N) {
    const int C = f->arch.C, h = f->arch.width[1];
    const real *W0 = f->W[0], *b0 = f->b[0], *W1 = f->W[1], *cdf = f->cdf[0];
    const real inv_sqrt_2pi = (real)(M_2_SQRTPI * M_SQRT1_2 * 0.5);
    double *acc = spd_calloc((size_t)C * (3 * h + 1), sizeof(double));  // dW1, dW0, db0 [C, h]; db1 [C]
    double *aW1 = acc, *aW0 = acc + (size_t)C * h, *ab0 = acc + 2 * (size_t)C * h, *ab1 = acc + 3 * (size_t)C * h;
#pragma omp parallel if ((long)N * C * h >= PAR_MIN && C >= 2)
    {
        long c0 = 0, c1 = C;
#ifdef _OPENMP
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        c0 = (long)C * id / nt;
        c1 = (long)C * (id + 1) / nt;
#endif
        for (long n = 0; n < N; n++)
            for (long c = c0; c < c1; c++) {
                const real x = a[n * C + c], g1 = dout[n * C + c];
                const real *cd = cdf + (n * C + c) * h;
                real sd = 0;
                for (int j = 0; j < h; j++) {
                    real s0 = 0;
                    s0 += x * W0[c * h + j];
                    const real v = s0 + b0[c * h + j];
                    const real post = v * cd[j];  // = v * 0.5 * e: 0.5 e is exact
                    aW1[c * h + j] += (double)post * g1;
                    real gp = 0;
                    gp += g1 * W1[c * h + j];
                    const real pdf = FUSED_EXP((real)-0.5 * v * v) * inv_sqrt_2pi;
                    const real g0 = gp * (cd[j] + v * pdf);
                    aW0[c * h + j] += (double)x * g0;
                    ab0[c * h + j] += g0;
                    sd += g0 * W0[c * h + j];
                }
                ab1[c] += g1;
                if (din) din[n * C + c] = sd;
            }
    }
    for (long k = 0; k < (long)C * h; k++) {
        if (f->dW[1]) f->dW[1][k] += (real)aW1[k];
        if (f->dW[0]) f->dW[0][k] += (real)aW0[k];
        if (f->db[0]) f->db[0][k] += (real)ab0[k];
    }
    if (f->db[1])
        for (long c = 0; c < C; c++) f->db[1][c] += (real)ab1[c];
    free(acc);
}

// ---- forward ---------------------------------------------------------------------

// Linear layer k: in -> out, both in this type's layout.
static void layer_forward(ci_fn *f, int k, real *out, const real *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    int wi = a->width[k], wo = a->width[k + 1], C = a->C;
    if (a->kind == SPD_CI_SHARED_MLP) {  // in [N, wi] @ W [wi, wo] + b
        RFN(matmul)(out, in, f->W[k], N, wo, wi, false, false, 1, 0);
        add_bias(out, f->b[k], N, wo);
    } else if (a->kind == SPD_CI_VECTOR_MLP && k == 0) {  // x [N, d_in] @ W' [d_in, C*wo] + b [C*wo]
        permute_first_layer(f->work, f->W[0], C, wi, wo);
        RFN(matmul)(out, in, f->work, N, C * wo, wi, false, false, 1, 0);
        add_bias(out, f->b[0], N, (long)C * wo);
    } else {  // mlp's first layer reads a [N, C] as [N, C, 1]
        parallel_forward(out, in, f->W[k], f->b[k], N, C, wi, wo);
    }
}

// in [N, input width] -> pre[k], post[k] per hidden layer -> pre_sigmoid [N, C]
void RFN(ci_fn_forward)(ci_fn *f, real *pre_sigmoid, const real *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    SPD_ASSERT(a->n_layers >= 1 && a->n_layers <= SPD_CI_FN_MAX_LAYERS);
    if (fused_mlp(f)) {
        fused_mlp_forward(f, pre_sigmoid, in, N);
        return;
    }
    const real *x = in;
    for (int k = 0; k < a->n_layers - 1; k++) {
        layer_forward(f, k, f->pre[k], x, N);
        long e = (long)spd_ci_fn_hidden_elems(a, N, k);
        if (f->cdf[k]) RFN(gelu_forward_cdf)(f->post[k], f->cdf[k], f->pre[k], e);
        else RFN(gelu_forward)(f->post[k], f->pre[k], e);
        x = f->post[k];
    }
    layer_forward(f, a->n_layers - 1, pre_sigmoid, x, N);
}

// ---- backward --------------------------------------------------------------------

// Linear layer k: g (gradient of its output) -> dW[k], db[k] (accumulated) and
// gin (gradient of its input, written; NULL to skip).
static void layer_backward(ci_fn *f, int k, real *gin, const real *g, const real *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    int wi = a->width[k], wo = a->width[k + 1], C = a->C;
    if (a->kind == SPD_CI_SHARED_MLP) {
        if (f->dW[k]) RFN(matmul)(f->dW[k], in, g, wi, wo, N, true, false, 1, 1);
        if (f->db[k]) bias_grad(f->db[k], g, N, wo);
        if (gin) RFN(matmul)(gin, g, f->W[k], N, wi, wo, false, true, 1, 0);
    } else if (a->kind == SPD_CI_VECTOR_MLP && k == 0) {
        // g [N, C*wo]: dx = g @ W'^T, dW' = x^T @ g [d_in, C*wo] scattered back to [C, d_in, wo];
        // both through the one W'-sized workspace, in that order.
        if (f->db[0]) bias_grad(f->db[0], g, N, (long)C * wo);
        if (gin) {
            permute_first_layer(f->work, f->W[0], C, wi, wo);
            RFN(matmul)(gin, g, f->work, N, wi, C * wo, false, true, 1, 0);
        }
        if (f->dW[0]) {
            RFN(matmul)(f->work, in, g, wi, C * wo, N, true, false, 1, 0);
            for (long c = 0; c < C; c++)
                for (long i = 0; i < wi; i++) {
                    real *dst = f->dW[0] + (c * wi + i) * wo;
                    const real *src = f->work + (i * C + c) * wo;
                    for (int o = 0; o < wo; o++) dst[o] += src[o];
                }
        }
    } else {
        parallel_backward(gin, f->dW[k], f->db[k], g, in, f->W[k], N, C, wi, wo);
    }
}

void RFN(ci_fn_backward)(ci_fn *f, real *din, const real *dpre_sigmoid, const real *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    int L = a->n_layers;
    SPD_ASSERT(L >= 1 && L <= SPD_CI_FN_MAX_LAYERS);
    if (fused_mlp(f)) {
        fused_mlp_backward(f, din, dpre_sigmoid, in, N);
        return;
    }
    // g[j % 2]: gradient w.r.t. hidden layer j's pre-GELU activations.
    size_t off = a->kind == SPD_CI_VECTOR_MLP ? (size_t)a->d_in * a->C * a->width[1] : 0;
    size_t max_hidden = 0;
    for (int k = 0; k < L - 1; k++) {
        size_t e = spd_ci_fn_hidden_elems(a, N, k);
        if (e > max_hidden) max_hidden = e;
    }
    real *g[2] = {f->work + off, f->work + off + max_hidden};
    const real *gout = dpre_sigmoid;
    for (int k = L - 1; k >= 0; k--) {
        const real *x = k == 0 ? in : f->post[k - 1];
        real *gin = k == 0 ? din : g[(k - 1) % 2];
        layer_backward(f, k, gin, gout, x, N);
        if (k > 0) {  // through GELU, in place
            long e = (long)spd_ci_fn_hidden_elems(a, N, k - 1);
            if (f->cdf[k - 1]) RFN(gelu_backward_cdf)(gin, gin, f->pre[k - 1], f->cdf[k - 1], e);
            else RFN(gelu_backward)(gin, gin, f->pre[k - 1], e);
            gout = gin;
        }
    }
}

// ---- init ------------------------------------------------------------------------

void RFN(ci_fn_init_params)(const spd_ci_fn_arch *arch, real *const *W, real *const *b, uint64_t seed,
                            uint64_t stream) {
    for (int k = 0; k < arch->n_layers; k++) {
        int64_t shape[3];
        int nd = spd_ci_fn_param_shape(arch, k, false, shape);
        size_t n = (size_t)spd_numel(nd, shape);
        double *tmp = spd_malloc(n * sizeof(double));
        spd_philox_fill_normal_f64(seed, stream + (uint64_t)k, n, spd_ci_fn_init_std(arch, k), tmp);
        for (size_t i = 0; i < n; i++) W[k][i] = (real)tmp[i];
        free(tmp);
        if (b && b[k]) {
            nd = spd_ci_fn_param_shape(arch, k, true, shape);
            memset(b[k], 0, (size_t)spd_numel(nd, shape) * sizeof(real));
        }
    }
}
