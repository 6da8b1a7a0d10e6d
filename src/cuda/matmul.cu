// Row-major matrix products through cuBLAS (the CUDA twin of ops/matmul.c).
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/matmul.h"
}

// C [n] = beta * C (beta == 0 writes zeros, so NaN in C does not survive, as BLAS).
static __global__ void scale_kernel(float *C, long long n, float beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
}

// C [M, N] = alpha * op(A) [M, K] @ op(B) [K, N] + beta * C, all row-major.
// cuBLAS is column-major: a row-major [M, N] matrix is the column-major [N, M]
// matrix C^T, so we ask for C^T = op(B)^T @ op(A)^T. A row-major B stored [K, N]
// is column-major [N, K] = op(B)^T as it stands (no transpose); stored [N, K]
// (trans_b) it needs CUBLAS_OP_T. Likewise for A. The math mode (fp32 or TF32)
// is the handle's, set by spd_cuda_set_matmul_precision.
extern "C" void matmul_cuda(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a,
                            bool trans_b, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // op(A) @ op(B) is all zeros: C = beta * C
        long long n = (long long)M * N;
        scale_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(C, n, beta);
        CUDA_CHECK_LAUNCH();
        return;
    }
    const int lda = trans_a ? M : K;
    const int ldb = trans_b ? K : N;
    CUBLAS_CHECK(cublasSgemm(spd_cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             N, M, K, &alpha, B, ldb, A, lda, &beta, C, N));
}
