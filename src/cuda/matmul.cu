// Row-major matrix products through cuBLAS (the CUDA twin of ops/matmul.c).
// --mode unfused: cublasSgemm, cuBLAS's own first choice (the baseline).
// --mode fused: cuBLASLt, with the algorithm for each shape picked by timing the
// heuristic's top candidates once (cuBLAS's first choice is often an sm80 kernel
// at a fraction of the sm90 rate; dev/kernels/README.md). The pick is cached per
// shape, leading dimensions, pointer alignment and precision; during graph capture
// nothing can be timed, so an uncached shape there takes the heuristic's first
// candidate. Products under 2^24 multiply-adds keep cublasSgemm. SPD_CUDA_GEMM=sgemm in the environment keeps cublasSgemm in fused mode
// (for measuring what the tuning buys); SPD_CUDA_GEMM_CANDIDATES=N times the top N
// candidates (default 8). Products with a long K and a small output
// (the weight gradients) may run split over K: see "explicit split-K" below.
// bf16 precision (SPD's autocast_bf16): every product runs on cuBLASLt with bf16
// A and B, float32 C and D, CUBLAS_COMPUTE_32F. A float32 operand is rounded to a
// stream-ordered bf16 copy first (rows padded to 16 bytes, which also gives
// 341-wide operands aligned kernels); callers that already hold a bf16 copy pass
// it through matmul_cuda_ld_bf16. Timing of candidates as above, in fused mode only.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"
#include "cuda/masked_gemm_sm90.h"

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

#define MAX_CANDIDATES 64

// How many of the heuristic's candidates are timed per shape: SPD_CUDA_GEMM_CANDIDATES
// (1 to 64, default 8; 32 measured the same on the H100: dev/kernels/README.md).
static int n_candidates(void) {
    static const int n = (int)spd_env_long_or_die("SPD_CUDA_GEMM_CANDIDATES", 8, 1, MAX_CANDIDATES);
    return n;
}

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

// Milliseconds per run of f(ctx) on the stream: one untimed run (which also
// settles anything f tunes on first use), then 3 timed.
static float time_ms(void (*f)(void *), void *ctx) {
    cudaStream_t st = spd_cuda_stream();
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    f(ctx);
    CUDA_CHECK(cudaEventRecord(e0, st));
    for (int r = 0; r < 3; r++) f(ctx);
    CUDA_CHECK(cudaEventRecord(e1, st));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms / 3;
}

typedef struct {
    const lt_problem *p;
    const cublasLtMatmulAlgo_t *algo;
    float *out;
    const void *A, *B;
    void *ws;
    size_t ws_bytes;
} lt_call;

static void lt_call_run(void *c) {
    const lt_call *l = (const lt_call *)c;
    lt_run(l->p, l->algo, l->out, l->A, l->B, 1, 0, l->ws, l->ws_bytes);
}

// The fastest of the heuristic's candidates on this problem, timed into out (a
// scratch output, so that C, which may be accumulated into, is untouched); *best_ms
// gets its time (1e30 when not timed). false when the heuristic has nothing.
static bool lt_pick(const lt_problem *p, bool may_time, float *out, const void *A, const void *B, void *ws,
                    size_t ws_bytes, cublasLtMatmulAlgo_t *best, float *best_ms) {
    cublasLtMatmulHeuristicResult_t res[MAX_CANDIDATES];
    int n = 0;
    *best_ms = 1e30f;
    if (cublasLtMatmulAlgoGetHeuristic(spd_cublaslt(), p->op, p->a, p->b, p->c, p->c, p->pref, n_candidates(), res,
                                       &n) != CUBLAS_STATUS_SUCCESS ||
        n == 0)
        return false;
    *best = res[0].algo;
    if (!may_time) return true;
    for (int i = 0; i < n; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        const float one = 1, zero = 0;
        if (cublasLtMatmul(spd_cublaslt(), p->op, &one, B, p->a, A, p->b, &zero, out, p->c, out, p->c, &res[i].algo,
                           ws, ws_bytes, spd_cuda_stream()) != CUBLAS_STATUS_SUCCESS)
            continue;  // a candidate that refuses this problem is skipped, not fatal
        lt_call c = {p, &res[i].algo, out, A, B, ws, ws_bytes};
        const float ms = time_ms(lt_call_run, &c);
        if (ms < *best_ms) *best_ms = ms, *best = res[i].algo;
    }
    return true;
}

