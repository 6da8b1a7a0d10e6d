// ImportanceMinimalityLoss on the GPU (ops/importance_minimality.h). S lives in
// device memory; the forward reads it back (C doubles per module) to form the
// loss on the host with the CPU's importance_minimality_from_sums.
#include "cuda/cuda_common.h"

#include <math.h>

extern "C" {
#include "core/real.h"
#include "ops/importance_minimality.h"
}
#include "cuda/reduce_dev.h"

#define T 128

// S [C] += sum_n (ci + eps)^p, one block per component (reduce_dev.h).
static __global__ void sums_k(double *S, const float *ci, long long N, int C, double p, float eps) {
    const int c = blockIdx.x;
    double acc = 0;
    for (long long n = threadIdx.x; n < N; n += blockDim.x) acc += pow((double)__fadd_rn(ci[n * C + c], eps), p);
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) S[c] += s;
}

extern "C" void importance_minimality_sums_cuda(double *S, const float *ci_upper, int64_t N, int C, double p,
                                                double eps) {
    if (C <= 0) return;
    sums_k<<<C, REDUCE_THREADS, 0, spd_cuda_stream()>>>(S, ci_upper, N, C, p, (float)eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" double importance_minimality_forward_cuda(double *S, const float *const *ci_upper, const int *C,
                                                     int n_modules, int64_t N, double p, double eps, double beta,
                                                     double world_size) {
    SPD_ASSERT(n_modules > 0 && N > 0);
    int total = 0;
    for (int l = 0; l < n_modules; l++) total += C[l];
    CUDA_CHECK(cudaMemsetAsync(S, 0, (size_t)total * sizeof(double), spd_cuda_stream()));
    for (int l = 0, off = 0; l < n_modules; off += C[l], l++)
        importance_minimality_sums_cuda(S + off, ci_upper[l], N, C[l], p, eps);
    double *host = (double *)spd_malloc((size_t)total * sizeof(double));
    CUDA_CHECK(cudaMemcpyAsync(host, S, (size_t)total * sizeof(double), cudaMemcpyDeviceToHost, spd_cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
    double v = importance_minimality_from_sums(host, C, n_modules, (double)N, beta, world_size);
    free(host);
    return v;
}

static __global__ void backward_k(float *dci, const float *ci, const double *S, long long N, int C, double p,
                                  float eps, double beta, double world_size, double scale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C) return;
    if (p == 0) {
        dci[i] = 0;
        return;
    }
    int c = (int)(i % C);
    double sw = S[c] * world_size;
    double dS = (1.0 + beta * log2(1.0 + sw)) / (double)N + beta * (S[c] / (double)N) * world_size / ((1.0 + sw) * M_LN2);
    float t = __fadd_rn(ci[i], eps);
    dci[i] = (float)(scale * dS * (p * pow((double)t, p - 1.0)));
}

extern "C" void importance_minimality_backward_cuda(float *const *dci_upper, const float *const *ci_upper,
                                                    const double *S, const int *C, int n_modules, int64_t N,
                                                    double p, double eps, double beta, double world_size,
                                                    double scale) {
    for (int l = 0, off = 0; l < n_modules; off += C[l], l++) {
        long long n = (long long)N * C[l];
        if (n <= 0) continue;
        backward_k<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dci_upper[l], ci_upper[l], S + off, N,
                                                                            C[l], p, (float)eps, beta, world_size,
                                                                            scale);
        CUDA_CHECK_LAUNCH();
    }
}
