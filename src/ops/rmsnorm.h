// RMSNorm as LlamaSimple has it: y = w * x / sqrt(mean(x^2) + eps); no bias, no mean.
#ifndef SPD_OPS_RMSNORM_H
#define SPD_OPS_RMSNORM_H

#include <stdbool.h>

#include "core/real.h"

// x [N, d], w [d] -> out [N, d], rstd [N] = 1 / sqrt(mean(x^2) + eps) (saved).
void RFN(rmsnorm_forward)(real *out, real *rstd, const real *x, const real *w, int N, int d, double eps);
// dout [N, d] -> dx [N, d] (written, or added to where add_dx: a residual stream's
// gradient takes the norm's without a separate pass), dw [d] (accumulated; NULL when w
// is frozen).
void RFN(rmsnorm_backward)(real *dx, real *dw, const real *dout, const real *x, const real *w, const real *rstd,
                           int N, int d, bool add_dx);

#endif
