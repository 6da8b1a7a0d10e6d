// The toy targets' bias and ReLU pieces (TMS, ResidMLP), as ops so that the
// models run on every backend.
#ifndef SPD_OPS_BIAS_ACT_H
#define SPD_OPS_BIAS_ACT_H

#include <stdint.h>

#include "core/real.h"

// y [N, d] += b [d] on every row.
void RFN(bias_add)(real *y, const real *b, int N, int d);
// db [d] += sum over rows of dy [N, d], added row by row in the storage precision.
void RFN(bias_grad)(real *db, const real *dy, int N, int d);
// y [n] = max(x, 0) (y may alias x); dx [n] = x > 0 ? dy : 0 (torch's ReLU backward).
void RFN(relu_forward)(real *y, const real *x, int64_t n);
void RFN(relu_backward)(real *dx, const real *dy, const real *x, int64_t n);

#endif
