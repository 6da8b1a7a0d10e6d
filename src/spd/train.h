// The SPD training step (docs/training.md; SPD_SPEC.md 2-5) over a target
// model whose decomposable matrices are linear sites: no autograd, each
// masked forward is followed at once by its own backward with the output
// gradient scaled by coeff / count_total of its loss term.
//
//   deltas -> clean forward (caching each module's input; y_t) -> CI (pre,
//   ci_lower, ci_upper) -> loss terms (forward + backward per masked forward,
//   mask -> CI chain) -> CI backward -> delta chain into V, U
//
// Implemented terms: FaithfulnessLoss, ImportanceMinimalityLoss,
// StochasticReconLoss, StochasticReconLayerwiseLoss, CIMaskedReconLoss,
// CIMaskedReconLayerwiseLoss, UnmaskedReconLoss, StochasticReconSubsetLoss,
// CIMaskedReconSubsetLoss, StochasticHiddenActsReconLoss, PGDReconLoss,
// PGDReconSubsetLoss, PGDReconLayerwiseLoss, with output loss mse or kl.
// Embedding sites (LlamaSimple's wte) are decomposed with ci_fn_type mlp only
// (SPD_SPEC.md 2.1): their CI input is a = V[tokens], tokens from target.tokens.
// Not yet: tied components on the GPU (TMS with tied target weights), data
// parallelism (hooks: world_size and coll in the options, spd/dist.h). The faithfulness warm-up is
// spd/faithfulness_warmup.h.
//
// Routing (subset terms) selects per position between a module's components
// and its target weight (component_module.routing): uniform_k_subset or
// static_probability, drawn per mask sample (StochasticReconSubset), once per
// loss call (CIMaskedReconSubset; PGDReconSubset: held over the PGD steps).
// PGD: sources s_l [N, C_l (+1 with the delta component: the delta mask's
// source, used directly)], or [C_l (+1)] shared across positions; init
// U[0,1) / ones / zeroes; n_steps of s <- clamp(s + step_size sign(dL/ds), 0, 1)
// (sign(0) = 0) with gradients w.r.t. the sources only (no parameter or CI
// gradient), then the final forward/backward with the sources constant.
// PGDReconLayerwise runs one PGD per module l with only l replaced.
// StochasticHiddenActsRecon compares module inputs (not with embedding sites).
//
// Random draws come from Philox streams (ops/masks.h spd_rng_stream), so a
// step is a deterministic function of (parameters, batch, seed, step): a
// finite-difference check re-running the step sees the same masks.
//
// Parameters: `_components.<dashed>.V` [d_in, C], `.U` [C, d_out] and
// `_ci_fns.<dashed>.layers.<2k>.W` / `.b` are TRAINED tensors of the caller's
// spec table (declared by spd_trainer_declare before spd_spec_alloc), so one
// AdamW pass over the TRAINED buffer updates all of them. The target's own
// parameters must be FROZEN.
//
// Every backend: compiled as _f32, _f64 and _cuda (float32 on the GPU, every
// buffer in device memory; the only reads back are the loss values and the
// gradient norms, scalars). Draw sources (checks) fill host memory that the
// CUDA build uploads.
#ifndef SPD_TRAIN_H
#define SPD_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/real.h"
#include "core/spec.h"
#include "models/linear_site.h"
#include "ops/adamw.h"
#include "ops/ci_fn.h"
#include "ops/masks.h"
#include "ops/routing.h"
#include "ops/output_loss.h"
#include "ops/sigmoid.h"
#include "spd/config.h"

#define SPD_TRAIN_MAX_TERMS 16

typedef enum {
    SPD_TERM_FAITHFULNESS,
    SPD_TERM_IMPORTANCE_MINIMALITY,
    SPD_TERM_STOCHASTIC_RECON,
    SPD_TERM_STOCHASTIC_RECON_LAYERWISE,
    SPD_TERM_CI_MASKED_RECON,
    SPD_TERM_CI_MASKED_RECON_LAYERWISE,
    SPD_TERM_UNMASKED_RECON,
    SPD_TERM_STOCHASTIC_RECON_SUBSET,
    SPD_TERM_CI_MASKED_RECON_SUBSET,
    SPD_TERM_STOCHASTIC_HIDDEN_ACTS_RECON,
    SPD_TERM_PGD_RECON,
    SPD_TERM_PGD_RECON_SUBSET,
    SPD_TERM_PGD_RECON_LAYERWISE,
    SPD_TERM_KIND_COUNT
} spd_term_kind;

// SPD's class name ("FaithfulnessLoss", ...), for logs.
const char *spd_term_kind_name(spd_term_kind k);

