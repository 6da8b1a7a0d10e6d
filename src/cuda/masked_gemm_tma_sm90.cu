// The masked TF32 product of masked_gemm_sm90.h on a persistent, warp-specialized
// schedule (masked_gemm_tma_sm90.h). Built for sm_90a only (Makefile: *_sm90.cu).
//
// Design (dev/kernels/wgmma_masked/NOTES.md, session 15): one CTA per SM walks the
// 128 x 128 output tiles (tile t, t + grid, ...; row blocks slow, so that the CTAs
// running at one time share A's row blocks in L2). A producer warpgroup, of which one
// thread loads A and B through the TMA, 32 floats of K per stage, into a ring of four
// stages, and another loads the tile's mask [128, 128] into a buffer of its own, so the
// mask lands during the tile's products instead of being waited for in its epilogue.
// Two consumer warpgroups (64 rows each) run wgmma m64n128k8 with both operands from
// shared memory, one chunk's group kept in flight while the next is issued; a stage is
// released once the group after it was issued and the one reading it finished. The
// epilogue multiplies the accumulators by the mask from shared memory and stores
// straight from the fragments; meanwhile the producer already streams the next tile's
// first stages. Operands are read as TF32 by truncation, as the cp.async kernel
// (masked_gemm_sm90.cu) and cuBLAS's sm90 TF32 kernels read them: the same products
// in the same order, so both kernels give the same sums.
#include <limits.h>
#include <stdint.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/masked_gemm_tma_sm90.h"
#include "cuda/tma_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"

#define MT_BM 128
#define MT_BN 128
#define MT_BK 32  // floats of K per stage: one 128-byte swizzle row per tile row
#define MT_STAGES 3
#define MT_CONSUMERS 256
#define MT_THREADS (MT_CONSUMERS + 128)
#define MT_BOX_BYTES (128 * 128)                    // [128 rows, 32 floats]
#define MT_STAGE_BYTES (2 * MT_BOX_BYTES)           // A's box, then B's
#define MT_MASK_BYTES (4 * MT_BOX_BYTES)            // the mask tile: four boxes of 32 columns
#define MT_BARRIERS (2 * MT_STAGES + 6)             // the rings' full / empty pairs, the two turn barriers
#define MT_SMEM_BYTES (MT_STAGES * MT_STAGE_BYTES + 2 * MT_MASK_BYTES + 1024 + 8 * MT_BARRIERS)

#ifdef WG_HAVE_WGMMA
// d [64 x 128 per warpgroup] = A (desc a) @ B^T (desc b) + (accumulate ? d : 0), one
// TF32 k8 step: a tile's first step starts its sums without an instruction zeroing d
// (which would serialize the wgmmas, C7515).
static __device__ __forceinline__ void wgmma_m64n128k8_ss(float *d, uint64_t a, uint64_t b, int accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 " WG_ACC64_REGS ", %64, %65, p, 1, 1;\n}\n"
                 : WG_ACC64(d)
                 : "l"(a), "l"(b), "r"(accumulate));
}
#endif

