// Token embedding on the GPU: a row gather.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/embedding.h"
}

// tokens [N], wte [vocab, d] -> out [N, d] = wte[tokens]; one thread per output element.
static __global__ void embedding_gather_kernel(float *out, const int32_t *tokens, const float *wte, int N, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * d) return;
    long long n = i / d, c = i % d;
    out[i] = wte[(long long)tokens[n] * d + c];
}

// Token ids are validated against vocab where they are read from user data.
extern "C" void embedding_forward_cuda(float *out, const int32_t *tokens, const float *wte, int N, int d) {
    long long n = (long long)N * d;
    if (n <= 0) return;
    embedding_gather_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(out, tokens, wte, N, d);
    CUDA_CHECK_LAUNCH();
}

// dwte [vocab, d] += dout rows by token: one thread per column adding the
// positions in order (deterministic, the CPU's order; no atomics).
static __global__ void embedding_scatter_kernel(float *dwte, const int32_t *tokens, const float *dout, int N, int d) {
    long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    for (long long n = 0; n < N; n++) {
        float *dst = dwte + (long long)tokens[n] * d + c;
        *dst = __fadd_rn(*dst, dout[n * d + c]);
    }
}

extern "C" void embedding_backward_cuda(float *dwte, const int32_t *tokens, const float *dout, int N, int d) {
    if (N <= 0 || d <= 0) return;
    embedding_scatter_kernel<<<spd_cuda_blocks(d, 128), 128, 0, spd_cuda_stream()>>>(dwte, tokens, dout, N, d);
    CUDA_CHECK_LAUNCH();
}
