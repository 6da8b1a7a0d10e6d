// SPD's LinearComponents and EmbeddingComponents on the GPU, unfused: the same
// sequence of matrix products as src/ops/components.c (through matmul_cuda, i.e.
// cuBLAS) with one small kernel per elementwise step in between.
// Gradient convention (ops/components.h): dV, dU, ddelta accumulate; dx, dmask,
// ddelta_mask are written. delta_mask NULL (with a delta) means all ones, like mask.

#include <cuda_bf16.h>
#include <limits.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"
#include "cuda/masked_b2b_sm90.h"
#include "cuda/masked_gemm_sm90.h"
#include "cuda/masked_wgrad_sm90.h"
#include "cuda/mul_transpose.h"
#include "cuda/weight_layouts.h"
#include "cuda/wgrad_stored_sm90.h"

extern "C" {
#include "core/real.h"
#include "ops/add.h"
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

static bool fused_mode(void) { return spd_cuda_mode_get() == SPD_CUDA_FUSED; }

// out [n] = a * b, four floats per thread (n % 4 == 0, all three 16-byte aligned).
static __global__ void mul4_kernel(float4 *out, const float4 *a, const float4 *b, long long n4) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 x = a[i], y = b[i];
    out[i] = make_float4(x.x * y.x, x.y * y.y, x.z * y.z, x.w * y.w);
}

// Unfused mode keeps the one-float-per-thread kernel (the baseline); fused mode
// uses four per thread where n and the pointers allow it.
static void mul(float *out, const float *a, const float *b, long long n) {
    if (n <= 0) return;
    if (fused_mode() && n % 4 == 0 && spd_aligned(out, 16) && spd_aligned(a, 16) && spd_aligned(b, 16)) {
        mul4_kernel<<<spd_cuda_blocks(n / 4, EW_THREADS), EW_THREADS, 0, spd_cuda_stream()>>>(
            (float4 *)out, (const float4 *)a, (const float4 *)b, n / 4);
        CUDA_CHECK_LAUNCH();
        return;
    }
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

// ---- --mode fused helpers ------------------------------------------------------

// The backward's elementwise step in one pass: dmask = h * a (when dmask), h *= mask.
static __global__ void mask_grads4_kernel(float4 *dmask, float4 *h, const float4 *a, const float4 *mask, long long n4) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 g = h[i], m = mask[i];
    if (dmask) {
        const float4 x = a[i];
        dmask[i] = make_float4(g.x * x.x, g.y * x.y, g.z * x.z, g.w * x.w);
    }
    h[i] = make_float4(g.x * m.x, g.y * m.y, g.z * m.z, g.w * m.w);
}

static __global__ void mask_grads_kernel(float *dmask, float *h, const float *a, const float *mask, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = h[i];
    if (dmask) dmask[i] = g * a[i];
    h[i] = g * mask[i];
}

// dmask = h * a (dmask may be NULL), then h *= mask (mask non-NULL).
static void mask_grads(float *dmask, float *h, const float *a, const float *mask, long long n) {
    if (n <= 0) return;
    cudaStream_t st = spd_cuda_stream();
    if (n % 4 == 0 && spd_aligned(h, 16) && spd_aligned(a, 16) && spd_aligned(mask, 16) &&
        (!dmask || spd_aligned(dmask, 16))) {
        mask_grads4_kernel<<<spd_cuda_blocks(n / 4, EW_THREADS), EW_THREADS, 0, st>>>(
            (float4 *)dmask, (float4 *)h, (const float4 *)a, (const float4 *)mask, n / 4);
    } else {
        mask_grads_kernel<<<spd_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, st>>>(dmask, h, a, mask, n);
    }
    CUDA_CHECK_LAUNCH();
}

// Row widths that are not a multiple of 4 floats (LlamaSimple's 341) deny cuBLAS
// its 16-byte-aligned kernels (dev/kernels/README.md: the 341-wide products ran
// 3x slower than the 128-wide ones). In fused mode such a width is padded with
// zeros to the next multiple of 4 in temporaries: zero columns of x or dout meet
// zero rows/columns of V or U, so every product is exact, and the padding is
// dropped when the result is copied (or added) back. SPD_CUDA_PAD=0 turns it off.
static bool pad_width(int d, int N, int C) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_PAD", true);
    // Small products (the reference checks' toy models) gain nothing from it; bf16
    // products pad their operands' rows when rounding them, and unaligned outputs
    // through a padded temporary (matmul.cu).
    return env && fused_mode() && spd_cuda_matmul_precision() != SPD_MATMUL_BF16 && d % 4 != 0 &&
           (double)N * C * d >= (double)(1 << 24);
}

static int pad4(int d) { return (d + 3) & ~3; }

// A weight layout made for this forward and backward (weight_layouts.h), or NULL: the
// caller then makes its own copy.
static const float *layout_f32(weight_layout_kind kind, const float *W, int rows, int cols) {
    return (const float *)weight_layout_get(kind, W, rows, cols);
}

// Stream-ordered temporaries of one call (graph-capture safe), carved from one allocation.
static size_t arena_bytes(long long n) { return ((size_t)n * sizeof(float) + 255) & ~(size_t)255; }

typedef struct {
    char *base;
    size_t used, cap;
} temp_arena;

static void arena_open(temp_arena *t, size_t bytes) {
    t->used = 0;
    t->cap = bytes;
    t->base = NULL;
    if (bytes) CUDA_CHECK(cudaMallocAsync((void **)&t->base, bytes, spd_cuda_stream()));
}

static float *arena_take(temp_arena *t, long long n) {
    const size_t bytes = arena_bytes(n);
    SPD_ASSERT(t->used + bytes <= t->cap);
    float *p = (float *)(t->base + t->used);
    t->used += bytes;
    return p;
}

// The same for n bf16 values.
static size_t arena_bytes_bf16(long long n) { return arena_bytes((n + 1) / 2); }
static void *arena_take_bf16(temp_arena *t, long long n) { return arena_take(t, (n + 1) / 2); }

static void arena_close(temp_arena *t) {
    if (t->base) CUDA_CHECK(cudaFreeAsync(t->base, spd_cuda_stream()));
    t->base = NULL;
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

// The weight delta's share of the forward, written first: out = delta_mask * (x @ delta^T).
// Returns the beta with which the components' product adds onto out (0 without a delta).
static float delta_forward(float *out, const float *x, const float *delta, const float *delta_mask, int N, int d_in,
                           int d_out) {
    if (!delta) return 0;
    matmul_cuda(out, x, delta, N, d_out, d_in, false, true, 1, 0);
    if (delta_mask) scale_rows(out, out, delta_mask, N, d_out);
    return 1;
}

// The weight delta's share of the backward: ddelta += (delta_mask * dout)^T x;
// dx = delta_mask * (dout @ delta) (written; added onto dx with add_dx);
// ddelta_mask[n] = x[n] . (dout[n] @ delta). Returns the beta with which the components'
// dx must add onto dx (1 when written here, or when adding).
static float delta_backward(float *dx, float *ddelta, float *ddelta_mask, const float *dout, const float *x,
                            const float *delta, const float *delta_mask, int N, int d_in, int d_out, bool add_dx) {
    if (!delta || !(dx || ddelta || ddelta_mask)) return add_dx ? 1 : 0;
    cudaStream_t st = spd_cuda_stream();
    float dx_beta = add_dx ? 1 : 0;
    float *tmp = add_dx ? NULL : dx;  // dx is the workspace unless its values are kept
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
        if (dx && tmp != dx) add_inplace_cuda(dx, tmp, (int64_t)N * d_in);
        dx_beta = 1;
    }
    if (tmp != dx) CUDA_CHECK(cudaFreeAsync(tmp, st));
    return dx_beta;
}

