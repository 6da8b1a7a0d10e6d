// Gradient norm and clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2,
// error_if_nonfinite False), applied by SPD to the component parameters and to
// the CI-function parameters separately (SPD_SPEC.md 5.6):
//   n = ||concat(grads)||_2,  coef = max_norm / (n + 1e-6),
//   grads *= min(coef, 1)
// torch multiplies by the clamped coefficient unconditionally; multiplying by
// 1 changes nothing, so here the grads are touched only when coef < 1 — or is
// NaN (a NaN norm), which torch's clamp propagates into every gradient.
// The norm is accumulated in float64 in both precisions.
#ifndef SPD_OPS_GRAD_CLIP_H
#define SPD_OPS_GRAD_CLIP_H

#include <stdint.h>

#include "core/real.h"

// grads[i] [numel[i]], i < n_bufs -> the L2 norm of all of them together.
double RFN(grad_norm)(const real *const *grads, const int64_t *numel, int n_bufs);

// Clips in place; returns the total norm before clipping (what torch returns).
// The coefficient is rounded to the storage precision before the multiply, as
// torch holds it in a tensor of the gradients' dtype.
double RFN(clip_grad_norm)(real *const *grads, const int64_t *numel, int n_bufs, double max_norm);

#endif