// The tensor maps cover A [M, K] and B [N, K] in boxes of [128 rows, 32 floats], and the
// mask [M, N] in the same boxes (unused when has_mask is false).
static __global__ void __launch_bounds__(MT_THREADS, 1)
    masked_gemm_tma_kernel(const __grid_constant__ CUtensorMap tm_a, const __grid_constant__ CUtensorMap tm_b,
                           const __grid_constant__ CUtensorMap tm_mask, bool has_mask, int M, int N, int K,
                           const float *__restrict__ aux, float *__restrict__ o_plain, float *__restrict__ o_mask,
                           float *__restrict__ o_aux) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t st0 = (raw + 1023) & ~1023u, mk0 = st0 + MT_STAGES * MT_STAGE_BYTES;
    // Item it of the A / B ring is chunk it % nk of this CTA's tile it / nk; the mask ring's
    // item j is tile j, whose stage j % 2 belongs to consumer warpgroup j % 2.
    const ring ab = {st0, MT_STAGE_BYTES, mk0 + 2 * MT_MASK_BYTES, MT_STAGES};
    const ring mk = {mk0, MT_MASK_BYTES, ab.bars + 16 * MT_STAGES, 2};
    // turn[w]: the other warpgroup is done waiting for its tile's chunks, and w may start on its next.
    const uint32_t turn0 = mk.bars + 32;
    const int tiles_n = (N + MT_BN - 1) / MT_BN, tiles = ((M + MT_BM - 1) / MT_BM) * tiles_n;
    const int nk = (K + MT_BK - 1) / MT_BK;
    const int warp_id = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) {
        ab.init(4);  // each item is one warpgroup's
        mk.init(4);
        mbar_init(turn0, 4);
        mbar_init(turn0 + 8, 4);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (warp_id >= MT_CONSUMERS / 32) {
        producer_regs();
        const int which = warp_id - MT_CONSUMERS / 32;
        if (lane != 0) return;
        if (which == 0) {  // A and B
            int it = 0;
            for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
                const int m0 = (t / tiles_n) * MT_BM, n0 = (t % tiles_n) * MT_BN;
                for (int kc = 0; kc < nk; kc++, it++) {
                    const uint32_t st = ab.acquire(it, MT_STAGE_BYTES);
                    tma_load(st, &tm_a, kc * MT_BK, m0, ab.full(it));
                    tma_load(st + MT_BOX_BYTES, &tm_b, kc * MT_BK, n0, ab.full(it));
                }
            }
        } else if (which == 1 && has_mask) {
            int j = 0;
            for (int t = blockIdx.x; t < tiles; t += gridDim.x, j++) {
                const int m0 = (t / tiles_n) * MT_BM, n0 = (t % tiles_n) * MT_BN;
                const uint32_t st = mk.acquire(j, MT_MASK_BYTES);
                for (int b = 0; b < 4; b++) tma_load(st + b * MT_BOX_BYTES, &tm_mask, n0 + 32 * b, m0, mk.full(j));
            }
        }
        return;
    }
    consumer_regs();

    // Ping-pong: warpgroup wg takes every other tile of the CTA, all 128 rows of it (two
    // m64 halves), so that one warpgroup's epilogue runs under the other's products.
    const int wg = threadIdx.x >> 7, warp = warp_id & 3;
    // Accumulator layout of m64n128: warp w holds rows 16 w .. 16 w + 15 of the half; lane
    // l holds rows l / 4 (+ 8 for i = 1), columns 8 j + 2 (l % 4) + {0, 1} as d[4 j + 2 i + {0, 1}].
    const int rl = 16 * warp + (lane >> 2), cl = 2 * (lane & 3);
    float d0[64], d1[64];  // rows 0..63 and 64..127 of the tile
    // The warpgroups take turns at their tiles' chunks (as the producer loads them): a wait on
    // a full barrier may then be at most one phase ahead of it, which its parity can tell.
    for (int j = wg, t = blockIdx.x + wg * gridDim.x; t < tiles; j += 2, t += 2 * gridDim.x) {
        const int m0 = (t / tiles_n) * MT_BM, n0 = (t % tiles_n) * MT_BN;
        if (j > 0) mbar_wait(turn0 + 8 * wg, (uint32_t)((j - 1) / 2) & 1);  // tile j - 1's turn is over
        for (int kc = 0; kc < nk; kc++) {
            const int it = j * nk + kc;
            ab.wait(it);
            const uint32_t a_tile = ab.stage(it), b_tile = ab.stage(it) + MT_BOX_BYTES;
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const uint64_t b = smem_desc(b_tile + 32 * kk);
                wgmma_m64n128k8_ss(d0, smem_desc(a_tile + 32 * kk), b, kc > 0 || kk > 0);
                wgmma_m64n128k8_ss(d1, smem_desc(a_tile + 64 * 128 + 32 * kk), b, kc > 0 || kk > 0);
            }
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            // The group of the previous chunk is done: its stage goes back to the producer.
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
            if (kc > 0) ab.release(it - 1, lane);
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(turn0 + 8 * (wg ^ 1));
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        fence_regs<64>(d0);
        fence_regs<64>(d1);
        ab.release(j * nk + nk - 1, lane);

        if (has_mask) mk.wait(j);
        const unsigned char *mask_tile = smem_raw + (mk.stage(j) - raw);
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int jn = 0; jn < MT_BN / 8; jn++)
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int r = 64 * h + rl + 8 * i, c = 8 * jn + cl, row = m0 + r, col = n0 + c;
                    const float *d = h ? d1 : d0;
                    float2 v = make_float2(d[4 * jn + 2 * i], d[4 * jn + 2 * i + 1]);
                    float2 m = make_float2(1.0f, 1.0f);
                    if (has_mask)  // box c / 32, row r, 16-byte piece (c % 32) / 4 at piece ^ r % 8
                        m = *(const float2 *)(mask_tile + (c >> 5) * MT_BOX_BYTES + r * 128 +
                                              ((((c & 31) >> 2) ^ (r & 7)) << 4) + 4 * (c & 3));
                    if (row >= M || col >= N) continue;  // N even: col + 1 < N too
                    const long long o = (long long)row * N + col;
                    if (o_plain) *(float2 *)(o_plain + o) = v;
                    if (o_mask) *(float2 *)(o_mask + o) = make_float2(v.x * m.x, v.y * m.y);
                    if (o_aux) {
                        const float2 g = __ldg((const float2 *)(aux + o));
                        *(float2 *)(o_aux + o) = make_float2(v.x * g.x, v.y * g.y);
                    }
                }
        if (has_mask) mk.release(j, lane);
    }
