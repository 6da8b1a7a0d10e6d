// Elementwise sums of the residual stream and of gradients on the GPU.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/add.h"
}

// out, a, b [n]: out = a + b (out may alias a or b).
static __global__ void add_kernel(float *out, const float *a, const float *b, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

extern "C" void add_cuda(float *out, const float *a, const float *b, int64_t n) {
    if (n <= 0) return;
    add_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(out, a, b, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void add_inplace_cuda(float *acc, const float *x, int64_t n) { add_cuda(acc, acc, x, n); }
