// Rotary position embedding on the GPU. The tables are computed on the host by
// the CPU reference itself (float64 angles, bit-identical values) and uploaded;
// the rotations use round-to-nearest intrinsics so that no multiply-add is
// contracted and the results equal the CPU's bit for bit.
#include <stdlib.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/rope.h"
// The float32 CPU reference (the header above declares the _cuda names only).
void rope_tables_f32(float *cos_t, float *sin_t, int n_ctx, int hd, double base, bool adjacent_pairs);
}

// cos_t, sin_t [n_ctx, hd] (device): computed on the host, uploaded, synchronized
// (called once, when a model is bound).
extern "C" void rope_tables_cuda(float *cos_t, float *sin_t, int n_ctx, int hd, double base, bool adjacent_pairs) {
    SPD_ASSERT(hd % 2 == 0);
    if (n_ctx <= 0 || hd <= 0) return;
    size_t bytes = (size_t)n_ctx * hd * sizeof(float);
    float *hc = (float *)spd_malloc(bytes), *hs = (float *)spd_malloc(bytes);
    rope_tables_f32(hc, hs, n_ctx, hd, base, adjacent_pairs);
    CUDA_CHECK(cudaMemcpyAsync(cos_t, hc, bytes, cudaMemcpyHostToDevice, spd_cuda_stream()));
    CUDA_CHECK(cudaMemcpyAsync(sin_t, hs, bytes, cudaMemcpyHostToDevice, spd_cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
    free(hc);
    free(hs);
}

// x [B, S, n_heads, hd] in place; one thread per (row, head, pair j), h = hd/2 pairs.
// Pair j: features (j, j+h), or (2j, 2j+1) with adjacent pairs; position min(s, n_ctx - 1).
// backward applies the transpose rotation.
template <bool BACKWARD>
static __global__ void rope_kernel(float *x, const float *cos_t, const float *sin_t, long long n_pairs, int S,
                                   int n_heads, int hd, int n_ctx, bool adjacent_pairs) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_pairs) return;
    const int h = hd / 2;
    const int j = (int)(idx % h);
    const long long row_head = idx / h;  // (b*S + s)*n_heads + head
    const int s = (int)((row_head / n_heads) % S);
    const int pos = s < n_ctx ? s : n_ctx - 1;
    const float *c = cos_t + (long long)pos * hd, *sn = sin_t + (long long)pos * hd;
    float *xh = x + row_head * hd;
    const int i0 = adjacent_pairs ? 2 * j : j, i1 = adjacent_pairs ? 2 * j + 1 : j + h;
    const float x0 = xh[i0], x1 = xh[i1];
    if (!BACKWARD) {
        xh[i0] = __fsub_rn(__fmul_rn(x0, c[i0]), __fmul_rn(x1, sn[i0]));
        xh[i1] = __fadd_rn(__fmul_rn(x1, c[i1]), __fmul_rn(x0, sn[i1]));
    } else {
        xh[i0] = __fadd_rn(__fmul_rn(x0, c[i0]), __fmul_rn(x1, sn[i1]));
        xh[i1] = __fsub_rn(__fmul_rn(x1, c[i1]), __fmul_rn(x0, sn[i0]));
    }
}

template <bool BACKWARD>
static void rope_launch(float *x, const float *cos_t, const float *sin_t, int B, int S, int n_heads, int hd,
                        int n_ctx, bool adjacent_pairs) {
    SPD_ASSERT(hd % 2 == 0 && n_ctx >= 1);
    long long n_pairs = (long long)B * S * n_heads * (hd / 2);
    if (n_pairs <= 0) return;
    rope_kernel<BACKWARD><<<spd_cuda_blocks(n_pairs, 256), 256, 0, spd_cuda_stream()>>>(
        x, cos_t, sin_t, n_pairs, S, n_heads, hd, n_ctx, adjacent_pairs);
    CUDA_CHECK_LAUNCH();
}

extern "C" void rope_forward_cuda(float *x, const float *cos_t, const float *sin_t, int B, int S, int n_heads, int hd,
                                  int n_ctx, bool adjacent_pairs) {
    rope_launch<false>(x, cos_t, sin_t, B, S, n_heads, hd, n_ctx, adjacent_pairs);
}

extern "C" void rope_backward_cuda(float *dx, const float *cos_t, const float *sin_t, int B, int S, int n_heads,
                                   int hd, int n_ctx, bool adjacent_pairs) {
    rope_launch<true>(dx, cos_t, sin_t, B, S, n_heads, hd, n_ctx, adjacent_pairs);
}
