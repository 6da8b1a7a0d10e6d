// Filling device tensors: zeros, and Philox uniforms identical to the CPU's.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/philox.h"
#include "core/real.h"
#include "ops/fill.h"
}

extern "C" void fill_zero_cuda(float *out, int64_t n) {
    if (n <= 0) return;
    CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)n * sizeof(float), spd_cuda_stream()));
}

// out [n]: out[i] = uniform draw offset + i of stream (seed, stream). One thread
// per Philox block of four draws: thread j computes block first_block + j and
// writes the (up to four) elements whose draw index falls in it, so an offset
// that is not a multiple of four costs nothing extra. Same functions as the CPU
// (core/philox.h is host/device), so the floats are bit-identical.
static __global__ void fill_uniform_kernel(float *out, long long n, uint64_t seed, uint64_t stream, uint64_t offset,
                                           long long n_blocks) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_blocks) return;
    uint64_t block = offset / 4 + (uint64_t)j;
    uint32_t w[4];
    spd_philox_block(seed, stream, block, w);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint64_t draw = block * 4 + (uint64_t)k;
        if (draw < offset) continue;
        uint64_t i = draw - offset;
        if (i < (uint64_t)n) out[i] = spd_u32_to_uniform_f32(w[k]);
    }
}

extern "C" void fill_uniform_cuda(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
    if (n <= 0) return;
    long long n_blocks = (long long)((offset + (uint64_t)n - 1) / 4 - offset / 4 + 1);
    fill_uniform_kernel<<<spd_cuda_blocks(n_blocks, 256), 256, 0, spd_cuda_stream()>>>(out, n, seed, stream, offset,
                                                                                      n_blocks);
    CUDA_CHECK_LAUNCH();
}

// out [n] = v: float4 stores over the 16-byte-aligned body, scalars at the ends, in a
// grid-stride loop (large fills, such as the mean loss's gradient over [16384, 4019]
// logits, ran at half the bandwidth with a scalar store per thread).
static __global__ void fill_value_kernel(float *out, float v, long long n) {
    const uintptr_t mis = (uintptr_t)out & 15;  // bytes past a 16-byte boundary (0, 4, 8 or 12)
    const long long head = mis ? ((long long)(16 - mis) / 4 < n ? (long long)(16 - mis) / 4 : n) : 0;
    const long long n4 = (n - head) / 4, stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    float4 *body = (float4 *)(out + head);
    for (long long i = first; i < n4; i += stride) body[i] = make_float4(v, v, v, v);
    for (long long i = first; i < head; i += stride) out[i] = v;
    for (long long i = head + 4 * n4 + first; i < n; i += stride) out[i] = v;
}

extern "C" void fill_value_cuda(float *out, int64_t n, double v) {
    if (n <= 0) return;
    fill_value_kernel<<<spd_cuda_blocks_capped((n + 3) / 4, 256), 256, 0, spd_cuda_stream()>>>(out, (float)v, n);
    CUDA_CHECK_LAUNCH();
}
