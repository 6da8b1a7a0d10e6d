// The output divergence D of the reconstruction losses (SPD_SPEC.md 4.0;
// SPD's calc_sum_recon_loss_lm and calc_kl_divergence_lm), as sum-and-count
// pieces so that losses with several forwards add sums and counts and divide
// once:
//
//   mse  sumD = sum over all elements of (pred - target)^2      count = n_pos * dim
//   kl   sumD = sum over positions of KL(p || q),               count = n_pos
//        p = softmax(target), log q = log_softmax(pred) over the last dim,
//        KL = sum_v p_v (log p_v - log q_v); classes with p_v = 0 add 0 (torch's
//        kl_div is xlogy(p, p) - p log q). Target distribution first.
//
// The target is the clean model's output (no gradient). Sums, softmax and
// log-sum-exp are evaluated in float64 with the row maximum subtracted, in both
// precisions, in the forms of torch's CPU kernels (softmax = exp(x - max) *
// (1 / sum), log_softmax = (x - max) - log(sum), autograd's order in backward),
// so float64 results on short rows agree with torch to the bit; longer rows
// differ only by the order of the sums.
#ifndef SPD_OPS_OUTPUT_LOSS_H
#define SPD_OPS_OUTPUT_LOSS_H

#include <stdint.h>

#include "core/real.h"

// SPD's output_loss_type. (The config layer has its own enum, spd/config.h:
// SPD_OUTPUT_LOSS_MSE maps to SPD_DIVERGENCE_MSE, SPD_OUTPUT_LOSS_KL to _KL.)
typedef enum { SPD_DIVERGENCE_MSE, SPD_DIVERGENCE_KL } spd_divergence;

// pred, target [n_pos, dim] -> sumD; *count (written, if non-NULL) = the
// number of terms the mean divides by.
double RFN(output_loss_sum)(spd_divergence kind, int64_t *count, const real *pred, const real *target,
                            int64_t n_pos, int64_t dim);

// dpred [n_pos, dim] (written) = scale * d sumD / d pred; the caller passes
// scale = coeff / total count. mse: scale 2 (pred - target); kl: scale
// (q_v sum_w p_w - p_v), the chain through log_softmax as autograd evaluates it.
void RFN(output_loss_backward)(spd_divergence kind, real *dpred, const real *pred, const real *target,
                               int64_t n_pos, int64_t dim, double scale);

// StochasticHiddenActsRecon's piece of one module: h, x [n] (masked and clean
// inputs) -> sum (h - x)^2 in float64; dh [n] (written) = scale 2 (h - x).
double RFN(hidden_acts_loss)(real *dh, const real *h, const real *x, int64_t n, double scale);

#endif
