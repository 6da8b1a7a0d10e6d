// SPD's sparse-feature toy data from Philox streams; see toy_data.h.
// Compiled once: batches are generated in float64 and rounded for float32.
#include "models/toy_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/philox.h"
#include "ops/masks.h"

enum { TERM_VALUES = 0, TERM_KEYS = 1, TERM_SYNCED = 2, TERM_LABEL_COEFFS = 31 };

static const char *const generation_names[SPD_TOY_GENERATION_COUNT] = {
    "at_least_zero_active", "exactly_one_active",  "exactly_two_active",
    "exactly_three_active", "exactly_four_active", "exactly_five_active"};

int spd_toy_generation_parse(const char *name, spd_toy_generation *out) {
    for (int g = 0; g < SPD_TOY_GENERATION_COUNT; g++)
        if (strcmp(name, generation_names[g]) == 0) {
            *out = (spd_toy_generation)g;
            return 0;
        }
    return spd_set_error("data_generation_type: expected one of at_least_zero_active, exactly_one_active, "
                         "exactly_two_active, exactly_three_active, exactly_four_active, exactly_five_active, "
                         "found \"%s\"",
                         name);
}

const char *spd_toy_generation_name(spd_toy_generation g) {
    SPD_ASSERT(g >= 0 && g < SPD_TOY_GENERATION_COUNT);
    return generation_names[g];
}

int spd_toy_data_init(spd_toy_data *d, int n_features, double feature_probability, spd_toy_generation generation,
                      double value_min, double value_max, uint64_t seed) {
    memset(d, 0, sizeof *d);
    if (n_features < 1) return spd_set_error("toy data: n_features: expected at least 1, found %d", n_features);
    if (!(feature_probability >= 0 && feature_probability <= 1))
        return spd_set_error("toy data: feature_probability: expected a number in [0, 1], found %g",
                             feature_probability);
    if (generation < 0 || generation >= SPD_TOY_GENERATION_COUNT)
        return spd_set_error("toy data: unknown data_generation_type %d", (int)generation);
    if ((int)generation > n_features)
        return spd_set_error("toy data: %s needs at least %d features, found n_features %d",
                             generation_names[generation], (int)generation, n_features);
    if (!(value_min < value_max) || !isfinite(value_min) || !isfinite(value_max))
        return spd_set_error("toy data: value_range: expected finite min < max, found (%g, %g)", value_min,
                             value_max);
    d->n_features = n_features;
    d->feature_probability = feature_probability;
    d->generation = generation;
    d->value_min = value_min;
    d->value_max = value_max;
    d->seed = seed;
    d->label_type = SPD_TOY_LABELS_INPUT;
    return 0;
}

int spd_toy_data_init_tms(spd_toy_data *d, int n_features, double feature_probability,
                          spd_toy_generation generation, uint64_t seed) {
    return spd_toy_data_init(d, n_features, feature_probability, generation, 0.0, 1.0, seed);
}

int spd_toy_data_init_resid_mlp(spd_toy_data *d, int n_features, double feature_probability,
                                spd_toy_generation generation, uint64_t seed) {
    return spd_toy_data_init(d, n_features, feature_probability, generation, -1.0, 1.0, seed);
}

int spd_toy_data_set_synced_inputs(spd_toy_data *d, const int *const *groups, const int *sizes, int n_groups) {
    if (d->generation != SPD_TOY_AT_LEAST_ZERO_ACTIVE)
        return spd_set_error("toy data: synced_inputs apply to at_least_zero_active only, found %s",
                             generation_names[d->generation]);
    if (n_groups < 0 || n_groups > SPD_TOY_MAX_SYNCED_GROUPS)
        return spd_set_error("toy data: synced_inputs: expected at most %d groups, found %d",
                             SPD_TOY_MAX_SYNCED_GROUPS, n_groups);
    int *group = spd_malloc((size_t)d->n_features * sizeof *group);
    for (int f = 0; f < d->n_features; f++) group[f] = -1;
    for (int g = 0; g < n_groups; g++)
        for (int j = 0; j < sizes[g]; j++) {
            int f = groups[g][j];
            if (f < 0 || f >= d->n_features) {
                free(group);
                return spd_set_error("toy data: synced_inputs[%d][%d]: expected a feature index in [0, %d), found %d",
                                     g, j, d->n_features, f);
            }
            if (group[f] >= 0) {
                spd_set_error("toy data: synced_inputs: feature %d is in groups %d and %d (groups must be "
                              "non-overlapping)",
                              f, group[f], g);
                free(group);
                return -1;
            }
            group[f] = g;
        }
    free(d->synced_group);
    d->synced_group = n_groups ? group : NULL;
    if (!n_groups) free(group);
    d->n_synced_groups = n_groups;
    return 0;
}

void spd_toy_data_set_labels(spd_toy_data *d, spd_toy_label_type type, spd_toy_act act, const double *coeffs) {
    free(d->label_coeffs);
    d->label_coeffs = NULL;
    d->label_type = type;
    d->label_act = act;
    if (type == SPD_TOY_LABELS_INPUT) return;
    d->label_coeffs = spd_malloc((size_t)d->n_features * sizeof *d->label_coeffs);
    for (int f = 0; f < d->n_features; f++) d->label_coeffs[f] = coeffs ? coeffs[f] : 1.0;
}

