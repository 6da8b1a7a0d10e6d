// Exact erf GELU on the GPU, in float32 as the CPU's float32 build.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/gelu.h"
}

#define RSQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

static __global__ void gelu_fwd(float *y, const float *x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    y[i] = __fmul_rn(__fmul_rn(v, 0.5f), 1.0f + erff(__fmul_rn(v, RSQRT2)));
}

static __global__ void gelu_bwd(float *dx, const float *dy, const float *x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    float cdf = __fmul_rn(0.5f, 1.0f + erff(__fmul_rn(v, RSQRT2)));
    float pdf = __fmul_rn(expf(__fmul_rn(__fmul_rn(-0.5f, v), v)), INV_SQRT_2PI);
    dx[i] = __fmul_rn(dy[i], __fadd_rn(cdf, __fmul_rn(v, pdf)));
}

extern "C" void gelu_forward_cuda(float *y, const float *x, long n) {
    if (n <= 0) return;
    gelu_fwd<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(y, x, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void gelu_backward_cuda(float *dx, const float *dy, const float *x, long n) {
    if (n <= 0) return;
    gelu_bwd<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dx, dy, x, n);
    CUDA_CHECK_LAUNCH();
}