// ---- --mode fused with bf16 products ----------------------------------------------
// The products' bf16 operands come straight from the elementwise passes that make
// them: the forward's mask multiply writes a * mask as bf16 only (into the first
// half of scratch, where the backward's dU product reads it back), and the
// backward's mask pass writes g_a as bf16 only (its consumers are the dV and dx
// products). dout is rounded once for its two products, and x once for the forward's
// product and the backward's dV (kept_x16). Everything not a product operand (a, h,
// dmask, the outputs) stays float32. Needs C % 8 == 0 (16-byte bf16 rows).
// SPD_CUDA_BF16_ACTS=0 turns it off (every operand is then rounded by its product, as in
// unfused mode): for measuring what it buys. Where the back-to-back kernel runs (K1 <=
// 128; SPD_CUDA_B2B=0 turns it off), the forward's two products and the backward's g_a
// and dx are one kernel each, as with TF32.
static bool bf16_acts(int C, const void *scratch) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_BF16_ACTS", true);
    return env && fused_mode() && spd_cuda_matmul_precision() == SPD_MATMUL_BF16 && C % 8 == 0 &&
           spd_aligned(scratch, 16);
}

// Where the forward keeps x rounded to bf16 [N, spd_bf16_ld(d_in)] for the backward's dV
// product (which otherwise rounds x again): scratch's second half, after a * mask as bf16,
// where it fits. NULL without a mask (scratch then unused) or room. Shapes alone decide,
// so that forward and backward agree.
static void *kept_x16(float *scratch, int N, int C, int d_in, const float *mask) {
    if (!mask || spd_bf16_ld(d_in) > C) return NULL;
    return (char *)scratch + (size_t)N * C * 2;  // 16-byte aligned: C % 8 == 0
}

// out16 [n] = bf16(a * b), four per thread (n % 4 == 0, a and b 16-byte aligned, out16 8-byte).
static __global__ void mul_to_bf16_kernel(__nv_bfloat162 *out16, const float4 *a, const float4 *b, long long n4) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 x = a[i], y = b[i];
    out16[2 * i] = __floats2bfloat162_rn(x.x * y.x, x.y * y.y);
    out16[2 * i + 1] = __floats2bfloat162_rn(x.z * y.z, x.w * y.w);
}

// dmask = h * a (when dmask), g16 = bf16(h * mask); four per thread.
static __global__ void mask_grads_bf16_kernel(float4 *dmask, __nv_bfloat162 *g16, const float4 *h, const float4 *a,
                                              const float4 *mask, long long n4) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 g = h[i], m = mask[i];
    if (dmask) {
        const float4 x = a[i];
        dmask[i] = make_float4(g.x * x.x, g.y * x.y, g.z * x.z, g.w * x.w);
    }
    g16[2 * i] = __floats2bfloat162_rn(g.x * m.x, g.y * m.y);
    g16[2 * i + 1] = __floats2bfloat162_rn(g.z * m.z, g.w * m.w);
}

// The back-to-back kernel with bf16 operands (masked_b2b_sm90.h) for the forward: out =
// (x V * mask) U in one pass, a * mask written as bf16 into scratch for the dU product (and
// a itself when saved). False where it cannot run.
static bool components_forward_b2b_bf16(float *out, float *a, const float *x, const float *V, const float *U,
                                        const float *mask, const float *delta, const float *delta_mask, int N,
                                        int d_in, int C, int d_out, float *scratch) {
    const int K16 = spd_bf16_ld(d_in), ldb = masked_b2b_ldb(C);
    if (!mask || !masked_b2b_sm90_bf16_ok(N, C, d_in, d_out, K16, mask, NULL, a, NULL)) return false;
    void *x16 = kept_x16(scratch, N, C, d_in, mask);
    const void *Vt16 = weight_layout_get(WL_VT16, V, d_in, C), *Ut16 = weight_layout_get(WL_BT_U16, U, C, d_out);
    const bool own = !Vt16 || !Ut16;
    temp_arena t;
    arena_open(&t, (x16 ? 0 : arena_bytes_bf16((long long)N * K16)) +
                       (own ? arena_bytes_bf16((long long)C * K16) + arena_bytes_bf16((long long)d_out * ldb) : 0));
    if (!x16) x16 = arena_take_bf16(&t, (long long)N * K16);
    spd_to_bf16(x16, K16, x, d_in, N, d_in);
    if (own) {
        void *Vt_own = arena_take_bf16(&t, (long long)C * K16), *Ut_own = arena_take_bf16(&t, (long long)d_out * ldb);
        masked_b2b_weights_bf16_cuda(Vt_own, K16, V, d_in, Ut_own, U, d_out, C, d_out, true);
        Vt16 = Vt_own;
        Ut16 = Ut_own;
    }
    const float beta = delta_forward(out, x, delta, delta_mask, N, d_in, d_out);
    masked_b2b_sm90_bf16(N, C, d_in, d_out, x16, K16, Vt16, K16, Ut16, mask, NULL, a, scratch, NULL, out, d_out, beta);
    arena_close(&t);
    return true;
}

