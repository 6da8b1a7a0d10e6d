// A weight gradient from a stored [N, C] activation, on Hopper's warpgroup tensor-core
// instructions (wgmma, sm_90a, TF32 operands rounded to nearest):
//
//     D [C, Q] = beta * D + A^T B        A [N, C] (a * mask or g_a), B [N, Q] (dout or x)
//
// or, with `transposed`, D [Q, C] = beta * D + B^T A (dV's layout). Both sums run over the
// N tokens, the slow index of both row-major operands, which TF32 wgmma cannot read from
// shared memory (cuBLAS's kernels for that layout run at ~60% of its rate, and its split
// over the tokens for the narrow outputs of SPD's modules lower still): here A goes to
// the tensor cores from registers, read from the TMA's tiles in any order, and only the
// narrow B is copied transposed first. dev/kernels/wgrad_stored/NOTES.md has the floor
// and the measurements.
#ifndef SPD_CUDA_WGRAD_STORED_SM90_H
#define SPD_CUDA_WGRAD_STORED_SM90_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether the kernel runs for this shape: an sm_90a binary on a compute-capability 9.0
// GPU, TF32 precision, fused mode, not turned off (SPD_CUDA_WGRAD_STORED=0), 128 < Q <= 352
// (narrower products are as fast on cuBLAS),
// C a multiple of 4 with A 16-byte aligned (the TMA reads A's rows in place), and
// N >= SPD_CUDA_WGRAD_STORED_MIN_N (default 4096).
bool wgrad_stored_sm90_ok(int N, int C, int Q, const float *A);

// The sum above on spd_cuda_stream(); the caller checked wgrad_stored_sm90_ok (or, to
// test it, any 1 <= Q <= 352 on an sm_90 GPU). B [N, Q] has row stride ldb >= Q (any
// alignment); beta is 0 (D overwritten, never read) or 1.
void wgrad_stored_sm90(int N, int C, int Q, const float *A, const float *B, int ldb, float *D, bool transposed,
                       float beta);

#ifdef __cplusplus
}
#endif

#endif
