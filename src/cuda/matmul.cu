// Row-major matrix products through cuBLAS (the CUDA twin of ops/matmul.c).
// --mode unfused: cublasSgemm, cuBLAS's own first choice (the baseline).
// --mode fused: cuBLASLt, with the algorithm for each shape picked by timing the
// heuristic's top candidates once (cuBLAS's first choice is often an sm80 kernel
// at a fraction of the sm90 rate; dev/kernels/README.md). The pick is cached per
// shape, leading dimensions, pointer alignment and precision; during graph capture
// nothing can be timed, so an uncached shape there takes the heuristic's first
// candidate. Products under 2^24 multiply-adds keep cublasSgemm. SPD_CUDA_GEMM=sgemm in the environment keeps cublasSgemm in fused mode
// (for measuring what the tuning buys).
// bf16 precision (SPD's autocast_bf16): every product runs on cuBLASLt with bf16
// A and B, float32 C and D, CUBLAS_COMPUTE_32F. A float32 operand is rounded to a
// stream-ordered bf16 copy first (rows padded to 16 bytes, which also gives
// 341-wide operands aligned kernels); callers that already hold a bf16 copy pass
// it through matmul_cuda_ld_bf16. Timing of candidates as above, in fused mode only.
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>

#include "cuda/cuda_common.h"
#include "cuda/gemm.h"

extern "C" {
#include "core/real.h"
#include "ops/matmul.h"
}

// C [M, N] (row stride ldc) = beta * C (beta == 0 writes zeros, so NaN in C does not survive, as BLAS).
static __global__ void scale_kernel(float *C, int M, int N, int ldc, float beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)M * N) return;
    float *c = C + (i / N) * ldc + i % N;
    *c = beta == 0.0f ? 0.0f : beta * *c;
}

typedef struct {
    int M, N, K, lda, ldb, ldc;
    bool ta, tb;
    int align;  // alignment bytes of A, B, C (each 4, 8 or 16), packed
    int precision;
    bool timed;  // picked by timing (else the heuristic's first)
    cublasLtMatmulAlgo_t algo;
} tuned_gemm;

#define MAX_TUNED 512
#define N_CANDIDATES 8
static tuned_gemm tuned[MAX_TUNED];
static int n_tuned;

static int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    return a % 16 == 0 ? 16 : a % 8 == 0 ? 8 : a % 4 == 0 ? 4 : 2;  // 2: a bf16 operand
}

static bool use_lt(void) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("SPD_CUDA_GEMM");
        env = !(e && strcmp(e, "sgemm") == 0);
    }
    const spd_matmul_precision p = spd_cuda_matmul_precision();
    return env && spd_cuda_mode_get() == SPD_CUDA_FUSED && (p == SPD_MATMUL_FP32 || p == SPD_MATMUL_TF32);
}

// The column-major problem cuBLAS sees: C^T [N, M] = op(B)^T [N, K] @ op(A)^T [K, M].
typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulPreference_t pref;
} lt_problem;

static void lt_setup(lt_problem *p, int M, int N, int K, bool ta, bool tb, int lda, int ldb, int ldc, int align_a,
                     int align_b, int align_c, size_t ws_bytes) {
    const spd_matmul_precision prec = spd_cuda_matmul_precision();
    const cublasComputeType_t ct = prec == SPD_MATMUL_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const cudaDataType_t ab = prec == SPD_MATMUL_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F));
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    // cuBLAS's A is our B: stored column-major [N, K] (or [K, N] transposed), ld = ldb.
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, ab, tb ? K : N, tb ? N : K, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, ab, ta ? M : K, ta ? K : M, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, N, M, ldc));
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p->pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                      sizeof ws_bytes));
    uint32_t al[3] = {(uint32_t)align_b, (uint32_t)align_a, (uint32_t)align_c};  // cuBLAS's A is our B
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0],
                                                      sizeof al[0]));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1],
                                                      sizeof al[1]));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2],
                                                      sizeof al[2]));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2],
                                                      sizeof al[2]));
}

static void lt_teardown(lt_problem *p) {
    cublasLtMatmulPreferenceDestroy(p->pref);
    cublasLtMatrixLayoutDestroy(p->c);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatmulDescDestroy(p->op);
}

