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
static void *scratch2_buf;
static size_t scratch2_bytes;
static double *red_buf;  // RED_MAX_BLOCKS partials + the result

void *spd_cuda_scratch2(size_t bytes) {
    if (bytes > scratch2_bytes) {
        if (scratch2_buf) CUDA_CHECK(cudaFree(scratch2_buf));
        scratch2_bytes = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
        CUDA_CHECK(cudaMalloc(&scratch2_buf, scratch2_bytes));
    }
    return scratch2_buf;
}

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

// sum over buffers b of sum a_b^2: every buffer's block partials into one array, one final
// sum, one read-back (instead of one per buffer).
static double *multi_buf;
static size_t multi_cap;

double spd_cuda_sum_sq_multi(const float *const *a, const int64_t *n, int count) {
    int total = 0;
    for (int b = 0; b < count; b++) total += n[b] > 0 ? grid_of(n[b]) : 0;
    if (total == 0) return 0;
    if ((size_t)total + 1 > multi_cap) {
        if (multi_buf) CUDA_CHECK(cudaFree(multi_buf));
        multi_cap = (size_t)total + 1;
        CUDA_CHECK(cudaMalloc(&multi_buf, multi_cap * sizeof(double)));
    }
    cudaStream_t st = spd_cuda_stream();
    int off = 0;
    for (int b = 0; b < count; b++) {
        if (n[b] <= 0) continue;
        int blocks = grid_of(n[b]);
        sum_sq_partial<<<blocks, RED_THREADS, 0, st>>>(multi_buf + off, a[b], NULL, n[b]);
        CUDA_CHECK_LAUNCH();
        off += blocks;
    }
    sum_final<<<1, RED_THREADS, 0, st>>>(multi_buf + total, multi_buf, total);
    CUDA_CHECK_LAUNCH();
    double v = 0;
    CUDA_CHECK(cudaMemcpyAsync(&v, multi_buf + total, sizeof v, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    return v;
}

// ---- column sums ----------------------------------------------------------------------------

#define COL_TX 32
#define COL_TY 8
#define COL_MAX_CHUNKS 64

// Pass 1: chunk blockIdx.y of the rows, columns blockIdx.x * 32 + tx: each thread adds rows
// ty, ty + 8, ... of its chunk (coalesced across tx), the 8 partials are added in a fixed order.
static __global__ void colsum_partial(double *partial, const float *x, long long rows, long long cols,
                                      long long chunk) {
    __shared__ double s[COL_TY][COL_TX];
    long long j = (long long)blockIdx.x * COL_TX + threadIdx.x;
    long long r0 = (long long)blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double acc = 0;
    if (j < cols)
        for (long long r = r0 + threadIdx.y; r < r1; r += COL_TY) acc += x[r * cols + j];
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double t = 0;
        for (int k = 0; k < COL_TY; k++) t += s[k][threadIdx.x];
        partial[(long long)blockIdx.y * cols + j] = t;
    }
}

// Pass 2: out[j] = the chunks' partials of column j in order.
static __global__ void colsum_final(double *out, const double *partial, long long cols, int chunks) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double t = 0;
    for (int c = 0; c < chunks; c++) t += partial[(long long)c * cols + j];
    out[j] = t;
}

void spd_cuda_colsum(double *out, const float *x, long long rows, long long cols) {
    if (cols <= 0) return;
    long long chunks = (rows + 255) / 256;
    if (chunks < 1) chunks = 1;
    if (chunks > COL_MAX_CHUNKS) chunks = COL_MAX_CHUNKS;
    long long chunk = (rows + chunks - 1) / chunks;
    if (chunk < 1) chunk = 1;
    double *partial = (double *)spd_cuda_scratch((size_t)chunks * cols * sizeof(double));
    cudaStream_t st = spd_cuda_stream();
    dim3 grid((unsigned)((cols + COL_TX - 1) / COL_TX), (unsigned)chunks), block(COL_TX, COL_TY);
    colsum_partial<<<grid, block, 0, st>>>(partial, x, rows, cols, chunk);
    CUDA_CHECK_LAUNCH();
    colsum_final<<<spd_cuda_blocks(cols, 256), 256, 0, st>>>(out, partial, cols, (int)chunks);
    CUDA_CHECK_LAUNCH();
}
