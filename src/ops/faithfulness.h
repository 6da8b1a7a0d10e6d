// Faithfulness loss (SPD_SPEC.md 4.1; SPD's FaithfulnessLoss): the mean squared
// entry of the weight deltas of all decomposed modules together,
//   L_faith = sum_l ||delta_l||_F^2 / sum_l numel(delta_l),
// delta_l = W_l - (V_l U_l)^T (components.h weight_delta_forward). Sums in float64.
#ifndef SPD_OPS_FAITHFULNESS_H
#define SPD_OPS_FAITHFULNESS_H

#include <stdint.h>

#include "core/real.h"

// deltas[l] [numel[l]], l < n_modules -> L_faith.
double RFN(faithfulness_loss_forward)(const real *const *deltas, const int64_t *numel, int n_modules);

// ddeltas[l] [numel[l]] += scale * 2 delta_l / sum_l numel(delta_l) (accumulated:
// the weight delta's gradient also collects the masked forwards' delta paths).
// scale = the loss coefficient.
void RFN(faithfulness_loss_backward)(real *const *ddeltas, const real *const *deltas, const int64_t *numel,
                                     int n_modules, double scale);

#endif