typedef struct {
    spd_term_kind kind;
    double coeff;
    spd_importance_minimality_config imp;  // ImportanceMinimalityLoss only
    // *Subset* terms: SPD_ROUTE_UNIFORM_K_SUBSET or SPD_ROUTE_STATIC_PROBABILITY
    // with p (SPD_ROUTE_ALL, the zero value, is taken as uniform_k_subset, SPD's default).
    spd_router router;
    // PGDRecon*: init, step_size, n_steps, mask_scope (gradient_accumulation_steps unused).
    spd_pgd_config pgd;
} spd_train_term;

// The term kind that trains SPD's loss metric class c (FaithfulnessLoss, ...); false when
// c is not a loss class spd.c trains.
bool spd_term_kind_of_metric(spd_metric_class c, spd_term_kind *k);
// The term of loss metric config mc: kind, coeff and the class's own settings
// (importance minimality, routing, PGD). -1 (no error set) when its class is not one.
int spd_train_term_of_metric(const spd_metric_config *mc, spd_train_term *t);

// Where the step's random draws come from: NULL in spd_train_options = Philox
// streams (spd_rng_stream(step, purpose, term, sample, module)); otherwise
// `fill` writes the draws of that key: component-mask draws r [N, C]
// (SPD_RNG_MASK; U[0,1), or 0/1 when binomial), delta masks [N]
// (SPD_RNG_DELTA_MASK), binomial CI jitter u [N, C] (SPD_RNG_CI_JITTER, term
// = sample = 0). For checks against draws taken from PyTorch SPD.
//
// Routing draws (subset terms), purpose SPD_RNG_ROUTING, at the term and the
// sample (StochasticReconSubset: the mask sample; CIMaskedReconSubset and
// PGDReconSubset: 0), i.e. reference names draws.<term>.<sample>.*:
//   module = SPD_DRAW_ROUTING_K (-1): uniform_k_subset's k [N], integers 1..L
//            as reals (`routing.k`);
//   module = l >= 0: module l's [N] draws, `{dashed}.route_noise`
//            (uniform_k_subset) or `{dashed}.route_u` (static_probability).
// The trainer derives the routing decision (`{dashed}.routed`) from them.
// PGD init draws (init random), purpose SPD_RNG_PGD_INIT, module l, sample 0
// (PGDReconLayerwise: the run's module index; every module's sources are asked
// in every run, as SPD draws them all): [N, C_l (+1)] (unique_per_datapoint)
// or [C_l (+1)] (shared_across_batch), the last column the delta mask's source
// when use_delta (`{dashed}.pgd_init`).
// StochasticReconSubset and StochasticHiddenActsRecon draw r (+ delta) per
// mask sample like StochasticRecon.
typedef struct {
    void (*fill)(void *ctx, real *out, long n, spd_rng_purpose purpose, int64_t step, int term, int sample,
                 int module);
    void *ctx;
} spd_draw_source;

#define SPD_DRAW_ROUTING_K (-1)

// Data parallelism's collectives inside a step (spd/dist.h; this backend's
// memory): shared PGD sources are broadcast from rank 0 after their init and
// their gradients averaged over ranks at each PGD step (SPD_SPEC.md 5.9).
typedef struct {
    void (*broadcast)(void *ctx, real *buf, long n);
    void (*allreduce_avg)(void *ctx, real *buf, long n);
    void *ctx;
} spd_collectives;

typedef struct {
    const spd_draw_source *draws;  // NULL: Philox
    spd_train_term terms[SPD_TRAIN_MAX_TERMS];  // the term index is its Philox stream's `term`
    int n_terms;
    spd_divergence output_loss;
    spd_ci_fn_kind ci_kind;
    int ci_hidden[SPD_CI_FN_MAX_LAYERS - 1];
    int n_ci_hidden;
    spd_sigmoid_pair sigmoid;
    spd_mask_sampling sampling;
    int n_mask_samples;  // S >= 1
    bool use_delta;      // use_delta_component
    uint64_t seed;       // mask seed (SPD's seed_per_rank; single process: config.seed)
    // ---- data parallelism (spd/dist.h); zero / NULL: a single process
    int world_size;              // importance minimality's beta term: local sums x world (SPD); 0 = 1
    const spd_collectives *coll;  // shared PGD sources across ranks
    int64_t steps;       // total steps T (the schedule's and p-annealing's denominator)
    spd_schedule_config lr;
    double grad_clip_components, grad_clip_ci_fns;  // <= 0: no clipping
    double beta1, beta2, adam_eps, weight_decay;     // SPD: 0.9, 0.999, 1e-8, 0
} spd_train_options;

