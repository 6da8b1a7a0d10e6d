// RMSNorm on the GPU: a warp per row, sums in float64 as on the CPU.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/rmsnorm.h"
}

// A warp per row, RMS_ROWS rows per block: the model's rows are short (d = 128 in
// LlamaSimple), and a block of 256 threads per row spent most of its time in the block
// reduction's barriers (23 us per [16384, 128] call on an H100, ~4x its byte floor).
#define RMS_ROWS 8
#define RMS_THREADS (32 * RMS_ROWS)

static __device__ double warp_sum(double x) {
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// x [N, d], w [d] -> out [N, d] = w * (float)(x * rstd), rstd [N].
static __global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *x, const float *w, int N, int d,
                                              double eps) {
    const long long n = (long long)blockIdx.x * RMS_ROWS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *xn = x + n * d;
    double ss = 0;
    for (int i = lane; i < d; i += 32) ss += (double)xn[i] * xn[i];
    ss = warp_sum(ss);
    const float r = (float)(1.0 / sqrt(ss / d + eps));
    if (lane == 0) rstd[n] = r;
    for (int i = lane; i < d; i += 32) out[n * d + i] = w[i] * (xn[i] * r);
}

// dout [N, d] -> dx [N, d] = r * (w*dout - x * r^2 * mean(w*dout*x)) in float64 (written,
// or added to where add_dx).
static __global__ void rmsnorm_backward_dx_kernel(float *dx, const float *dout, const float *x, const float *w,
                                                  const float *rstd, int N, int d, bool add_dx) {
    const long long n = (long long)blockIdx.x * RMS_ROWS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *xn = x + n * d, *gn = dout + n * d;
    double dot = 0;
    for (int i = lane; i < d; i += 32) dot += (double)w[i] * gn[i] * xn[i];
    dot = warp_sum(dot);
    const double r = rstd[n], c = r * r * dot / d;
    for (int i = lane; i < d; i += 32) {
        const float v = (float)(r * ((double)w[i] * gn[i] - (double)xn[i] * c));
        dx[n * d + i] = add_dx ? dx[n * d + i] + v : v;
    }
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
    rmsnorm_forward_kernel<<<spd_cuda_blocks(N, RMS_ROWS), RMS_THREADS, 0, spd_cuda_stream()>>>(out, rstd, x, w, N, d,
                                                                                                eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" void rmsnorm_backward_cuda(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                      const float *rstd, int N, int d, bool add_dx) {
    if (N <= 0 || d <= 0) return;
    rmsnorm_backward_dx_kernel<<<spd_cuda_blocks(N, RMS_ROWS), RMS_THREADS, 0, spd_cuda_stream()>>>(dx, dout, x, w, rstd,
                                                                                                    N, d, add_dx);
    CUDA_CHECK_LAUNCH();
    if (!dw) return;
    rmsnorm_backward_dw_kernel<<<(d + 31) / 32, dim3(32, 32), 0, spd_cuda_stream()>>>(dw, dout, x, rstd, N, d);
    CUDA_CHECK_LAUNCH();
}