// ---- explicit split-K ----------------------------------------------------------
// The weight gradients (dU = (a*mask)^T dout [C, d_out], dV = x^T g_a [d_in, C])
// reduce over all B*S tokens into a small output, and cuBLASLt's own picks for them
// are sm80 kernels splitting K inside. Measured on an H100 (dev/kernels/README.md):
// the 128- and 64-wide ones are bandwidth-bound (their [16384, 1200] operand alone is
// 26 us) at ~1.5x of that, where no split helps; the 344-wide ones gain 10-17% with
// S = 4 or 8, about -0.16 ms per 64x256 step. Here K is cut into S slices of
// Ks (a multiple of 32, so every slice keeps its operands' alignment), run as one
// strided-batched product into a float32 scratch [S, M, ldp] (plain, sm90-eligible
// problems), and one kernel sums the slices in a fixed order: C = alpha * sum + beta
// * C (same bits run to run for a given choice). K % Ks left over is one more
// product into the last slice. The tuner times S in {2, 4, 8, 16, 32} against the
// plain product and caches the choice per shape. SPD_CUDA_SPLITK=0 turns it off;
// SPD_CUDA_SPLITK_LOG=1 prints each choice.

#define SPLITK_MIN_K 2048
#define SPLITK_MAX_OUT (1 << 23)       // M * N, floats
#define SPLITK_MAX_SCRATCH (1 << 25)   // floats (128 MB)
#define SPLITK_MIN_SLICE 256

static int splitk_forced;   // test hook: 0 tuner, 1 never, S > 1 always S slices
static long long splitk_runs;

extern "C" void spd_cuda_splitk_force(int S) { splitk_forced = S; }
extern "C" long long spd_cuda_splitk_count(void) { return splitk_runs; }

// SPD_CUDA_SPLITK_LOG=1: one line on stderr per tuned shape (plain, each S, the choice;
// untimed picks too) and per bf16 product that falls back to cublasGemmEx.
static bool splitk_log(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_SPLITK_LOG", false);
    return env;
}

// "algo ID tile T stages S splitk K" of a cuBLASLt algorithm, for the log.
static void algo_desc(const cublasLtMatmulAlgo_t *a, char *buf, size_t n) {
    int32_t id = 0;
    uint32_t tile = 0, stages = 0, splitk = 0;
    size_t w;
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &w);
    snprintf(buf, n, "algo %d tile %u stages %u splitk %u", (int)id, tile, stages, splitk);
}

static bool splitk_env(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_SPLITK", true);
    return env;
}

// 0: the tuner chooses; 1: plain product only; S > 1: S slices (the test hook).
static int splitk_want(int M, int N, int K, bool allow_timing) {
    if (splitk_forced) return splitk_forced;
    if (!splitk_env() || !allow_timing) return 1;
    return K >= SPLITK_MIN_K && (double)M * N <= SPLITK_MAX_OUT ? 0 : 1;
}

static int ld4(int n) { return (n + 3) & ~3; }  // scratch rows of 16 bytes: float4 reduce, aligned slices

// Slices of K: n_full of Ks, plus one of rem (may be 0).
typedef struct {
    int Ks, n_full, rem;
} splitk_geom;

static splitk_geom splitk_geometry(int K, int S) {
    splitk_geom g;
    g.Ks = ((K + S - 1) / S + 31) & ~31;
    if (g.Ks > K) g.Ks = K;
    g.n_full = K / g.Ks;
    g.rem = K - g.n_full * g.Ks;
    return g;
}

static int splitk_slices(splitk_geom g) { return g.n_full + (g.rem > 0); }

