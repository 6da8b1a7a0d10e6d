#include "core/real.h"

#include "ops/fill.h"

#include <string.h>

#include "core/philox.h"

void RFN(fill_zero)(real *out, int64_t n) { memset(out, 0, (size_t)n * sizeof *out); }

void RFN(fill_value)(real *out, int64_t n, double v) {
    for (int64_t i = 0; i < n; i++) out[i] = (real)v;
}

void RFN(fill_uniform)(real *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
    for (int64_t i = 0; i < n; i++) out[i] = (real)spd_philox_uniform_f32(seed, stream, offset + (uint64_t)i);
}
