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