static void lt_run(const lt_problem *p, const cublasLtMatmulAlgo_t *algo, float *C, const void *A, const void *B,
                   float alpha, float beta, void *ws, size_t ws_bytes) {
    CUBLAS_CHECK(cublasLtMatmul(spd_cublaslt(), p->op, &alpha, B, p->a, A, p->b, &beta, C, p->c, C, p->c, algo, ws,
                                ws_bytes, spd_cuda_stream()));
}

// The fastest of the heuristic's candidates on this problem, timed into a scratch
// output (so that C, which may be accumulated into, is untouched). false when the
// heuristic has nothing.
static bool lt_pick(const lt_problem *p, bool may_time, int M, int ldc, const void *A, const void *B, void *ws,
                    size_t ws_bytes, cublasLtMatmulAlgo_t *best) {
    cublasLtMatmulHeuristicResult_t res[N_CANDIDATES];
    int n = 0;
    if (cublasLtMatmulAlgoGetHeuristic(spd_cublaslt(), p->op, p->a, p->b, p->c, p->c, p->pref, N_CANDIDATES, res,
                                       &n) != CUBLAS_STATUS_SUCCESS ||
        n == 0)
        return false;
    *best = res[0].algo;
    if (!may_time || n == 1) return true;
    cudaStream_t st = spd_cuda_stream();
    float *tmp = NULL;
    CUDA_CHECK(cudaMalloc((void **)&tmp, (size_t)M * ldc * sizeof(float)));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    float best_ms = 1e30f;
    for (int i = 0; i < n; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        const float one = 1, zero = 0;
        if (cublasLtMatmul(spd_cublaslt(), p->op, &one, B, p->a, A, p->b, &zero, tmp, p->c, tmp, p->c, &res[i].algo,
                           ws, ws_bytes, st) != CUBLAS_STATUS_SUCCESS)
            continue;  // a candidate that refuses this problem is skipped, not fatal
        CUDA_CHECK(cudaEventRecord(e0, st));
        for (int r = 0; r < 3; r++) lt_run(p, &res[i].algo, tmp, A, B, one, zero, ws, ws_bytes);
        CUDA_CHECK(cudaEventRecord(e1, st));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (ms < best_ms) best_ms = ms, *best = res[i].algo;
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaFree(tmp));
    return true;
}

static bool matmul_lt(float *C, const void *A, const void *B, int M, int N, int K, bool ta, bool tb, float alpha,
                      float beta, int lda, int ldb, int ldc, bool allow_timing) {
    size_t ws_bytes = 0;
    void *ws = spd_cuda_workspace(&ws_bytes);
    const int align = align_of(A) | align_of(B) << 8 | align_of(C) << 16;
    const int prec = (int)spd_cuda_matmul_precision();
    lt_problem p;
    lt_setup(&p, M, N, K, ta, tb, lda, ldb, ldc, align_of(A), align_of(B), align_of(C), ws_bytes);
    const tuned_gemm *hit = NULL;
    for (int i = 0; i < n_tuned && !hit; i++) {
        const tuned_gemm *t = &tuned[i];
        if (t->M == M && t->N == N && t->K == K && t->lda == lda && t->ldb == ldb && t->ldc == ldc && t->ta == ta &&
            t->tb == tb && t->align == align && t->precision == prec && t->timed == allow_timing)
            hit = t;
    }
    cublasLtMatmulAlgo_t algo;
    bool ok = true;
    if (hit) {
        algo = hit->algo;
    } else {
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        CUDA_CHECK(cudaStreamIsCapturing(spd_cuda_stream(), &cs));
        const bool may_time = allow_timing && cs == cudaStreamCaptureStatusNone;
        ok = lt_pick(&p, may_time, M, ldc, A, B, ws, ws_bytes, &algo);
        if (ok && cs == cudaStreamCaptureStatusNone && n_tuned < MAX_TUNED)
            tuned[n_tuned++] = {M, N, K, lda, ldb, ldc, ta, tb, align, prec, allow_timing, algo};
    }
    if (ok) lt_run(&p, &algo, C, A, B, alpha, beta, ws, ws_bytes);
    lt_teardown(&p);
    return ok;
}

// ---- bf16 operands ---------------------------------------------------------------

// dst [rows, cols] (row stride ldd, bf16) = src [rows, cols] (row stride lds), rounded to nearest even.
static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, int ldd, const float *src, int lds, int rows, int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * cols) return;
    const long long r = i / cols, c = i % cols;
    dst[r * ldd + c] = __float2bfloat16_rn(src[r * lds + c]);
}

extern "C" int spd_bf16_ld(int cols) { return (cols + 7) & ~7; }

