// Deterministic float64 reductions for the training losses and gradient norms:
// a fixed grid (a function of n alone) writes per-block partials, one block adds
// them in a fixed tree order, and the value is read back (a synchronization).
#include "cuda/cuda_common.h"

#define RED_THREADS 256
#define RED_MAX_BLOCKS 1024

static __device__ double block_sum(double x) {
    __shared__ double s[RED_THREADS];
    s[threadIdx.x] = x;
    __syncthreads();
    for (int w = RED_THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    return s[0];
}

static __global__ void sum_sq_partial(double *partial, const float *a, const float *b, long long n) {
    double acc = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        double e = b ? (double)a[i] - (double)b[i] : (double)a[i];
        acc += e * e;
    }
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

static __global__ void sum_f64_partial(double *partial, const double *x, long long n) {
    double acc = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        acc += x[i];
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

static __global__ void sum_final(double *out, const double *partial, int n_partial) {
    double acc = 0;
    for (int i = threadIdx.x; i < n_partial; i += blockDim.x) acc += partial[i];
    double s = block_sum(acc);
    if (threadIdx.x == 0) out[0] = s;
}

static void *scratch_buf;
static size_t scratch_bytes;
static double *red_buf;  // RED_MAX_BLOCKS partials + the result

void *spd_cuda_scratch(size_t bytes) {
    if (bytes > scratch_bytes) {
        if (scratch_buf) CUDA_CHECK(cudaFree(scratch_buf));
        scratch_bytes = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
        CUDA_CHECK(cudaMalloc(&scratch_buf, scratch_bytes));
    }
    return scratch_buf;
}

static int grid_of(long long n) {
    long long b = (n + RED_THREADS * 4 - 1) / (RED_THREADS * 4);
    return (int)(b < 1 ? 1 : b > RED_MAX_BLOCKS ? RED_MAX_BLOCKS : b);
}

static double finish(int blocks) {
    cudaStream_t st = spd_cuda_stream();
    sum_final<<<1, RED_THREADS, 0, st>>>(red_buf + RED_MAX_BLOCKS, red_buf, blocks);
    CUDA_CHECK_LAUNCH();
    double v = 0;
    CUDA_CHECK(cudaMemcpyAsync(&v, red_buf + RED_MAX_BLOCKS, sizeof v, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    return v;
}

static void ensure_red_buf(void) {
    if (!red_buf) CUDA_CHECK(cudaMalloc(&red_buf, (RED_MAX_BLOCKS + 1) * sizeof(double)));
}

double spd_cuda_sum_sq(const float *a, const float *b, long long n) {
    if (n <= 0) return 0;
    ensure_red_buf();
    int blocks = grid_of(n);
    sum_sq_partial<<<blocks, RED_THREADS, 0, spd_cuda_stream()>>>(red_buf, a, b, n);
    CUDA_CHECK_LAUNCH();
    return finish(blocks);
}

double spd_cuda_sum_f64(const double *x, long long n) {
    if (n <= 0) return 0;
    ensure_red_buf();
    int blocks = grid_of(n);
    sum_f64_partial<<<blocks, RED_THREADS, 0, spd_cuda_stream()>>>(red_buf, x, n);
    CUDA_CHECK_LAUNCH();
    return finish(blocks);
}
