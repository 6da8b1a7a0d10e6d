// Rotary position embedding over the whole head dim (SPD_SPEC.md 7.1).
// Default layout pairs feature i with i + hd/2 ("rotate half"); with
// adjacent_pairs it pairs 2j with 2j+1. Frequency of a pair j: base^(-j/(hd/2)).
#ifndef SPD_OPS_ROPE_H
#define SPD_OPS_ROPE_H

#include <stdbool.h>

#include "core/real.h"

// cos_t, sin_t [n_ctx, hd]: the angle of feature i at position p, in the
// layout chosen (computed in float64 and rounded to real).
void RFN(rope_tables)(real *cos_t, real *sin_t, int n_ctx, int hd, double base, bool adjacent_pairs);
// x [B, S, n_heads * hd], rotated in place; position of row (b, s) is min(s, n_ctx - 1).
void RFN(rope_forward)(real *x, const real *cos_t, const real *sin_t, int B, int S, int n_heads, int hd,
                       int n_ctx, bool adjacent_pairs);
// dx [B, S, n_heads * hd], in place: the transpose (inverse) rotation.
void RFN(rope_backward)(real *dx, const real *cos_t, const real *sin_t, int B, int S, int n_heads, int hd,
                        int n_ctx, bool adjacent_pairs);

#endif
