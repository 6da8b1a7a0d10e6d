// Causal grouped-query attention on the tensor cores (TF32), used by attention.cu's
// entry points when the products run in TF32 or bf16 (attention_tc.cu).
#ifndef SPD_CUDA_ATTENTION_TC_H
#define SPD_CUDA_ATTENTION_TC_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// True when the tensor-core kernels take this call: TF32 or bf16 products, hd 32 or 64,
// S % 4 == 0, every pointer 16-byte aligned, and SPD_CUDA_ATT_TC is not "0".
bool attention_tc_ok(int S, int hd, const void *const *ptrs, int n_ptrs);
// Whether those kernels run memory-lean at this S and hd (with 16-byte aligned buffers):
// --mode fused and SPD_CUDA_ATT_LEAN not "0". Then the forward writes only each row's
// log2-sum-exp2 of the scores (scale * log2 e units) into att [B, nh, S] (its first
// B*nh*S floats; no probabilities), and the backward recomputes P from it: a forward and
// its backward must run in the same mode.
bool attention_tc_lean(int S, int hd);
// The contract of attention_forward_cuda / attention_backward_cuda; D: a [B, nh, S]
// float buffer for the backward's row sums.
void attention_forward_tc(float *out, float *att, const float *q, const float *k, const float *v, int B, int S,
                          int nh, int nkv, int hd);
void attention_backward_tc(float *dq, float *dk, float *dv, float *D, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *att, int B, int S, int nh,
                           int nkv, int hd);

#ifdef __cplusplus
}
#endif

#endif
