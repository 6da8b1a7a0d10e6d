// SPD's masked product and the product after it, back to back in one kernel on
// Hopper's warpgroup tensor-core instructions (wgmma, sm_90a, TF32 or bf16 operands):
//
//     S [M, C] = X [M, K1] @ At^T                  (At [C, K1] row-major: K-major)
//     o_plain = S,  o_aux = S * aux,  o_mask = P = S * mask        (each optional)
//     Y [M, K2] = beta * Y + P @ B                 (B [C, K2], as masked_b2b_weight's copy)
//
// P goes from the first product's accumulator registers straight into the second
// product as its register operand: the N x C intermediate is never read back, and
// written only when a later product needs it (o_mask).
// Forward of LinearComponents: X = x, At = V^T, B = U, Y = out, o_mask = a * mask (dU
// reads it), o_plain = a when a mask gradient follows.
// Backward: X = dout, At = U, B = V^T, Y = dx, o_mask = g_a (dV reads it), o_aux =
// dmask with aux = a. The floor, the five versions and their measurements:
// dev/kernels/b2b_wgmma/NOTES.md.
#ifndef SPD_CUDA_MASKED_B2B_SM90_H
#define SPD_CUDA_MASKED_B2B_SM90_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether the kernel can run here: an sm_90a binary on a compute-capability 9.0 GPU,
// TF32 precision, fused mode, not turned off (SPD_CUDA_B2B=0), K1 <= 128 and a multiple
// of 4, K2 <= SPD_CUDA_B2B_MAX_K2 (default 352: Y in column tiles of 128, or of 176 where
// K2 > 128, each tile past the first recomputing S),
// M >= SPD_CUDA_B2B_MIN_M (default 0; where the row blocks would leave SMs idle, C is split
// among more CTAs and their partial Y summed by spd_cuda_splitk_reduce),
// ldx a multiple of 4 and X 16-byte aligned, C a multiple of 4 and the mask 16-byte
// aligned (the TMA reads it), o_mask 16-byte aligned (the TMA writes it), the other
// [M, C] buffers 8-byte aligned.
bool masked_b2b_sm90_ok(int M, int C, int K1, int K2, const float *X, int ldx, const float *mask, const float *aux,
                        const float *o_plain, const float *o_mask, const float *o_aux);

// The kernel on spd_cuda_stream(); the caller checked masked_b2b_sm90_ok. At [C, K1]
// has row stride lda (a multiple of 4, 16-byte aligned); Bt is masked_b2b_weight's
// copy of B; mask NULL means all ones; beta is 0 (Y overwritten, never read) or 1.
void masked_b2b_sm90(int M, int C, int K1, int K2, const float *X, int ldx, const float *At, int lda,
                     const float *Bt, const float *mask, const float *aux, float *o_plain, float *o_mask,
                     float *o_aux, float *Y, int ldy, float beta);

// The same with bf16 operands and float32 accumulation (--bf16): X [M, K1] (row stride ldx),
// At [C, K1] (row stride lda) and the weight copy Bt (masked_b2b_weight_bf16's) are bf16,
// each 16-byte aligned with row strides a multiple of 8; o_mask, when asked for, is P as
// bf16 [M, C] (16-byte aligned: the TMA stores it); the mask, aux, o_plain, o_aux and Y
// are float32. Needs bf16 precision and C % 8 == 0; K1 <= 128 need not be a multiple of
// anything; otherwise as above.
bool masked_b2b_sm90_bf16_ok(int M, int C, int K1, int K2, int ldx, const float *mask, const float *aux,
                             const float *o_plain, const float *o_aux);
void masked_b2b_sm90_bf16(int M, int C, int K1, int K2, const void *X16, int ldx, const void *At16, int lda,
                          const void *Bt16, const float *mask, const float *aux, float *o_plain, void *o_mask16,
                          float *o_aux, float *Y, int ldy, float beta);

// One problem of a grouped launch (masked_b2b_sm90_group): the operands and outputs that
// masked_b2b_sm90 takes (X, At, Bt and o_mask bf16 for the bf16 entry). Problems of one
// launch share M, C, K1, K2 and the row strides; SPD's modules of equal shape (k and v,
// gate and up) run as one launch, the fewer and fuller launches of the small rows.
#define MASKED_B2B_MAX_GROUP 3
typedef struct {
    const void *X, *At, *Bt;
    const float *mask, *aux;
    float *o_plain;
    void *o_mask;
    float *o_aux, *Y;
    float beta;  // 0 or 1; with sum_y, the first problem's is Y's
} masked_b2b_problem;

// G problems (1 <= G <= MASKED_B2B_MAX_GROUP), each checked with masked_b2b_sm90_ok (or
// _bf16_ok) and its At and Bt as above; one kernel launch (and the split sums). Without
// sum_y each problem writes its own Y; with it, Y = beta Y + the sum of every problem's
// product, into the first problem's Y (the other Y and beta unused): the input gradient of
// modules that read one input.
void masked_b2b_sm90_group(int G, const masked_b2b_problem *p, int M, int C, int K1, int K2, int ldx, int lda,
                           int ldy, bool sum_y);
void masked_b2b_sm90_bf16_group(int G, const masked_b2b_problem *p, int M, int C, int K1, int K2, int ldx, int lda,
                                int ldy, bool sum_y);

// The fewest rows M that run here: SPD_CUDA_B2B_MIN_M, default 0.
int masked_b2b_sm90_min_m(void);

// For tests: S > 1 splits C S ways (fewer where C has fewer chunks) in every call, 1
// never splits, 0 (the default) chooses S to fill the SMs.
void masked_b2b_sm90_force_split(int S);

// Row stride of the copy of B: C rounded up to a multiple of 8.
int masked_b2b_ldb(int C);

// Bt [K2, masked_b2b_ldb(C)] = B^T, zero beyond column C, with each group of 8 columns
// in the order in which the first product's accumulator registers hold S's columns
// (0 2 4 6 1 3 5 7), so that they serve as the second product's operand unshuffled.
// B [c, n] is src[c * lds + n] when c_major, else src[n * lds + c] (B = V^T from V).
void masked_b2b_weight_cuda(float *Bt, const float *src, int lds, int C, int K2, bool c_major);
// The same, and At [C, K1] = V^T for V [K1, C] (row stride K1), in one launch: the
// forward's two operand copies.
void masked_b2b_weights_cuda(float *At, const float *V, int K1, float *Bt, const float *src, int lds, int C, int K2,
                             bool c_major);
// bf16 copies for masked_b2b_sm90_bf16: Bt16 [K2, masked_b2b_ldb(C)] = B^T in plain column
// order (bf16's accumulator layout is already the register operand's), and At16 [C, K1]
// = V^T with row stride lda.
void masked_b2b_weight_bf16_cuda(void *Bt16, const float *src, int lds, int C, int K2, bool c_major);
void masked_b2b_weights_bf16_cuda(void *At16, int lda, const float *V, int K1, void *Bt16, const float *src, int lds,
                                  int C, int K2, bool c_major);
// The copies of G problems of one shape in one launch: problem g's as masked_b2b_weights
// (At[g] != NULL) or masked_b2b_weight (At NULL) with At[g], V[g], Bt[g] and src[g];
// bf16 copies (At rows of stride lda) with bf16 set.
void masked_b2b_weights_group_cuda(int G, void *const *At, int lda, const float *const *V, int K1, void *const *Bt,
                                   const float *const *src, int lds, int C, int K2, bool c_major, bool bf16);

#ifdef __cplusplus
}
#endif

#endif
