// SPD's LinearComponents and EmbeddingComponents on the GPU, unfused: the same
// sequence of matrix products as src/ops/components.c (through matmul_cuda, i.e.
// cuBLAS) with one small kernel per elementwise step in between.
// Gradient convention (ops/components.h): dV, dU, ddelta accumulate; dx, dmask,
// ddelta_mask are written. delta_mask NULL (with a delta) means all ones, like mask.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/components.h"
#include "ops/matmul.h"
}

#define EW_THREADS 256
#define ROW_THREADS 256

// out [n] = a * b (out may alias a or b).
static __global__ void mul_kernel(float *out, const float *a, const float *b, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] * b[i];
}

static void mul(float *out, const float *a, const float *b, long long n) {
    if (n <= 0) return;
    mul_kernel<<<spd_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, spd_cuda_stream()>>>(out, a, b, n);
    CUDA_CHECK_LAUNCH();
}

// scratch [N, C] = a * mask; returns a itself when mask is NULL (all ones).
static const float *masked_acts(float *scratch, const float *a, const float *mask, long long NC) {
    if (!mask) return a;
    mul(scratch, a, mask, NC);
    return scratch;
}

// out [N, d] = s[n] * in [N, d] (s NULL: all ones; out may alias in).
static __global__ void scale_rows_kernel(float *out, const float *in, const float *s, int N, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * d) return;
    out[i] = s ? s[i / d] * in[i] : in[i];
}

static void scale_rows(float *out, const float *in, const float *s, int N, int d) {
    long long n = (long long)N * d;
    if (n <= 0) return;
    scale_rows_kernel<<<spd_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, spd_cuda_stream()>>>(out, in, s, N, d);
    CUDA_CHECK_LAUNCH();
}

// Sum of one double per thread over a block of ROW_THREADS; every thread gets it.
static __device__ double block_sum(double x) {
    __shared__ double warp_sums[ROW_THREADS / 32];
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) warp_sums[warp] = x;
    __syncthreads();
    double s = 0;
    for (int w = 0; w < ROW_THREADS / 32; w++) s += warp_sums[w];
    return s;
}

// Block n = row n. x, t [N, d_in], delta_mask [N] or NULL:
// ddelta_mask[n] = x[n] . t[n] (float64; skipped when NULL), then t[n] *= delta_mask[n].
static __global__ void row_dot_then_scale_kernel(float *ddelta_mask, float *t, const float *x,
                                                 const float *delta_mask, int d_in) {
    const long long n = blockIdx.x;
    float *tn = t + n * d_in;
    const float *xn = x + n * d_in;
    if (ddelta_mask) {
        double dot = 0;
        for (int i = threadIdx.x; i < d_in; i += blockDim.x) dot += (double)xn[i] * tn[i];
        dot = block_sum(dot);  // has barriers: every thread has read its tn[i] before any is scaled
        if (threadIdx.x == 0) ddelta_mask[n] = (float)dot;
    }
    if (delta_mask) {
        const float g = delta_mask[n];
        for (int i = threadIdx.x; i < d_in; i += blockDim.x) tn[i] *= g;
    }
}

// x [N, d_in], V [d_in, C], U [C, d_out], mask [N, C], delta [d_out, d_in], delta_mask [N]
// -> a = x @ V [N, C], out = (a * mask) @ U + delta_mask * (x @ delta^T) [N, d_out]
// Leaves scratch = a * mask (or a when mask is NULL: then scratch is not written),
// which the fused-mode backward reuses.
extern "C" void components_forward_cuda(float *out, float *a, const float *x, const float *V, const float *U,
                                        const float *mask, const float *delta, const float *delta_mask, int N,
                                        int d_in, int C, int d_out, float *scratch) {
    matmul_cuda(a, x, V, N, C, d_in, false, false, 1, 0);
    const float *am = masked_acts(scratch, a, mask, (long long)N * C);
    float beta = 0;
    if (delta) {  // out = delta_mask * (x @ delta^T) first, then the components add onto it
        matmul_cuda(out, x, delta, N, d_out, d_in, false, true, 1, 0);
        if (delta_mask) scale_rows(out, out, delta_mask, N, d_out);
        beta = 1;
    }
    matmul_cuda(out, am, U, N, d_out, C, false, false, 1, beta);
}

