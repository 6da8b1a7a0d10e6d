#include "core/real.h"
#include "ops/matmul.h"

#include <cblas.h>

// OpenBLAS threads a GEMM once it passes a small size, and on the toy models'
// shapes ([4096, 5] @ [5, 20]) its threads then spend more time waking and
// yielding than multiplying (40% of a TMS training step). Below BLAS_MT_MIN
// multiply-adds one thread runs it. Precision-free: defined once (float32 object).
#define BLAS_MT_MIN (1L << 22)
#ifndef SPD_F64
void spd_blas_threads_for(long macs) {
    static int max_threads = 0, current = 0;
    if (!max_threads) current = max_threads = openblas_get_num_threads();
    int want = macs < BLAS_MT_MIN ? 1 : max_threads;
    if (want != current) openblas_set_num_threads(current = want);
}
#endif

// C [M, N] = alpha * op(A) [M, K] @ op(B) [K, N] + beta * C, row-major.
// One BLAS call; the empty cases are handled here because BLAS rejects a
// leading dimension of 0.
void RFN(matmul)(real *C, const real *A, const real *B, int M, int N, int K, bool trans_a, bool trans_b,
                 real alpha, real beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // op(A) @ op(B) is all zeros
        for (long i = 0; i < (long)M * N; i++) C[i] = beta == 0 ? 0 : beta * C[i];
        return;
    }
    int lda = trans_a ? M : K;
    int ldb = trans_b ? K : N;
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    spd_blas_threads_for((long)M * N * K);
#ifdef SPD_F64
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
#endif
}
