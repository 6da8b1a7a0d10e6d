// Filling tensors where they live: zeros, and uniform draws from Philox that
// are identical on every backend (so CPU and GPU runs use the same masks).
#ifndef SPD_OPS_FILL_H
#define SPD_OPS_FILL_H

#include <stdint.h>

#include "core/real.h"

void RFN(fill_zero)(real *out, int64_t n);
// out[i] = uniform [0, 1) draw number offset + i of Philox stream (seed, stream),
// the float32 draw (spd_philox_uniform_f32) in every precision.
void RFN(fill_uniform)(real *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);
// out[i] = v (rounded to the storage precision).
void RFN(fill_value)(real *out, int64_t n, double v);

#endif
