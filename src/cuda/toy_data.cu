// SPD's toy batches drawn on the GPU (models/toy_data.h): the same Philox floats
// and the same float64 arithmetic as spd_toy_batch_f32, so the batch is
// bit-identical to the host's. at_least_zero_active without synced groups
// (every toy config of SPD); the rest is drawn on the host.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/philox.h"
#include "models/toy_data.h"
#include "ops/masks.h"
}

static __device__ __forceinline__ float draw_u(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t w[4];
    spd_philox_block(seed, stream, i / 4, w);
    return spd_u32_to_uniform_f32(w[i % 4]);
}

static __global__ void at_least_zero_k(float *x, long long n, uint64_t first, uint64_t seed, uint64_t s_values,
                                       uint64_t s_keys, double lo, double span, double p) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint64_t idx = first + (uint64_t)i;
    double v = __dadd_rn(lo, __dmul_rn(span, (double)draw_u(seed, s_values, idx)));
    x[i] = (double)draw_u(seed, s_keys, idx) < p ? (float)v : 0.0f;
}

extern "C" int spd_toy_batch_cuda(const spd_toy_data *d, uint64_t step, int eval_index, int64_t row0, int B,
                                  float *x) {
    if (d->generation != SPD_TOY_AT_LEAST_ZERO_ACTIVE || d->n_synced_groups > 0) return -1;
    SPD_ASSERT(B >= 0 && row0 >= 0 && eval_index >= -1 && eval_index < SPD_RNG_MAX_SAMPLES);
    const int term_base = eval_index >= 0 ? SPD_RNG_EVAL_TERM : 0, sample = eval_index >= 0 ? eval_index : 0;
    // Terms 0 (values) and 1 (keys) of toy_data.c.
    uint64_t s_values = spd_rng_stream(step, SPD_RNG_DATA, term_base + 0, sample, 0);
    uint64_t s_keys = spd_rng_stream(step, SPD_RNG_DATA, term_base + 1, sample, 0);
    long long n = (long long)B * d->n_features;
    if (n <= 0) return 0;
    at_least_zero_k<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(
        x, n, (uint64_t)row0 * (uint64_t)d->n_features, d->seed, s_values, s_keys, d->value_min,
        d->value_max - d->value_min, d->feature_probability);
    CUDA_CHECK_LAUNCH();
    return 0;
}