static void components_forward_bf16(float *out, float *a, const float *x, const float *V, const float *U,
                                    const float *mask, const float *delta, const float *delta_mask, int N, int d_in,
                                    int C, int d_out, float *scratch) {
    if (components_forward_b2b_bf16(out, a, x, V, U, mask, delta, delta_mask, N, d_in, C, d_out, scratch)) return;
    const long long NC = (long long)N * C;
    cudaStream_t st = spd_cuda_stream();
    // The masked product (wgmma): bf16(a * mask) into scratch and a (when saved) in one pass.
    const int K16 = spd_bf16_ld(d_in);
    const bool wg = mask && masked_gemm_sm90_bf16_ok(N, C, K16, NULL, K16, NULL, K16, mask, NULL, a, scratch, NULL);
    float *a_tmp = NULL;  // a == NULL (no mask gradients): the float32 product still needs a home
    void *kept = kept_x16(scratch, N, C, d_in, mask), *x16 = kept;
    if (!x16) CUDA_CHECK(cudaMallocAsync(&x16, (size_t)N * K16 * 2 + 16, st));
    spd_to_bf16(x16, K16, x, d_in, N, d_in);
    if (wg) {
        const void *Vt16 = weight_layout_get(WL_VT16, V, d_in, C);
        void *Vt_own = NULL;
        if (!Vt16) {
            CUDA_CHECK(cudaMallocAsync(&Vt_own, (size_t)C * K16 * 2 + 16, st));
            transpose_pad_bf16_cuda(Vt_own, K16, V, C, d_in, C);
            Vt16 = Vt_own;
        }
        masked_gemm_sm90_bf16(N, C, K16, x16, K16, Vt16, K16, mask, NULL, a, scratch, NULL);
        if (Vt_own) CUDA_CHECK(cudaFreeAsync(Vt_own, st));
    } else {
        if (!a) CUDA_CHECK(cudaMallocAsync((void **)&a_tmp, (size_t)NC * sizeof(float) + 16, st));
        if (!a) a = a_tmp;
        matmul_cuda_ld_bf16(a, x16, true, V, false, N, C, d_in, false, false, 1, 0, K16, C, C);
    }
    if (!kept) CUDA_CHECK(cudaFreeAsync(x16, st));
    const float beta = delta_forward(out, x, delta, delta_mask, N, d_in, d_out);
    if (!mask) {
        matmul_cuda(out, a, U, N, d_out, C, false, false, 1, beta);
        return;
    }
    if (NC > 0 && !wg) {
        mul_to_bf16_kernel<<<spd_cuda_blocks(NC / 4, EW_THREADS), EW_THREADS, 0, st>>>(
            (__nv_bfloat162 *)scratch, (const float4 *)a, (const float4 *)mask, NC / 4);
        CUDA_CHECK_LAUNCH();
    }
    matmul_cuda_ld_bf16(out, scratch, true, U, false, N, d_out, C, false, false, 1, beta, C, d_out, d_out);
    if (a_tmp) CUDA_CHECK(cudaFreeAsync(a_tmp, st));
}

static void components_backward_bf16(float *dx, float *dV, float *dU, float *ddelta, float *dmask,
                                     float *ddelta_mask, const float *dout, const float *x, const float *a,
                                     const float *V, const float *U, const float *mask, const float *delta,
                                     const float *delta_mask, int N, int d_in, int C, int d_out, float *scratch,
                                     bool add_dx) {
    const long long NC = (long long)N * C;
    cudaStream_t st = spd_cuda_stream();
    const bool need_h = dx || dV || dmask;
    void *dout16 = NULL, *g16 = NULL;
    const int ldo = spd_bf16_ld(d_out);
    // g_a (for dV), dmask and dx from the back-to-back kernel (h never stored, dx not a
    // product of its own), or else g_a and dmask from the masked product (wgmma).
    const bool b2b = mask && dx && masked_b2b_sm90_bf16_ok(N, C, d_out, d_in, ldo, mask, dmask ? a : NULL, NULL, dmask);
    const bool wg = !b2b && need_h && mask && (dV || dx) &&
                    masked_gemm_sm90_bf16_ok(N, C, ldo, NULL, ldo, NULL, ldo, mask, dmask ? a : NULL, NULL, NULL,
                                             dmask);
    if (dU || need_h) {
        CUDA_CHECK(cudaMallocAsync(&dout16, (size_t)N * ldo * 2 + 16, st));
        spd_to_bf16(dout16, ldo, dout, d_out, N, d_out);
    }
    if (dU) {  // a * mask as bf16 from the forward (scratch), or a itself
        const void *am = mask ? (const void *)scratch : (const void *)a;
        matmul_cuda_ld_bf16(dU, am, mask != NULL, dout16, true, C, d_out, N, true, false, 1, 1, C, ldo, d_out);
    }
    const float dx_beta = delta_backward(dx, ddelta, ddelta_mask, dout, x, delta, delta_mask, N, d_in, d_out, add_dx);
    if (need_h) {
        float *h = scratch;  // overwrites a * mask: the dU product above has read it
        const void *ga = h;
        if (b2b || wg) {  // both read U as bf16 [C, ldo]; g_a as bf16 where dV (or dx, wg) reads it
            const void *U16 = weight_layout_get(WL_U16, U, C, d_out);
            void *U_own = NULL;
            if (!U16) {
                CUDA_CHECK(cudaMallocAsync(&U_own, (size_t)C * ldo * 2 + 16, st));
                spd_to_bf16(U_own, ldo, U, d_out, C, d_out);
                U16 = U_own;
            }
            if (dV || !b2b) CUDA_CHECK(cudaMallocAsync(&g16, (size_t)NC * 2 + 16, st));
            if (b2b) {
                const void *Vt16 = weight_layout_get(WL_BT_V16, V, d_in, C);
                void *Vt_own = NULL;
                if (!Vt16) {
                    CUDA_CHECK(cudaMallocAsync(&Vt_own, (size_t)d_in * masked_b2b_ldb(C) * 2 + 16, st));
                    masked_b2b_weight_bf16_cuda(Vt_own, V, C, C, d_in, false);
                    Vt16 = Vt_own;
                }
                masked_b2b_sm90_bf16(N, C, d_out, d_in, dout16, ldo, U16, ldo, Vt16, mask, dmask ? a : NULL, NULL,
                                     g16, dmask, dx, d_in, dx_beta);
                if (Vt_own) CUDA_CHECK(cudaFreeAsync(Vt_own, st));
            } else {
                masked_gemm_sm90_bf16(N, C, ldo, dout16, ldo, U16, ldo, mask, dmask ? a : NULL, NULL, g16, dmask);
            }
            if (U_own) CUDA_CHECK(cudaFreeAsync(U_own, st));
            ga = g16;
        } else {
            matmul_cuda_ld_bf16(h, dout16, true, U, false, N, C, d_out, false, true, 1, 0, ldo, d_out, C);
            if (mask && (dV || dx)) {
                CUDA_CHECK(cudaMallocAsync(&g16, (size_t)NC * 2 + 16, st));
                if (NC > 0) {
                    mask_grads_bf16_kernel<<<spd_cuda_blocks(NC / 4, EW_THREADS), EW_THREADS, 0, st>>>(
                        (float4 *)dmask, (__nv_bfloat162 *)g16, (const float4 *)h, (const float4 *)a,
                        (const float4 *)mask, NC / 4);
                    CUDA_CHECK_LAUNCH();
                }
                ga = g16;
            } else if (dmask) {
                mul(dmask, h, a, NC);
            }
        }
        const bool ga16 = g16 != NULL;
        // x as the forward rounded it, unless h (the path without the wgmma kernels) took scratch
        const void *x16 = b2b || wg ? kept_x16(scratch, N, C, d_in, mask) : NULL;
        if (dV && x16)
            matmul_cuda_ld_bf16(dV, x16, true, ga, ga16, d_in, C, N, true, false, 1, 1, spd_bf16_ld(d_in), C, C);
        else if (dV)
            matmul_cuda_ld_bf16(dV, x, false, ga, ga16, d_in, C, N, true, false, 1, 1, d_in, C, C);
        if (dx && !b2b) matmul_cuda_ld_bf16(dx, ga, ga16, V, false, N, d_in, C, false, true, 1, dx_beta, C, C, d_in);
    }
    if (g16) CUDA_CHECK(cudaFreeAsync(g16, st));
    if (dout16) CUDA_CHECK(cudaFreeAsync(dout16, st));
}

