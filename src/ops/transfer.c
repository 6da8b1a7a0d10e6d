#include "core/real.h"

#include "ops/transfer.h"

#include <string.h>

void RFN(copy_to_host_f64)(double *out, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = (double)x[i];
}

void RFN(copy)(real *dst, const real *src, int64_t n) { memcpy(dst, src, (size_t)n * sizeof *dst); }

void RFN(transpose)(real *dst, const real *src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(int64_t)r * cols + c] = src[(int64_t)c * rows + r];
}