void spd_toy_label_coeffs_random(double *out, int n_features, uint64_t label_fn_seed) {
    uint64_t stream = spd_rng_stream(0, SPD_RNG_DATA, TERM_LABEL_COEFFS, 0, 0);
    for (int f = 0; f < n_features; f++) out[f] = 1.0 + spd_philox_uniform_f32(label_fn_seed, stream, (uint64_t)f);
}

void spd_toy_data_free(spd_toy_data *d) {
    free(d->synced_group);
    free(d->label_coeffs);
    memset(d, 0, sizeof *d);
}

typedef struct {
    const spd_toy_data *d;
    uint64_t step;
    int term_base, sample;
} draws;

static double uniform(const draws *r, int term, uint64_t index) {
    uint64_t stream = spd_rng_stream(r->step, SPD_RNG_DATA, r->term_base + term, r->sample, 0);
    return spd_philox_uniform_f32(r->d->seed, stream, index);
}

static void row_at_least_zero(const draws *r, int64_t row, double *x) {
    const spd_toy_data *d = r->d;
    const int F = d->n_features;
    const double lo = d->value_min, span = d->value_max - d->value_min;
    for (int f = 0; f < F; f++) {
        uint64_t i = (uint64_t)row * (uint64_t)F + (uint64_t)f;
        double v = lo + span * uniform(r, TERM_VALUES, i);
        x[f] = uniform(r, TERM_KEYS, i) < d->feature_probability ? v : 0.0;
    }
    for (int g = 0; g < d->n_synced_groups; g++) {
        bool any = false;
        for (int f = 0; f < F; f++) any |= d->synced_group[f] == g && x[f] != 0.0;
        if (!any) continue;
        for (int f = 0; f < F; f++)
            if (d->synced_group[f] == g)
                x[f] = d->value_max - span * uniform(r, TERM_SYNCED + g, (uint64_t)row * (uint64_t)F + (uint64_t)f);
    }
}

// The n features with the smallest keys (ties to the lower index), as SPD's
// argsort of U[0,1) keys; the j-th smallest gets value j.
static void row_exactly_n(const draws *r, int64_t row, int n, double *x) {
    const spd_toy_data *d = r->d;
    const int F = d->n_features;
    int chosen[5];
    double chosen_key[5];
    for (int f = 0; f < F; f++) x[f] = 0.0;
    int k = 0;
    for (int f = 0; f < F; f++) {
        double key = uniform(r, TERM_KEYS, (uint64_t)row * (uint64_t)F + (uint64_t)f);
        if (k == n && !(key < chosen_key[n - 1])) continue;
        int j = k < n ? k++ : n - 1;  // insertion into the sorted list of the n smallest
        while (j > 0 && key < chosen_key[j - 1]) {
            chosen[j] = chosen[j - 1];
            chosen_key[j] = chosen_key[j - 1];
            j--;
        }
        chosen[j] = f;
        chosen_key[j] = key;
    }
    for (int j = 0; j < n; j++)
        x[chosen[j]] = d->value_min + (d->value_max - d->value_min) *
                                          uniform(r, TERM_VALUES, (uint64_t)row * (uint64_t)n + (uint64_t)j);
}

static double label_of(const spd_toy_data *d, int f, double x) {
    double z = d->label_coeffs[f] * x;
    if (d->label_type == SPD_TOY_LABELS_ABS) return fabs(z);
    double act = d->label_act == SPD_TOY_ACT_RELU ? (z > 0 ? z : 0) : 0.5 * z * (1 + erf(z * M_SQRT1_2));
    return act + x;
}

void spd_toy_batch_f64(const spd_toy_data *d, uint64_t step, int eval_index, int64_t row0, int B, double *x,
                       double *labels) {
    SPD_ASSERT(d->n_features >= 1 && B >= 0 && row0 >= 0);
    SPD_ASSERT(eval_index >= -1 && eval_index < SPD_RNG_MAX_SAMPLES);
    draws r = {d, step, eval_index >= 0 ? SPD_RNG_EVAL_TERM : 0, eval_index >= 0 ? eval_index : 0};
    const int F = d->n_features;
    for (int b = 0; b < B; b++) {
        double *xr = x + (int64_t)b * F;
        if (d->generation == SPD_TOY_AT_LEAST_ZERO_ACTIVE)
            row_at_least_zero(&r, row0 + b, xr);
        else
            row_exactly_n(&r, row0 + b, (int)d->generation, xr);
        if (!labels) continue;
        double *yr = labels + (int64_t)b * F;
        for (int f = 0; f < F; f++) yr[f] = d->label_type == SPD_TOY_LABELS_INPUT ? xr[f] : label_of(d, f, xr[f]);
    }
}

void spd_toy_batch_f32(const spd_toy_data *d, uint64_t step, int eval_index, int64_t row0, int B, float *x,
                       float *labels) {
    const int64_t n = (int64_t)B * d->n_features;
    double *xd = spd_malloc((size_t)(n ? n : 1) * sizeof *xd);
    double *yd = labels ? spd_malloc((size_t)(n ? n : 1) * sizeof *yd) : NULL;
    spd_toy_batch_f64(d, step, eval_index, row0, B, xd, yd);
    for (int64_t i = 0; i < n; i++) x[i] = (float)xd[i];
    if (labels)
        for (int64_t i = 0; i < n; i++) labels[i] = (float)yd[i];
    free(xd);
    free(yd);
}
