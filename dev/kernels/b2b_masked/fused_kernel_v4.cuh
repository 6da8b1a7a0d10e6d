// v4: register-resident X and register-to-register P (see NOTES.md).
//
// Why: v1-v3 were bound by shared-memory traffic and barriers (~290 LDS.32 per
// warp per chunk, 4 __syncthreads per chunk, P round-tripped through shared
// memory). Here each of the 8 warps owns 16 rows for the whole kernel:
//  - its X rows [16, K1] live in registers as TF32 A-fragments (K1 <= K1T <= 128),
//  - S = X @ A_chunk leaves P = S * M in the accumulator layout, which is reused
//    directly as the A-fragment of P @ B_chunk: the k index of an m16n8k8 is a sum,
//    so any permutation of it applied to both operands gives the same product;
//    we let k-slot t hold column 2t and k-slot t+4 hold column 2t+1, which is
//    exactly where the accumulator keeps them. No shuffles, no shared memory.
//  - the same permutation in GEMM1 makes the two B-fragment values of a transposed
//    operand adjacent: one LDS.64 instead of two LDS.32.
//  - M comes from global in the fragment layout (8-byte loads, whole 32-byte
//    sectors), one chunk ahead in registers; P goes to global from the fragments.
// Only the A and B chunks (shared by all warps) go through shared memory,
// STAGES deep, with one barrier per chunk.
#pragma once
#include "fused_kernel.cuh"

namespace b2b {

template <int K1T_, int BC_, int K2T_, bool AT_, bool BT_, int STAGES_>
struct Cfg4 {
    static constexpr int BM = 128, NT = 256, K1T = K1T_, BC = BC_, K2T = K2T_, STAGES = STAGES_;
    static constexpr bool AT = AT_, BT = BT_;
    static constexpr int NT1 = BC / 8, NT2 = K2T / 8, KS1 = K1T / 8;
    static_assert(K1T % 32 == 0 && BC % 8 == 0 && K2T % 8 == 0, "tiling");
    // Strides: conflict-free fragment loads (LDS.64 per half-warp for the transposed ones).
    static constexpr int AS = AT ? K1T + 8 : BC + 4;   // At chunk [BC][AS] or A chunk [K1T][AS]
    static constexpr int BS = BT ? BC + 8 : K2T + 4;   // Bt chunk [K2T][BS] or B chunk [BC][BS]
    static constexpr int A_EL = AT ? BC * AS : K1T * AS;
    static constexpr int B_EL = BT ? K2T * BS : BC * BS;
    static constexpr int STAGE_EL = A_EL + B_EL;
    static constexpr size_t SMEM = sizeof(float) * (size_t)STAGES * STAGE_EL;
};

template <class K>
__global__ void __launch_bounds__(K::NT, 1)
    b2b_kernel4(float *__restrict__ Y, float *__restrict__ P, const float *__restrict__ X,
                const float *__restrict__ A, const float *__restrict__ M, const float *__restrict__ B, int N,
                int K1, int C, int K2) {
    constexpr int BC = K::BC, K2T = K::K2T, STAGES = K::STAGES, NT1 = K::NT1, NT2 = K::NT2;
    extern __shared__ float4 smem4[];
    float *stages = (float *)smem4;

    const int nk2 = (K2 + K2T - 1) / K2T;
    const int k2t = blockIdx.x % nk2, row0 = (blockIdx.x / nk2) * K::BM, k20 = k2t * K2T;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r_lo = row0 + warp * 16 + g, r_hi = r_lo + 8;  // this thread's two rows
    const int k1r = (K1 + 7) & ~7;
    const int nchunks = (C + BC - 1) / BC;
    const bool store_p = P != nullptr && k2t == 0;
    const bool c_even = (C & 1) == 0 && ((uintptr_t)(M ? M : X) & 7) == 0 && ((uintptr_t)(P ? P : X) & 7) == 0;

    auto al16 = [](const float *p) { return ((uintptr_t)p & 15) == 0; };
    const bool va = al16(A) && (K::AT ? K1 % 4 == 0 : C % 4 == 0);
    const bool vb = al16(B) && (K::BT ? C % 4 == 0 : K2 % 4 == 0);

    auto issue_chunk = [&](int j) {
        float *As = stages + (j % STAGES) * K::STAGE_EL, *Bs = As + K::A_EL;
        const int c0 = j * BC;
        if (K::AT) load_tile<K::NT>(As, K::AS, A, K1, c0, 0, BC, k1r, C, K1, va);
        else load_tile<K::NT>(As, K::AS, A, C, 0, c0, k1r, BC, K1, C, va);
        if (K::BT) load_tile<K::NT>(Bs, K::BS, B, C, k20, c0, K2T, BC, K2, C, vb);
        else load_tile<K::NT>(Bs, K::BS, B, K2, c0, k20, BC, K2T, C, K2, vb);
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nchunks) issue_chunk(s);
        cp_async_commit();
    }

