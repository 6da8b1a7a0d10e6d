// The benchmark losses on the GPU. The value stays in device memory (no host
// round trip). Sums are deterministic: a fixed grid (a function of n alone)
// writes per-block float64 partial sums into the backend's workspace, and one
// block adds them in a fixed tree order.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/fill.h"
#include "ops/loss.h"
}

#define LOSS_THREADS 256
#define LOSS_MAX_BLOCKS 1024

// Tree sum of one double per thread over the block; the result is valid in thread 0.
static __device__ double block_sum(double x) {
    __shared__ double s[LOSS_THREADS];
    s[threadIdx.x] = x;
    __syncthreads();
    for (int w = LOSS_THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    return s[0];
}

// Pass 1: y [n] (target [n] or NULL) -> partial[blockIdx.x] = sum of y (or (y - target)^2)
// over this block's grid-stride share, in float64.
static __global__ void loss_partial_kernel(double *partial, const float *y, const float *target, long long n) {
    double acc = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        if (target) {
            double e = (double)y[i] - (double)target[i];
            acc += e * e;
        } else {
            acc += (double)y[i];
        }
    }
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2, one block: loss[0] = sum(partial[0..n_partial)) / n.
static __global__ void loss_final_kernel(float *loss, const double *partial, int n_partial, long long n) {
    double acc = 0;
    for (int i = threadIdx.x; i < n_partial; i += blockDim.x) acc += partial[i];
    double s = block_sum(acc);
    if (threadIdx.x == 0) loss[0] = (float)(s / (double)n);
}

// The fixed grid for `work` items (a function of it alone: the sums are deterministic) and
// its per-block partials, in the backend's workspace (free between cuBLAS calls: each
// stream has its own, and a stream runs one thing at a time).
static double *partials_for(long long work, int *blocks) {
    long long b = (work + LOSS_THREADS * 4 - 1) / (LOSS_THREADS * 4);
    *blocks = (int)(b < LOSS_MAX_BLOCKS ? b : LOSS_MAX_BLOCKS);
    size_t ws_bytes = 0;
    double *partial = (double *)spd_cuda_workspace(&ws_bytes);
    SPD_ASSERT(ws_bytes >= LOSS_MAX_BLOCKS * sizeof(double));
    return partial;
}

static void mean_of(float *loss, const float *y, const float *target, int64_t n) {
    SPD_ASSERT(n > 0);
    int blocks;
    double *partial = partials_for(n, &blocks);
    cudaStream_t st = spd_cuda_stream();
    loss_partial_kernel<<<blocks, LOSS_THREADS, 0, st>>>(partial, y, target, n);
    CUDA_CHECK_LAUNCH();
    loss_final_kernel<<<1, LOSS_THREADS, 0, st>>>(loss, partial, blocks, n);
    CUDA_CHECK_LAUNCH();
}

// logits [n] -> loss[0] = mean(logits)
extern "C" void mean_loss_forward_cuda(float *loss, const float *logits, int64_t n) {
    mean_of(loss, logits, NULL, n);
}

// y, target [n] -> loss[0] = mean((y - target)^2)
extern "C" void mse_loss_forward_cuda(float *loss, const float *y, const float *target, int64_t n) {
    SPD_ASSERT(target != NULL);
    mean_of(loss, y, target, n);
}

// dy [n] = s * (y - target), s = 2/n, in float64 as the CPU (written)
static __global__ void mse_backward_kernel(float *dy, const float *y, const float *target, double s, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dy[i] = (float)(s * ((double)y[i] - (double)target[i]));
}

extern "C" void mean_loss_backward_cuda(float *dlogits, int64_t n) {
    if (n > 0) fill_value_cuda(dlogits, n, 1.0 / (double)n);
}

extern "C" void mse_loss_backward_cuda(float *dy, const float *y, const float *target, int64_t n) {
    if (n <= 0) return;
    mse_backward_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dy, y, target, 2.0 / (double)n, n);
    CUDA_CHECK_LAUNCH();
}

// The MSE's value and gradient in one pass (the isolated op's loss reads y and target
// once instead of twice): partial[blockIdx.x] = this block's share of sum (y - target)^2,
// dy = s (y - target), both in float64 as the separate passes; four floats per load
// when vec4 (n % 4 == 0, all three 16-byte aligned).
template <bool vec4>
static __global__ void mse_fused_kernel(double *partial, float *dy, const float *y, const float *target, double s,
                                        long long n) {
    double acc = 0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    if (vec4) {
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n / 4; i += stride) {
            const float4 a = ((const float4 *)y)[i], b = ((const float4 *)target)[i];
            const double e0 = (double)a.x - b.x, e1 = (double)a.y - b.y, e2 = (double)a.z - b.z, e3 = (double)a.w - b.w;
            acc += e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3;
            ((float4 *)dy)[i] = make_float4((float)(s * e0), (float)(s * e1), (float)(s * e2), (float)(s * e3));
        }
    } else {
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            const double e = (double)y[i] - (double)target[i];
            acc += e * e;
            dy[i] = (float)(s * e);
        }
    }
    const double sum = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

extern "C" void mse_loss_forward_backward_cuda(float *loss, float *dy, const float *y, const float *target, int64_t n) {
    SPD_ASSERT(n > 0 && target != NULL);
    const bool vec4 = n % 4 == 0 && spd_aligned(y, 16) && spd_aligned(target, 16) && spd_aligned(dy, 16);
    int blocks;
    double *partial = partials_for(vec4 ? n / 4 : n, &blocks);
    cudaStream_t st = spd_cuda_stream();
    const double s = 2.0 / (double)n;
    if (vec4)
        mse_fused_kernel<true><<<blocks, LOSS_THREADS, 0, st>>>(partial, dy, y, target, s, n);
    else
        mse_fused_kernel<false><<<blocks, LOSS_THREADS, 0, st>>>(partial, dy, y, target, s, n);
    CUDA_CHECK_LAUNCH();
    loss_final_kernel<<<1, LOSS_THREADS, 0, st>>>(loss, partial, blocks, n);
    CUDA_CHECK_LAUNCH();
}
