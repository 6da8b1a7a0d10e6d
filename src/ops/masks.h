// Causal importances from a CI function's output, and the stochastic masks
// built from them (SPD_SPEC.md 1.6, 2.2, 3.1-3.3; spd/models/component_model.py
// calc_causal_importances, spd/utils/component_utils.py):
//
//   raw_lower = pre                        (sampling continuous)
//             = 1.05 pre - 0.05 u          (sampling binomial; u ~ U[0,1) per element)
//   ci_lower  = sigma_lower(raw_lower),  ci_upper = sigma_upper(pre)       (sigmoid.h)
//   m         = ci + (1 - ci) r          r ~ U[0,1) (continuous) or r in {0, 1} w.p. 1/2 (binomial)
//   m_delta   ~ U[0,1) per position, always continuous
//   PGD: m    = ci + (1 - ci) s          s: adversarial sources, possibly shared over positions
//
// Backward: g_ci = g_m (1 - r) (computed as g_m - g_m r, as autograd does),
// g_s = g_m (1 - ci); g_pre = 1.05^[binomial] sigma_lower'(raw) g_lower + sigma_upper'(pre) g_upper.
//
// Every random draw is a float32 uniform from Philox (core/philox.h) at
// (seed, stream, index), float32 in both precisions so the CPU and GPU, f32
// and f64, draw the same numbers; index = the element's flat index in the
// [N, C] (or [N]) tensor. A binomial draw is r = (u >= 0.5), the top bit of the
// Philox word. Each op also comes in a form taking the draws as a tensor, so
// tests can feed PyTorch's.
//
// Stream numbering (spd_rng_stream): one stream per (step, purpose, loss term,
// mask sample, module), packed without collisions into 64 bits:
//   bits 63..32 step | 31..28 purpose | 27..22 term | 21..12 sample | 11..0 module
//   - step: the training step (eval: the step it runs at);
//   - purpose: spd_rng_purpose below;
//   - term: the loss term's index in loss_metric_configs (eval metrics: their index
//     in the eval list, offset by SPD_RNG_EVAL_TERM); CI jitter uses term 0;
//   - sample: the mask sample s < n_mask_samples (PGD: the microbatch);
//     layerwise losses reuse sample s's stream for module l, as SPD reuses its masks;
//   - module: the decomposed module's index in SPD's order (routing streams span all
//     modules and use module 0; parameter init uses the tensor's spec-table index).
// SPD_RNG_INIT streams with step = term = sample = 0 are the spec table's
// tensor-index streams (spd_spec_init_values), so init stays as it is.
// seed: config.seed, and under data parallelism seed * world_size + rank (as
// SPD's seed_per_rank), so ranks draw different masks.
#ifndef SPD_OPS_MASKS_H
#define SPD_OPS_MASKS_H

#include <stdint.h>

#include "core/real.h"
#include "ops/sigmoid.h"

typedef enum {
    SPD_RNG_INIT = 0,    // parameter init
    SPD_RNG_DATA,        // toy-model data
    SPD_RNG_CI_JITTER,   // binomial jitter u of ci_lower
    SPD_RNG_MASK,        // component-mask draws r
    SPD_RNG_DELTA_MASK,  // delta-component masks
    SPD_RNG_ROUTING,     // routing masks (routing.h)
    SPD_RNG_PGD_INIT,    // PGD random source init
    SPD_RNG_PURPOSE_COUNT
} spd_rng_purpose;

#define SPD_RNG_MAX_PURPOSES 16
#define SPD_RNG_MAX_TERMS 64
#define SPD_RNG_EVAL_TERM 32
#define SPD_RNG_MAX_SAMPLES 1024
#define SPD_RNG_MAX_MODULES 4096

// The packed stream; term, sample and module out of range are internal errors
// (configs are validated against the SPD_RNG_MAX_* limits when loaded).
uint64_t spd_rng_stream(uint64_t step, spd_rng_purpose purpose, int term, int sample, int module);

typedef enum { SPD_MASK_CONTINUOUS, SPD_MASK_BINOMIAL, SPD_MASK_SAMPLING_COUNT } spd_mask_sampling;