// The slices' scratch. Grown only outside graph capture, and an outgrown buffer is
// kept (never freed): a captured graph may still point into it.
static float *splitk_buf[2];  // [1]: the side stream's (spd_cuda_side_begin), which may run beside [0]'s user
static size_t splitk_cap[2];  // floats

static float *splitk_scratch(size_t n, bool may_grow) {
    const int i = spd_cuda_on_side();
    if (n <= splitk_cap[i]) return splitk_buf[i];
    if (!may_grow) return NULL;
    const size_t want = n > 2 * splitk_cap[i] ? n : 2 * splitk_cap[i];
    CUDA_CHECK(cudaMalloc((void **)&splitk_buf[i], want * sizeof(float)));
    splitk_cap[i] = want;
    return splitk_buf[i];
}

// C [M, N] (ldc) = alpha * sum_s P_s + beta * C (beta == 0 does not read C); P_s [M, N]
// with row stride ldp at P + s * slice. Fixed order of the sum: deterministic.
static __global__ void splitk_reduce_kernel(float *C, int ldc, const float *P, int ldp, long long slice, int S, int M,
                                            int N, float alpha, float beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)M * N) return;
    const long long r = i / N, c = i % N;
    const float *p = P + r * ldp + c;
    float acc = 0;
    for (int s = 0; s < S; s++) acc += p[s * slice];
    float *o = C + r * ldc + c;
    *o = beta == 0.0f ? alpha * acc : alpha * acc + beta * *o;
}

// The same four columns per thread (N % 4 == 0, ldc % 4 == 0, ldp % 4 == 0, slice % 4 == 0,
// C and P 16-byte aligned).
static __global__ void splitk_reduce4_kernel(float *C, int ldc, const float *P, int ldp, long long slice, int S,
                                             int M, int N4, float alpha, float beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)M * N4) return;
    const long long r = i / N4, c = (i % N4) * 4;
    const float *p = P + r * ldp + c;
    float4 acc = make_float4(0, 0, 0, 0);
    for (int s = 0; s < S; s++) {
        const float4 v = *(const float4 *)(p + s * slice);
        acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
    }
    float4 *o = (float4 *)(C + r * ldc + c);
    float4 out = make_float4(alpha * acc.x, alpha * acc.y, alpha * acc.z, alpha * acc.w);
    if (beta != 0.0f) {
        const float4 old = *o;
        out.x += beta * old.x, out.y += beta * old.y, out.z += beta * old.z, out.w += beta * old.w;
    }
    *o = out;
}

extern "C" void spd_cuda_splitk_reduce(float *C, int ldc, const float *P, int ldp, long long slice, int S, int M,
                                       int N, float alpha, float beta) {
    cudaStream_t st = spd_cuda_stream();
    if (N % 4 == 0 && ldc % 4 == 0 && ldp % 4 == 0 && slice % 4 == 0 && spd_aligned(C, 16) && spd_aligned(P, 16)) {
        const long long n = (long long)M * (N / 4);
        splitk_reduce4_kernel<<<spd_cuda_blocks(n, 256), 256, 0, st>>>(C, ldc, P, ldp, slice, S, M, N / 4, alpha,
                                                                      beta);
    } else {
        const long long n = (long long)M * N;
        splitk_reduce_kernel<<<spd_cuda_blocks(n, 256), 256, 0, st>>>(C, ldc, P, ldp, slice, S, M, N, alpha, beta);
    }
    CUDA_CHECK_LAUNCH();
}

// Element offsets of slice s's operands: A stored [M, K] (column offset) or [K, M]
// when ta (row offset); likewise B stored [K, N] or [N, K] when tb.
static long long slice_off_a(long long k0, bool ta, int lda) { return ta ? k0 * lda : k0; }
static long long slice_off_b(long long k0, bool tb, int ldb) { return tb ? k0 : k0 * ldb; }