// --mode fused, TF32: out = (x V * mask) U in one kernel (masked_b2b_sm90.h), a * mask
// written once for the backward's dU and never read back here, and not at all where the
// backward's weight gradients come from masked_wgrad_sm90 (which recomputes it). False
// where it cannot run.
static bool components_forward_b2b(float *out, float *a, const float *x, const float *V, const float *U,
                                   const float *mask, const float *delta, const float *delta_mask, int N, int d_in,
                                   int C, int d_out, float *scratch) {
    if (!mask || !masked_b2b_sm90_ok(N, C, d_in, d_out, x, d_in, mask, NULL, a, scratch, NULL)) return false;
    const int ldb = masked_b2b_ldb(C);
    const float *Vt = layout_f32(WL_VT, V, d_in, C), *Ut = layout_f32(WL_BT_U, U, C, d_out);
    temp_arena t;
    arena_open(&t, Vt && Ut ? 0 : arena_bytes((long long)C * d_in) + arena_bytes((long long)d_out * ldb));
    if (!Vt || !Ut) {
        float *Vt_own = arena_take(&t, (long long)C * d_in), *Ut_own = arena_take(&t, (long long)d_out * ldb);
        masked_b2b_weights_cuda(Vt_own, V, d_in, Ut_own, U, d_out, C, d_out, true);
        Vt = Vt_own;
        Ut = Ut_own;
    }
    const float beta = delta_forward(out, x, delta, delta_mask, N, d_in, d_out);
    float *am = masked_wgrad_sm90_ok(N, C, d_in, d_out) ? NULL : scratch;
    masked_b2b_sm90(N, C, d_in, d_out, x, d_in, Vt, d_in, Ut, mask, NULL, a, am, NULL, out, d_out, beta);
    arena_close(&t);
    return true;
}

// --mode fused, TF32, both widths past masked_gemm's K (512): a weight gradient sums over
// the tokens, and with both operands stored tokens-slow ([N, C] and [N, d]) cuBLAS runs it
// at ~260 TFLOP/s against 360-400 for the other products (dev/kernels/kmajor/NOTES.md).
// So the mask passes write a * mask and g_a transposed ([C, N]; a * mask into scratch), which
// gives every product at least one operand with the reduced index fastest. Forward and backward
// must agree on it (scratch's layout): a function of the shapes and the environment alone.
// SPD_CUDA_KMAJOR=0 turns it off; SPD_CUDA_KMAJOR_MIN_D (513) and _MIN_N (4096) are the
// smallest widths and token count it takes.
static bool kmajor_route(int N, int C, int d_in, int d_out, const float *mask, const float *scratch) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_KMAJOR", true);
    static const long min_d = spd_env_long_or_die("SPD_CUDA_KMAJOR_MIN_D", 513, 0, INT_MAX);
    static const long min_n = spd_env_long_or_die("SPD_CUDA_KMAJOR_MIN_N", 4096, 0, INT_MAX);
    return env && mask && fused_mode() && spd_cuda_matmul_precision() == SPD_MATMUL_TF32 && N >= min_n &&
           d_in >= min_d && d_out >= min_d && d_in % 4 == 0 && d_out % 4 == 0 &&
           mul_transpose_ok(N, C, scratch, scratch, mask, NULL, NULL);
}

// The forward on that route: scratch [C, N] = a^T = V^T x^T (the product whose operands'
// layout cuBLAS runs fastest here, 350 against 390 us at d = C = 2048, 16384 tokens), then
// scratch *= mask^T in place, writing a itself on the way (when saved); out = scratch^T @ U,
// with U read through a transposed copy made beside the first product (the product with
// both operands reduced-index-slow is the slow one).
static void components_forward_kmajor(float *out, float *a, const float *x, const float *V, const float *U,
                                      const float *mask, const float *delta, const float *delta_mask, int N,
                                      int d_in, int C, int d_out, float *scratch) {
    const bool a_tmp = a && !spd_aligned(a, 16);  // the pass writes 16 bytes at a time
    temp_arena t;
    arena_open(&t, (a_tmp ? arena_bytes((long long)N * C) : 0) + arena_bytes((long long)d_out * C));
    float *a_out = a_tmp ? arena_take(&t, (long long)N * C) : a, *Ut = arena_take(&t, (long long)d_out * C);
    spd_cuda_side_begin();
    transpose_pad_cuda(Ut, C, U, d_out, C, d_out);
    spd_cuda_side_end();
    matmul_cuda_ld(scratch, V, x, C, N, d_in, true, true, 1, 0, C, d_in, N);
    mask_transposed_cuda(scratch, mask, a_out, N, C);
    if (a_tmp) {
        const size_t bytes = (size_t)N * C * sizeof(float);
        CUDA_CHECK(cudaMemcpyAsync(a, a_out, bytes, cudaMemcpyDeviceToDevice, spd_cuda_stream()));
    }
    spd_cuda_side_join();
    const float beta = delta_forward(out, x, delta, delta_mask, N, d_in, d_out);
    matmul_cuda_ld(out, scratch, Ut, N, d_out, C, true, true, 1, beta, N, C, d_out);
    arena_close(&t);
}

// The backward on that route, from scratch = (a * mask)^T: dU += scratch @ dout on the side
// stream, so that it may overlap the rest (0.02-0.08 ms per step at d = C = 2048 and 4096);
// h = dout @ U^T; dmask = h * a and g_a^T in one pass; dV += x^T @ g_a and dx = g_a @ V^T,
// both reading g_a^T (h and g_a^T are temporaries: scratch is still being read for dU).
static void components_backward_kmajor(float *dx, float *dV, float *dU, float *ddelta, float *dmask,
                                       float *ddelta_mask, const float *dout, const float *x, const float *a,
                                       const float *V, const float *U, const float *mask, const float *delta,
                                       const float *delta_mask, int N, int d_in, int C, int d_out,
                                       float *scratch, bool add_dx) {
    const long long NC = (long long)N * C;
    const bool need_g = dx || dV, need_h = need_g || dmask;
    temp_arena t;
    arena_open(&t, (need_h ? arena_bytes(NC) : 0) + (need_g ? arena_bytes(NC) : 0));
    float *h = need_h ? arena_take(&t, NC) : NULL, *gT = need_g ? arena_take(&t, NC) : NULL;
    spd_cuda_side_begin();
    if (dU) matmul_cuda_ld(dU, scratch, dout, C, d_out, N, false, false, 1, 1, N, d_out, d_out);
    spd_cuda_side_end();
    const float dx_beta = delta_backward(dx, ddelta, ddelta_mask, dout, x, delta, delta_mask, N, d_in, d_out, add_dx);
    if (need_h) matmul_cuda_ld(h, dout, U, N, C, d_out, false, true, 1, 0, d_out, d_out, C);
    // dmask from the transposing pass's read of h where its alignment allows, else on its own.
    const bool aux = need_g && dmask && spd_aligned(a, 16) && spd_aligned(dmask, 16);
    if (need_g) mul_transpose_cuda(gT, h, mask, aux ? a : NULL, aux ? dmask : NULL, N, C);
    if (dmask && !aux) mul(dmask, h, a, NC);
    if (dV) matmul_cuda_ld(dV, x, gT, d_in, C, N, true, true, 1, 1, d_in, N, C);
    if (dx) matmul_cuda_ld(dx, gT, V, N, d_in, C, true, true, 1, dx_beta, N, C, d_in);
    spd_cuda_side_join();
    arena_close(&t);
}

