// The benchmark losses: the seed's mean of logits (full model) and MSE to a
// random target (isolated op). The value is written to memory (a one-element
// tensor of the backend) so that a GPU step needs no host round trip. CPU sums
// accumulate in float64 in both precisions.
#ifndef SPD_OPS_LOSS_H
#define SPD_OPS_LOSS_H

#include <stdint.h>

#include "core/real.h"

// loss[0] = mean(logits[0..n)).
void RFN(mean_loss_forward)(real *loss, const real *logits, int64_t n);
// dlogits[i] = 1/n (written).
void RFN(mean_loss_backward)(real *dlogits, int64_t n);
// loss[0] = mean((y - target)^2).
void RFN(mse_loss_forward)(real *loss, const real *y, const real *target, int64_t n);
// dy = 2 (y - target) / n (written).
void RFN(mse_loss_backward)(real *dy, const real *y, const real *target, int64_t n);
// Both of the above from one pass over y and target (the same values).
void RFN(mse_loss_forward_backward)(real *loss, real *dy, const real *y, const real *target, int64_t n);

#endif