// The batched problem of g.n_full slices of Ks, writing slices of [M, ldp].
static void splitk_setup(lt_problem *p, splitk_geom g, int M, int N, bool ta, bool tb, int lda, int ldb, int ldp,
                         int align_a, int align_b, size_t ws_bytes) {
    lt_setup(p, M, N, g.Ks, ta, tb, lda, ldb, ldp, align_a, align_b, 16, ws_bytes);
    const int32_t count = g.n_full;
    const int64_t sa = slice_off_a(g.Ks, ta, lda), sb = slice_off_b(g.Ks, tb, ldb), sc = (int64_t)M * ldp;
    cublasLtMatrixLayout_t lay[3] = {p->a, p->b, p->c};  // cuBLAS's A is our B
    const int64_t stride[3] = {sb, sa, sc};
    for (int i = 0; i < 3; i++) {
        CUBLAS_CHECK(
            cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride[i],
                                                      sizeof stride[i]));
    }
}

static bool lt_product(float *C, const void *A, const void *B, int M, int N, int K, bool ta, bool tb, float alpha,
                       float beta, int lda, int ldb, int ldc, bool allow_timing, int want);

// One split-K product: the batched slices (algo), the remainder slice (a plain
// product, itself tuned and cached), the fixed-order reduce. P: the scratch.
typedef struct {
    const lt_problem *bp;
    const cublasLtMatmulAlgo_t *algo;
    splitk_geom g;
    float *C, *P;
    const char *A, *B;  // bytes
    int M, N, lda, ldb, ldc, elem;
    bool ta, tb, allow_timing;
    float alpha, beta;
    void *ws;
    size_t ws_bytes;
} splitk_call;

static void splitk_run(const splitk_call *s) {
    const int ldp = ld4(s->N);
    lt_run(s->bp, s->algo, s->P, s->A, s->B, 1, 0, s->ws, s->ws_bytes);
    if (s->g.rem > 0) {
        const long long k0 = (long long)s->g.n_full * s->g.Ks;
        const char *a = s->A + slice_off_a(k0, s->ta, s->lda) * s->elem;
        const char *b = s->B + slice_off_b(k0, s->tb, s->ldb) * s->elem;
        const bool ok = lt_product(s->P + (size_t)s->g.n_full * s->M * ldp, a, b, s->M, s->N, s->g.rem, s->ta, s->tb,
                                   1, 0, s->lda, s->ldb, ldp, s->allow_timing, 1);
        if (!ok)  // cuBLASLt has every plain fp32/TF32/bf16 layout; a refusal here is a broken invariant
            spd_die("matmul.cu: cuBLASLt has no algorithm for the split-K remainder [%d, %d] x %d", s->M, s->N,
                    s->g.rem);
    }
    spd_cuda_splitk_reduce(s->C, s->ldc, s->P, ldp, (long long)s->M * ldp, splitk_slices(s->g), s->M, s->N, s->alpha,
                           s->beta);
    splitk_runs++;
}

static void splitk_call_run(void *c) { splitk_run((const splitk_call *)c); }

// ---- the tuned cuBLASLt product ----------------------------------------------------

typedef struct {
    int M, N, K, lda, ldb, ldc;
    bool ta, tb;
    int align;  // alignment bytes of A, B, C (each 2, 4, 8 or 16), packed
    int precision;
    bool timed;  // picked by timing (else the heuristic's first)
    int want;    // splitk_want at the time: 0 tuner, 1 plain, S forced
    int split;   // the choice: 1 plain, else S slices (algo is then the batched problem's)
    cublasLtMatmulAlgo_t algo;
} tuned_gemm;

#define MAX_TUNED 512
static tuned_gemm tuned[MAX_TUNED];
static int n_tuned;