    // X rows as TF32 A-fragments, permuted k: slot t <- column 2t, slot t+4 <- column 2t+1.
    uint32_t xf[K::KS1][4];
#pragma unroll
    for (int ks = 0; ks < K::KS1; ks++) {
        const int k = ks * 8 + 2 * t;
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = (e & 1) ? r_hi : r_lo, kk = k + (e >> 1);
            v[e] = (r < N && kk < K1) ? X[(long)r * K1 + kk] : 0.f;
        }
        xf[ks][0] = __float_as_uint(to_tf32(v[0]));
        xf[ks][1] = __float_as_uint(to_tf32(v[1]));
        xf[ks][2] = __float_as_uint(to_tf32(v[2]));
        xf[ks][3] = __float_as_uint(to_tf32(v[3]));
    }

    // M fragment of chunk j: mf[n][0,1] row r_lo cols c, c+1; [2,3] row r_hi.
    auto load_m = [&](float (&mf)[NT1][4], int j) {
#pragma unroll
        for (int n = 0; n < NT1; n++) {
            const int c = j * BC + n * 8 + 2 * t;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = h ? r_hi : r_lo;
                float2 m = make_float2(1.f, 1.f);
                if (M && r < N) {
                    const float *src = M + (long)r * C + c;
                    if (c_even && c + 1 < C) m = __ldg((const float2 *)src);
                    else {
                        m.x = c < C ? __ldg(src) : 0.f;
                        m.y = c + 1 < C ? __ldg(src + 1) : 0.f;
                    }
                }
                mf[n][2 * h] = m.x, mf[n][2 * h + 1] = m.y;
            }
        }
    };
    float mcur[NT1][4], mnext[NT1][4];
    load_m(mcur, 0);

    float acc[NT2][4];
