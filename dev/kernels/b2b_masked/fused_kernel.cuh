// The fused back-to-back masked GEMM, templated on its tiling (kernel lab copy;
// the winner is copied into src/cuda/components_fused.cu).
//
//   X [N, K1], A [K1, C] (or At [C, K1]), M [N, C], B [C, K2] (or Bt [K2, C])
//   P [N, C] = (X @ A) * M   (stored when P != NULL, full fp32 of the product)
//   Y [N, K2] = P @ B
//
// One CTA owns BM rows and a K2T-wide slice of Y (1-D grid: the K2 slices of one
// row block are adjacent, so they run together and share M through L2). It keeps
// its X tile in shared memory (TF32-rounded once) and loops over C in chunks of
// BC: S = X @ A[:, chunk] (mma.sync m16n8k8 TF32), P = S * M (M chunk streamed
// in by cp.async), P stored to global straight from the fragments, P rounded to
// TF32 into shared memory (over the M chunk), then Y_acc += P @ B[chunk, :].
// A, B and M chunks are cp.async'ed STAGES deep; each thread rounds the elements
// it copied to TF32 in place. Zero-fill covers every edge (C = 1200, K = 341).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace b2b {

__device__ __forceinline__ float to_tf32(float f) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(f));
    return __uint_as_float(r);
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void cp_async16(float *s, const float *g) {
    uint32_t sa = (uint32_t)__cvta_generic_to_shared(s);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(g));
}
// 4 bytes; ok == false zero-fills (src-size 0, nothing is read).
__device__ __forceinline__ void cp_async4(float *s, const float *g, bool ok) {
    uint32_t sa = (uint32_t)__cvta_generic_to_shared(s);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(sa), "l"(g), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Copies rows x cols (cols % 4 == 0) of g (row stride gs) starting at (r0, c0)
// into s (row stride ss); elements outside [0, rlim) x [0, clim) become 0.
// vec: g, gs and c0 allow 16-byte copies.
template <int NT>
__device__ __forceinline__ void load_tile(float *s, int ss, const float *g, long gs, int r0, int c0, int rows,
                                          int cols, int rlim, int clim, bool vec) {
    const int q = cols >> 2;
    for (int i = threadIdx.x; i < rows * q; i += NT) {
        int r = i / q, c = (i - r * q) * 4;
        int gr = r0 + r, gc = c0 + c;
        float *d = s + r * ss + c;
        const float *src = g + (long)gr * gs + gc;
        if (vec && gr < rlim && gc + 3 < clim) {
            cp_async16(d, src);
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                bool ok = gr < rlim && gc + j < clim;
                cp_async4(d + j, ok ? src + j : g, ok);
            }
        }
    }
}

// Rounds to TF32 the elements this thread copied with the same load_tile call.
template <int NT>
__device__ __forceinline__ void round_tile(float *s, int ss, int rows, int cols) {
    const int q = cols >> 2;
    for (int i = threadIdx.x; i < rows * q; i += NT) {
        int r = i / q, c = (i - r * q) * 4;
        float4 *p = (float4 *)(s + r * ss + c);
        float4 v = *p;
        v.x = to_tf32(v.x), v.y = to_tf32(v.y), v.z = to_tf32(v.z), v.w = to_tf32(v.w);
        *p = v;
    }
}

template <int BM_, int BC_, int K1T_, int K2T_, int WM1_, int WN1_, int WM2_, int WN2_, bool AT_, bool BT_,
          int STAGES_>
struct Cfg {
    static constexpr int BM = BM_, BC = BC_, K1T = K1T_, K2T = K2T_, STAGES = STAGES_;
    static constexpr int WM1 = WM1_, WN1 = WN1_, WM2 = WM2_, WN2 = WN2_;
    static constexpr bool AT = AT_, BT = BT_;
    static constexpr int NT = 32 * WM1 * WN1;
    static_assert(WM1 * WN1 == WM2 * WN2, "both GEMMs use every warp");
    static constexpr int MT1 = BM / WM1 / 16, NT1 = BC / WN1 / 8;  // mma tiles per warp, GEMM1
    static constexpr int MT2 = BM / WM2 / 16, NT2 = K2T / WN2 / 8; // GEMM2
    static_assert(MT1 * WM1 * 16 == BM && NT1 * WN1 * 8 == BC, "GEMM1 warp tiling");
    static_assert(MT2 * WM2 * 16 == BM && NT2 * WN2 * 8 == K2T, "GEMM2 warp tiling");
    static_assert(K1T % 8 == 0 && BC % 8 == 0, "k steps of 8");
    // Strides chosen so that each fragment load hits 32 distinct banks and rows stay 16-byte aligned.
    static constexpr int XS = K1T + 4;                    // X [BM][XS]
    static constexpr int AS = AT ? K1T + 4 : BC + 8;      // A chunk: At [BC][AS] or A [K1T][AS]
    static constexpr int BS = BT ? BC + 4 : K2T + 8;      // B chunk: Bt [K2T][BS] or B [BC][BS]
    static constexpr int MS = BC + 4;                     // M / P chunk [BM][MS]
    static constexpr int A_EL = AT ? BC * AS : K1T * AS;
    static constexpr int B_EL = BT ? K2T * BS : BC * BS;
    static constexpr int M_EL = BM * MS;
    static constexpr int STAGE_EL = A_EL + B_EL + M_EL;
    static constexpr size_t SMEM = sizeof(float) * ((size_t)BM * XS + (size_t)STAGES * STAGE_EL);
};

