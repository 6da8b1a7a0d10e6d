// Kernel lab harness for the back-to-back masked GEMM (see NOTES.md).
// Measures the two ceilings (cuBLAS TF32 on 8192^3, a 1 GiB D2D copy), then for
// each shape and layout: validates every version against v0 in full fp32
// (cuBLAS default math) on fresh Philox inputs with NaN-poisoned outputs, then
// times it (L2 flushed before every run, CUDA events, median and min of 30).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "components_fused.h"
#include "versions.cuh"

#define CK(x)                                                                                          \
    do {                                                                                               \
        cudaError_t e_ = (x);                                                                          \
        if (e_ != cudaSuccess) {                                                                       \
            fprintf(stderr, "CUDA: %s failed: %s (%s:%d)\n", #x, cudaGetErrorString(e_), __FILE__, __LINE__); \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)
#define CB(x)                                                                                          \
    do {                                                                                               \
        cublasStatus_t s_ = (x);                                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                             \
            fprintf(stderr, "cuBLAS: %s failed: %d (%s:%d)\n", #x, (int)s_, __FILE__, __LINE__);      \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)
#define CR(x)                                                                                          \
    do {                                                                                               \
        if ((x) != CURAND_STATUS_SUCCESS) {                                                            \
            fprintf(stderr, "cuRAND: %s failed (%s:%d)\n", #x, __FILE__, __LINE__);                    \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

// What src/cuda/components_fused.cu needs from the library (core/error.c, device.cu).
extern "C" void spd_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spd: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}
void spd_cuda_fail(const char *what, const char *detail, const char *file, int line) {
    spd_die("CUDA: %s failed: %s (%s:%d)", what, detail, file, line);
}

static cublasHandle_t H;
static cudaStream_t ST;
static curandGenerator_t RNG;
static float *FLUSH;
static const size_t FLUSH_BYTES = 256u << 20;  // > 50 MB of L2

// Row-major C[m, n] = alpha op(A)[m, k] @ op(B)[k, n] + beta C, lda/ldb = stored row lengths.
static void gemm_rm(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                    float *C, int ldc, float beta) {
    const float one = 1.f;
    CB(cublasSgemm(H, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one, B, ldb, A,
                   lda, &beta, C, ldc));
}

__global__ void mask_kernel(float *P, const float *a, const float *M, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long n4 = n / 4;
    if (i < n4) {
        float4 x = ((const float4 *)a)[i], m = ((const float4 *)M)[i];
        ((float4 *)P)[i] = make_float4(x.x * m.x, x.y * m.y, x.z * m.z, x.w * m.w);
    }
    if (i < n - 4 * n4) P[4 * n4 + i] = a[4 * n4 + i] * M[4 * n4 + i];
}

struct Shape {
    int N, K1, C, K2;
    bool tr;  // A and B stored transposed (the backward dx layout)
};

struct Bufs {
    float *X, *A, *M, *B, *Y, *P, *a;  // a: v0's [N, C] workspace
};

// v0: unfused. a = X @ A (cuBLAS), P = a * M, Y = P @ B (cuBLAS).
static bool v0(const Shape &s, const Bufs &b, float *Y, float *P) {
    gemm_rm(false, s.tr, s.N, s.C, s.K1, b.X, s.K1, b.A, s.tr ? s.K1 : s.C, b.a, s.C, 0.f);
    long n = (long)s.N * s.C;
    mask_kernel<<<(unsigned)((n / 4 + 255) / 256), 256, 0, ST>>>(P, b.a, b.M, n);
    CK(cudaGetLastError());
    gemm_rm(false, s.tr, s.N, s.K2, s.C, P, s.C, b.B, s.tr ? s.C : s.K2, Y, s.K2, 0.f);
    return true;
}

typedef bool (*fused_fn)(float *, float *, const float *, const float *, const float *, const float *, int, int,
                         int, int, cudaStream_t);

struct Version {
    const char *name;
    fused_fn fwd, bwd;  // (AT, BT) = (false, false) and (true, true)
};

static bool run_version(int v, const Version *vs, const Shape &s, const Bufs &b, float *Y, float *P) {
    if (v == 0) return v0(s, b, Y, P);
    if (vs[v].fwd == nullptr) {  // the library entry point
        b2b_masked_gemm(Y, P, b.X, b.A, s.tr, b.M, b.B, s.tr, s.N, s.K1, s.C, s.K2, ST);
        return true;
    }
    bool ok = (s.tr ? vs[v].bwd : vs[v].fwd)(Y, P, b.X, b.A, b.M, b.B, s.N, s.K1, s.C, s.K2, ST);
    CK(cudaGetLastError());
    return ok;
}

static void fill(float *p, long n, float mean, float sd, bool uniform) {
    if (uniform) CR(curandGenerateUniform(RNG, p, n));
    else CR(curandGenerateNormal(RNG, p, n + (n & 1), mean, sd));
}

// Norm-relative error in double; NaN/Inf anywhere -> +inf.
static double norm_rel(const float *dev, const std::vector<float> &ref) {
    std::vector<float> h(ref.size());
    CK(cudaMemcpy(h.data(), dev, h.size() * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (size_t i = 0; i < h.size(); i++) {
        if (!std::isfinite(h[i])) return INFINITY;
        double d = (double)h[i] - ref[i];
        num += d * d, den += (double)ref[i] * ref[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

static double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static double TF32_RATE, COPY_BW;  // FLOP/s, B/s (read + write)

static void ceilings() {
    const int n = 8192;
    float *a, *b, *c;
    CK(cudaMalloc(&a, (size_t)n * n * 4));
    CK(cudaMalloc(&b, (size_t)n * n * 4));
    CK(cudaMalloc(&c, (size_t)n * n * 4));
    fill(a, (long)n * n, 0, 1, false);
    fill(b, (long)n * n, 0, 1, false);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> t;
    CB(cublasSetMathMode(H, CUBLAS_TF32_TENSOR_OP_MATH));
    for (int i = 0; i < 13; i++) {
        CK(cudaEventRecord(e0, ST));
        gemm_rm(false, false, n, n, n, a, n, b, n, c, n, 0.f);
        CK(cudaEventRecord(e1, ST));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t.push_back(ms);
    }
    TF32_RATE = 2.0 * n * n * (double)n / (median(t) * 1e-3);
    printf("ceiling: cuBLAS TF32 sgemm 8192^3: median %.3f ms -> %.1f TFLOP/s\n", median(t), TF32_RATE / 1e12);
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaFree(c));
    size_t bytes = 1ull << 30;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    t.clear();
    for (int i = 0; i < 13; i++) {
        CK(cudaEventRecord(e0, ST));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, ST));
        CK(cudaEventRecord(e1, ST));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t.push_back(ms);
    }
    COPY_BW = 2.0 * bytes / (median(t) * 1e-3);
    printf("ceiling: cudaMemcpy D2D 1 GiB: median %.3f ms -> %.0f GB/s (read + write)\n", median(t),
           COPY_BW / 1e9);
    CK(cudaFree(a));
    CK(cudaFree(b));
}

struct Timing {
    double med, min;
};

template <class F>
static Timing time_it(F f, int reps = 30) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) f();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        CK(cudaMemsetAsync(FLUSH, i & 0xff, FLUSH_BYTES, ST));
        CK(cudaEventRecord(e0, ST));
        f();
        CK(cudaEventRecord(e1, ST));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return {median(t), *std::min_element(t.begin(), t.end())};
}

static int FAILS = 0;
static std::vector<std::string> TABLE;

// Validates versions [1, nv) (and v0 in TF32) against v0 in fp32, then times them.
// with_mask / with_p select M = NULL / P = NULL (the reference then uses ones / ignores P).
static void run_shape(const Shape &s, const Version *vs, int nv, bool timed, bool with_mask = true,
                      bool with_p = true) {
    const long NX = (long)s.N * s.K1, NA = (long)s.K1 * s.C, NM = (long)s.N * s.C, NB = (long)s.C * s.K2,
               NY = (long)s.N * s.K2;
    Bufs b;
    CK(cudaMalloc(&b.X, (NX + 1) * 4));
    CK(cudaMalloc(&b.A, (NA + 1) * 4));
    CK(cudaMalloc(&b.M, (NM + 1) * 4));
    CK(cudaMalloc(&b.B, (NB + 1) * 4));
    CK(cudaMalloc(&b.Y, NY * 4));
    CK(cudaMalloc(&b.P, NM * 4));
    CK(cudaMalloc(&b.a, NM * 4));
    fill(b.X, NX, 0, 1, false);
    fill(b.A, NA, 0, 1.f / std::sqrt((float)s.K1), false);
    fill(b.M, NM, 0, 0, true);  // masks in (0, 1]
    fill(b.B, NB, 0, 1.f / std::sqrt((float)s.C), false);
    if (!with_mask) {
        std::vector<float> ones(NM, 1.f);
        CK(cudaMemcpy(b.M, ones.data(), NM * 4, cudaMemcpyHostToDevice));
    }
    // Reference: v0 in full fp32.
    CB(cublasSetMathMode(H, CUBLAS_DEFAULT_MATH));
    v0(s, b, b.Y, b.P);
    CK(cudaStreamSynchronize(ST));
    std::vector<float> refY(NY), refP(NM);
    CK(cudaMemcpy(refY.data(), b.Y, NY * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(refP.data(), b.P, NM * 4, cudaMemcpyDeviceToHost));
    CB(cublasSetMathMode(H, CUBLAS_TF32_TENSOR_OP_MATH));

    const double flops = 2.0 * s.N * s.C * ((double)s.K1 + s.K2);
    const double bytes = 4.0 * ((with_mask ? NM : 0) + (with_p ? NM : 0) + NX + NY + NA + NB);
    const double t_flop = flops / TF32_RATE, t_byte = bytes / COPY_BW;
    const double bound = 5e-3;  // TF32 (10-bit mantissa) operands of two chained products, fp32 accumulation
    Bufs bl = b;
    if (!with_mask) bl.M = nullptr;
    char line[512];
    for (int v = 0; v < nv; v++) {
        const Bufs &bv = (v == 0) ? b : bl;  // v0 always multiplies (by ones when no mask)
        if (v == 0 && (!with_mask || !with_p)) continue;
        float *P = with_p ? b.P : nullptr;
        CK(cudaMemset(b.Y, 0xff, NY * 4));  // NaN
        CK(cudaMemset(b.P, 0xff, NM * 4));
        bool ok = run_version(v, vs, s, bv, b.Y, v == 0 ? b.P : P);
        CK(cudaStreamSynchronize(ST));
        if (!ok) {
            printf("  %-4s %s N=%d K1=%d C=%d K2=%d: not supported\n", vs[v].name, s.tr ? "bwd" : "fwd", s.N, s.K1,
                   s.C, s.K2);
            continue;
        }
        double ey = norm_rel(b.Y, refY), ep = with_p ? norm_rel(b.P, refP) : 0;
        bool pass = ey < bound && ep < bound;
        if (!with_p) {  // P must be untouched: still NaN
            std::vector<float> h(std::min<long>(NM, 1 << 20));
            CK(cudaMemcpy(h.data(), b.P, h.size() * 4, cudaMemcpyDeviceToHost));
            for (float x : h)
                if (!std::isnan(x)) {
                    pass = false;
                    break;
                }
        }
        if (!pass) FAILS++;
        printf("  check %-4s %s N=%-5d K1=%-3d C=%-4d K2=%-3d mask=%d P=%d: errY %.2e errP %.2e %s\n", vs[v].name,
               s.tr ? "bwd" : "fwd", s.N, s.K1, s.C, s.K2, with_mask, with_p, ey, ep, pass ? "ok" : "FAIL");
        fflush(stdout);
        if (!timed || !pass) continue;
        Timing tm = time_it([&] { run_version(v, vs, s, bv, b.Y, v == 0 ? b.P : P); });
        snprintf(line, sizeof line, "| %-4s | %s | %5d | %3d | %4d | %3d | %d%d | %8.4f | %8.4f | %6.1f | %5.3f | %5.3f |",
                 vs[v].name, s.tr ? "bwd" : "fwd", s.N, s.K1, s.C, s.K2, with_mask, with_p, tm.med, tm.min,
                 flops / (tm.med * 1e-3) / 1e12, t_flop / (tm.med * 1e-3), t_byte / (tm.med * 1e-3));
        TABLE.push_back(line);
    }
    if (timed && with_mask && with_p) {
        snprintf(line, sizeof line,
                 "| floor | %s | %5d | %3d | %4d | %3d | 11 | flops %.3f ms | bytes %.3f ms (%.0f MB) | %s-bound |",
                 s.tr ? "bwd" : "fwd", s.N, s.K1, s.C, s.K2, t_flop * 1e3, t_byte * 1e3, bytes / 1e6,
                 t_byte > t_flop ? "memory" : "compute");
        TABLE.push_back(line);
    }
    CK(cudaFree(b.X));
    CK(cudaFree(b.A));
    CK(cudaFree(b.M));
    CK(cudaFree(b.B));
    CK(cudaFree(b.Y));
    CK(cudaFree(b.P));
    CK(cudaFree(b.a));
}

// The weight-gradient GEMMs that stay on cuBLAS TF32: dU [C, K2] += P^T G, dV [K1, C] += X^T g_a.
static void time_weight_grads(int N, int K1, int C, int K2) {
    float *P, *G, *X, *dU, *dV;
    CK(cudaMalloc(&P, (size_t)N * C * 4));
    CK(cudaMalloc(&G, (size_t)N * K2 * 4 + 8));
    CK(cudaMalloc(&X, (size_t)N * K1 * 4 + 8));
    CK(cudaMalloc(&dU, (size_t)C * K2 * 4));
    CK(cudaMalloc(&dV, (size_t)K1 * C * 4));
    fill(P, (long)N * C, 0, 1, false);
    fill(G, (long)N * K2, 0, 1, false);
    fill(X, (long)N * K1, 0, 1, false);
    CK(cudaMemset(dU, 0, (size_t)C * K2 * 4));
    CK(cudaMemset(dV, 0, (size_t)K1 * C * 4));
    CB(cublasSetMathMode(H, CUBLAS_TF32_TENSOR_OP_MATH));
    Timing tu = time_it([&] { gemm_rm(true, false, C, K2, N, P, C, G, K2, dU, K2, 1.f); });
    Timing tv = time_it([&] { gemm_rm(true, false, K1, C, N, X, K1, P, C, dV, C, 1.f); });
    double bu = 4.0 * ((double)N * C + (double)N * K2 + 2.0 * C * K2), bv = 4.0 * ((double)N * C + (double)N * K1 + 2.0 * K1 * C);
    char line[256];
    snprintf(line, sizeof line, "| dU=P^T G | %5d | %3d | %4d | %3d | %8.4f | %8.4f | %6.1f TFLOP/s | byte floor %.4f ms |", N,
             K1, C, K2, tu.med, tu.min, 2.0 * N * C * K2 / (tu.med * 1e-3) / 1e12, bu / COPY_BW * 1e3);
    TABLE.push_back(line);
    snprintf(line, sizeof line, "| dV=X^T ga | %5d | %3d | %4d | %3d | %8.4f | %8.4f | %6.1f TFLOP/s | byte floor %.4f ms |", N,
             K1, C, K2, tv.med, tv.min, 2.0 * N * C * K1 / (tv.med * 1e-3) / 1e12, bv / COPY_BW * 1e3);
    TABLE.push_back(line);
    CK(cudaFree(P));
    CK(cudaFree(G));
    CK(cudaFree(X));
    CK(cudaFree(dU));
    CK(cudaFree(dV));
}

template <class K>
static void report_cfg(const char *name) {
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, b2b::b2b_kernel<K>));
    CK(cudaFuncSetAttribute(b2b::b2b_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)K::SMEM));
    int occ = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, b2b::b2b_kernel<K>, K::NT, K::SMEM));
    printf("cfg %-28s BM=%3d BC=%2d K1T=%3d K2T=%3d stages=%d: %3d regs, %3zu B local, smem %6zu B, %d CTA/SM\n",
           name, K::BM, K::BC, K::K1T, K::K2T, K::STAGES, fa.numRegs, fa.localSizeBytes, K::SMEM, occ);
}

template <class K>
static void report_cfg4(const char *name) {
    cudaFuncAttributes fa;
    CK(cudaFuncGetAttributes(&fa, b2b::b2b_kernel4<K>));
    CK(cudaFuncSetAttribute(b2b::b2b_kernel4<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)K::SMEM));
    int occ = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, b2b::b2b_kernel4<K>, 256, K::SMEM));
    printf("cfg %-28s BM=128 BC=%2d K1T=%3d K2T=%3d stages=%d: %3d regs, %3zu B local, smem %6zu B, %d CTA/SM\n",
           name, K::BC, K::K1T, K::K2T, K::STAGES, fa.numRegs, fa.localSizeBytes, K::SMEM, occ);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && std::string(argv[1]) == "quick";
    CK(cudaSetDevice(0));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB, smem/block optin %zu B\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize >> 20, prop.sharedMemPerBlockOptin);
    CK(cudaStreamCreate(&ST));
    CB(cublasCreate(&H));
    CB(cublasSetStream(H, ST));
    CR(curandCreateGenerator(&RNG, CURAND_RNG_PSEUDO_PHILOX4_32_10));
    CR(curandSetPseudoRandomGeneratorSeed(RNG, 20261113ull));
    CR(curandSetStream(RNG, ST));
    CK(cudaMalloc(&FLUSH, FLUSH_BYTES));
    ceilings();

    using namespace b2b;
    report_cfg<Cfg<64, 32, 128, 128, 4, 2, 2, 4, false, false, 1>>("v1 K1<=128");
    report_cfg<Cfg<64, 32, 344, 128, 4, 2, 2, 4, false, false, 1>>("v1 K1<=344");
    report_cfg<Cfg<128, 32, 128, 128, 4, 2, 2, 4, false, false, 2>>("v2 K1<=128");
    report_cfg<Cfg<128, 32, 128, 192, 4, 2, 2, 4, false, false, 2>>("v2 K1<=128,K2>128");
    report_cfg<Cfg<64, 16, 344, 128, 4, 2, 2, 4, false, false, 2>>("v2/v3 K1<=344");
    report_cfg<Cfg<64, 16, 128, 128, 4, 2, 2, 4, false, false, 3>>("v3 K1<=128");
    report_cfg<Cfg<64, 16, 128, 128, 4, 2, 2, 4, true, true, 3>>("v3 K1<=128 bwd");
    report_cfg4<Cfg4<128, 32, 128, false, false, 3>>("v4 K1<=128");
    report_cfg4<Cfg4<128, 32, 128, true, true, 3>>("v4 K1<=128 bwd");
    report_cfg4<Cfg4<128, 64, 128, false, false, 3>>("v5 K1<=128");
    report_cfg4<Cfg4<128, 32, 192, false, false, 3>>("v5 K1<=128 K2>128");

    const Version vs[] = {{"v0", nullptr, nullptr},
                          {"v1", v1<false, false>, v1<true, true>},
                          {"v2", v2<false, false>, v2<true, true>},
                          {"v3", v3<false, false>, v3<true, true>},
                          {"v4", v4<false, false>, v4<true, true>},
                          {"v5", v5<false, false>, v5<true, true>},
                          {"lib", nullptr, nullptr}};
    const int nv = sizeof vs / sizeof vs[0];

    // Odd shapes first: every edge, both layouts, M / P absent, and the fallback (K1 > 344).
    const Shape odd[] = {{1000, 37, 123, 45, false}, {1000, 37, 123, 45, true}, {777, 341, 1200, 341, false},
                         {777, 341, 1200, 341, true}, {300, 400, 50, 20, false}, {129, 8, 4, 1, true},
                         {513, 128, 1201, 129, false}, {513, 64, 1199, 64, true}};
    for (const Shape &s : odd) run_shape(s, vs, nv, false);
    run_shape(odd[0], vs, nv, false, false, true);
    run_shape(odd[1], vs, nv, false, true, false);
    run_shape(odd[2], vs, nv, false, false, false);

    const int pairs[5][2] = {{128, 128}, {128, 64}, {64, 128}, {128, 341}, {341, 128}};
    for (int tr = 0; tr < 2; tr++)
        for (auto &p : pairs) {
            run_shape({16384, p[0], 1200, p[1], tr == 1}, vs, nv, true);
            if (quick) break;
        }
    if (!quick)
        for (int N : {4096, 32768}) {
            run_shape({N, 128, 1200, 128, false}, vs, nv, true);
            run_shape({N, 128, 1200, 341, false}, vs, nv, true);
        }
    // The library entry point without the mask read / without storing P.
    run_shape({16384, 128, 1200, 128, false}, vs, nv, true, true, false);
    run_shape({16384, 128, 1200, 128, false}, vs, nv, true, false, false);
    for (auto &p : pairs) time_weight_grads(16384, p[0], 1200, p[1]);

    printf("\nGPU: %s; L2 flushed before every timed run; median and min of 30; fractions are floor time / median\n",
           prop.name);
    printf("| ver | layout | N | K1 | C | K2 | MP | median ms | min ms | TFLOP/s | of TF32 floor | of byte floor |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (auto &l : TABLE) printf("%s\n", l.c_str());
    printf("\n%d checks failed\n", FAILS);
    return FAILS ? 1 : 0;
}
