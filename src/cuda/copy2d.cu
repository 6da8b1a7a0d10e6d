// Strided 2-D copies on the GPU: the padding copies of the fused products (a row width
// such as LlamaSimple's 341 padded to a multiple of 4 floats, and back). They are pure
// bandwidth, so the index arithmetic stays in 32 bits where the matrix allows it (64-bit
// division per element cost the 341-wide copies about a third over their byte floor).
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"

#define COPY2D_THREADS 256

template <typename I>
static __global__ void copy2d_kernel(float *dst, int ldd, int rows, int cols, const float *src, int lds, int src_rows,
                                     int src_cols, float beta) {
    const I n = (I)rows * (I)cols;
    for (I i = (I)blockIdx.x * COPY2D_THREADS + threadIdx.x; i < n; i += (I)gridDim.x * COPY2D_THREADS) {
        const I r = i / (I)cols, c = i - r * (I)cols;
        const float v = r < (I)src_rows && c < (I)src_cols ? src[(long long)r * lds + c] : 0.0f;
        float *d = dst + (long long)r * ldd + c;
        *d = beta == 0.0f ? v : beta * *d + v;
    }
}

extern "C" void copy2d_cuda(float *dst, int ldd, int rows, int cols, const float *src, int lds, int src_rows,
                            int src_cols, float beta) {
    const long long n = (long long)rows * cols;
    if (n <= 0) return;
    const unsigned blocks = spd_cuda_blocks_capped(n, COPY2D_THREADS);
    if (n < (1LL << 31))
        copy2d_kernel<unsigned><<<blocks, COPY2D_THREADS, 0, spd_cuda_stream()>>>(dst, ldd, rows, cols, src, lds,
                                                                                  src_rows, src_cols, beta);
    else
        copy2d_kernel<long long><<<blocks, COPY2D_THREADS, 0, spd_cuda_stream()>>>(dst, ldd, rows, cols, src, lds,
                                                                                   src_rows, src_cols, beta);
    CUDA_CHECK_LAUNCH();
}