// Times each S (the batched problem's best algorithm, then the whole split path
// with it) into tmp [M, ldc] against the plain product's plain_ms; *split and *algo
// keep the plain choice unless a split beats it by 3% (noise should not buy a
// scratch pass). base: the call with C, A, B and the shapes set. Appends the
// timings to log (n bytes).
static void splitk_tune(int K, float plain_ms, splitk_call base, float *tmp, int *split, cublasLtMatmulAlgo_t *algo,
                        char *log, size_t n) {
    static const int cand[] = {2, 4, 8, 16, 32};
    float best = plain_ms * 0.97f;
    const int ldp = ld4(base.N);
    size_t at = strlen(log);
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
        const splitk_geom g = splitk_geometry(K, cand[i]);
        const size_t need = (size_t)splitk_slices(g) * base.M * ldp;
        if (g.Ks < SPLITK_MIN_SLICE || g.n_full < 2 || need > SPLITK_MAX_SCRATCH) continue;
        float *P = splitk_scratch(need, true);
        lt_problem bp;
        splitk_setup(&bp, g, base.M, base.N, base.ta, base.tb, base.lda, base.ldb, ldp, align_of(base.A),
                     align_of(base.B), base.ws_bytes);
        cublasLtMatmulAlgo_t a;
        float batched_ms, ms = 0;
        if (lt_pick(&bp, true, P, base.A, base.B, base.ws, base.ws_bytes, &a, &batched_ms) && batched_ms < best) {
            splitk_call c = base;
            c.bp = &bp, c.algo = &a, c.g = g, c.C = tmp, c.P = P, c.alpha = 1, c.beta = 0;
            ms = time_ms(splitk_call_run, &c);
            if (ms < best) best = ms, *split = cand[i], *algo = a;
        }
        if (at < n) at += snprintf(log + at, n - at, ", S=%d batched %.4f split %.4f", cand[i], batched_ms, ms);
        lt_teardown(&bp);
    }
}

