#include "core/real.h"
#include "ops/gelu.h"

#include <math.h>

// Evaluated in the storage precision, as torch does: erff for float32 keeps the
// CI functions' GELU (N*C*h elements, tens of millions) cheap on the CPU.
#ifdef SPD_F64
#define ERF erf
#define EXP exp
#else
#define ERF erff
#define EXP expf
#endif

// Elementwise, so splitting over threads (OpenMP, when built with it) leaves every
// value as it is; below PAR_MIN elements a thread team costs more than it saves.
#define PAR_MIN 16384

void RFN(gelu_forward)(real *y, const real *x, long n) {
    const real rsqrt2 = (real)M_SQRT1_2;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long i = 0; i < n; i++) {
        real v = x[i];
        y[i] = v * (real)0.5 * ((real)1 + ERF(v * rsqrt2));
    }
}

// d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
void RFN(gelu_backward)(real *dx, const real *dy, const real *x, long n) {
    const real rsqrt2 = (real)M_SQRT1_2;
    const real inv_sqrt_2pi = (real)(M_2_SQRTPI * M_SQRT1_2 * 0.5);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long i = 0; i < n; i++) {
        real v = x[i];
        real cdf = (real)0.5 * ((real)1 + ERF(v * rsqrt2));
        real pdf = EXP((real)-0.5 * v * v) * inv_sqrt_2pi;
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

void RFN(gelu_forward_cdf)(real *y, real *cdf, const real *x, long n) {
    const real rsqrt2 = (real)M_SQRT1_2;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long i = 0; i < n; i++) {
        real v = x[i];
        real e = (real)1 + ERF(v * rsqrt2);
        cdf[i] = (real)0.5 * e;   // as gelu_backward computes it
        y[i] = v * (real)0.5 * e;  // as gelu_forward does

    }
}

void RFN(gelu_backward_cdf)(real *dx, const real *dy, const real *x, const real *cdf, long n) {
    const real inv_sqrt_2pi = (real)(M_2_SQRTPI * M_SQRT1_2 * 0.5);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long i = 0; i < n; i++) {
        real v = x[i];
        real pdf = EXP((real)-0.5 * v * v) * inv_sqrt_2pi;
        dx[i] = dy[i] * (cdf[i] + v * pdf);
    }
}
