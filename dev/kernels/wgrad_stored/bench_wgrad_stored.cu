// Times the weight gradient from a stored activation (src/cuda/wgrad_stored_sm90.cu)
// against the cuBLAS product it replaces (fused mode, TF32, the tuned cuBLASLt pick), on
// LlamaSimple's MLP shapes at 64 x 256 tokens (and any N C Q given): dU = A^T B [C, Q] and
// the transposed dV = B^T A [Q, C]. CUDA events around 10 calls in a row on the backend's
// stream (so that the host's launches run ahead of the GPU, as in the step's CUDA graph),
// 5 warm-ups, median of 30; the stream-ordered pool keeps what it frees (as a graph's memory
// nodes do); no cache flush (A, 79 MB at N 16384, exceeds the 50 MB L2).
// The two results are compared (norm-relative difference), so that a broken kernel is not
// timed as a fast one; test_gpu_ops has the checks against float64.
// Build and run (repo root, after make gpu-tests): dev/kernels/wgrad_stored/run_device.sh [N C Q]
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "cuda/cuda_common.h"

extern "C" {
#include "cuda/backend.h"
#include "cuda/gemm.h"
#include "cuda/wgrad_stored_sm90.h"
}

static unsigned long long rng = 88172645463325252ull;
static float urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *random_device(size_t n) {
    std::vector<float> h(n);
    for (auto &x : h) x = urand();
    float *d;
    CUDA_CHECK(cudaMalloc(&d, n * sizeof(float)));
    CUDA_CHECK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

template <typename F>
static double median_ms(F f) {
    cudaStream_t st = spd_cuda_stream();
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 5; i++) f();
    std::vector<float> ms(30);
    for (auto &m : ms) {
        CUDA_CHECK(cudaEventRecord(e0, st));
        for (int i = 0; i < 10; i++) f();
        CUDA_CHECK(cudaEventRecord(e1, st));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&m, e0, e1));
        m /= 10;
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

static double rel_diff(const float *a, const float *b, size_t n) {
    std::vector<float> x(n), y(n);
    CUDA_CHECK(cudaMemcpy(x.data(), a, n * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(y.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), den += (double)y[i] * y[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static void run(int N, int C, int Q, bool transposed) {
    float *A = random_device((size_t)N * C), *B = random_device((size_t)N * Q);
    float *D1, *D2;
    CUDA_CHECK(cudaMalloc(&D1, (size_t)C * Q * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&D2, (size_t)C * Q * sizeof(float)));
    auto cublas = [&] {
        if (transposed) matmul_cuda_ld(D1, B, A, Q, C, N, true, false, 1, 0, Q, C, C);
        else matmul_cuda_ld(D1, A, B, C, Q, N, true, false, 1, 0, C, Q, Q);
    };
    auto stored = [&] { wgrad_stored_sm90(N, C, Q, A, B, Q, D2, transposed, 0); };
    const double t_cublas = median_ms(cublas), t_stored = median_ms(stored);
    cublas();
    stored();
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
    const double flop = 2.0 * N * C * Q;
    printf("N %5d C %5d Q %4d %-10s cuBLAS %7.1f us (%4.0f TFLOP/s)  wgrad_stored %7.1f us (%4.0f TFLOP/s)  "
           "%.2fx  diff %.1e\n",
           N, C, Q, transposed ? "dV layout" : "dU layout", t_cublas * 1e3, flop / t_cublas / 1e9, t_stored * 1e3,
           flop / t_stored / 1e9, t_cublas / t_stored, rel_diff(D2, D1, (size_t)C * Q));
    cudaFree(A), cudaFree(B), cudaFree(D1), cudaFree(D2);
}

int main(int argc, char **argv) {
    spd_cuda_init();
    cudaMemPool_t pool;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
    uint64_t keep = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    spd_cuda_set_mode(SPD_CUDA_FUSED);
    spd_cuda_set_matmul_precision(SPD_MATMUL_TF32);
    printf("# %s\n", spd_cuda_device_name());
    if (argc == 4) {
        const int N = atoi(argv[1]), C = atoi(argv[2]), Q = atoi(argv[3]);
        run(N, C, Q, false);
        run(N, C, Q, true);
        return 0;
    }
    const int shapes[][3] = {{16384, 1200, 341}, {16384, 1200, 128}, {8192, 1200, 341}, {8192, 1200, 128},
                             {2048, 1200, 341},  {2048, 1200, 128},  {32768, 1200, 341}};
    for (auto &s : shapes) {
        run(s[0], s[1], s[2], false);
        run(s[0], s[1], s[2], true);
    }
    return 0;
}
