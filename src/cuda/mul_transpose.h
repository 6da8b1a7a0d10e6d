// The mask multiply with a transposed output, for the weight gradients of large
// components (components.cu): a weight gradient sums over tokens, and cuBLAS's TF32
// kernels run it a third slower when both operands have tokens as their slow index
// (dev/kernels/kmajor/NOTES.md). Written transposed by the pass that multiplies by
// the mask anyway, one operand has tokens as its fast index at no extra traffic.
#ifndef SPD_CUDA_MUL_TRANSPOSE_H
#define SPD_CUDA_MUL_TRANSPOSE_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// src, mask, aux, o_aux [rows, cols] (row stride cols):
//   dst [cols, rows] (row stride rows) = (src * mask)^T;  o_aux = src * aux (when o_aux).
// rows and cols multiples of 4, every pointer 16-byte aligned (mul_transpose_ok);
// dst must not overlap the inputs.
bool mul_transpose_ok(int rows, int cols, const float *dst, const float *src, const float *mask, const float *aux,
                      const float *o_aux);
void mul_transpose_cuda(float *dst, const float *src, const float *mask, const float *aux, float *o_aux, int rows,
                        int cols);
// t [cols, rows] (row stride rows) *= mask^T in place, mask [rows, cols]; o_t [rows, cols] =
// t^T before the multiply (when o_t). The same conditions (t as dst and src, o_t as aux and o_aux).
void mask_transposed_cuda(float *t, const float *mask, float *o_t, int rows, int cols);

#ifdef __cplusplus
}
#endif

#endif
