// The sigmoids that turn a CI function's pre_sigmoid output into causal
// importances (SPD_SPEC.md 2.3, spd/models/sigmoids.py), alpha = 0.01:
//
//   function          forward y(x)                        backward dx given dy
//   hard              clamp(x, 0, 1)                      dy if 0 <= x <= 1, else 0
//   lower_leaky_hard  clamp(x, 0, 1) (no leak forward!)   x <= 0: alpha dy if dy < 0, else 0;
//                                                         0 < x <= 1: dy; x > 1: 0
//   upper_leaky_hard  x > 1: 1 + alpha (x - 1),           x > 1: alpha dy; 0 <= x <= 1: dy;
//                     else clamp(x, 0, 1)                 x < 0: 0
//   leaky_hard        x > 0: min(x, 1), else alpha x      x > 0: dy if x <= 1, else 0; x <= 0: alpha dy
//                     (in SPD's table, unused by the ComponentModel)
//   logistic          1 / (1 + e^-x)  ("normal")          dy y (1 - y)
//   swish_hard        z = x - 1/2, sw(t) = t s(10 t),     the derivative of the forward
//                     usw(t) = t s(-10 t):
//                     1/2 + usw(z - 1/2) - sw(z) + sw(z + 1/2) - usw(z)
//
// The kinks follow torch's autograd: clamp passes the gradient at both ends,
// torch.where picks the branch by its strict condition. The lower-leaky
// backward only lets through gradients that would raise x under descent, so
// dead CI values can recover but are never pushed further down.
#ifndef SPD_OPS_SIGMOID_H
#define SPD_OPS_SIGMOID_H

#include "core/real.h"

#define SPD_SIGMOID_ALPHA 0.01

typedef enum {
    SPD_SIGMOID_FN_HARD,
    SPD_SIGMOID_FN_LOWER_LEAKY_HARD,
    SPD_SIGMOID_FN_UPPER_LEAKY_HARD,
    SPD_SIGMOID_FN_LEAKY_HARD,
    SPD_SIGMOID_FN_LOGISTIC,
    SPD_SIGMOID_FN_SWISH_HARD,
    SPD_SIGMOID_FN_COUNT
} spd_sigmoid_fn;

// Config `sigmoid_type` (default leaky_hard) selects the (lower, upper) pair:
//   leaky_hard -> (lower_leaky_hard, upper_leaky_hard); hard -> (hard, hard);
//   normal -> (logistic, logistic); upper_leaky_hard -> (upper_leaky_hard,
//   upper_leaky_hard) (so ci_lower can exceed 1); swish_hard -> (swish_hard, swish_hard).
// Keyed by SPD's literal, so the config layer's own enum (spd/config.h) maps
// with spd_sigmoid_pair_parse(spd_sigmoid_type_name(v), &pair).
typedef struct {
    spd_sigmoid_fn lower;  // sigma for ci_lower
    spd_sigmoid_fn upper;  // sigma for ci_upper
} spd_sigmoid_pair;

// A sigmoid_type name -> its pair; any other name (lower_leaky_hard included:
// it is not a config value in SPD) is an error listing the allowed ones (-1).
int spd_sigmoid_pair_parse(const char *sigmoid_type, spd_sigmoid_pair *out);
const char *spd_sigmoid_fn_name(spd_sigmoid_fn f);

// x [n] -> y [n]. y may alias x.
void RFN(sigmoid_forward)(spd_sigmoid_fn f, real *y, const real *x, long n);
// dy [n], x [n] (the forward's input) -> dx [n] (written). dx may alias dy or x.
void RFN(sigmoid_backward)(spd_sigmoid_fn f, real *dx, const real *dy, const real *x, long n);

#endif
