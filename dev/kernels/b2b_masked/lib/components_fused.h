// The fused back-to-back masked GEMM of LinearComponents (CUDA, TF32 tensor cores).
//   X [N, K1], A [K1, C] (a_transposed: stored [C, K1]), M [N, C],
//   B [C, K2] (b_transposed: stored [K2, C])
//   -> P [N, C] = (X @ A) * M   (written when P != NULL; fp32 value of the TF32 product)
//      Y [N, K2] = P @ B        (written)
// Forward:     X = x, A = V, B = U, P = a*mask (for dU), Y = out.
// Backward dx: X = dout, A = U^T (a_transposed), B = V^T (b_transposed), P = g_a (for dV), Y = dx.
// M NULL means all ones. Every shape works; K1 > 344 takes a slow exact fallback.
// Runs on `stream`; device pointers; no synchronization.
#ifndef SPD_CUDA_COMPONENTS_FUSED_H
#define SPD_CUDA_COMPONENTS_FUSED_H

#include <cuda_runtime_api.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

void b2b_masked_gemm(float *Y, float *P, const float *X, const float *A, bool a_transposed, const float *M,
                     const float *B, bool b_transposed, int N, int K1, int C, int K2, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
