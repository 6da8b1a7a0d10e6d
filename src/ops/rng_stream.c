// Philox stream numbering and the names of the sampling modes.
// Compiled once (precision-free); the precision-generic ops are in the file of the same concept.
#include "ops/masks.h"
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/philox.h"

uint64_t spd_rng_stream(uint64_t step, spd_rng_purpose purpose, int term, int sample, int module) {
    SPD_ASSERT(step <= UINT32_MAX);
    SPD_ASSERT(purpose >= 0 && purpose < SPD_RNG_MAX_PURPOSES);
    SPD_ASSERT(term >= 0 && term < SPD_RNG_MAX_TERMS);
    SPD_ASSERT(sample >= 0 && sample < SPD_RNG_MAX_SAMPLES);
    SPD_ASSERT(module >= 0 && module < SPD_RNG_MAX_MODULES);
    return step << 32 | (uint64_t)purpose << 28 | (uint64_t)term << 22 | (uint64_t)sample << 12 | (uint64_t)module;
}

static const char *const sampling_names[SPD_MASK_SAMPLING_COUNT] = {"continuous", "binomial"};

int spd_mask_sampling_parse(const char *name, spd_mask_sampling *out) {
    for (int s = 0; s < SPD_MASK_SAMPLING_COUNT; s++)
        if (strcmp(name, sampling_names[s]) == 0) {
            *out = (spd_mask_sampling)s;
            return 0;
        }
    return spd_set_error("sampling: expected one of continuous, binomial, found \"%s\"", name);
}

const char *spd_mask_sampling_name(spd_mask_sampling s) {
    SPD_ASSERT(s >= 0 && s < SPD_MASK_SAMPLING_COUNT);
    return sampling_names[s];
}
