#include "core/philox.h"

#include <math.h>

float spd_philox_uniform_f32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    spd_philox_block(seed, stream, index / 4, w);
    return spd_u32_to_uniform_f32(w[index % 4]);
}

double spd_philox_uniform_f64(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    spd_philox_block(seed, stream, index / 2, w);
    int lane = (int)(index % 2) * 2;
    return spd_u32x2_to_uniform_f64(w[lane], w[lane + 1]);
}

void spd_philox_fill_uniform_f32(uint64_t seed, uint64_t stream, uint64_t offset, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = spd_philox_uniform_f32(seed, stream, offset + i);
}

void spd_philox_fill_uniform_f64(uint64_t seed, uint64_t stream, uint64_t offset, size_t n, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = spd_philox_uniform_f64(seed, stream, offset + i);
}

void spd_philox_fill_normal_f64(uint64_t seed, uint64_t stream, size_t n, double std, double *out) {
    for (size_t i = 0; i < n; i += 2) {
        // 1 - u lies in (0, 1], so the log is finite.
        double u1 = 1.0 - spd_philox_uniform_f64(seed, stream, i);
        double u2 = spd_philox_uniform_f64(seed, stream, i + 1);
        double r = sqrt(-2.0 * log(u1)) * std;
        out[i] = r * cos(2.0 * M_PI * u2);
        if (i + 1 < n) out[i + 1] = r * sin(2.0 * M_PI * u2);
    }
}
