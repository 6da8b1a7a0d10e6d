// Row-major matrix products with explicit leading dimensions, for the CUDA
// backend's own files (matmul_cuda is the contiguous case). In --mode fused the
// products go through cuBLASLt with an algorithm timed once per shape (outside
// graph capture) instead of cublasSgemm's first heuristic choice.
#ifndef SPD_CUDA_GEMM_H
#define SPD_CUDA_GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

// C [M, N] (row stride ldc) = alpha * op(A) @ op(B) + beta * C; A stored [M, K]
// (row stride lda), or [K, M] when trans_a; B stored [K, N] (ldb), or [N, K] when trans_b.
void matmul_cuda_ld(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a, bool trans_b,
                    float alpha, float beta, int lda, int ldb, int ldc);

#ifdef __cplusplus
}
#endif

#endif
