// FaithfulnessLoss on the GPU (ops/faithfulness.h); sums in float64 (reduce.cu).
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/faithfulness.h"
}

static int64_t total_numel(const int64_t *numel, int n_modules) {
    int64_t total = 0;
    for (int l = 0; l < n_modules; l++) total += numel[l];
    SPD_ASSERT(total > 0);
    return total;
}

extern "C" double faithfulness_loss_forward_cuda(const float *const *deltas, const int64_t *numel, int n_modules) {
    return spd_cuda_sum_sq_multi(deltas, numel, n_modules) / (double)total_numel(numel, n_modules);
}

static __global__ void backward_k(float *dd, const float *d, long long n, double g) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dd[i] = (float)((double)dd[i] + g * (double)d[i]);
}

extern "C" void faithfulness_loss_backward_cuda(float *const *ddeltas, const float *const *deltas,
                                                const int64_t *numel, int n_modules, double scale) {
    const double g = scale * 2.0 / (double)total_numel(numel, n_modules);
    for (int l = 0; l < n_modules; l++) {
        if (numel[l] <= 0) continue;
        backward_k<<<spd_cuda_blocks(numel[l], 256), 256, 0, spd_cuda_stream()>>>(ddeltas[l], deltas[l], numel[l], g);
        CUDA_CHECK_LAUNCH();
    }
}
