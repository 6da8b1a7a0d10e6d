// SPD's LinearComponents and EmbeddingComponents (SPD_SPEC.md 1.5-1.6).
//
// Gradient convention, used by every op in spd.c: parameter gradients (dV, dU,
// ddelta) ACCUMULATE (+=); activation gradients (dx, dmask, ddelta_mask) are
// WRITTEN (=), except where an op takes add_dx (components_, linear_, rmsnorm_backward:
// dx +=, for inputs that feed several branches). Optional outputs and inputs are NULL when
// unused.
#ifndef SPD_OPS_COMPONENTS_H
#define SPD_OPS_COMPONENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"

// x [N, d_in], V [d_in, C], U [C, d_out], mask [N, C] -> a = x @ V [N, C] (saved
// for backward), out = (a * mask) @ U [N, d_out].
// With delta [d_out, d_in] and delta_mask [N]: out[n] += delta_mask[n] * (x[n] @ delta^T).
// mask NULL means all ones. scratch [N, C].
// The CUDA backend in --mode fused also takes a == NULL when mask is given and the
// backward will be called with dmask NULL (a is then read by nothing): a is not
// written (linear_site.c passes NULL for modules without mask gradients).
void RFN(components_forward)(real *out, real *a, const real *x, const real *V, const real *U, const real *mask,
                             const real *delta, const real *delta_mask, int N, int d_in, int C, int d_out,
                             real *scratch);

// dout [N, d_out] -> dx [N, d_in] (written; added onto what dx holds with add_dx, for
// modules that share an input), dV [d_in, C], dU [C, d_out] (accumulated),
// ddelta [d_out, d_in] (accumulated; with delta), dmask [N, C] and ddelta_mask [N] (written).
// scratch [N, C]. dV and dU get only the direct path; the path through delta is
// chained once per step by weight_delta_backward.
void RFN(components_backward)(real *dx, real *dV, real *dU, real *ddelta, real *dmask, real *ddelta_mask,
                              const real *dout, const real *x, const real *a, const real *V, const real *U,
                              const real *mask, const real *delta, const real *delta_mask, int N, int d_in,
                              int C, int d_out, real *scratch, bool add_dx);

// A module of a group: modules of equal shapes (d_in, C, d_out) that read the same input
// x, such as LlamaSimple's k_proj and v_proj, or gate_proj and up_proj. Each member holds
// the arguments that components_forward and components_backward take for its module.
#define COMPONENTS_GROUP_MAX 3
typedef struct {
    const real *V, *U, *mask, *delta, *delta_mask;
    real *a, *scratch;
    real *out;                                     // forward
    const real *dout;                              // backward
    real *dV, *dU, *ddelta, *dmask, *ddelta_mask;  // backward; each may be NULL
} components_member;

// components_forward of G members (1 <= G <= COMPONENTS_GROUP_MAX) on one x, and their
// components_backward with the input gradients summed: dx = the sum of the members' (written;
// added onto dx with add_dx; dx not NULL). The result is that of the members one after
// another; the CUDA backend in --mode fused runs their products in shared launches where
// it can (fewer and fuller launches where the token count is small).
void RFN(components_forward_group)(int G, const components_member *m, const real *x, int N, int d_in, int C,
                                   int d_out);
void RFN(components_backward_group)(int G, const components_member *m, real *dx, bool add_dx, const real *x, int N,
                                    int d_in, int C, int d_out);
// The weights' copies in the layouts the fused CUDA kernels read, made for all of a model's
// modules at once (the CUDA backend in --mode fused; elsewhere nothing happens). A
// model's forward lists its n weights (every V and U) with prepare first; the backward that
// follows ends with release: the copies are read only in between, so the weights must not
// change there (the optimizer steps after the backward). forget drops the copies of weights
// about to be freed.
void RFN(components_weights_prepare)(int n, const real *const *W);
void RFN(components_weights_release)(void);
void RFN(components_weights_forget)(int n, const real *const *W);
// delta = W - (V @ U)^T; W [d_out, d_in], V [d_in, C], U [C, d_out] -> delta [d_out, d_in].
void RFN(weight_delta_forward)(real *delta, const real *W, const real *V, const real *U, int d_in, int C,
                               int d_out);
// Chains ddelta [d_out, d_in] into V and U: dV -= ddelta^T @ U^T, dU -= V^T @ ddelta^T.
void RFN(weight_delta_backward)(real *dV, real *dU, const real *ddelta, const real *V, const real *U, int d_in,
                                int C, int d_out);

// Embedding: tokens [N] in [0, vocab), V [vocab, C], U [C, d], mask [N, C] ->
// a = V[tokens] [N, C], out = (a * mask) @ U [N, d]; with delta [vocab, d]:
// out[n] += delta_mask[n] * delta[tokens[n]]. scratch [N, C].
void RFN(embedding_components_forward)(real *out, real *a, const int32_t *tokens, const real *V, const real *U,
                                       const real *mask, const real *delta, const real *delta_mask, int N,
                                       int vocab, int C, int d, real *scratch);
// dV (scatter-add), dU, ddelta (accumulated); dmask, ddelta_mask (written).
void RFN(embedding_components_backward)(real *dV, real *dU, real *ddelta, real *dmask, real *ddelta_mask,
                                        const real *dout, const int32_t *tokens, const real *a, const real *V,
                                        const real *U, const real *mask, const real *delta,
                                        const real *delta_mask, int N, int vocab, int C, int d, real *scratch);
// Embedding delta is not transposed: delta = W - V @ U, W [vocab, d].
void RFN(embedding_weight_delta_forward)(real *delta, const real *W, const real *V, const real *U, int vocab,
                                         int C, int d);
// dV -= ddelta @ U^T, dU -= V^T @ ddelta.
void RFN(embedding_weight_delta_backward)(real *dV, real *dU, const real *ddelta, const real *V, const real *U,
                                          int vocab, int C, int d);

#endif
