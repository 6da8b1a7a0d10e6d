// Elementwise sums of the residual stream and of gradients from several branches.
#ifndef SPD_OPS_ADD_H
#define SPD_OPS_ADD_H

#include <stdint.h>

#include "core/real.h"

// out[i] = a[i] + b[i], n elements.
void RFN(add)(real *out, const real *a, const real *b, int64_t n);
// acc[i] += x[i].
void RFN(add_inplace)(real *acc, const real *x, int64_t n);

#endif