// C = alpha * op(A) @ op(B) + beta * C through cuBLASLt, plain or split over K
// (want: splitk_want). false when cuBLASLt has no algorithm for the plain problem.
static bool lt_product(float *C, const void *A, const void *B, int M, int N, int K, bool ta, bool tb, float alpha,
                       float beta, int lda, int ldb, int ldc, bool allow_timing, int want) {
    size_t ws_bytes = 0;
    void *ws = spd_cuda_workspace(&ws_bytes);
    const int align = align_of(A) | align_of(B) << 8 | align_of(C) << 16;
    const int prec = (int)spd_cuda_matmul_precision();
    const int elem = prec == SPD_MATMUL_BF16 ? 2 : 4;
    const tuned_gemm *hit = NULL;
    for (int i = 0; i < n_tuned && !hit; i++) {
        const tuned_gemm *t = &tuned[i];
        if (t->M == M && t->N == N && t->K == K && t->lda == lda && t->ldb == ldb && t->ldc == ldc && t->ta == ta &&
            t->tb == tb && t->align == align && t->precision == prec && t->timed == allow_timing && t->want == want)
            hit = t;
    }
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(spd_cuda_stream(), &cs));
    const bool capturing = cs != cudaStreamCaptureStatusNone;
    splitk_call base = {NULL, NULL, {0, 0, 0}, C, NULL, (const char *)A, (const char *)B, M, N, lda, ldb, ldc, elem,
                        ta, tb, allow_timing, alpha, beta, ws, ws_bytes};
    int split = 1;
    cublasLtMatmulAlgo_t algo;
    bool ok = true;
    if (hit) {
        split = hit->split;
        algo = hit->algo;
    } else if (capturing) {
        // Nothing can be timed or allocated now: the plain problem's first candidate, not cached.
        lt_problem p;
        lt_setup(&p, M, N, K, ta, tb, lda, ldb, ldc, align_of(A), align_of(B), align_of(C), ws_bytes);
        float ms;
        ok = lt_pick(&p, false, NULL, A, B, ws, ws_bytes, &algo, &ms);
        if (ok) lt_run(&p, &algo, C, A, B, alpha, beta, ws, ws_bytes);
        lt_teardown(&p);
        return ok;
    } else if (want > 1) {  // forced S: the batched problem's best (or first) algorithm
        const splitk_geom g = splitk_geometry(K, want);
        if (g.n_full >= 1 && splitk_slices(g) >= 2) {
            float *P = splitk_scratch((size_t)splitk_slices(g) * M * ld4(N), true);
            lt_problem bp;
            splitk_setup(&bp, g, M, N, ta, tb, lda, ldb, ld4(N), align_of(A), align_of(B), ws_bytes);
            float ms;
            if (lt_pick(&bp, allow_timing, P, A, B, ws, ws_bytes, &algo, &ms)) split = want;
            lt_teardown(&bp);
        }
    }
    if (!hit && split == 1) {  // the plain problem (want 0 or 1, or a forced S that does not apply)
        lt_problem p;
        lt_setup(&p, M, N, K, ta, tb, lda, ldb, ldc, align_of(A), align_of(B), align_of(C), ws_bytes);
        float *tmp = NULL;
        if (allow_timing) CUDA_CHECK(cudaMalloc((void **)&tmp, (size_t)M * ldc * sizeof(float)));
        float plain_ms;
        ok = lt_pick(&p, allow_timing, tmp, A, B, ws, ws_bytes, &algo, &plain_ms);
        char log[768], desc[96];
        snprintf(log, sizeof log, "gemm tune M=%d N=%d K=%d ta=%d tb=%d ld %d %d %d align %x %s: %s %.4f ms", M, N,
                 K, ta, tb, lda, ldb, ldc, align, spd_cuda_matmul_precision_name(),
                 allow_timing ? "plain" : "heuristic's first, untimed", plain_ms);
        if (ok && want == 0) splitk_tune(K, plain_ms, base, tmp, &split, &algo, log, sizeof log);
        if (splitk_log()) {
            if (ok) algo_desc(&algo, desc, sizeof desc);
            fprintf(stderr, "%s -> %s%d (%s)\n", log, split > 1 ? "S=" : "plain ", split,
                    ok ? desc : "no cuBLASLt algorithm");
        }
        lt_teardown(&p);
        if (tmp) CUDA_CHECK(cudaFree(tmp));
    }
    if (!hit && ok && n_tuned < MAX_TUNED)
        tuned[n_tuned++] = {M, N, K, lda, ldb, ldc, ta, tb, align, prec, allow_timing, want, split, algo};
    if (!ok) return false;
    if (split == 1) {
        lt_problem p;
        lt_setup(&p, M, N, K, ta, tb, lda, ldb, ldc, align_of(A), align_of(B), align_of(C), ws_bytes);
        lt_run(&p, &algo, C, A, B, alpha, beta, ws, ws_bytes);
        lt_teardown(&p);
        return true;
    }
    const splitk_geom g = splitk_geometry(K, split);
    float *P = splitk_scratch((size_t)splitk_slices(g) * M * ld4(N), !capturing);
    SPD_ASSERT(P != NULL);  // sized when this shape was tuned, outside capture
    lt_problem bp;
    splitk_setup(&bp, g, M, N, ta, tb, lda, ldb, ld4(N), align_of(A), align_of(B), ws_bytes);
    splitk_call c = base;
    c.bp = &bp, c.algo = &algo, c.g = g, c.P = P;
    splitk_run(&c);
    lt_teardown(&bp);
    return true;
}

static bool matmul_lt(float *C, const void *A, const void *B, int M, int N, int K, bool ta, bool tb, float alpha,
                      float beta, int lda, int ldb, int ldc, bool allow_timing) {
    return lt_product(C, A, B, M, N, K, ta, tb, alpha, beta, lda, ldb, ldc, allow_timing,
                      splitk_want(M, N, K, allow_timing));
}

// ---- outputs whose rows are not 16-byte aligned -------------------------------------
// An output row stride that is not a multiple of 4 floats (LlamaSimple's 341-wide
// products) leaves cuBLASLt only its align1 kernels, ~3x the time of the aligned ones
// (dev/kernels/README.md). Such a product runs into a padded temporary [M, ld4(N)] and is
// copied (or added) back. (bf16 needs more: N itself a multiple of 8, below.)
// The copy moves the output twice more, so it pays only where the product's reads
// dominate: K >= 256. (In fused TF32 mode on an H100 the wgmma kernel of gemm_nt_sm90
// takes these products first: the 4019-wide logits from K = 128, and their gradient.)
#define PAD_OUTPUT_MIN_K 256

static bool pad_output(const float *C, int K, int ldc) {
    return K >= PAD_OUTPUT_MIN_K && (ldc % 4 != 0 || align_of(C) < 16);
}

