#include "core/real.h"
#include "ops/sigmoid.h"

#include <math.h>
#include <string.h>

#include "core/error.h"

// Precision-free helpers: this file is compiled once per precision, so they
// are defined in the float32 object only.

// swish_hard's constants: beta 10, scale 0.5, x-shift 0.5, y-shift 0.5.
#define SW_BETA 10.0
#define SW_SCALE 0.5
#define SW_XSHIFT 0.5
#define SW_YSHIFT 0.5

static double logistic(double t) { return 1.0 / (1.0 + exp(-t)); }
static double sw(double t) { return t * logistic(SW_BETA * t); }
static double usw(double t) { return t * logistic(-SW_BETA * t); }
// sw'(t) = s + beta t s (1 - s), s = logistic(beta t); usw(t) = sw with beta -> -beta.
static double dsw(double t) {
    double s = logistic(SW_BETA * t);
    return s + SW_BETA * t * s * (1.0 - s);
}
static double dusw(double t) {
    double s = logistic(-SW_BETA * t);
    return s - SW_BETA * t * s * (1.0 - s);
}

static double swish_hard(double x) {
    double z = x - SW_XSHIFT;
    return SW_YSHIFT + (usw(z - SW_SCALE) - sw(z)) + (sw(z + SW_SCALE) - usw(z));
}
static double dswish_hard(double x) {
    double z = x - SW_XSHIFT;
    return (dusw(z - SW_SCALE) - dsw(z)) + (dsw(z + SW_SCALE) - dusw(z));
}

static real clamp01(real x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

// The piecewise ones run in the storage precision (as torch does); the smooth
// ones in float64, rounded once.
void RFN(sigmoid_forward)(spd_sigmoid_fn f, real *y, const real *x, long n) {
    const real alpha = (real)SPD_SIGMOID_ALPHA;
    switch (f) {
    case SPD_SIGMOID_FN_HARD:
    case SPD_SIGMOID_FN_LOWER_LEAKY_HARD:
        for (long i = 0; i < n; i++) y[i] = clamp01(x[i]);
        break;
    case SPD_SIGMOID_FN_UPPER_LEAKY_HARD:
        for (long i = 0; i < n; i++) y[i] = x[i] > 1 ? 1 + alpha * (x[i] - 1) : clamp01(x[i]);
        break;
    case SPD_SIGMOID_FN_LEAKY_HARD:
        for (long i = 0; i < n; i++) y[i] = x[i] > 0 ? (x[i] > 1 ? 1 : x[i]) : alpha * x[i];
        break;
    case SPD_SIGMOID_FN_LOGISTIC:
        for (long i = 0; i < n; i++) y[i] = (real)logistic(x[i]);
        break;
    case SPD_SIGMOID_FN_SWISH_HARD:
        for (long i = 0; i < n; i++) y[i] = (real)swish_hard(x[i]);
        break;
    default: spd_die("sigmoid_forward: bad sigmoid function %d", (int)f);
    }
}

void RFN(sigmoid_backward)(spd_sigmoid_fn f, real *dx, const real *dy, const real *x, long n) {
    const real alpha = (real)SPD_SIGMOID_ALPHA;
    switch (f) {
    case SPD_SIGMOID_FN_HARD:
        for (long i = 0; i < n; i++) dx[i] = (x[i] >= 0 && x[i] <= 1) ? dy[i] : 0;
        break;
    case SPD_SIGMOID_FN_LOWER_LEAKY_HARD:
        for (long i = 0; i < n; i++) {
            real g = dy[i];
            dx[i] = x[i] <= 0 ? (g < 0 ? alpha * g : 0) : (x[i] <= 1 ? g : 0);
        }
        break;
    case SPD_SIGMOID_FN_UPPER_LEAKY_HARD:
        for (long i = 0; i < n; i++) dx[i] = x[i] > 1 ? alpha * dy[i] : (x[i] >= 0 ? dy[i] : 0);
        break;
    case SPD_SIGMOID_FN_LEAKY_HARD:
        for (long i = 0; i < n; i++) dx[i] = x[i] > 0 ? (x[i] <= 1 ? dy[i] : 0) : alpha * dy[i];
        break;
    case SPD_SIGMOID_FN_LOGISTIC:
        for (long i = 0; i < n; i++) {
            double s = logistic(x[i]);
            dx[i] = (real)(dy[i] * s * (1.0 - s));
        }
        break;
    case SPD_SIGMOID_FN_SWISH_HARD:
        for (long i = 0; i < n; i++) dx[i] = (real)(dy[i] * dswish_hard(x[i]));
        break;
    default: spd_die("sigmoid_backward: bad sigmoid function %d", (int)f);
    }
}
