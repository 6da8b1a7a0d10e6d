// SwiGLU gate on the GPU, evaluated in float32 (the CPU evaluates in float64 and
// rounds once; the two agree to a few float32 ulps). Four elements per thread in
// 16-byte accesses where every pointer allows it: the scalar kernels moved ~1.9 TB/s
// on an H100 at LlamaSimple's [16384, 341] (dev/kernels/README.md, session 12).
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/swiglu.h"
}

static __device__ __forceinline__ float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

// silu(z) * u
static __device__ __forceinline__ float swiglu_value(float z, float u) { return z * sigmoidf(z) * u; }

// dgate = g * u * (s + z s (1 - s)), dup = g * z * s
static __device__ __forceinline__ void swiglu_grads(float g, float z, float u, float *dgate, float *dup) {
    const float s = sigmoidf(z);
    *dgate = g * u * (s + z * s * (1.0f - s));
    *dup = g * z * s;
}

// gate, up [n] -> out [n] = silu(gate) * up; elements 4 i .. 4 i + 3 per thread (VEC4:
// one 16-byte access each where all four are in range).
template <bool VEC4>
static __global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, long long n) {
    const long long i = 4 * ((long long)blockIdx.x * blockDim.x + threadIdx.x);
    if (VEC4 && i + 3 < n) {
        const float4 z = *(const float4 *)(gate + i), u = *(const float4 *)(up + i);
        *(float4 *)(out + i) =
            make_float4(swiglu_value(z.x, u.x), swiglu_value(z.y, u.y), swiglu_value(z.z, u.z), swiglu_value(z.w, u.w));
        return;
    }
    for (long long j = i; j < i + 4 && j < n; j++) out[j] = swiglu_value(gate[j], up[j]);
}

// dout [n] -> dgate, dup [n] (written)
template <bool VEC4>
static __global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                              const float *up, long long n) {
    const long long i = 4 * ((long long)blockIdx.x * blockDim.x + threadIdx.x);
    if (VEC4 && i + 3 < n) {
        const float4 g = *(const float4 *)(dout + i), z = *(const float4 *)(gate + i), u = *(const float4 *)(up + i);
        float4 dg, du;
        swiglu_grads(g.x, z.x, u.x, &dg.x, &du.x);
        swiglu_grads(g.y, z.y, u.y, &dg.y, &du.y);
        swiglu_grads(g.z, z.z, u.z, &dg.z, &du.z);
        swiglu_grads(g.w, z.w, u.w, &dg.w, &du.w);
        *(float4 *)(dgate + i) = dg;
        *(float4 *)(dup + i) = du;
        return;
    }
    for (long long j = i; j < i + 4 && j < n; j++) swiglu_grads(dout[j], gate[j], up[j], dgate + j, dup + j);
}

static bool all_aligned16(const void *const *p, int count) {
    for (int i = 0; i < count; i++)
        if (!spd_aligned(p[i], 16)) return false;
    return true;
}

extern "C" void swiglu_forward_cuda(float *out, const float *gate, const float *up, int64_t n) {
    if (n <= 0) return;
    const void *p[] = {out, gate, up};
    const long long threads = (n + 3) / 4;
    const auto kernel = all_aligned16(p, 3) ? swiglu_forward_kernel<true> : swiglu_forward_kernel<false>;
    kernel<<<spd_cuda_blocks(threads, 256), 256, 0, spd_cuda_stream()>>>(out, gate, up, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void swiglu_backward_cuda(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                     int64_t n) {
    if (n <= 0) return;
    const void *p[] = {dgate, dup, dout, gate, up};
    const long long threads = (n + 3) / 4;
    const auto kernel = all_aligned16(p, 5) ? swiglu_backward_kernel<true> : swiglu_backward_kernel<false>;
    kernel<<<spd_cuda_blocks(threads, 256), 256, 0, spd_cuda_stream()>>>(dgate, dup, dout, gate, up, n);
    CUDA_CHECK_LAUNCH();
}
