// Reading results back for comparison and reports, whatever the backend.
#ifndef SPD_OPS_TRANSFER_H
#define SPD_OPS_TRANSFER_H

#include <stdint.h>

#include "core/real.h"

// out [n] (host, float64) = x [n] (this backend's memory), after all queued work finished.
void RFN(copy_to_host_f64)(double *out, const real *x, int64_t n);
// dst [n] = src [n], both in this backend's memory.
void RFN(copy)(real *dst, const real *src, int64_t n);
// dst [rows, cols] = src^T, src [cols, rows] (no aliasing).
void RFN(transpose)(real *dst, const real *src, int rows, int cols);

#endif
