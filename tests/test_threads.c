// The CPU loops that OpenMP splits (GELU, the CI functions' per-position and
// per-component loops, their bias and weight sums) give the same bits on 1, 2
// and 3 threads, and the Phi-caching GELU pair (and the fused one-hidden-layer mlp
// that uses it) equals the plain layer-by-layer path bit for bit.
// Shapes above the ops' thread threshold (PAR_MIN) so the teams really form.
#define SPD_F64
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "core/philox.h"
#include "ops/ci_fn.h"
#include "ops/gelu.h"
#include "testing.h"

typedef struct {
    double *pre_sig, *din, *dW[SPD_CI_FN_MAX_LAYERS], *db[SPD_CI_FN_MAX_LAYERS];
} ci_out;

static double *normal(long n, double std, uint64_t stream) {
    double *p = spd_malloc((size_t)n * sizeof *p);
    spd_philox_fill_normal_f64(11, stream, (size_t)n, std, p);
    return p;
}

// One forward + backward of a CI function of `kind` with `threads` threads; cache: use cdf[].
static ci_out run_ci(spd_ci_fn_kind kind, int n_hidden, int threads, bool cache) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    const int N = 2048, C = 20, d_in = 6, hidden[2] = {16, 8};
    ci_fn_f64 f = {0};
    if (spd_ci_fn_arch_init(&f.arch, kind, C, d_in, hidden, n_hidden)) {
        fprintf(stderr, "%s\n", spd_last_error());
        exit(1);
    }
    ci_out o = {0};
    for (int k = 0; k < f.arch.n_layers; k++) {
        int64_t sh[3];
        long nw = (long)spd_numel(spd_ci_fn_param_shape(&f.arch, k, false, sh), sh);
        long nb = (long)spd_numel(spd_ci_fn_param_shape(&f.arch, k, true, sh), sh);
        f.W[k] = normal(nw, 0.7, 10 + k);
        f.b[k] = normal(nb, 0.3, 20 + k);
        f.dW[k] = o.dW[k] = spd_calloc((size_t)nw, sizeof(double));
        f.db[k] = o.db[k] = spd_calloc((size_t)nb, sizeof(double));
    }
    for (int k = 0; k < f.arch.n_layers - 1; k++) {
        size_t e = spd_ci_fn_hidden_elems(&f.arch, N, k);
        f.pre[k] = spd_malloc(e * sizeof(double));
        f.post[k] = spd_malloc(e * sizeof(double));
        f.cdf[k] = cache ? spd_malloc(e * sizeof(double)) : NULL;
    }
    f.work = spd_malloc((spd_ci_fn_workspace_elems(&f.arch, N) + 1) * sizeof(double));
    long n_in = (long)N * spd_ci_fn_input_width(&f.arch);
    double *in = normal(n_in, 1, 1), *dpre = normal((long)N * C, 1, 2);
    o.pre_sig = spd_malloc((size_t)N * C * sizeof(double));
    o.din = spd_malloc((size_t)n_in * sizeof(double));
    ci_fn_forward_f64(&f, o.pre_sig, in, N);
    ci_fn_backward_f64(&f, o.din, dpre, in, N);
    for (int k = 0; k < f.arch.n_layers; k++) {
        free((void *)f.W[k]);
        free((void *)f.b[k]);
    }
    for (int k = 0; k < f.arch.n_layers - 1; k++) {
        free(f.pre[k]);
        free(f.post[k]);
        free(f.cdf[k]);
    }
    free(f.work);
    free(in);
    free(dpre);
    return o;
}

static bool same(const double *a, const double *b, long n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

static bool same_out(const ci_out *a, const ci_out *b, spd_ci_fn_kind kind, int n_hidden) {
    const int N = 2048, C = 20, d_in = 6, hidden[2] = {16, 8};
    spd_ci_fn_arch arch;
    spd_ci_fn_arch_init(&arch, kind, C, d_in, hidden, n_hidden);
    bool ok = same(a->pre_sig, b->pre_sig, (long)N * C) &&
              same(a->din, b->din, (long)N * spd_ci_fn_input_width(&arch));
    for (int k = 0; k < arch.n_layers; k++) {
        int64_t sh[3];
        long nw = (long)spd_numel(spd_ci_fn_param_shape(&arch, k, false, sh), sh);
        long nb = (long)spd_numel(spd_ci_fn_param_shape(&arch, k, true, sh), sh);
        ok = ok && same(a->dW[k], b->dW[k], nw) && same(a->db[k], b->db[k], nb);
    }
    return ok;
}

static void free_out(ci_out *o) {
    free(o->pre_sig);
    free(o->din);
    for (int k = 0; k < SPD_CI_FN_MAX_LAYERS; k++) {
        free(o->dW[k]);
        free(o->db[k]);
    }
}

int main(void) {
    const long n = 100000;
    double *x = normal(n, 2, 3), *dy = normal(n, 1, 4);
    double *y1 = spd_malloc(n * sizeof(double)), *y2 = spd_malloc(n * sizeof(double));
    double *cdf = spd_malloc(n * sizeof(double)), *d1 = spd_malloc(n * sizeof(double)),
           *d2 = spd_malloc(n * sizeof(double));
    gelu_forward_f64(y1, x, n);
    gelu_backward_f64(d1, dy, x, n);
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
    gelu_forward_cdf_f64(y2, cdf, x, n);
    gelu_backward_cdf_f64(d2, dy, x, cdf, n);
    test_report(same(y1, y2, n) && same(d1, d2, n), "gelu: the Phi-caching pair on 2 threads equals the plain one bit for bit",
                NULL);
    free(x), free(dy), free(y1), free(y2), free(cdf), free(d1), free(d2);

    // mlp with one hidden layer takes the fused path when cdf is set (ci_fn.c).
    const spd_ci_fn_kind kinds[4] = {SPD_CI_MLP, SPD_CI_MLP, SPD_CI_VECTOR_MLP, SPD_CI_SHARED_MLP};
    const int n_hidden[4] = {1, 2, 2, 2};
    for (int i = 0; i < 4; i++) {
        ci_out ref = run_ci(kinds[i], n_hidden[i], 1, false);
        for (int t = 1; t <= 3; t++) {
            ci_out o = run_ci(kinds[i], n_hidden[i], t, true);
            char name[160];
            snprintf(name, sizeof name, "ci_fn %s, %d hidden layer(s)%s: %d thread(s) with cached Phi == 1 thread without, "
                     "bit for bit", spd_ci_fn_kind_name(kinds[i]), n_hidden[i], i == 0 ? " (fused)" : "", t);
            test_report(same_out(&o, &ref, kinds[i], n_hidden[i]), name, NULL);
            free_out(&o);
        }
        free_out(&ref);
    }
    return test_exit();
}