// x [N, d_in], V [d_in, C], U [C, d_out], mask [N, C], delta [d_out, d_in], delta_mask [N]
// -> a = x @ V [N, C], out = (a * mask) @ U + delta_mask * (x @ delta^T) [N, d_out]
// Leaves scratch = a * mask (or a when mask is NULL: then scratch is not written),
// which the fused-mode backward reuses; transposed ([C, N]) on kmajor_route.
extern "C" void components_forward_cuda(float *out, float *a, const float *x, const float *V, const float *U,
                                        const float *mask, const float *delta, const float *delta_mask, int N,
                                        int d_in, int C, int d_out, float *scratch) {
    SPD_ASSERT(a || (mask && fused_mode()));
    if (bf16_acts(C, scratch)) {
        components_forward_bf16(out, a, x, V, U, mask, delta, delta_mask, N, d_in, C, d_out, scratch);
        return;
    }
    if (kmajor_route(N, C, d_in, d_out, mask, scratch)) {
        components_forward_kmajor(out, a, x, V, U, mask, delta, delta_mask, N, d_in, C, d_out, scratch);
        return;
    }
    if (components_forward_b2b(out, a, x, V, U, mask, delta, delta_mask, N, d_in, C, d_out, scratch)) return;
    const bool pin = pad_width(d_in, N, C), pout = pad_width(d_out, N, C);
    const int Dp = pad4(d_in), Op = pad4(d_out);
    const int K = pin ? Dp : d_in;
    // The masked product (wgmma): a and a * mask from one pass, V read transposed.
    const bool wg = mask && masked_gemm_sm90_ok(N, C, K, pin ? NULL : x, K, NULL, K, mask, NULL, a, scratch, NULL);
    temp_arena t;
    arena_open(&t, (pin ? arena_bytes((long long)N * Dp) + arena_bytes((long long)Dp * C) : 0) +
                       (pout ? arena_bytes((long long)N * Op) + arena_bytes((long long)C * Op) : 0) +
                       (wg ? arena_bytes((long long)C * K) : 0));
    // The first product's operands: x [N, K] (row stride K) and V [K, C], padded or as given.
    const float *xk = x, *Vk = V;
    if (pin) {
        float *x_p = arena_take(&t, (long long)N * Dp);
        copy2d_cuda(x_p, Dp, N, Dp, x, d_in, N, d_in, 0);
        xk = x_p;
        if (!wg) {
            float *V_p = arena_take(&t, (long long)Dp * C);
            copy2d_cuda(V_p, C, Dp, C, V, C, d_in, C, 0);
            Vk = V_p;
        }
    }
    const float *am;
    if (wg) {
        const float *Vt = layout_f32(WL_VT, V, d_in, C);  // [C, K], zero beyond d_in
        if (!Vt) {
            float *Vt_own = arena_take(&t, (long long)C * K);
            transpose_pad_cuda(Vt_own, K, V, C, d_in, C);
            Vt = Vt_own;
        }
        masked_gemm_sm90(N, C, K, xk, K, Vt, K, mask, NULL, a, scratch, NULL);
        am = scratch;
    } else if (a) {
        matmul_cuda_ld(a, xk, Vk, N, C, K, false, false, 1, 0, K, C, C);
        am = masked_acts(scratch, a, mask, (long long)N * C);
    } else {  // no mask gradients: the product straight into scratch, masked in place
        matmul_cuda_ld(scratch, xk, Vk, N, C, K, false, false, 1, 0, K, C, C);
        am = masked_acts(scratch, scratch, mask, (long long)N * C);
    }
    const float beta = delta_forward(out, x, delta, delta_mask, N, d_in, d_out);
    if (pout) {
        float *out_p = arena_take(&t, (long long)N * Op);
        const float *U_p = layout_f32(WL_PAD_U, U, C, d_out);
        if (!U_p) {
            float *U_own = arena_take(&t, (long long)C * Op);
            copy2d_cuda(U_own, Op, C, Op, U, d_out, C, d_out, 0);
            U_p = U_own;
        }
        matmul_cuda_ld(out_p, am, U_p, N, Op, C, false, false, 1, 0, C, Op, Op);
        copy2d_cuda(out, d_out, N, d_out, out_p, Op, N, Op, beta);
    } else {
        matmul_cuda(out, am, U, N, d_out, C, false, false, 1, beta);
    }
    arena_close(&t);
}

