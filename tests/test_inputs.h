// Shared by the CPU op tests (single-file programs; static helpers in a header,
// like testing.h): a pool of test allocations, random inputs from Philox, error
// reports and the central finite-difference check in float64.
// Before including, define TEST_NAME (the program), TEST_SEED, FD_H and FD_TOL.
#ifndef SPD_TEST_INPUTS_H
#define SPD_TEST_INPUTS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/philox.h"
#include "testing.h"


static void *allocs[4096];
static int n_allocs = 0;

static inline void *tmalloc(size_t bytes) {
    if (n_allocs == (int)(sizeof allocs / sizeof allocs[0])) {
        fprintf(stderr, "%s: too many allocations\n", TEST_NAME);
        exit(1);
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", TEST_NAME);
        exit(1);
    }
    return allocs[n_allocs++] = p;
}

static inline void free_all(void) {
    while (n_allocs) free(allocs[--n_allocs]);
}

static uint64_t next_stream = 1;

static inline double *uniform(long n, double lo, double hi) {
    double *p = tmalloc((size_t)n * sizeof(double));
    spd_philox_fill_uniform_f64(TEST_SEED, next_stream++, 0, (size_t)n, p);
    for (long i = 0; i < n; i++) p[i] = lo + (hi - lo) * p[i];
    return p;
}

static inline double *normal(long n, double std) {
    double *p = tmalloc((size_t)n * sizeof(double));
    spd_philox_fill_normal_f64(TEST_SEED, next_stream++, (size_t)n, std, p);
    return p;
}

static inline double *filled(long n, double value) {
    double *p = tmalloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) p[i] = value;
    return p;
}

static inline double *copy(const double *src, long n) {
    double *p = tmalloc((size_t)n * sizeof(double));
    memcpy(p, src, (size_t)n * sizeof(double));
    return p;
}

static inline float *to_f32(const double *src, long n) {
    float *p = tmalloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = (float)src[i];
    return p;
}

static inline double *to_f64(const float *src, long n) {
    double *p = tmalloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) p[i] = src[i];
    return p;
}

static inline double dot(const double *a, const double *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// g -= g0 in place: what an accumulating backward added.
static inline void subtract(double *g, const double *g0, long n) {
    for (long i = 0; i < n; i++) g[i] -= g0[i];
}

// max |a - b| / max |b|
static inline double max_rel_err(const double *a, const double *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= num)) num = d;  // NaN propagates
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    return num / den;
}

static inline void report_err(const char *name, double err, double tol) {
    char full[256];
    snprintf(full, sizeof full, "%s (rel err %.2e, bound %.0e)", name, err, tol);
    test_report(err < tol, full, NULL);
}

// ---- finite differences -----------------------------------------------------

typedef double (*loss_fn)(void *ctx);

// Compares analytic[0..n) with the central difference of f in each param[i].
static inline void check_fd(const char *name, loss_fn f, void *ctx, double *param, const double *analytic, long n) {
    double *num = tmalloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) {
        double saved = param[i];
        param[i] = saved + FD_H;
        double lp = f(ctx);
        param[i] = saved - FD_H;
        double lm = f(ctx);
        param[i] = saved;
        num[i] = (lp - lm) / (2 * FD_H);
    }
    report_err(name, test_rel_norm_err(analytic, num, n), FD_TOL);
}


#endif
