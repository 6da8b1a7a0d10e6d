// Copies of the components' weights in the layouts the fused kernels read, made for a
// whole model at the start of its forward (components_weights_prepare, ops/components.h: a
// launch per 64 layouts) instead of one small launch per module and layout. Inside the CUDA
// backend; SPD_CUDA_WEIGHT_LAYOUTS=0 turns it off.
#ifndef SPD_CUDA_WEIGHT_LAYOUTS_H
#define SPD_CUDA_WEIGHT_LAYOUTS_H

typedef enum {
    WL_VT,     // V [d_in, C] -> V^T [C, pad4(d_in)], zero past d_in: masked_b2b's At, masked_gemm's B
    WL_BT_U,   // U [C, d_out] -> masked_b2b_weight's copy [d_out, ldb] (c_major): the forward's Bt
    WL_BT_V,   // V [d_in, C] -> masked_b2b_weight's copy [d_in, ldb]: the backward's Bt
    WL_PAD_U,  // U [C, d_out] -> [C, pad4(d_out)], zero past d_out: masked_gemm's B in the backward
    // bf16 (--bf16): the same roles, rounded to bf16, the b2b copies in plain column order
    WL_VT16,    // V [d_in, C] -> V^T [C, bf16_ld(d_in)], zero past d_in
    WL_BT_U16,  // U [C, d_out] -> masked_b2b_weight_bf16's copy [d_out, ldb] (c_major)
    WL_BT_V16,  // V [d_in, C] -> masked_b2b_weight_bf16's copy [d_in, ldb]
    WL_U16,     // U [C, d_out] -> [C, bf16_ld(d_out)], zero past d_out: the backward's U operand
} weight_layout_kind;

#ifdef __cplusplus
// The layout `kind` of W (rows x cols as stored: V [d_in, C], U [C, d_out]) as prepared for
// this forward and its backward, or NULL where there is none: the caller then makes its own
// copy, and the request is remembered, so that the next prepare listing W makes it.
const void *weight_layout_get(weight_layout_kind kind, const float *W, int rows, int cols);
#endif

#ifdef __cplusplus
extern "C" {
#endif
// How many layouts the last components_weights_prepare made (for the tests).
int weight_layouts_made(void);
#ifdef __cplusplus
}
#endif

#endif
