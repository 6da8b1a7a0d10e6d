// The CI sigmoids on the GPU (ops/sigmoid.h).
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/sigmoid.h"
}
#include "cuda/sigmoid_dev.h"

static __global__ void sig_fwd(spd_sigmoid_fn f, float *y, const float *x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = dev_sigmoid(f, x[i]);
}

static __global__ void sig_bwd(spd_sigmoid_fn f, float *dx, const float *dy, const float *x, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = dev_sigmoid_backward(f, dy[i], x[i]);
}

static void check_fn(spd_sigmoid_fn f, const char *who) {
    if (f < 0 || f >= SPD_SIGMOID_FN_COUNT) spd_die("%s: bad sigmoid function %d", who, (int)f);
}

extern "C" void sigmoid_forward_cuda(spd_sigmoid_fn f, float *y, const float *x, long n) {
    check_fn(f, "sigmoid_forward");
    if (n <= 0) return;
    sig_fwd<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(f, y, x, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void sigmoid_backward_cuda(spd_sigmoid_fn f, float *dx, const float *dy, const float *x, long n) {
    check_fn(f, "sigmoid_backward");
    if (n <= 0) return;
    sig_bwd<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(f, dx, dy, x, n);
    CUDA_CHECK_LAUNCH();
}
