// Row-major matrix products through BLAS.
#ifndef SPD_OPS_MATMUL_H
#define SPD_OPS_MATMUL_H

#include <stdbool.h>

#include "core/real.h"

// C [M, N] = alpha * op(A) @ op(B) + beta * C, all row-major and contiguous.
// op(A) is [M, K]: A is stored [M, K], or [K, M] when trans_a.
// op(B) is [K, N]: B is stored [K, N], or [N, K] when trans_b.
void RFN(matmul)(real *C, const real *A, const real *B, int M, int N, int K, bool trans_a, bool trans_b,
                 real alpha, real beta);

// Sets OpenBLAS's thread count for a product of `macs` multiply-adds: one thread
// for small ones, all of them otherwise. Every BLAS call in src/ goes through it.
void spd_blas_threads_for(long macs);

#endif