// C = alpha * op(A) op(B) + beta * C through a padded temporary (fused mode, timed
// algorithms). The product runs Np >= N columns wide (op(B) must have Np readable columns;
// the ones past N only make output columns that are dropped), and N columns are copied back.
static void padded_output_lt(float *C, const void *A, const void *B, int M, int N, int Np, int K, bool ta, bool tb,
                             float alpha, float beta, int lda, int ldb, int ldc) {
    cudaStream_t st = spd_cuda_stream();
    const int ldp = ld4(Np);
    float *Cp = NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&Cp, (size_t)M * ldp * sizeof(float), st));
    if (!matmul_lt(Cp, A, B, M, Np, K, ta, tb, alpha, 0, lda, ldb, ldp, true))
        spd_die("cuBLASLt: no algorithm for a [%d, %d] product with K = %d into a padded output", M, Np, K);
    copy2d_cuda(C, ldc, M, N, Cp, ldp, M, N, beta);
    CUDA_CHECK(cudaFreeAsync(Cp, st));
}

// ---- bf16 operands ---------------------------------------------------------------

// dst [rows, ldd] (bf16) = src [rows, cols] (row stride lds), rounded to nearest even; the
// pad columns cols..ldd-1 are written as zeros (a product reading whole padded rows then
// adds nothing from them). Two columns per thread (ldd even), indices in 32 bits where the
// matrix allows it: the conversions are bandwidth-bound, and 64-bit division per element
// was not.
#define TO_BF16_THREADS 256

template <typename I>
static __global__ void to_bf16_pairs_kernel(__nv_bfloat162 *dst, int ldd, const float *src, int lds, int rows,
                                            int cols) {
    const I half = (I)(ldd / 2), n = (I)rows * half;
    for (I i = (I)blockIdx.x * TO_BF16_THREADS + threadIdx.x; i < n; i += (I)gridDim.x * TO_BF16_THREADS) {
        const I r = i / half, c = 2 * (i - r * half);
        const float *s = src + (long long)r * lds;
        const float x = c < (I)cols ? s[c] : 0.0f, y = c + 1 < (I)cols ? s[c + 1] : 0.0f;
        dst[i] = __floats2bfloat162_rn(x, y);
    }
}

template <typename I>
static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, int ldd, const float *src, int lds, int rows, int cols) {
    const I n = (I)rows * (I)ldd;
    for (I i = (I)blockIdx.x * TO_BF16_THREADS + threadIdx.x; i < n; i += (I)gridDim.x * TO_BF16_THREADS) {
        const I r = i / (I)ldd, c = i - r * (I)ldd;
        dst[i] = __float2bfloat16_rn(c < (I)cols ? src[(long long)r * lds + c] : 0.0f);
    }
}

extern "C" int spd_bf16_ld(int cols) { return (cols + 7) & ~7; }

extern "C" void spd_to_bf16(void *dst, int ldd, const float *src, int lds, int rows, int cols) {
    SPD_ASSERT(ldd >= cols);
    const bool pairs = ldd % 2 == 0 && ((uintptr_t)dst & 3) == 0;
    const long long n = (long long)rows * (pairs ? ldd / 2 : ldd);
    if (n <= 0) return;
    const unsigned blocks = spd_cuda_blocks_capped(n, TO_BF16_THREADS);
    cudaStream_t st = spd_cuda_stream();
    const bool i32 = (long long)rows * ldd < (1LL << 31);
    if (pairs && i32)
        to_bf16_pairs_kernel<unsigned><<<blocks, TO_BF16_THREADS, 0, st>>>((__nv_bfloat162 *)dst, ldd, src, lds,
                                                                           rows, cols);
    else if (pairs)
        to_bf16_pairs_kernel<long long><<<blocks, TO_BF16_THREADS, 0, st>>>((__nv_bfloat162 *)dst, ldd, src, lds,
                                                                            rows, cols);
    else if (i32)
        to_bf16_kernel<unsigned><<<blocks, TO_BF16_THREADS, 0, st>>>((__nv_bfloat16 *)dst, ldd, src, lds, rows, cols);
    else
        to_bf16_kernel<long long><<<blocks, TO_BF16_THREADS, 0, st>>>((__nv_bfloat16 *)dst, ldd, src, lds, rows,
                                                                      cols);
    CUDA_CHECK_LAUNCH();
}

