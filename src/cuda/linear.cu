// A frozen nn.Linear without (or with) bias on the GPU: cuBLAS plus a bias kernel.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/linear.h"
#include "ops/matmul.h"
}

// out [N, d_out] += bias [d_out], broadcast over rows.
static __global__ void add_bias_kernel(float *out, const float *bias, long long n, int d_out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] += bias[i % d_out];
}

// x [N, d_in], W [d_out, d_in], bias [d_out] or NULL -> out [N, d_out] = x @ W^T + bias
extern "C" void linear_forward_cuda(float *out, const float *x, const float *W, const float *bias, int N, int d_in,
                                    int d_out) {
    matmul_cuda(out, x, W, N, d_out, d_in, false, true, 1.0f, 0.0f);
    long long n = (long long)N * d_out;
    if (!bias || n <= 0) return;
    add_bias_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(out, bias, n, d_out);
    CUDA_CHECK_LAUNCH();
}

// dout [N, d_out], W [d_out, d_in] -> dx [N, d_in] = dout @ W (written; added onto dx with add_dx)
extern "C" void linear_backward_cuda(float *dx, const float *dout, const float *W, int N, int d_in, int d_out,
                                     bool add_dx) {
    matmul_cuda(dx, dout, W, N, d_in, d_out, false, false, 1.0f, add_dx ? 1.0f : 0.0f);
}
