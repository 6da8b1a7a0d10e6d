// RMSNorm on the GPU: one block per row, sums in float64 as on the CPU.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/rmsnorm.h"
}

#define RMS_THREADS 256

// Sum of one double per thread over a block of RMS_THREADS; every thread gets it.
static __device__ double block_sum(double x) {
    __shared__ double warp_sums[RMS_THREADS / 32];
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // warp_sums may still be read by a previous call
    if (lane == 0) warp_sums[warp] = x;
    __syncthreads();
    double s = 0;
    for (int w = 0; w < RMS_THREADS / 32; w++) s += warp_sums[w];
    return s;
}

// x [N, d], w [d] -> out [N, d] = w * (float)(x * rstd), rstd [N]; block n = row n.
static __global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *x, const float *w, int d,
                                              double eps) {
    const long long n = blockIdx.x;
    const float *xn = x + n * d;
    double ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += (double)xn[i] * xn[i];
    ss = block_sum(ss);
    const float r = (float)(1.0 / sqrt(ss / d + eps));
    if (threadIdx.x == 0) rstd[n] = r;
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[n * d + i] = w[i] * (xn[i] * r);
}

// dout [N, d] -> dx [N, d] = r * (w*dout - x * r^2 * mean(w*dout*x)) in float64 (written); block n = row n.
static __global__ void rmsnorm_backward_dx_kernel(float *dx, const float *dout, const float *x, const float *w,
                                                  const float *rstd, int d) {
    const long long n = blockIdx.x;
    const float *xn = x + n * d, *gn = dout + n * d;
    double dot = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dot += (double)w[i] * gn[i] * xn[i];
    dot = block_sum(dot);
    const double r = rstd[n], c = r * r * dot / d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dx[n * d + i] = (float)(r * ((double)w[i] * gn[i] - (double)xn[i] * c));
}

// dw [d] += sum_n dout[n] * x[n] * rstd[n], in float64 and in a fixed order (deterministic).
// Block (32, 32): 32 columns; the 32 thread rows stride over the N rows, then a
// shared-memory reduction over thread rows.
static __global__ void rmsnorm_backward_dw_kernel(float *dw, const float *dout, const float *x, const float *rstd,
                                                  int N, int d) {
    __shared__ double part[32][33];
    const int i = blockIdx.x * 32 + threadIdx.x;
    double acc = 0;
    if (i < d)
        for (long long n = threadIdx.y; n < N; n += 32) acc += (double)dout[n * d + i] * x[n * d + i] * (double)rstd[n];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && i < d) {
        double s = 0;
        for (int k = 0; k < 32; k++) s += part[k][threadIdx.x];
        dw[i] += (float)s;
    }
}

extern "C" void rmsnorm_forward_cuda(float *out, float *rstd, const float *x, const float *w, int N, int d,
                                     double eps) {
    if (N <= 0 || d <= 0) return;
    rmsnorm_forward_kernel<<<N, RMS_THREADS, 0, spd_cuda_stream()>>>(out, rstd, x, w, d, eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" void rmsnorm_backward_cuda(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                      const float *rstd, int N, int d) {
    if (N <= 0 || d <= 0) return;
    rmsnorm_backward_dx_kernel<<<N, RMS_THREADS, 0, spd_cuda_stream()>>>(dx, dout, x, w, rstd, d);
    CUDA_CHECK_LAUNCH();
    if (!dw) return;
    rmsnorm_backward_dw_kernel<<<(d + 31) / 32, dim3(32, 32), 0, spd_cuda_stream()>>>(dw, dout, x, rstd, N, d);
    CUDA_CHECK_LAUNCH();
}