#endif
}

// SPD_CUDA_WGMMA_TMA=0 leaves every product to the cp.async kernel (for A/B timing).
static bool env_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WGMMA_TMA", true);
    return env;
}

// The fewest output tiles that run here. One CTA per SM walks its tiles in turn, where
// the cp.async kernel puts two CTAs on each SM at once: with few tiles per SM the walk
// is the longer one.
static int min_tiles(void) {
    static const int n =
        (int)spd_env_long_or_die("SPD_CUDA_WGMMA_TMA_MIN_TILES", 4 * spd_cuda_sm_count(), 0, INT_MAX);
    return n;
}

static bool device_ready(void) {
    static bool smem_raised = false;
    if (!spd_cuda_is_sm90()) return false;
    if (!smem_raised) {
        CUDA_CHECK(cudaFuncSetAttribute(masked_gemm_tma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        MT_SMEM_BYTES));
        smem_raised = true;
    }
    return true;
}

extern "C" bool masked_gemm_tma_ok(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                   const float *mask, const float *aux, const float *o_plain, const float *o_mask,
                                   const float *o_aux) {
    if (!env_on() || M <= 0 || N <= 0 || K <= 0) return false;
    // The TMA reads rows whose strides are multiples of 16 bytes from 16-byte aligned bases.
    if (lda % 4 || ldb % 4 || N % 4 || !spd_aligned(A, 16) || !spd_aligned(B, 16)) return false;
    if (mask && !spd_aligned(mask, 16)) return false;
    const void *mn[4] = {aux, o_plain, o_mask, o_aux};
    for (int i = 0; i < 4; i++)
        if (mn[i] && !spd_aligned(mn[i], 8)) return false;
    const long long tiles = (long long)((M + MT_BM - 1) / MT_BM) * ((N + MT_BN - 1) / MT_BN);
    return tiles >= min_tiles() && device_ready();
}

extern "C" void masked_gemm_tma(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                const float *mask, const float *aux, float *o_plain, float *o_mask, float *o_aux) {
    SPD_ASSERT(device_ready());  // also raises the kernel's shared-memory limit where ok() was not asked
    const CUtensorMap tm_a = tma_tensor_map(A, M, K, lda, MT_BM), tm_b = tma_tensor_map(B, N, K, ldb, MT_BN);
    // Without a mask the kernel never reads its map: A's stands in.
    const CUtensorMap tm_mask = mask ? tma_tensor_map(mask, M, N, N, MT_BM) : tm_a;
    const long long tiles = (long long)((M + MT_BM - 1) / MT_BM) * ((N + MT_BN - 1) / MT_BN);
    const int grid = (int)(tiles < spd_cuda_sm_count() ? tiles : spd_cuda_sm_count());
    masked_gemm_tma_kernel<<<grid, MT_THREADS, MT_SMEM_BYTES, spd_cuda_stream()>>>(
        tm_a, tm_b, tm_mask, mask != NULL, M, N, K, aux, o_plain, o_mask, o_aux);
    CUDA_CHECK_LAUNCH();
}
