// Bias and ReLU of the toy targets on the GPU. bias_grad: the rows summed per
// column in float64 (spd_cuda_colsum), added to db once.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/bias_act.h"
}

static __global__ void bias_add_k(float *y, const float *b, long long n, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(y[i], b[i % d]);
}

static __global__ void add_sums_k(float *db, const double *s, int d) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < d) db[j] = __fadd_rn(db[j], (float)s[j]);
}

static __global__ void relu_fwd(float *y, const float *x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > 0 ? x[i] : 0.0f;
}

static __global__ void relu_bwd(float *dx, const float *dy, const float *x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
}

extern "C" void bias_add_cuda(float *y, const float *b, int N, int d) {
    long long n = (long long)N * d;
    if (n <= 0) return;
    bias_add_k<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(y, b, n, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void bias_grad_cuda(float *db, const float *dy, int N, int d) {
    if (d <= 0) return;
    double *s = (double *)spd_cuda_scratch2((size_t)d * sizeof(double));
    spd_cuda_colsum(s, dy, N, d);
    add_sums_k<<<spd_cuda_blocks(d, 256), 256, 0, spd_cuda_stream()>>>(db, s, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void relu_forward_cuda(float *y, const float *x, int64_t n) {
    if (n <= 0) return;
    relu_fwd<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(y, x, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void relu_backward_cuda(float *dx, const float *dy, const float *x, int64_t n) {
    if (n <= 0) return;
    relu_bwd<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dx, dy, x, n);
    CUDA_CHECK_LAUNCH();
}