// dout [N, d_out] -> dU += (a*mask)^T dout; h = dout @ U^T; dmask = h * a; g_a = h * mask;
// dV += x^T g_a; dx = g_a @ V^T + delta_mask * (dout @ delta);
// ddelta += (delta_mask * dout)^T x; ddelta_mask[n] = x[n] . (dout[n] @ delta).
// dx doubles as the [N, d_in] workspace of the delta path; when dx is NULL a
// temporary comes from the stream-ordered allocator (graph-capture safe).
//
// --mode fused: a * mask is not recomputed: scratch still holds it from this
// module's forward (each module has its own scratch, and nothing runs the module
// between its forward and backward), and one pass over h makes both dmask and g_a:
// on an H100 with TF32 or bf16, the epilogue of the wgmma product dout @ U^T
// (masked_gemm_sm90.h; its mma.sync predecessor lost, dev/kernels/masked_gemm/NOTES.md),
// or, where d_out <= 128, the back-to-back kernel that also makes dx (masked_b2b_sm90.h;
// SPD_CUDA_B2B=0 turns it off). With TF32 and K1, K2 of 64 or 128, dU and dV come from
// one kernel that recomputes a * mask and g_a per block of components
// (masked_wgrad_sm90.h; SPD_CUDA_WGRAD=0 turns it off): the forward then stores no a *
// mask, and g_a is not stored either. Other TF32 weight gradients read the stored a *
// mask and g_a on wgrad_stored_sm90.h where it runs. With both widths past 512, the mask
// passes write a * mask and g_a transposed (kmajor_route).
extern "C" void components_backward_cuda(float *dx, float *dV, float *dU, float *ddelta, float *dmask,
                                         float *ddelta_mask, const float *dout, const float *x, const float *a,
                                         const float *V, const float *U, const float *mask, const float *delta,
                                         const float *delta_mask, int N, int d_in, int C, int d_out,
                                         float *scratch, bool add_dx) {
    if (bf16_acts(C, scratch)) {
        components_backward_bf16(dx, dV, dU, ddelta, dmask, ddelta_mask, dout, x, a, V, U, mask, delta, delta_mask, N,
                                 d_in, C, d_out, scratch, add_dx);
        return;
    }
    if (kmajor_route(N, C, d_in, d_out, mask, scratch)) {
        components_backward_kmajor(dx, dV, dU, ddelta, dmask, ddelta_mask, dout, x, a, V, U, mask, delta, delta_mask,
                                   N, d_in, C, d_out, scratch, add_dx);
        return;
    }
    const long long NC = (long long)N * C;
    const bool reuse = fused_mode();
    if (reuse && mask && (dU || dV) && masked_wgrad_sm90_ok(N, C, d_in, d_out)) {
        masked_wgrad_sm90(N, C, d_in, d_out, x, dout, V, U, mask, dU, dV);
        dU = dV = NULL;  // done: what follows makes dx, dmask and the delta's gradients
    }
    const bool need_h = dx || dV || dmask;
    // Weight gradients on wgrad_stored_sm90 (fused mode only: from a * mask kept in scratch,
    // or a, and from g_a, which h becomes in scratch) need no padded operands.
    const bool dU_stored = dU && wgrad_stored_sm90_ok(N, C, d_out, mask ? scratch : a);
    const bool dV_stored = dV && wgrad_stored_sm90_ok(N, C, d_in, scratch);
    // Padded operands (pad_width): dout and U when d_out needs it, x and V when d_in does.
    const bool pout = pad_width(d_out, N, C) && ((dU && !dU_stored) || need_h),
               pin = pad_width(d_in, N, C) && ((dV && !dV_stored) || dx);
    const int Dp = pad4(d_in), Op = pad4(d_out);
    // g_a, dmask and dx in one kernel (masked_b2b_sm90.h) when it runs here: dx then needs
    // no padding, and g_a (into scratch) is written only for dV.
    const bool b2b = reuse && mask && dx && !pout && spd_aligned(U, 16) &&
                     masked_b2b_sm90_ok(N, C, d_out, d_in, dout, d_out, mask, dmask ? a : NULL, NULL,
                                        dV ? scratch : NULL, dmask);
    temp_arena t;
    arena_open(&t, (pout ? arena_bytes((long long)N * Op) + 2 * arena_bytes((long long)C * Op) : 0) +
                       (pin ? arena_bytes((long long)N * Dp) + 2 * arena_bytes((long long)Dp * C) : 0) +
                       (b2b ? arena_bytes((long long)d_in * masked_b2b_ldb(C)) : 0));
    float *dout_p = NULL;
    const float *U_p = NULL;
    if (pout) {
        dout_p = arena_take(&t, (long long)N * Op);
        copy2d_cuda(dout_p, Op, N, Op, dout, d_out, N, d_out, 0);
        U_p = layout_f32(WL_PAD_U, U, C, d_out);
        if (!U_p) {
            float *U_own = arena_take(&t, (long long)C * Op);
            copy2d_cuda(U_own, Op, C, Op, U, d_out, C, d_out, 0);
            U_p = U_own;
        }
    }
    if (dU) {
        const float *am = !mask ? a : reuse ? scratch : masked_acts(scratch, a, mask, NC);
        if (dU_stored) {
            wgrad_stored_sm90(N, C, d_out, am, dout, d_out, dU, false, 1);
        } else if (pout) {
            float *dU_p = arena_take(&t, (long long)C * Op);
            matmul_cuda_ld(dU_p, am, dout_p, C, Op, N, true, false, 1, 0, C, Op, Op);
            copy2d_cuda(dU, d_out, C, d_out, dU_p, Op, C, Op, 1);
        } else {
            matmul_cuda(dU, am, dout, C, d_out, N, true, false, 1, 1);
        }
    }
    const float dx_beta = delta_backward(dx, ddelta, ddelta_mask, dout, x, delta, delta_mask, N, d_in, d_out, add_dx);
    if (need_h) {
        // h = dout @ U^T with dout [N, K] (row stride K) and U [C, K], padded or as given.
        const float *dk = pout ? dout_p : dout, *Uk = pout ? U_p : U;
        const int K = pout ? Op : d_out;
        float *h = scratch;
        if (b2b) {
            const float *Vp = layout_f32(WL_BT_V, V, d_in, C);
            if (!Vp) {
                float *Vp_own = arena_take(&t, (long long)d_in * masked_b2b_ldb(C));
                masked_b2b_weight_cuda(Vp_own, V, C, C, d_in, false);
                Vp = Vp_own;
            }
            masked_b2b_sm90(N, C, d_out, d_in, dout, d_out, U, d_out, Vp, mask, dmask ? a : NULL, NULL, dV ? h : NULL,
                            dmask, dx, d_in, dx_beta);
        } else if (reuse && mask &&
                   masked_gemm_sm90_ok(N, C, K, dk, K, Uk, K, mask, dmask ? a : NULL, NULL, h, dmask)) {
            // g_a = h * mask and dmask = h * a straight from the product's registers: h is never stored.
            masked_gemm_sm90(N, C, K, dk, K, Uk, K, mask, dmask ? a : NULL, NULL, h, dmask);
        } else if (reuse && mask) {
            matmul_cuda_ld(h, dk, Uk, N, C, K, false, true, 1, 0, K, K, C);
            mask_grads(dmask, h, a, mask, NC);  // one pass: dmask = h * a, h becomes g_a
        } else {
            matmul_cuda_ld(h, dk, Uk, N, C, K, false, true, 1, 0, K, K, C);
            if (dmask) mul(dmask, h, a, NC);
            if (mask) mul(h, h, mask, NC);  // h becomes g_a in place
        }
        if (dV_stored) {
            wgrad_stored_sm90(N, C, d_in, h, x, d_in, dV, true, 1);
            dV = NULL;
        }
        if (pin) {
            float *xd_p = arena_take(&t, (long long)N * Dp);  // x padded, then dx padded
            float *V_p = arena_take(&t, (long long)Dp * C), *dV_p = arena_take(&t, (long long)Dp * C);
            if (dV) {
                copy2d_cuda(xd_p, Dp, N, Dp, x, d_in, N, d_in, 0);
                matmul_cuda_ld(dV_p, xd_p, h, Dp, C, N, true, false, 1, 0, Dp, C, C);
                copy2d_cuda(dV, C, d_in, C, dV_p, C, d_in, C, 1);
            }
            if (dx && !b2b) {
                copy2d_cuda(V_p, C, Dp, C, V, C, d_in, C, 0);
                matmul_cuda_ld(xd_p, h, V_p, N, Dp, C, false, true, 1, 0, C, C, Dp);
                copy2d_cuda(dx, d_in, N, d_in, xd_p, Dp, N, Dp, dx_beta);
            }
        } else {
            if (dV) matmul_cuda(dV, x, h, d_in, C, N, true, false, 1, 1);
            if (dx && !b2b) matmul_cuda(dx, h, V, N, d_in, C, false, true, 1, dx_beta);
        }
    }
    arena_close(&t);
}

