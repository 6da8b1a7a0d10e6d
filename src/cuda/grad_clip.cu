// Gradient norm and clipping on the GPU (ops/grad_clip.h): the norm in float64
// (reduce.cu, read back: the clip decision is made on the host as torch's).
#include "cuda/cuda_common.h"

#include <math.h>

extern "C" {
#include "core/real.h"
#include "ops/grad_clip.h"
}

extern "C" double grad_norm_cuda(const float *const *grads, const int64_t *numel, int n_bufs) {
    return sqrt(spd_cuda_sum_sq_multi(grads, numel, n_bufs));
}

static __global__ void scale_k(float *g, long long n, float c) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] = __fmul_rn(g[i], c);
}

extern "C" double clip_grad_norm_cuda(float *const *grads, const int64_t *numel, int n_bufs, double max_norm) {
    double norm = grad_norm_cuda((const float *const *)grads, numel, n_bufs);
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    const float c = (float)coef;
    for (int b = 0; b < n_bufs; b++) {
        if (numel[b] <= 0) continue;
        scale_k<<<spd_cuda_blocks(numel[b], 256), 256, 0, spd_cuda_stream()>>>(grads[b], numel[b], c);
        CUDA_CHECK_LAUNCH();
    }
    return norm;
}
