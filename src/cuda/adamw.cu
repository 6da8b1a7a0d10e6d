// AdamW on the GPU: one pass over the flat buffer of trained parameters.
// Evaluated in float32 in torch.optim.AdamW's order (the CPU evaluates the same
// expression in float64 and rounds once); the step's scalars are worked out in
// float64 on the host, as the CPU does, and rounded to float32 once.
#include <math.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/adamw.h"
}

// param, grad, m, v [n]:
//   p *= decay; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//   p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
static __global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, long long n, float b1,
                                    float one_minus_b1, float b2, float one_minus_b2, float eps, float decay,
                                    float step_size, float bc2_sqrt) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float mi = b1 * m[i] + one_minus_b1 * g;
    float vi = b2 * v[i] + one_minus_b2 * g * g;
    float p = param[i] * decay;
    p -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    m[i] = mi;
    v[i] = vi;
    param[i] = p;
}

extern "C" void adamw_step_cuda(float *param, const float *grad, float *m, float *v, size_t n,
                                const spd_adamw_config *cfg, int64_t t) {
    SPD_ASSERT(t >= 1);
    if (n == 0) return;
    const double lr = cfg->lr, b1 = cfg->beta1, b2 = cfg->beta2;
    const double decay = 1.0 - lr * cfg->weight_decay;
    const double step_size = lr / (1.0 - pow(b1, (double)t));
    const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)t));
    adamw_kernel<<<spd_cuda_blocks((long long)n, 256), 256, 0, spd_cuda_stream()>>>(
        param, grad, m, v, (long long)n, (float)b1, (float)(1.0 - b1), (float)b2, (float)(1.0 - b2),
        (float)cfg->eps, (float)decay, (float)step_size, (float)bc2_sqrt);
    CUDA_CHECK_LAUNCH();
}