// dout [N, d_out] -> dU += (a*mask)^T dout; h = dout @ U^T; dmask = h * a; g_a = h * mask;
// dV += x^T g_a; dx = g_a @ V^T + delta_mask * (dout @ delta);
// ddelta += (delta_mask * dout)^T x; ddelta_mask[n] = x[n] . (dout[n] @ delta).
// dx doubles as the [N, d_in] workspace of the delta path; when dx is NULL a
// temporary comes from the stream-ordered allocator (graph-capture safe).
//
// --mode fused: a * mask is not recomputed: scratch still holds it from this
// module's forward (each module has its own scratch, and nothing runs the module
// between its forward and backward). That saves one full pass over the N x C
// activations per module; the mask multiply itself still runs as its own kernel
// until a fused GEMM beats cuBLAS (dev/kernels/b2b_masked/NOTES.md).
extern "C" void components_backward_cuda(float *dx, float *dV, float *dU, float *ddelta, float *dmask,
                                         float *ddelta_mask, const float *dout, const float *x, const float *a,
                                         const float *V, const float *U, const float *mask, const float *delta,
                                         const float *delta_mask, int N, int d_in, int C, int d_out,
                                         float *scratch) {
    const long long NC = (long long)N * C;
    cudaStream_t st = spd_cuda_stream();
    const bool reuse = spd_cuda_mode_get() == SPD_CUDA_FUSED;
    if (dU) {
        const float *am = !mask ? a : reuse ? scratch : masked_acts(scratch, a, mask, NC);
        matmul_cuda(dU, am, dout, C, d_out, N, true, false, 1, 1);
    }
    float dx_beta = 0;
    if (delta && (dx || ddelta || ddelta_mask)) {
        float *tmp = dx;
        if (!tmp) CUDA_CHECK(cudaMallocAsync((void **)&tmp, (size_t)N * d_in * sizeof(float) + 1, st));
        if (ddelta) {  // (delta_mask * dout)^T x = dout^T (delta_mask * x)
            scale_rows(tmp, x, delta_mask, N, d_in);
            matmul_cuda(ddelta, dout, tmp, d_out, d_in, N, true, false, 1, 1);
        }
        if (dx || ddelta_mask) {
            matmul_cuda(tmp, dout, delta, N, d_in, d_out, false, false, 1, 0);
            if (N > 0 && (ddelta_mask || delta_mask)) {
                row_dot_then_scale_kernel<<<N, ROW_THREADS, 0, st>>>(ddelta_mask, tmp, x, delta_mask, d_in);
                CUDA_CHECK_LAUNCH();
            }
            dx_beta = 1;
        }
        if (tmp != dx) CUDA_CHECK(cudaFreeAsync(tmp, st));
    }
    if (dx || dV || dmask) {
        float *h = scratch;
        matmul_cuda(h, dout, U, N, C, d_out, false, true, 1, 0);
        if (dmask) mul(dmask, h, a, NC);
        if (mask) mul(h, h, mask, NC);  // h becomes g_a in place
        if (dV) matmul_cuda(dV, x, h, d_in, C, N, true, false, 1, 1);
        if (dx) matmul_cuda(dx, h, V, N, d_in, C, false, true, 1, dx_beta);
    }
}

// delta [d_out, d_in] = W - (V @ U)^T = W - U^T @ V^T
extern "C" void weight_delta_forward_cuda(float *delta, const float *W, const float *V, const float *U, int d_in,
                                          int C, int d_out) {
    size_t bytes = (size_t)d_out * d_in * sizeof(float);
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(delta, W, bytes, cudaMemcpyDeviceToDevice, spd_cuda_stream()));
    matmul_cuda(delta, U, V, d_out, d_in, C, true, true, -1, 1);
}

// dV [d_in, C] -= ddelta^T @ U^T; dU [C, d_out] -= V^T @ ddelta^T
extern "C" void weight_delta_backward_cuda(float *dV, float *dU, const float *ddelta, const float *V, const float *U,
                                           int d_in, int C, int d_out) {
    if (dV) matmul_cuda(dV, ddelta, U, d_in, C, d_out, true, true, -1, 1);
    if (dU) matmul_cuda(dU, V, ddelta, C, d_out, d_in, true, true, -1, 1);
}

// ---- embedding components ------------------------------------------------------

// tokens [N], V [vocab, C] -> a [N, C] = V[tokens]. A token outside [0, vocab)
// is a broken invariant (ids are validated when read): the kernel traps, and the
// next checked CUDA call reports it.
static __global__ void gather_rows_kernel(float *a, const int32_t *tokens, const float *V, int N, int vocab, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C) return;
    const long long n = i / C, c = i % C;
    const int t = tokens[n];
    if (t < 0 || t >= vocab) __trap();
    a[i] = V[(long long)t * C + c];
}

// out [N, d] += delta_mask[n] * delta[tokens[n]] (delta_mask NULL: ones).
static __global__ void add_delta_rows_kernel(float *out, const int32_t *tokens, const float *delta,
                                             const float *delta_mask, int N, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * d) return;
    const long long n = i / d, c = i % d;
    const float g = delta_mask ? delta_mask[n] : 1.0f;
    out[i] += g * delta[(long long)tokens[n] * d + c];
}

// tokens [N], V [vocab, C], U [C, d], mask [N, C], delta [vocab, d], delta_mask [N]
// -> a = V[tokens] [N, C], out = (a * mask) @ U + delta_mask * delta[tokens] [N, d]
extern "C" void embedding_components_forward_cuda(float *out, float *a, const int32_t *tokens, const float *V,
                                                  const float *U, const float *mask, const float *delta,
                                                  const float *delta_mask, int N, int vocab, int C, int d,
                                                  float *scratch) {
    cudaStream_t st = spd_cuda_stream();
    const long long NC = (long long)N * C, Nd = (long long)N * d;
    if (NC > 0) {
        gather_rows_kernel<<<spd_cuda_blocks(NC, EW_THREADS), EW_THREADS, 0, st>>>(a, tokens, V, N, vocab, C);
        CUDA_CHECK_LAUNCH();
    }
    const float *am = masked_acts(scratch, a, mask, NC);
    matmul_cuda(out, am, U, N, d, C, false, false, 1, 0);
    if (!delta || Nd <= 0) return;
    add_delta_rows_kernel<<<spd_cuda_blocks(Nd, EW_THREADS), EW_THREADS, 0, st>>>(out, tokens, delta, delta_mask, N,
                                                                                  d);
    CUDA_CHECK_LAUNCH();
}

