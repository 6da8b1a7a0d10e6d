// Reading device results back as float64 (for comparisons and reports).
#include <stdlib.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/transfer.h"
}

// out [n] (host, float64) = x [n] (device, float32), after all queued work has
// finished: the one op that synchronizes.
extern "C" void copy_to_host_f64_cuda(double *out, const float *x, int64_t n) {
    if (n <= 0) return;
    float *tmp = (float *)spd_malloc((size_t)n * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(tmp, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, spd_cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
    for (int64_t i = 0; i < n; i++) out[i] = (double)tmp[i];
    free(tmp);
}

// dst [n] = src [n], device to device, queued on the stream.
extern "C" void copy_cuda(float *dst, const float *src, int64_t n) {
    if (n <= 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, spd_cuda_stream()));
}

static __global__ void transpose_kernel(float *dst, const float *src, int rows, int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * cols) return;
    long long r = i / cols, c = i % cols;
    dst[i] = src[c * rows + r];
}

// dst [rows, cols] = src^T, src [cols, rows].
extern "C" void transpose_cuda(float *dst, const float *src, int rows, int cols) {
    long long n = (long long)rows * cols;
    if (n <= 0) return;
    transpose_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dst, src, rows, cols);
    CUDA_CHECK_LAUNCH();
}