#pragma unroll
    for (int n = 0; n < NT2; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] = 0.f;

    for (int j = 0; j < nchunks; j++) {
        float *As = stages + (j % STAGES) * K::STAGE_EL, *Bs = As + K::A_EL;
        cp_async_wait<STAGES - 2>();
        if (K::AT) round_tile<K::NT>(As, K::AS, BC, k1r);
        else round_tile<K::NT>(As, K::AS, k1r, BC);
        if (K::BT) round_tile<K::NT>(Bs, K::BS, K2T, BC);
        else round_tile<K::NT>(Bs, K::BS, BC, K2T);
        __syncthreads();  // chunk j visible; everyone is done with chunk j-1's stage
        if (j + STAGES - 1 < nchunks) issue_chunk(j + STAGES - 1);
        cp_async_commit();
        if (j + 1 < nchunks) load_m(mnext, j + 1);

        // GEMM1: S [16, BC] per warp = X_rows @ A_chunk
        float s[NT1][4];
#pragma unroll
        for (int n = 0; n < NT1; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] = 0.f;
#pragma unroll
        for (int ks = 0; ks < K::KS1; ks++) {
            if (ks * 8 >= k1r) break;
            const int k = ks * 8 + 2 * t;
#pragma unroll
            for (int n = 0; n < NT1; n++) {
                const int c = n * 8 + g;
                uint32_t bf[2];
                if (K::AT) {
                    float2 v = *(const float2 *)(As + c * K::AS + k);
                    bf[0] = __float_as_uint(v.x), bf[1] = __float_as_uint(v.y);
                } else {
                    bf[0] = __float_as_uint(As[k * K::AS + c]);
                    bf[1] = __float_as_uint(As[(k + 1) * K::AS + c]);
                }
                mma_tf32(s[n], xf[ks], bf);
            }
        }

        // P = S * M -> global (fp32), and in place as the A-fragments of GEMM2.
        const int c0 = j * BC;
        uint32_t pf[NT1][4];
#pragma unroll
        for (int n = 0; n < NT1; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] *= mcur[n][e];
            if (store_p) {
                const int c = c0 + n * 8 + 2 * t;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int r = h ? r_hi : r_lo;
                    if (r >= N) continue;
                    float *dst = P + (long)r * C + c;
                    if (c_even && c + 1 < C) *(float2 *)dst = make_float2(s[n][2 * h], s[n][2 * h + 1]);
                    else {
                        if (c < C) dst[0] = s[n][2 * h];
                        if (c + 1 < C) dst[1] = s[n][2 * h + 1];
                    }
                }
            }
            // accumulator (g,2t) (g,2t+1) (g+8,2t) (g+8,2t+1) -> A slots a0 (g,t') a2 (g,t'+4) a1 (g+8,t') a3
            pf[n][0] = __float_as_uint(to_tf32(s[n][0]));
            pf[n][1] = __float_as_uint(to_tf32(s[n][2]));
            pf[n][2] = __float_as_uint(to_tf32(s[n][1]));
            pf[n][3] = __float_as_uint(to_tf32(s[n][3]));
        }

        // GEMM2: Y_acc [16, K2T] += P [16, BC] @ B_chunk, B rows permuted like P's columns.
#pragma unroll
        for (int kt = 0; kt < NT1; kt++) {
            const int c = kt * 8 + 2 * t;
#pragma unroll
            for (int n = 0; n < NT2; n++) {
                const int col = n * 8 + g;
                uint32_t bf[2];
                if (K::BT) {
                    float2 v = *(const float2 *)(Bs + col * K::BS + c);
                    bf[0] = __float_as_uint(v.x), bf[1] = __float_as_uint(v.y);
                } else {
                    bf[0] = __float_as_uint(Bs[c * K::BS + col]);
                    bf[1] = __float_as_uint(Bs[(c + 1) * K::BS + col]);
                }
                mma_tf32(acc[n], pf[kt], bf);
            }
        }
#pragma unroll
        for (int n = 0; n < NT1; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) mcur[n][e] = mnext[n][e];
    }

#pragma unroll
    for (int n = 0; n < NT2; n++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = h ? r_hi : r_lo, c = k20 + n * 8 + 2 * t;
            if (r >= N) continue;
            float *dst = Y + (long)r * K2 + c;
            if (c < K2) dst[0] = acc[n][2 * h];
            if (c + 1 < K2) dst[1] = acc[n][2 * h + 1];
        }
}

template <class K>
bool launch4(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1,
             int C, int K2, cudaStream_t st) {
    if (K1 > K::K1T) return false;
    static bool attr = false;
    if (!attr) {
        if (cudaFuncSetAttribute(b2b_kernel4<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)K::SMEM) !=
            cudaSuccess)
            return false;
        attr = true;
    }
    const long nk2 = (K2 + K::K2T - 1) / K::K2T, nrow = (N + K::BM - 1) / K::BM;
    b2b_kernel4<K><<<(unsigned)(nk2 * nrow), K::NT, K::SMEM, st>>>(Y, P, X, A, M, B, N, K1, C, K2);
    return true;
}

}  // namespace b2b
