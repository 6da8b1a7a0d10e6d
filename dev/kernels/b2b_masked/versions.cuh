// The numbered versions: v0 (unfused cuBLAS) lives in harness.cu; v1.. pick a
// configuration of fused_kernel.cuh by K1 (and K2), for either layout.
#pragma once
#include "fused_kernel.cuh"

namespace b2b {

// v1: straightforward. BM=64, BC=32, no pipelining (load chunk, wait, compute).
template <bool AT, bool BT>
bool v1(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1, int C,
        int K2, cudaStream_t s) {
    if (K1 <= 64) return launch<Cfg<64, 32, 64, 128, 4, 2, 2, 4, AT, BT, 1>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    if (K1 <= 128) return launch<Cfg<64, 32, 128, 128, 4, 2, 2, 4, AT, BT, 1>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    return launch<Cfg<64, 32, 344, 128, 4, 2, 2, 4, AT, BT, 1>>(Y, P, X, A, M, B, N, K1, C, K2, s);
}

// v2: BM=128 (half the L2 re-reads of A and B), 2-stage cp.async pipeline;
// K2 > 128 takes 192-wide Y slices (2 for K2=341 instead of 3); K1 > 128 drops
// to BM=64, BC=16 to fit shared memory.
template <bool AT, bool BT>
bool v2(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1, int C,
        int K2, cudaStream_t s) {
    if (K1 <= 128 && K2 > 128) {
        if (K1 <= 64) return launch<Cfg<128, 32, 64, 192, 4, 2, 2, 4, AT, BT, 2>>(Y, P, X, A, M, B, N, K1, C, K2, s);
        return launch<Cfg<128, 32, 128, 192, 4, 2, 2, 4, AT, BT, 2>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    }
    if (K1 <= 64) return launch<Cfg<128, 32, 64, 128, 4, 2, 2, 4, AT, BT, 2>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    if (K1 <= 128) return launch<Cfg<128, 32, 128, 128, 4, 2, 2, 4, AT, BT, 2>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    return launch<Cfg<64, 16, 344, 128, 4, 2, 2, 4, AT, BT, 2>>(Y, P, X, A, M, B, N, K1, C, K2, s);
}

// v3: BM=64, BC=16, 3 stages, 112 KB of shared memory: two CTAs per SM, so one
// CTA's barriers and loads overlap the other's mma.
template <bool AT, bool BT>
bool v3(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1, int C,
        int K2, cudaStream_t s) {
    if (K1 <= 64) return launch<Cfg<64, 16, 64, 128, 4, 2, 2, 4, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    if (K1 <= 128) return launch<Cfg<64, 16, 128, 128, 4, 2, 2, 4, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    return launch<Cfg<64, 16, 344, 128, 4, 2, 2, 4, AT, BT, 2>>(Y, P, X, A, M, B, N, K1, C, K2, s);
}

}  // namespace b2b

#include "fused_kernel_v4.cuh"
namespace b2b {
// v4: X in registers, P register-to-register (fused_kernel_v4.cuh); BC=32, 3
// stages, 128-wide Y slices. K1 > 128 keeps v2's configuration.
template <bool AT, bool BT>
bool v4(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1, int C,
        int K2, cudaStream_t s) {
    if (K1 <= 64) return launch4<Cfg4<64, 32, 128, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    if (K1 <= 128) return launch4<Cfg4<128, 32, 128, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    return v2<AT, BT>(Y, P, X, A, M, B, N, K1, C, K2, s);
}
// v5: v4 with 64-wide chunks of C (half the barriers per FLOP) and, for K2 > 128,
// 192-wide Y slices (two for K2 = 341 instead of three).
template <bool AT, bool BT>
bool v5(float *Y, float *P, const float *X, const float *A, const float *M, const float *B, int N, int K1, int C,
        int K2, cudaStream_t s) {
    if (K2 > 128) {
        if (K1 <= 64) return launch4<Cfg4<64, 32, 192, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
        if (K1 <= 128) return launch4<Cfg4<128, 32, 192, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
        return v2<AT, BT>(Y, P, X, A, M, B, N, K1, C, K2, s);
    }
    if (K1 <= 64) return launch4<Cfg4<64, 64, 128, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    if (K1 <= 128) return launch4<Cfg4<128, 64, 128, AT, BT, 3>>(Y, P, X, A, M, B, N, K1, C, K2, s);
    return v2<AT, BT>(Y, P, X, A, M, B, N, K1, C, K2, s);
}
}  // namespace b2b