template <class K>
__global__ void __launch_bounds__(K::NT, 1)
    b2b_kernel(float *__restrict__ Y, float *__restrict__ P, const float *__restrict__ X,
               const float *__restrict__ A, const float *__restrict__ M, const float *__restrict__ B, int N,
               int K1, int C, int K2) {
    constexpr int BM = K::BM, BC = K::BC, K2T = K::K2T, NT = K::NT, STAGES = K::STAGES;
    extern __shared__ float4 smem4[];
    float *Xs = (float *)smem4;
    float *stages = Xs + BM * K::XS;

    const int nk2 = (K2 + K2T - 1) / K2T;
    const int k2t = blockIdx.x % nk2, row0 = (blockIdx.x / nk2) * BM, k20 = k2t * K2T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wr1 = (warp / K::WN1) * (BM / K::WM1), wc1 = (warp % K::WN1) * (BC / K::WN1);
    const int wr2 = (warp / K::WN2) * (BM / K::WM2), wc2 = (warp % K::WN2) * (K2T / K::WN2);
    const int k1r = (K1 + 7) & ~7;  // k extent of GEMM1, zero-padded
    const int nchunks = (C + BC - 1) / BC;
    const bool store_p = P != nullptr && k2t == 0;

    auto al16 = [](const float *p) { return ((uintptr_t)p & 15) == 0; };
    const bool vx = al16(X) && K1 % 4 == 0;
    const bool va = al16(A) && (K::AT ? K1 % 4 == 0 : C % 4 == 0);
    const bool vb = al16(B) && (K::BT ? C % 4 == 0 : K2 % 4 == 0);
    const bool vm = M && al16(M) && C % 4 == 0;

    auto issue_chunk = [&](int j) {
        float *As = stages + (j % STAGES) * K::STAGE_EL, *Bs = As + K::A_EL, *Ms = Bs + K::B_EL;
        const int c0 = j * BC;
        if (K::AT) load_tile<NT>(As, K::AS, A, K1, c0, 0, BC, k1r, C, K1, va);
        else load_tile<NT>(As, K::AS, A, C, 0, c0, k1r, BC, K1, C, va);
        if (K::BT) load_tile<NT>(Bs, K::BS, B, C, k20, c0, K2T, BC, K2, C, vb);
        else load_tile<NT>(Bs, K::BS, B, K2, c0, k20, BC, K2T, C, K2, vb);
        if (M) load_tile<NT>(Ms, K::MS, M, C, row0, c0, BM, BC, N, C, vm);
    };

    load_tile<NT>(Xs, K::XS, X, K1, row0, 0, BM, k1r, N, K1, vx);
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nchunks) issue_chunk(s);
        cp_async_commit();
    }

    float acc[K::MT2][K::NT2][4];
#pragma unroll
    for (int i = 0; i < K::MT2; i++)