// Config `sampling`: "continuous" or "binomial"; else an error (-1). The config
// layer's spd_sampling (spd/config.h) maps by name through spd_sampling_name.
int spd_mask_sampling_parse(const char *name, spd_mask_sampling *out);
const char *spd_mask_sampling_name(spd_mask_sampling s);

// r [n]: draw i of (seed, stream): u (continuous) or u >= 0.5 ? 1 : 0 (binomial).
void RFN(sample_draws)(real *r, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream);

// ---- CI from pre_sigmoid ------------------------------------------------------------

// pre [n] -> ci_lower [n], ci_upper [n] (either NULL to skip; ci_lower may alias
// pre, ci_upper may not). jitter: NULL (no jitter: continuous sampling) or the
// binomial jitter draws u [n].
void RFN(ci_forward)(real *ci_lower, real *ci_upper, const real *pre, const real *jitter, long n,
                     spd_sigmoid_pair sig);
// dci_lower [n], dci_upper [n] (either NULL: zero) -> dpre [n] (written).
void RFN(ci_backward)(real *dpre, const real *dci_lower, const real *dci_upper, const real *pre,
                      const real *jitter, long n, spd_sigmoid_pair sig);
// The same with the jitter drawn from Philox (seed, stream) when sampling is binomial.
void RFN(ci_forward_philox)(real *ci_lower, real *ci_upper, const real *pre, long n, spd_sigmoid_pair sig,
                            spd_mask_sampling sampling, uint64_t seed, uint64_t stream);
void RFN(ci_backward_philox)(real *dpre, const real *dci_lower, const real *dci_upper, const real *pre, long n,
                             spd_sigmoid_pair sig, spd_mask_sampling sampling, uint64_t seed, uint64_t stream);

// ---- masks ------------------------------------------------------------------------

// ci [N, C], s read at s[n * ld + c] -> m [N, C] = ci + (1 - ci) s.
// ld = C: one draw per element (stochastic masks from given draws r [N, C]);
// ld = C + 1: PGD sources [N, C + 1] whose last column is the delta mask;
// ld = 0: sources [C] shared across positions. m may alias ci.
void RFN(mask_interpolate_forward)(real *m, const real *ci, const real *s, int N, int C, int ld);
// dm [N, C] -> dci [N, C] = dm (1 - s) (written); ds (written, columns < C of
// each row of ld; ld = 0: ds [C] = sum_n dm (1 - ci), summed in float64).
// Either output may be NULL.
void RFN(mask_interpolate_backward)(real *dci, real *ds, const real *dm, const real *ci, const real *s, int N,
                                    int C, int ld);

// ci [n] -> m [n] = ci + (1 - ci) r, r = sample_draws(seed, stream). m may alias ci.
void RFN(mask_sample)(real *m, const real *ci, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream);
// dm [n] -> dci [n] = dm (1 - r) (written), r regenerated from (seed, stream).
void RFN(mask_sample_backward)(real *dci, const real *dm, long n, spd_mask_sampling sampling, uint64_t seed,
                               uint64_t stream);
// m_delta [N] ~ U[0,1) from (seed, stream), whatever the sampling.
void RFN(delta_mask_sample)(real *m_delta, long N, uint64_t seed, uint64_t stream);

// ---- PGD sources ----------------------------------------------------------------------

// s [n] <- clamp(s + step_size sign(g), 0, 1), sign(0) = 0, in float64 then rounded.
void RFN(pgd_source_step)(real *s, const real *g, long n, double step_size);
// The delta mask from sources whose column C is the delta's: m_delta [N] =
// s[n * ld + C] (ld = C + 1), or s[C] at every position (ld = 0: shared).
void RFN(pgd_delta_mask_gather)(real *m_delta, const real *s, int N, int C, int ld);
// ddelta [N] -> ds's column C (written): ds[n * ld + C] = ddelta[n], or (ld = 0)
// ds[C] = sum_n ddelta[n] in float64.
void RFN(pgd_delta_grad_scatter)(real *ds, const real *ddelta, int N, int C, int ld);

#endif