// A bf16 copy of a float32 operand stored [rows, cols] (row stride ld), from the
// stream-ordered allocator (graph-capture safe); *ld16 gets its row stride. Rows up to
// alloc_rows (>= rows) exist as zeros after the copied ones.
static void *bf16_copy(const float *src, int rows, int cols, int ld, int *ld16, int alloc_rows) {
    *ld16 = spd_bf16_ld(cols);
    void *p = NULL;
    const size_t row_bytes = (size_t)*ld16 * sizeof(__nv_bfloat16);
    CUDA_CHECK(cudaMallocAsync(&p, (size_t)alloc_rows * row_bytes + 16, spd_cuda_stream()));
    spd_to_bf16(p, *ld16, src, ld, rows, cols);
    if (alloc_rows > rows)
        CUDA_CHECK(cudaMemsetAsync((char *)p + rows * row_bytes, 0, (alloc_rows - rows) * row_bytes, spd_cuda_stream()));
    return p;
}

// bf16 products whose N is not a multiple of 8 (341) get only cuBLASLt's slow kernels
// even with every row 16-byte aligned (H100: 160-170 us for [16384, 341] from K = 1200,
// ~20 us for [16384, 128]). Where op(B) has the columns up to the next multiple of 8 in
// memory (a padded copy of ours, or a bf16 operand whose row stride covers them), the
// product runs that wide into a padded output (padded_output_lt) and drops them.
static int round8(int n) { return (n + 7) & ~7; }

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
    // Timing pays only for large products, and only in fused mode (unfused takes cuBLAS's first choice).
    const bool timing = spd_cuda_mode_get() == SPD_CUDA_FUSED && (double)M * N * K >= (double)(1 << 24);
    const bool wide = timing && N % 8 != 0 && K >= PAD_OUTPUT_MIN_K;  // run round8(N) wide if B allows
    if (!a_bf16) A = a16 = bf16_copy((const float *)A, trans_a ? K : M, trans_a ? M : K, lda, &lda, trans_a ? K : M);
    if (!b_bf16)
        B = b16 = bf16_copy((const float *)B, trans_b ? N : K, trans_b ? K : N, ldb, &ldb,
                            trans_b ? (wide ? round8(N) : N) : K);
    const int Np = wide && (trans_b ? b16 != NULL : ldb >= round8(N)) ? round8(N) : N;
    if (Np != N || (timing && pad_output(C, K, ldc))) {
        padded_output_lt(C, A, B, M, N, Np, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc);
    } else if (!matmul_lt(C, A, B, M, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc, timing)) {
        // No cuBLASLt algorithm for this layout: cublasGemmEx takes any (same column-major swap as below).
        if (splitk_log())
            fprintf(stderr, "gemm bf16 M=%d N=%d K=%d ta=%d tb=%d lda=%d ldb=%d ldc=%d align %x timing %d: cublasGemmEx\n",
                    M, N, K, trans_a, trans_b, lda, ldb, ldc, align_of(A) | align_of(B) << 8 | align_of(C) << 16,
                    timing);
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
    // The products cuBLASLt has only align1 kernels for (masked_gemm_sm90.h); not while a
    // test forces split-K.
    if (!trans_a && alpha == 1 && beta == 0 && !splitk_forced && gemm_nt_sm90_ok(M, N, K, A, lda, C, ldc)) {
        gemm_nt_sm90(M, N, K, A, lda, B, ldb, trans_b, C);
        return;
    }
    if (use_lt() && (double)M * N * K >= (double)(1 << 24)) {
        if (pad_output(C, K, ldc)) {
            padded_output_lt(C, A, B, M, N, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc);
            return;
        }
        if (matmul_lt(C, A, B, M, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc, true)) return;
    }
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