#pragma unroll
        for (int j = 0; j < K::NT2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

    for (int j = 0; j < nchunks; j++) {
        float *As = stages + (j % STAGES) * K::STAGE_EL, *Bs = As + K::A_EL, *Ms = Bs + K::B_EL;
        if (j + STAGES - 1 < nchunks) issue_chunk(j + STAGES - 1);
        cp_async_commit();
        cp_async_wait<STAGES - 1>();
        if (j == 0) round_tile<NT>(Xs, K::XS, BM, k1r);
        if (K::AT) round_tile<NT>(As, K::AS, BC, k1r);
        else round_tile<NT>(As, K::AS, k1r, BC);
        if (K::BT) round_tile<NT>(Bs, K::BS, K2T, BC);
        else round_tile<NT>(Bs, K::BS, BC, K2T);
        __syncthreads();

        // GEMM1: S [BM, BC] = X @ A_chunk
        float s[K::MT1][K::NT1][4];
#pragma unroll
        for (int i = 0; i < K::MT1; i++)
#pragma unroll
            for (int n = 0; n < K::NT1; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[i][n][e] = 0.f;
#pragma unroll 2
        for (int k = 0; k < k1r; k += 8) {
            uint32_t af[K::MT1][4], bf[K::NT1][2];
#pragma unroll
            for (int i = 0; i < K::MT1; i++) {
                const float *x = Xs + (wr1 + i * 16 + g) * K::XS + k + t;
                af[i][0] = __float_as_uint(x[0]);
                af[i][1] = __float_as_uint(x[8 * K::XS]);
                af[i][2] = __float_as_uint(x[4]);
                af[i][3] = __float_as_uint(x[8 * K::XS + 4]);
            }
#pragma unroll
            for (int n = 0; n < K::NT1; n++) {
                const int c = wc1 + n * 8 + g;
                if (K::AT) {
                    bf[n][0] = __float_as_uint(As[c * K::AS + k + t]);
                    bf[n][1] = __float_as_uint(As[c * K::AS + k + t + 4]);
                } else {
                    bf[n][0] = __float_as_uint(As[(k + t) * K::AS + c]);
                    bf[n][1] = __float_as_uint(As[(k + t + 4) * K::AS + c]);
                }
            }
#pragma unroll
            for (int i = 0; i < K::MT1; i++)
#pragma unroll
                for (int n = 0; n < K::NT1; n++) mma_tf32(s[i][n], af[i], bf[n]);
        }

        // P = S * M: to global (fp32) and, TF32-rounded, over the M chunk in shared memory.
        const int c0 = j * BC;
#pragma unroll
        for (int i = 0; i < K::MT1; i++)
#pragma unroll
            for (int n = 0; n < K::NT1; n++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int r = wr1 + i * 16 + g + h * 8, c = wc1 + n * 8 + 2 * t;
                    float2 *ms = (float2 *)(Ms + r * K::MS + c);
                    float2 p = make_float2(s[i][n][2 * h], s[i][n][2 * h + 1]);
                    if (M) {
                        float2 m = *ms;
                        p.x *= m.x, p.y *= m.y;
                    }
                    const int gr = row0 + r, gc = c0 + c;
                    if (store_p && gr < N) {
                        float *dst = P + (long)gr * C + gc;
                        if (gc + 1 < C && (C & 1) == 0) *(float2 *)dst = p;
                        else {
                            if (gc < C) dst[0] = p.x;
                            if (gc + 1 < C) dst[1] = p.y;
                        }
                    }
                    *ms = make_float2(to_tf32(p.x), to_tf32(p.y));
                }
        __syncthreads();

        // GEMM2: Y_acc [BM, K2T] += P_chunk @ B_chunk
#pragma unroll
        for (int k = 0; k < BC; k += 8) {
            uint32_t af[K::MT2][4], bf[K::NT2][2];
#pragma unroll
            for (int i = 0; i < K::MT2; i++) {
                const float *p = Ms + (wr2 + i * 16 + g) * K::MS + k + t;
                af[i][0] = __float_as_uint(p[0]);
                af[i][1] = __float_as_uint(p[8 * K::MS]);
                af[i][2] = __float_as_uint(p[4]);
                af[i][3] = __float_as_uint(p[8 * K::MS + 4]);
            }
#pragma unroll
            for (int n = 0; n < K::NT2; n++) {
                const int c = wc2 + n * 8 + g;
                if (K::BT) {
                    bf[n][0] = __float_as_uint(Bs[c * K::BS + k + t]);
                    bf[n][1] = __float_as_uint(Bs[c * K::BS + k + t + 4]);
                } else {
                    bf[n][0] = __float_as_uint(Bs[(k + t) * K::BS + c]);
                    bf[n][1] = __float_as_uint(Bs[(k + t + 4) * K::BS + c]);
                }
            }
#pragma unroll
            for (int i = 0; i < K::MT2; i++)
#pragma unroll
                for (int n = 0; n < K::NT2; n++) mma_tf32(acc[i][n], af[i], bf[n]);
        }
        __syncthreads();  // this stage is refilled next iteration
    }

#pragma unroll
    for (int i = 0; i < K::MT2; i++)
#pragma unroll
        for (int n = 0; n < K::NT2; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int gr = row0 + wr2 + i * 16 + g + h * 8, gc = k20 + wc2 + n * 8 + 2 * t;
                if (gr >= N) continue;
                float *dst = Y + (long)gr * K2 + gc;
                if (gc < K2) dst[0] = acc[i][n][2 * h];
                if (gc + 1 < K2) dst[1] = acc[i][n][2 * h + 1];
            }
}

// Launches one configuration; returns false (launching nothing) when K1 > K1T.
template <class K>
bool launch(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1,
            int C, int K2, cudaStream_t st) {
    if (K1 > K::K1T) return false;
    static bool attr = false;
    if (!attr) {
        if (cudaFuncSetAttribute(b2b_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)K::SMEM) !=
            cudaSuccess)
            return false;
        attr = true;
    }
    const long nk2 = (K2 + K::K2T - 1) / K::K2T, nrow = (N + K::BM - 1) / K::BM;
    b2b_kernel<K><<<(unsigned)(nk2 * nrow), K::NT, K::SMEM, st>>>(Y, P, X, A, M, B, N, K1, C, K2);
    return true;
}

}  // namespace b2b