extern "C" void spd_to_bf16(void *dst, int ldd, const float *src, int lds, int rows, int cols) {
    const long long n = (long long)rows * cols;
    if (n <= 0) return;
    to_bf16_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>((__nv_bfloat16 *)dst, ldd, src, lds, rows,
                                                                         cols);
    CUDA_CHECK_LAUNCH();
}

// A bf16 copy of a float32 operand stored [rows, cols] (row stride ld), from the
// stream-ordered allocator (graph-capture safe); *ld16 gets its row stride.
static void *bf16_copy(const float *src, int rows, int cols, int ld, int *ld16) {
    *ld16 = spd_bf16_ld(cols);
    void *p = NULL;
    CUDA_CHECK(cudaMallocAsync(&p, (size_t)rows * *ld16 * sizeof(__nv_bfloat16) + 16, spd_cuda_stream()));
    spd_to_bf16(p, *ld16, src, ld, rows, cols);
    return p;
}

extern "C" void matmul_cuda_ld_bf16(float *C, const void *A, bool a_bf16, const void *B, bool b_bf16, int M, int N,
                                    int K, bool trans_a, bool trans_b, float alpha, float beta, int lda, int ldb,
                                    int ldc) {
    SPD_ASSERT(spd_cuda_matmul_precision() == SPD_MATMUL_BF16);
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_kernel<<<spd_cuda_blocks((long long)M * N, 256), 256, 0, spd_cuda_stream()>>>(C, M, N, ldc, beta);
        CUDA_CHECK_LAUNCH();
        return;
    }
    cudaStream_t st = spd_cuda_stream();
    void *a16 = NULL, *b16 = NULL;
    if (!a_bf16) A = a16 = bf16_copy((const float *)A, trans_a ? K : M, trans_a ? M : K, lda, &lda);
    if (!b_bf16) B = b16 = bf16_copy((const float *)B, trans_b ? N : K, trans_b ? K : N, ldb, &ldb);
    // Timing pays only for large products, and only in fused mode (unfused takes cuBLAS's first choice).
    const bool timing = spd_cuda_mode_get() == SPD_CUDA_FUSED && (double)M * N * K >= (double)(1 << 24);
    if (!matmul_lt(C, A, B, M, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc, timing)) {
        // No cuBLASLt algorithm for this layout: cublasGemmEx takes any (same column-major swap as below).
        CUBLAS_CHECK(cublasGemmEx(spd_cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF, ldb, A,
                                  CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
    }
    if (a16) CUDA_CHECK(cudaFreeAsync(a16, st));
    if (b16) CUDA_CHECK(cudaFreeAsync(b16, st));
}

extern "C" void matmul_cuda_ld(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a,
                               bool trans_b, float alpha, float beta, int lda, int ldb, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // op(A) @ op(B) is all zeros: C = beta * C
        scale_kernel<<<spd_cuda_blocks((long long)M * N, 256), 256, 0, spd_cuda_stream()>>>(C, M, N, ldc, beta);
        CUDA_CHECK_LAUNCH();
        return;
    }
    // Small products stay on cublasSgemm: timing candidates cannot pay there.
    if (spd_cuda_matmul_precision() == SPD_MATMUL_BF16) {
        matmul_cuda_ld_bf16(C, A, false, B, false, M, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc);
        return;
    }
    if (use_lt() && (double)M * N * K >= (double)(1 << 24) &&
        matmul_lt(C, A, B, M, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc, true))
        return;
    // cuBLAS is column-major: a row-major [M, N] matrix is the column-major [N, M]
    // matrix C^T, so we ask for C^T = op(B)^T @ op(A)^T. A row-major B stored [K, N]
    // is column-major [N, K] = op(B)^T as it stands (no transpose); stored [N, K]
    // (trans_b) it needs CUBLAS_OP_T. Likewise for A. The math mode (fp32 or TF32)
    // is the handle's, set by spd_cuda_set_matmul_precision.
    CUBLAS_CHECK(cublasSgemm(spd_cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

// C [M, N] = alpha * op(A) [M, K] @ op(B) [K, N] + beta * C, all row-major and contiguous.
extern "C" void matmul_cuda(float *C, const float *A, const float *B, int M, int N, int K, bool trans_a,
                            bool trans_b, float alpha, float beta) {
    matmul_cuda_ld(C, A, B, M, N, K, trans_a, trans_b, alpha, beta, trans_a ? M : K, trans_b ? K : N, N);
}