// ddelta [vocab, d]: ddelta[tokens[n]] += delta_mask[n] * dout[n] (scatter-add:
// tokens repeat, so atomics; the order of the additions is not fixed).
static __global__ void scatter_ddelta_kernel(float *ddelta, const int32_t *tokens, const float *dout,
                                             const float *delta_mask, int N, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * d) return;
    const long long n = i / d, c = i % d;
    const float g = delta_mask ? delta_mask[n] : 1.0f;
    atomicAdd(&ddelta[(long long)tokens[n] * d + c], g * dout[i]);
}

// Block n = row n: ddelta_mask[n] = dout[n] . delta[tokens[n]] (float64 sum).
static __global__ void gathered_row_dot_kernel(float *ddelta_mask, const int32_t *tokens, const float *dout,
                                               const float *delta, int d) {
    const long long n = blockIdx.x;
    const float *gn = dout + n * d, *dt = delta + (long long)tokens[n] * d;
    double dot = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dot += (double)gn[i] * dt[i];
    dot = block_sum(dot);
    if (threadIdx.x == 0) ddelta_mask[n] = (float)dot;
}

// dV [vocab, C]: dV[tokens[n]] += h[n] * mask[n] (mask NULL: ones; scatter-add with atomics).
static __global__ void scatter_dV_kernel(float *dV, const int32_t *tokens, const float *h, const float *mask, int N,
                                         int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C) return;
    const long long n = i / C, c = i % C;
    atomicAdd(&dV[(long long)tokens[n] * C + c], mask ? h[i] * mask[i] : h[i]);
}

// dout [N, d] -> dU += (a*mask)^T dout; h = dout @ U^T; dmask = h * a;
// dV[tokens[n]] += h[n] * mask[n]; ddelta[tokens[n]] += delta_mask[n] * dout[n];
// ddelta_mask[n] = dout[n] . delta[tokens[n]].
extern "C" void embedding_components_backward_cuda(float *dV, float *dU, float *ddelta, float *dmask,
                                                   float *ddelta_mask, const float *dout, const int32_t *tokens,
                                                   const float *a, const float *V, const float *U, const float *mask,
                                                   const float *delta, const float *delta_mask, int N, int vocab,
                                                   int C, int d, float *scratch) {
    cudaStream_t st = spd_cuda_stream();
    const long long NC = (long long)N * C, Nd = (long long)N * d;
    if (dU) {
        const float *am = masked_acts(scratch, a, mask, NC);
        matmul_cuda(dU, am, dout, C, d, N, true, false, 1, 1);
    }
    if (delta && N > 0) {
        if (ddelta && Nd > 0) {
            scatter_ddelta_kernel<<<spd_cuda_blocks(Nd, EW_THREADS), EW_THREADS, 0, st>>>(ddelta, tokens, dout,
                                                                                          delta_mask, N, d);
            CUDA_CHECK_LAUNCH();
        }
        if (ddelta_mask) {
            gathered_row_dot_kernel<<<N, ROW_THREADS, 0, st>>>(ddelta_mask, tokens, dout, delta, d);
            CUDA_CHECK_LAUNCH();
        }
    }
    if (dV || dmask) {
        float *h = scratch;
        matmul_cuda(h, dout, U, N, C, d, false, true, 1, 0);
        if (dmask) mul(dmask, h, a, NC);
        if (dV && NC > 0) {
            scatter_dV_kernel<<<spd_cuda_blocks(NC, EW_THREADS), EW_THREADS, 0, st>>>(dV, tokens, h, mask, N, C);
            CUDA_CHECK_LAUNCH();
        }
    }
}

// delta [vocab, d] = W - V @ U
extern "C" void embedding_weight_delta_forward_cuda(float *delta, const float *W, const float *V, const float *U,
                                                    int vocab, int C, int d) {
    size_t bytes = (size_t)vocab * d * sizeof(float);
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(delta, W, bytes, cudaMemcpyDeviceToDevice, spd_cuda_stream()));
    matmul_cuda(delta, V, U, vocab, d, C, false, false, -1, 1);
}

// dV [vocab, C] -= ddelta @ U^T; dU [C, d] -= V^T @ ddelta
extern "C" void embedding_weight_delta_backward_cuda(float *dV, float *dU, const float *ddelta, const float *V,
                                                     const float *U, int vocab, int C, int d) {
    if (dV) matmul_cuda(dV, ddelta, U, vocab, C, d, false, true, -1, 1);
    if (dU) matmul_cuda(dU, V, ddelta, C, d, vocab, true, false, -1, 1);
}
