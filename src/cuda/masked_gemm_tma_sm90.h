// The masked TF32 product of masked_gemm_sm90.h (acc = A @ B^T; o_plain = acc,
// o_mask = acc * mask, o_aux = acc * aux) on a persistent schedule: one CTA per SM
// walks the output tiles, its operands and the tile's mask streamed by the TMA from a
// producer warp while the consumers compute. masked_gemm_sm90() takes it where it runs;
// the cp.async kernel remains for small products and unaligned operands.
#ifndef SPD_CUDA_MASKED_GEMM_TMA_SM90_H
#define SPD_CUDA_MASKED_GEMM_TMA_SM90_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether it runs for these operands, given that masked_gemm_sm90_ok holds: not turned
// off (SPD_CUDA_WGMMA_TMA=0), lda, ldb and N multiples of 4 with A, B and the mask
// 16-byte aligned, and at least SPD_CUDA_WGMMA_TMA_MIN_TILES 128 x 128 output tiles
// (default four per SM).
bool masked_gemm_tma_ok(int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *mask,
                        const float *aux, const float *o_plain, const float *o_mask, const float *o_aux);

void masked_gemm_tma(int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *mask,
                     const float *aux, float *o_plain, float *o_mask, float *o_aux);

#ifdef __cplusplus
}
#endif

#endif
