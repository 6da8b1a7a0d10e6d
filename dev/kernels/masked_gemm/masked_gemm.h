// One TF32 tensor-core product with the mask multiply in its epilogue, for the
// N x C products of LinearComponents in --mode fused (CUDA backend only):
//   acc [M, N] = A [M, K] (row stride lda) @ B, B stored [K, N] when b_kn, else [N, K]
//   (i.e. acc = A @ B^T); row stride ldb
//   out0 = acc, out1 = acc * m1, out2 = acc * m2 (each skipped when NULL; row stride ldo).
// Forward: A = x, B = V (b_kn), out0 = a, out1 = a * mask. Backward: A = dout, B = U,
// out1 = g_a = h * mask, out2 = dmask = h * a; h itself is never stored.
// That replaces cuBLAS + a separate elementwise pass over the N x C activations.
#ifndef SPD_CUDA_MASKED_GEMM_H
#define SPD_CUDA_MASKED_GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

// Whether masked_gemm_cuda takes this problem (TF32 products, fused mode, K a
// multiple of 4 up to 384, aligned operands, large enough to pay). Pointers NULL
// are not checked.
bool masked_gemm_usable(bool b_kn, int M, int N, int K, int lda, int ldb, int ldo, const void *A, const void *B,
                        const void *out0, const void *out1, const void *m1, const void *out2, const void *m2);
void masked_gemm_cuda(bool b_kn, const float *A, int lda, const float *B, int ldb, int M, int N, int K, float *out0,
                      float *out1, const float *m1, float *out2, const float *m2, int ldo);

#ifdef __cplusplus
}
#endif

#endif