// SPD's defaults: leaky_hard, continuous, S = 1, delta on, vector_mlp [8], Adam
// (0.9, 0.999, 1e-8, wd 0), constant lr 1e-3, no clipping, mse, no terms.
void spd_train_options_default(spd_train_options *o);
// Everything of cfg but the loss terms: output loss, CI function (type, hidden dims),
// sigmoids, sampling, mask samples, delta, seed, steps, lr schedule, clipping.
// 0, or -1 with spd_last_error() (a value spd.c does not support; no file name).
int spd_train_options_settings(const spd_config *cfg, spd_train_options *o);

// The target as the trainer sees it: its sites in SPD's module order, one
// forward (input already in place -> out) and one backward (dout -> the
// attached components' gradients). N positions, d_out output width.
typedef struct {
    void *model;
    linear_site *sites;
    int n_sites;
    int N, d_out;
    real *out, *dout;
    const int32_t *tokens;  // [N] input token ids, for embedding sites (NULL when there are none)
    void (*forward)(void *model);
    void (*backward)(void *model);
} spd_target;

// Per decomposed module: the component module the site dispatches to, its CI
// function and the step's CI state.
typedef struct {
    component_module comp;
    int site;  // index into target.sites
    int d_in, d_out;
    int t_V, t_U, t_W[SPD_CI_FN_MAX_LAYERS], t_b[SPD_CI_FN_MAX_LAYERS];  // spec indices
    ci_fn ci;
    real *x_cache;            // [N, d_in] clean input (embedding: unused, the input is target.tokens)
    real *ci_in, *dci_in;     // [N, C] mlp's CI input a = x V and its gradient (mlp only)
    real *pre, *dpre;         // [N, C]
    real *ci_lower, *ci_upper, *dci_lower, *dci_upper, *tmp;  // [N, C]
    real *mask_buf, *dmask_buf, *delta_mask_buf;             // [N, C], [N, C], [N]
    real *r_buf, *jitter_buf;  // [N, C]: draws from a draw source (unused with Philox)
    real *hid_buf, *dhid_buf;  // [N, d_in]: masked input and its loss gradient (hidden-acts)
    real *pgd_src, *pgd_grad;  // [N, C + 1]: PGD sources (after a step: the last PGD run's final sources)
    real *ddelta_mask_buf;     // [N]
} spd_train_module;

typedef struct {
    spd_train_options opt;
    spd_target target;
    spd_spec *spec;
    spd_train_module *mods;
    int n_mods;
    real *y_t;          // [N, d_out] clean output
    uint8_t *routed;    // [L][N] routing masks of the current forward (this backend's memory)
    uint8_t *routed_host;  // [L][N] host staging for routing from a draw source
    int64_t *route_k;   // [N]
    float *route_draws; // [L][N]
    real *route_tmp;    // [N]
    double *imp_sums;   // [sum C] (this backend's memory)
    double values[SPD_TRAIN_MAX_TERMS];  // raw (unweighted) term values of the last step
    double total;                        // sum coeff * value
    double grad_norm_components, grad_norm_ci_fns;  // before clipping, of the last update
    int64_t adam_t;     // updates made
    // Evaluation: spd_train_step computes the loss values and the CI but no gradients
    // (PGD's inner steps still take their source gradients). Same values, about half
    // the work. Set after spd_trainer_declare (which clears it).
    bool forward_only;
} spd_trainer;

// Declares the components (V init N(0, 1/d_in), U N(0, 1/C)) and CI-function
// parameters of the chosen sites (site[i] with C[i] components) into spec;
// target.sites must be ready (paths, shapes). Validates the options; 0, or -1
// with spd_last_error().
int RFN(spd_trainer_declare)(spd_trainer *t, spd_spec *spec, const spd_train_options *opt, const spd_target *target,
                             const int *site, const int *C, int n);
// After spd_spec_alloc and the target's bind: pointers, work buffers, and the
// component modules attached to their sites. target->sites' W pointers must be bound.
void RFN(spd_trainer_bind)(spd_trainer *t, const spd_target *target);
// SPD's init of components and CI functions, from Philox `seed` by spec index.
void RFN(spd_trainer_init_params)(spd_trainer *t, uint64_t seed);
// One step's loss and gradients at `step` (the target's input already filled):
// zeroes the gradients, fills t->values and t->total, returns the total.
double RFN(spd_train_step)(spd_trainer *t, int64_t step);
// The optimizer step after spd_train_step: lr = schedule(step), clipping per
// group when configured, AdamW over the TRAINED buffer.
void RFN(spd_train_update)(spd_trainer *t, int64_t step);
void RFN(spd_trainer_free)(spd_trainer *t);

#endif