// ---- groups: modules of one shape on one input (ops/components.h) -----------------
// Where every member takes the back-to-back kernel, the members' forwards are one launch
// of it (and one of the weights' copies); in the backward, with TF32, the weight gradients
// are one launch of masked_wgrad_sm90 (one transposed copy of x for all) and the input
// gradient one launch of the back-to-back kernel that sums the members' products. Elsewhere
// the members run one after another, as they do with SPD_CUDA_GROUP=0 (for A/B timing).
static bool group_on(int G) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_GROUP", true);
    return env && G >= 2 && G <= MASKED_B2B_MAX_GROUP && fused_mode();
}

static void forward_each(int G, const components_member *m, const float *x, int N, int d_in, int C, int d_out) {
    for (int g = 0; g < G; g++)
        components_forward_cuda(m[g].out, m[g].a, x, m[g].V, m[g].U, m[g].mask, m[g].delta, m[g].delta_mask, N, d_in,
                                C, d_out, m[g].scratch);
}

// Whether every member's forward takes the back-to-back kernel (bf16: with bf16 set).
static bool group_forward_b2b_ok(int G, const components_member *m, const float *x, int N, int d_in, int C,
                                 int d_out, bool bf16) {
    if (!group_on(G)) return false;
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        if (!e->mask || bf16_acts(C, e->scratch) != bf16) return false;
        if (!bf16 && (kmajor_route(N, C, d_in, d_out, e->mask, e->scratch) ||
                      !masked_b2b_sm90_ok(N, C, d_in, d_out, x, d_in, e->mask, NULL, e->a, e->scratch, NULL)))
            return false;
        if (bf16 && !masked_b2b_sm90_bf16_ok(N, C, d_in, d_out, spd_bf16_ld(d_in), e->mask, NULL, e->a, NULL))
            return false;
    }
    return true;
}

extern "C" void components_forward_group_cuda(int G, const components_member *m, const float *x, int N, int d_in,
                                              int C, int d_out) {
    SPD_ASSERT(G >= 1 && G <= COMPONENTS_GROUP_MAX);
    const bool bf16 = bf16_acts(C, m[0].scratch);
    if (!group_forward_b2b_ok(G, m, x, N, d_in, C, d_out, bf16)) {
        forward_each(G, m, x, N, d_in, C, d_out);
        return;
    }
    // As components_forward_b2b (TF32) and components_forward_b2b_bf16, for G members.
    const int ldb = masked_b2b_ldb(C), K1 = bf16 ? spd_bf16_ld(d_in) : d_in;  // X's and At's row stride
    const long long n_at = (long long)C * K1, n_bt = (long long)d_out * ldb, n_x = (long long)N * K1;
    temp_arena t;
    arena_open(&t, G * (bf16 ? arena_bytes_bf16(n_at) + arena_bytes_bf16(n_bt) + arena_bytes_bf16(n_x)
                             : arena_bytes(n_at) + arena_bytes(n_bt)));
    void *At[MASKED_B2B_MAX_GROUP], *Bt[MASKED_B2B_MAX_GROUP];
    const float *V[MASKED_B2B_MAX_GROUP], *U[MASKED_B2B_MAX_GROUP];
    const void *X[MASKED_B2B_MAX_GROUP];
    bool prepared = true;  // every member's copies made for this forward (weight_layouts.h)
    for (int g = 0; g < G; g++) {
        At[g] = (void *)weight_layout_get(bf16 ? WL_VT16 : WL_VT, m[g].V, d_in, C);
        Bt[g] = (void *)weight_layout_get(bf16 ? WL_BT_U16 : WL_BT_U, m[g].U, C, d_out);
        prepared = prepared && At[g] && Bt[g];
    }
    for (int g = 0; g < G; g++) {
        if (!prepared) {
            At[g] = bf16 ? arena_take_bf16(&t, n_at) : arena_take(&t, n_at);
            Bt[g] = bf16 ? arena_take_bf16(&t, n_bt) : arena_take(&t, n_bt);
        }
        V[g] = m[g].V;
        U[g] = m[g].U;
        X[g] = x;
        if (bf16) {  // x rounded where each member's backward finds it (kept_x16), or a temporary
            void *x16 = kept_x16(m[g].scratch, N, C, d_in, m[g].mask);
            if (!x16) x16 = arena_take_bf16(&t, n_x);
            spd_to_bf16(x16, K1, x, d_in, N, d_in);
            X[g] = x16;
        }
    }
    if (!prepared) masked_b2b_weights_group_cuda(G, At, K1, V, d_in, Bt, U, d_out, C, d_out, true, bf16);
    // a * mask for the backward's dU where masked_wgrad does not recompute it (TF32), as bf16
    // in scratch's first half (bf16)
    const bool store_am = bf16 || !masked_wgrad_sm90_ok(N, C, d_in, d_out);
    masked_b2b_problem p[MASKED_B2B_MAX_GROUP];
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        const float beta = delta_forward(e->out, x, e->delta, e->delta_mask, N, d_in, d_out);
        p[g] = (masked_b2b_problem){X[g], At[g], Bt[g], e->mask, NULL, e->a, store_am ? e->scratch : NULL, NULL,
                                    e->out, beta};
    }
    if (bf16)
        masked_b2b_sm90_bf16_group(G, p, N, C, d_in, d_out, K1, K1, d_out, false);
    else
        masked_b2b_sm90_group(G, p, N, C, d_in, d_out, d_in, d_in, d_out, false);
    arena_close(&t);
}

// Whether the TF32 backward of every member takes masked_wgrad_sm90 for its weight
// gradients (where it wants them) and the back-to-back kernel for dx (and dmask).
static bool group_backward_b2b_ok(int G, const components_member *m, int N, int d_in, int C, int d_out) {
    if (!group_on(G) || G > MASKED_WGRAD_MAX_GROUP) return false;
    if (pad_width(d_out, N, C)) return false;
    const bool wgrad = masked_wgrad_sm90_ok(N, C, d_in, d_out);
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        if (!e->mask || bf16_acts(C, e->scratch) || kmajor_route(N, C, d_in, d_out, e->mask, e->scratch)) return false;
        if ((e->dU || e->dV) && !wgrad) return false;
        if (!spd_aligned(e->U, 16) || !masked_b2b_sm90_ok(N, C, d_out, d_in, e->dout, d_out, e->mask,
                                                          e->dmask ? e->a : NULL, NULL, NULL, e->dmask))
            return false;
    }
    return true;
}

// The same with bf16 operands: the back-to-back kernel for dx (and g_a as bf16 for dV).
static bool group_backward_b2b_bf16_ok(int G, const components_member *m, int N, int d_in, int C, int d_out) {
    if (!group_on(G)) return false;
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        if (!e->mask || !bf16_acts(C, e->scratch) ||
            !masked_b2b_sm90_bf16_ok(N, C, d_out, d_in, spd_bf16_ld(d_out), e->mask, e->dmask ? e->a : NULL, NULL,
                                     e->dmask))
            return false;
    }
    return true;
}

