// The weight gradients of SPD's LinearComponents in one pass over the mask, on
// Hopper's warpgroup tensor-core instructions (wgmma, sm_90a, TF32 operands):
//
//     dU [C, K2] += (S * mask)^T dout     S = x V       [N, C]   (x [N, K1], V [K1, C])
//     dV [K1, C] += x^T (G * mask)        G = dout U^T  [N, C]   (dout [N, K2], U [C, K2])
//
// S and G are recomputed per block of 64 components and 32 tokens from x and dout,
// which are small, so neither a * mask nor g_a (N x C each) is ever stored: with the
// back-to-back kernel (masked_b2b_sm90.h) for the forward and dx, the N x C traffic of
// a module is three reads of its mask (the 3-pass design, dev/kernels/b2b_wgmma/NOTES.md).
#ifndef SPD_CUDA_MASKED_WGRAD_SM90_H
#define SPD_CUDA_MASKED_WGRAD_SM90_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether the kernel runs for this shape: an sm_90a binary on a compute-capability 9.0
// GPU, TF32 precision, fused mode, not turned off (SPD_CUDA_WGRAD=0), K1 and K2 each
// 64 or 128, C a multiple of 4, N >= SPD_CUDA_WGRAD_MIN_N (default 0). Shape and mode
// only, so that a forward can decide by it whether its backward still needs a * mask.
bool masked_wgrad_sm90_ok(int N, int C, int K1, int K2);

// dU and dV (either may be NULL) accumulate the sums above, on spd_cuda_stream(); the
// caller checked masked_wgrad_sm90_ok. Any pointer alignment (operands the TMA cannot
// read in place are copied first).
void masked_wgrad_sm90(int N, int C, int K1, int K2, const float *x, const float *dout, const float *V,
                       const float *U, const float *mask, float *dU, float *dV);

// The same for G modules (1 <= G <= MASKED_WGRAD_MAX_GROUP) of one shape that read the
// same x, in one launch (one transposed copy of x): module g's dout[g], V[g], U[g],
// mask[g] into dU[g] and dV[g] (either may be NULL).
#define MASKED_WGRAD_MAX_GROUP 3
void masked_wgrad_sm90_group(int G, int N, int C, int K1, int K2, const float *x, const float *const *dout,
                             const float *const *V, const float *const *U, const float *const *mask,
                             float *const *dU, float *const *dV);

#ifdef __cplusplus
}
#endif

#endif
