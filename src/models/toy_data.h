// SPD's toy data (SPD_SPEC.md 7.4; spd/utils/data_utils.py SparseFeatureDataset,
// spd/experiments/resid_mlp/resid_mlp_dataset.py ResidMLPDataset): batches of
// sparse feature vectors x [B, n_features] and their labels.
//
// data_generation_type (SPD's DataGenerationType literal):
//   at_least_zero_active  x[b,f] = U(min, max) * [u[b,f] < feature_probability]:
//                         an independent Bernoulli per feature, all-zero rows allowed
//   exactly_{one..five}_active
//                         per row, n features chosen uniformly without replacement
//                         (SPD: argsort of U[0,1) keys, first n), each U(min, max);
//                         the j-th smallest key gets value j
// value range: TMS (0, 1), ResidMLP (-1, 1). Values are min + (max - min) u, u in [0, 1).
// synced_inputs (at_least_zero_active only, as SPD): disjoint feature groups; where
//   any feature of a group is non-zero, every feature of the group gets a fresh
//   value max - (max - min) u (SPD unpacks value_range as (max, min) there; the
//   range is the same, the endpoint that can be hit is max).
// Labels:
//   input           labels = x (TMS training; every SPD decomposition, whose target is
//                   the model's output)
//   act_plus_resid  labels = act(c * x) + x, act relu or exact-erf gelu (ResidMLP training)
//   abs             labels = |c * x|
//   c [n_features]: ones (use_trivial_label_coeffs, the reference targets), given
//   (a target run's label_coeffs.json), or 1 + U[0,1) (spd_toy_label_coeffs_random).
//
// Randomness: SPD draws every batch from torch's global RNG; here every number is
// the float32 Philox draw at (seed, stream, index), so a batch is a pure function of
// (seed, step, eval index, row) and float32 and float64 runs, CPU and GPU, see the
// same data. Streams: spd_rng_stream(step, SPD_RNG_DATA, term, sample, 0) with
//   term   0 values, 1 Bernoulli draws / permutation keys, 2 + g synced group g
//          (+ SPD_RNG_EVAL_TERM for eval batches); term 31: label coefficients
//   sample eval batch index (0 for training)
// and index = row * n_features + feature (values of exactly-n: row * n + j). Rows
// are global: a data-parallel rank can draw its slice [row0, row0 + B) of the
// global batch and the union equals the single-process batch.
// Host memory, and spd_toy_batch_cuda (src/cuda/toy_data.cu, CUDA builds) for the GPU.
#ifndef SPD_TOY_DATA_H
#define SPD_TOY_DATA_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    SPD_TOY_AT_LEAST_ZERO_ACTIVE = 0,
    SPD_TOY_EXACTLY_ONE_ACTIVE = 1,  // the enum value is the number of active features
    SPD_TOY_EXACTLY_TWO_ACTIVE = 2,
    SPD_TOY_EXACTLY_THREE_ACTIVE = 3,
    SPD_TOY_EXACTLY_FOUR_ACTIVE = 4,
    SPD_TOY_EXACTLY_FIVE_ACTIVE = 5,
    SPD_TOY_GENERATION_COUNT
} spd_toy_generation;

typedef enum { SPD_TOY_LABELS_INPUT, SPD_TOY_LABELS_ACT_PLUS_RESID, SPD_TOY_LABELS_ABS } spd_toy_label_type;
typedef enum { SPD_TOY_ACT_RELU, SPD_TOY_ACT_GELU } spd_toy_act;

#define SPD_TOY_MAX_SYNCED_GROUPS 29  // terms 2..30 of the data stream; 31 is the label coefficients'

typedef struct {
    int n_features;
    double feature_probability;
    spd_toy_generation generation;
    double value_min, value_max;
    uint64_t seed;
    int n_synced_groups;
    int *synced_group;  // [n_features]: the feature's group, or -1; NULL without synced inputs
    spd_toy_label_type label_type;
    spd_toy_act label_act;
    double *label_coeffs;  // [n_features] (owned), NULL for SPD_TOY_LABELS_INPUT
} spd_toy_data;

// "at_least_zero_active", "exactly_one_active", ... "exactly_five_active"; else -1 with a message.
int spd_toy_generation_parse(const char *name, spd_toy_generation *out);
const char *spd_toy_generation_name(spd_toy_generation g);

// Validates (n_features >= 1, feature_probability in [0, 1], min < max, n active <=
// n_features) with a message, 0 or -1. Labels start as SPD_TOY_LABELS_INPUT.
int spd_toy_data_init(spd_toy_data *d, int n_features, double feature_probability, spd_toy_generation generation,
                      double value_min, double value_max, uint64_t seed);
// The two datasets SPD builds: TMS (value range (0, 1)) and ResidMLP ((-1, 1)).
int spd_toy_data_init_tms(spd_toy_data *d, int n_features, double feature_probability,
                          spd_toy_generation generation, uint64_t seed);
int spd_toy_data_init_resid_mlp(spd_toy_data *d, int n_features, double feature_probability,
                                spd_toy_generation generation, uint64_t seed);
// groups[g][0..sizes[g]) are feature indices; groups must be disjoint and in range,
// and the generation at_least_zero_active. 0 or -1 with a message.
int spd_toy_data_set_synced_inputs(spd_toy_data *d, const int *const *groups, const int *sizes, int n_groups);
// coeffs [n_features] or NULL for ones (use_trivial_label_coeffs); copied.
void spd_toy_data_set_labels(spd_toy_data *d, spd_toy_label_type type, spd_toy_act act, const double *coeffs);
// out[f] = 1 + U[0,1) from Philox (label_fn_seed, spd_rng_stream(0, SPD_RNG_DATA, 31, 0, 0)):
// SPD's calc_label_coeffs distribution (its torch generator's numbers differ).
void spd_toy_label_coeffs_random(double *out, int n_features, uint64_t label_fn_seed);
void spd_toy_data_free(spd_toy_data *d);

// Rows [row0, row0 + B) of the batch (step, eval_index): eval_index -1 for the
// training batch of `step`, 0.. for eval batch number eval_index drawn at `step`.
// x [B, n_features]; labels [B, n_features] or NULL.
void spd_toy_batch_f64(const spd_toy_data *d, uint64_t step, int eval_index, int64_t row0, int B, double *x,
                       double *labels);
// The same numbers rounded to float32 (the draws are identical; x is min + (max - min) u
// computed in float64, then rounded once).
void spd_toy_batch_f32(const spd_toy_data *d, uint64_t step, int eval_index, int64_t row0, int B, float *x,
                       float *labels);

// spd_toy_batch_f32's x drawn on the GPU into device memory x [B, n_features], the
// same floats (CUDA builds; src/cuda/toy_data.cu). at_least_zero_active without
// synced groups only: otherwise -1 and nothing written (draw on the host).
int spd_toy_batch_cuda(const spd_toy_data *d, uint64_t step, int eval_index, int64_t row0, int B, float *x);

#endif