// The weight deltas' shares of dx (each written or added, in member order); whether dx
// now holds a value the components' products add onto.
static bool group_delta_backward(int G, const components_member *m, float *dx, bool add_dx, const float *x, int N,
                                 int d_in, int d_out) {
    bool added = add_dx;
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        added = delta_backward(dx, e->ddelta, e->ddelta_mask, e->dout, x, e->delta, e->delta_mask, N, d_in, d_out,
                               added) != 0.0f;
    }
    return added;
}

// As components_backward_bf16 on its back-to-back route, for G members: per member dout
// rounded, dU, U rounded; one launch of the weight copies and one of the kernel (dx summed,
// g_a as bf16 where dV reads it, dmask); per member dV.
static void components_backward_group_bf16(int G, const components_member *m, float *dx, bool add_dx,
                                           const float *x, int N, int d_in, int C, int d_out) {
    const int ldo = spd_bf16_ld(d_out), K16 = spd_bf16_ld(d_in);
    const long long n_dout = (long long)N * ldo, n_u = (long long)C * ldo, n_bt = (long long)d_in * masked_b2b_ldb(C);
    temp_arena t;
    arena_open(&t, G * (arena_bytes_bf16(n_dout) + arena_bytes_bf16(n_u) + arena_bytes_bf16(n_bt) +
                        arena_bytes_bf16((long long)N * C)));
    void *dout16[MASKED_B2B_MAX_GROUP], *U16[MASKED_B2B_MAX_GROUP], *Bt[MASKED_B2B_MAX_GROUP],
        *g16[MASKED_B2B_MAX_GROUP];
    const float *V[MASKED_B2B_MAX_GROUP];
    bool prepared = true;  // every member's copy of V made for this forward and backward (weight_layouts.h)
    for (int g = 0; g < G; g++) {
        Bt[g] = (void *)weight_layout_get(WL_BT_V16, m[g].V, d_in, C);
        prepared = prepared && Bt[g];
    }
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        dout16[g] = arena_take_bf16(&t, n_dout);
        if (!prepared) Bt[g] = arena_take_bf16(&t, n_bt);
        g16[g] = e->dV ? arena_take_bf16(&t, (long long)N * C) : NULL;
        V[g] = e->V;
        spd_to_bf16(dout16[g], ldo, e->dout, d_out, N, d_out);
        if (e->dU)  // a * mask as bf16 from the forward (scratch's first half)
            matmul_cuda_ld_bf16(e->dU, e->scratch, true, dout16[g], true, C, d_out, N, true, false, 1, 1, C, ldo,
                                d_out);
        U16[g] = (void *)weight_layout_get(WL_U16, e->U, C, d_out);
        if (!U16[g]) {
            U16[g] = arena_take_bf16(&t, n_u);
            spd_to_bf16(U16[g], ldo, e->U, d_out, C, d_out);
        }
    }
    const bool added = group_delta_backward(G, m, dx, add_dx, x, N, d_in, d_out);
    if (!prepared) masked_b2b_weights_group_cuda(G, NULL, 0, NULL, 0, Bt, V, C, C, d_in, false, true);
    masked_b2b_problem p[MASKED_B2B_MAX_GROUP];
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        p[g] = (masked_b2b_problem){dout16[g], U16[g], Bt[g], e->mask, e->dmask ? e->a : NULL, NULL, g16[g],
                                    e->dmask, dx, added ? 1.0f : 0.0f};
    }
    masked_b2b_sm90_bf16_group(G, p, N, C, d_out, d_in, ldo, ldo, d_in, true);
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        if (!e->dV) continue;
        // x as the forward rounded it (kept_x16), or x itself
        const void *x16 = kept_x16(e->scratch, N, C, d_in, e->mask);
        if (x16)
            matmul_cuda_ld_bf16(e->dV, x16, true, g16[g], true, d_in, C, N, true, false, 1, 1, K16, C, C);
        else
            matmul_cuda_ld_bf16(e->dV, x, false, g16[g], true, d_in, C, N, true, false, 1, 1, d_in, C, C);
    }
    arena_close(&t);
}

extern "C" void components_backward_group_cuda(int G, const components_member *m, float *dx, bool add_dx,
                                               const float *x, int N, int d_in, int C, int d_out) {
    SPD_ASSERT(G >= 1 && G <= COMPONENTS_GROUP_MAX && dx);
    if (group_backward_b2b_bf16_ok(G, m, N, d_in, C, d_out)) {
        components_backward_group_bf16(G, m, dx, add_dx, x, N, d_in, C, d_out);
        return;
    }
    if (!group_backward_b2b_ok(G, m, N, d_in, C, d_out)) {
        for (int g = 0; g < G; g++)
            components_backward_cuda(dx, m[g].dV, m[g].dU, m[g].ddelta, m[g].dmask, m[g].ddelta_mask, m[g].dout, x,
                                     m[g].a, m[g].V, m[g].U, m[g].mask, m[g].delta, m[g].delta_mask, N, d_in, C,
                                     d_out, m[g].scratch, add_dx || g > 0);
        return;
    }
    const float *dout[MASKED_B2B_MAX_GROUP], *V[MASKED_B2B_MAX_GROUP], *U[MASKED_B2B_MAX_GROUP],
        *mask[MASKED_B2B_MAX_GROUP];
    float *dU[MASKED_B2B_MAX_GROUP], *dV[MASKED_B2B_MAX_GROUP];
    bool weights = false;
    for (int g = 0; g < G; g++) {
        dout[g] = m[g].dout;
        V[g] = m[g].V;
        U[g] = m[g].U;
        mask[g] = m[g].mask;
        dU[g] = m[g].dU;
        dV[g] = m[g].dV;
        weights = weights || dU[g] || dV[g];
    }
    if (weights) masked_wgrad_sm90_group(G, N, C, d_in, d_out, x, dout, V, U, mask, dU, dV);
    const bool added = group_delta_backward(G, m, dx, add_dx, x, N, d_in, d_out);
    temp_arena t;
    const long long n_bt = (long long)d_in * masked_b2b_ldb(C);
    arena_open(&t, G * arena_bytes(n_bt));
    void *Bt[MASKED_B2B_MAX_GROUP];
    masked_b2b_problem p[MASKED_B2B_MAX_GROUP];
    bool prepared = true;  // every member's copy made for this forward and backward (weight_layouts.h)
    for (int g = 0; g < G; g++) {
        Bt[g] = (void *)weight_layout_get(WL_BT_V, V[g], d_in, C);
        prepared = prepared && Bt[g];
    }
    if (!prepared) {
        for (int g = 0; g < G; g++) Bt[g] = arena_take(&t, n_bt);
        masked_b2b_weights_group_cuda(G, NULL, 0, NULL, 0, Bt, V, C, C, d_in, false, false);
    }
    for (int g = 0; g < G; g++) {
        const components_member *e = &m[g];
        p[g] = (masked_b2b_problem){e->dout, e->U, Bt[g], e->mask, e->dmask ? e->a : NULL, NULL, NULL, e->dmask,
                                    dx, added ? 1.0f : 0.0f};
    }
    masked_b2b_sm90_group(G, p, N, C, d_out, d_in, d_out, d_out, d_in, true);
    arena_close(&t);
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
