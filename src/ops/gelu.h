// GELU in its exact erf form, torch's nn.GELU() default (not the tanh
// approximation): SPD's CI functions apply it after every hidden layer
// (SPD_SPEC.md 2.1).
#ifndef SPD_OPS_GELU_H
#define SPD_OPS_GELU_H

#include "core/real.h"

// x [n] -> y [n] = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). y may alias x.
void RFN(gelu_forward)(real *y, const real *x, long n);

// dy [n], x [n] (the forward's input) -> dx [n] = dy * (Phi(x) + x phi(x)) (written).
// dx may alias dy.
void RFN(gelu_backward)(real *dx, const real *dy, const real *x, long n);

// The same pair with Phi(x) saved by the forward into cdf [n] and read back by
// the backward: one erf per element instead of two, the same values bit for bit.
void RFN(gelu_forward_cdf)(real *y, real *cdf, const real *x, long n);
void RFN(gelu_backward_cdf)(real *dx, const real *dy, const real *x, const real *cdf, long n);

#endif
