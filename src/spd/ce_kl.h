// CEandKLLosses (SPD_SPEC.md 8; spd/metrics/ce_and_kl_losses.py), the LM eval
// metric, over a LlamaSimple component model (models/component_model.h):
// batch tokens [B, S], ci[l] [B*S, C_l] (ci_lower, SPD's module order), and
// seven forwards: the target (every module on its target weight) and six masked
// ones, each without the delta component except stoch_masked:
//   ci_masked      mask = ci
//   stoch_masked   mask = ci + (1 - ci) r (r U[0,1), or {0,1} for binomial),
//                  delta component on with a U[0,1) delta mask per position
//                  (whatever use_delta_component says, as SPD)
//   unmasked       mask = 1
//   random_masked  mask = U[0,1)
//   rounded_masked mask = 1[ci > rounding_threshold]
//   zero_masked    mask = 0
// CE: next-token cross-entropy within each sequence (SPD's flattened shift with
// column 0 ignored: B (S - 1) predictions); KL: mean over B*S positions of
// KL(softmax(target) || softmax(pred)). Per batch: kl_<X> for all six,
// ce_difference_<X> = CE_X - CE_target and ce_unrecovered_<X> = (CE_X - CE_target)
// / (CE_zero - CE_target) for the five non-zero ones; across batches each value is
// weighted by B*S (SPD's loss_sums / n_positions). Keys "ce_kl/<key>" in SPD's order.
//
// CPU only (host loops over the logits), like the trainer.
#ifndef SPD_CE_KL_H
#define SPD_CE_KL_H

#include <stdint.h>

#include "core/real.h"
#include "models/component_model.h"
#include "ops/masks.h"
#include "spd/metrics.h"

#define SPD_CE_KL_N_KEYS 16

// SPD's loss_keys order.
extern const char *const spd_ce_kl_keys[SPD_CE_KL_N_KEYS];

typedef struct {
    double sums[SPD_CE_KL_N_KEYS];
    double n_positions;
} spd_ce_kl_acc;

// The random draws of one batch, per module in cm's order: stochastic sources r
// [N, C_l], delta masks [N], random masks [N, C_l]. NULL: Philox (seed, streams
// spd_rng_stream(step, SPD_RNG_MASK / SPD_RNG_DELTA_MASK, term, sample, l) with
// sample 0 for the stochastic masks and 1 for the random ones).
typedef struct {
    const real *const *stoch_r;
    const real *const *delta;
    const real *const *random;
} spd_ce_kl_draws;

typedef struct {
    double rounding_threshold;
    spd_mask_sampling sampling;
    const spd_ce_kl_draws *draws;  // NULL: Philox
    uint64_t seed;
    int64_t step;
    int term;  // the metric's index in the eval list, offset by SPD_RNG_EVAL_TERM
} spd_ce_kl_options;

// Next-token CE within sequences: logits [B*S, V], tokens [B*S] -> mean over B (S - 1).
double RFN(spd_lm_next_token_ce)(const real *logits, const int32_t *tokens, int B, int S, int V);

// One batch (cm's tokens already in cm->target.tokens): the 16 values into out
// (SPD_CE_KL_N_KEYS, SPD's order) and, when acc is given, added to it weighted by
// B*S. The modules' masks, delta masks and `replaced` are restored afterwards.
void RFN(spd_ce_kl_batch)(component_model *cm, const real *const *ci, const spd_ce_kl_options *opt, double *out,
                          spd_ce_kl_acc *acc);

// "ce_kl/<key>" = sums / n_positions.
void spd_ce_kl_compute(const spd_ce_kl_acc *acc, spd_metric_list *out);

#endif
