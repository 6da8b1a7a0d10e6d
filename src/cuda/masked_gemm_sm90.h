// One TF32 product with SPD's mask multiply in its epilogue, on Hopper's
// warpgroup tensor-core instructions (wgmma, sm_90a):
//
//     acc [M, N] = A [M, K] @ B^T        (A row-major [M, K], B row-major [N, K])
//     o_plain = acc,  o_mask = acc * mask,  o_aux = acc * aux      (each optional)
//
// Forward of LinearComponents: A = x, B = V^T, o_plain = a, o_mask = a * mask.
// Backward: A = dout, B = U, o_mask = g_a = h * mask, o_aux = dmask = h * a; h is
// never stored. The N x C passes of the elementwise kernels disappear
// (dev/kernels/wgmma_masked/NOTES.md has the floor and the measurements).
// mask, aux and the outputs are [M, N] with row stride N.
#ifndef SPD_CUDA_MASKED_GEMM_SM90_H
#define SPD_CUDA_MASKED_GEMM_SM90_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether the product can run here: an sm_90a binary on a compute-capability 9.0
// GPU, TF32 precision, fused mode, SPD_CUDA_WGMMA not "0", K <= 512 (above that the
// product is compute-bound and cuBLAS's kernels win), K, lda, ldb multiples of 4
// and N even, A and B 16-byte aligned, the [M, N] buffers 8-byte aligned.
bool masked_gemm_sm90_ok(int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *mask,
                         const float *aux, const float *o_plain, const float *o_mask, const float *o_aux);

// The product on spd_cuda_stream(); the caller checked masked_gemm_sm90_ok.
// mask NULL means all ones.
void masked_gemm_sm90(int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *mask,
                      const float *aux, float *o_plain, float *o_mask, float *o_aux);

// bf16 operands (SPD_MATMUL_BF16, the --bf16 option): A16 [M, K] and B16 [N, K] are bf16
// with row strides lda, ldb (multiples of 8, K too; columns beyond the matrix zero), and
// o_mask16 = bf16(acc * mask); o_plain and o_aux stay float32.
bool masked_gemm_sm90_bf16_ok(int M, int N, int K, const void *A16, int lda, const void *B16, int ldb,
                              const float *mask, const float *aux, const float *o_plain, const void *o_mask16,
                              const float *o_aux);
void masked_gemm_sm90_bf16(int M, int N, int K, const void *A16, int lda, const void *B16, int ldb, const float *mask,
                           const float *aux, float *o_plain, void *o_mask16, float *o_aux);

// C [M, N] = A [M, K] @ op(B) (op(B) = B^T for B [N, K] when trans_b, else B [K, N]), TF32,
// fused mode, SPD_CUDA_WGMMA_NT not "0": the products cuBLASLt has only align1 kernels
// for, A's or C's rows not 16-byte aligned (any lda, K; C's row stride must be N; where
// only A's are, at least a 128 x 128 tile for 7/8 of the SMs), and M N K >= 2^24. alpha 1,
// beta 0; B copied to [N, K] rows of 16 bytes where it is not.
bool gemm_nt_sm90_ok(int M, int N, int K, const float *A, int lda, const float *C, int ldc);
void gemm_nt_sm90(int M, int N, int K, const float *A, int lda, const float *B, int ldb, bool trans_b, float *C);

// dst [cols, ldd] = src [rows, cols]^T (src row stride lds), zero in dst columns rows..ldd-1.
void transpose_pad_cuda(float *dst, int ldd, const float *src, int lds, int rows, int cols);
// The same rounded to bf16, or to TF32 (nearest, as the tensor cores then read it exactly).
void transpose_pad_bf16_cuda(void *dst16, int ldd, const float *src, int lds, int rows, int cols);
void transpose_pad_tf32_cuda(float *dst, int ldd, const float *src, int lds, int rows, int cols);

#ifdef __cplusplus
}
#endif

#endif
