// SwiGLU gate on the GPU, evaluated in float32 (the CPU evaluates in float64 and
// rounds once; the two agree to a few float32 ulps).
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/swiglu.h"
}

// gate, up [n] -> out [n] = silu(gate) * up
static __global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float z = gate[i];
    float s = 1.0f / (1.0f + expf(-z));
    out[i] = z * s * up[i];
}

// dout [n] -> dgate = dout * up * (s + z s (1 - s)), dup = dout * z * s (written)
static __global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                              const float *up, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float z = gate[i], g = dout[i];
    float s = 1.0f / (1.0f + expf(-z));
    dgate[i] = g * up[i] * (s + z * s * (1.0f - s));
    dup[i] = g * z * s;
}

extern "C" void swiglu_forward_cuda(float *out, const float *gate, const float *up, int64_t n) {
    if (n <= 0) return;
    swiglu_forward_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(out, gate, up, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void swiglu_backward_cuda(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                     int64_t n) {
    if (n <= 0) return;
    swiglu_backward_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dgate, dup, dout, gate, up, n);
    CUDA_CHECK_LAUNCH();
}
