// Sigmoid types: names and the (lower, upper) pair of each config value.
// Compiled once (precision-free); the precision-generic ops are in the file of the same concept.
#include "ops/sigmoid.h"
#include <math.h>
#include <string.h>
#include "core/error.h"

static const char *const fn_names[SPD_SIGMOID_FN_COUNT] = {
    [SPD_SIGMOID_FN_HARD] = "hard",
    [SPD_SIGMOID_FN_LOWER_LEAKY_HARD] = "lower_leaky_hard",
    [SPD_SIGMOID_FN_UPPER_LEAKY_HARD] = "upper_leaky_hard",
    [SPD_SIGMOID_FN_LEAKY_HARD] = "leaky_hard",
    [SPD_SIGMOID_FN_LOGISTIC] = "normal",
    [SPD_SIGMOID_FN_SWISH_HARD] = "swish_hard",
};

static const struct {
    const char *name;
    spd_sigmoid_pair pair;
} sigmoid_types[] = {
    {"normal", {SPD_SIGMOID_FN_LOGISTIC, SPD_SIGMOID_FN_LOGISTIC}},
    {"hard", {SPD_SIGMOID_FN_HARD, SPD_SIGMOID_FN_HARD}},
    {"leaky_hard", {SPD_SIGMOID_FN_LOWER_LEAKY_HARD, SPD_SIGMOID_FN_UPPER_LEAKY_HARD}},
    {"upper_leaky_hard", {SPD_SIGMOID_FN_UPPER_LEAKY_HARD, SPD_SIGMOID_FN_UPPER_LEAKY_HARD}},
    {"swish_hard", {SPD_SIGMOID_FN_SWISH_HARD, SPD_SIGMOID_FN_SWISH_HARD}},
};

int spd_sigmoid_pair_parse(const char *sigmoid_type, spd_sigmoid_pair *out) {
    for (size_t i = 0; i < sizeof sigmoid_types / sizeof sigmoid_types[0]; i++)
        if (strcmp(sigmoid_type, sigmoid_types[i].name) == 0) {
            *out = sigmoid_types[i].pair;
            return 0;
        }
    return spd_set_error("sigmoid_type: expected one of normal, hard, leaky_hard, upper_leaky_hard, "
                         "swish_hard, found \"%s\"", sigmoid_type);
}

const char *spd_sigmoid_fn_name(spd_sigmoid_fn f) {
    SPD_ASSERT(f >= 0 && f < SPD_SIGMOID_FN_COUNT);
    return fn_names[f];
}
