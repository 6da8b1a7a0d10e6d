// The weight-gradient product of wgrad_stored_sm90.h. Built for sm_90a only
// (Makefile: *_sm90.cu).
//
// Design (dev/kernels/wgrad_stored/NOTES.md): one CTA per block of 128 components by 176
// columns of B and range of tokens, the token range split S ways so that about one CTA
// runs per SM (the CTAs of one split walk the same tokens at about the same time, so B^T's
// tiles come from L2 after the first); each writes a partial block, and a fixed-order
// reduction adds the S of each block onto D. One producer thread streams each
// 32-token chunk through the TMA into a ring of stages: A [32 tokens, 128 components] as
// four swizzled boxes, and Bt [176, 32 tokens] of the transposed copy of B (made first,
// rounded to TF32). Two consumer warpgroups, 64 components each, read their A^T fragments
// from the stage (rounded to TF32) and run acc [64, 176] += A^T_chunk Bt_chunk^T as four
// wgmma m64n176k8 with A from registers; the fragments of the next chunk are read while
// this chunk's wgmmas run (and the other warpgroup's fill the wait for them).
#include <limits.h>
#include <stdint.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"
#include "cuda/masked_gemm_sm90.h"
#include "cuda/tma_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"
#include "cuda/wgrad_stored_sm90.h"

#define WS_BC 128  // components per CTA: two consumer warpgroups of 64
#define WS_BQ 176  // columns of B per CTA: 88 accumulators per consumer thread
#define WS_BT 32   // tokens per chunk
#define WS_MAX_Q 352
#define WS_CONSUMERS 256
#define WS_THREADS (WS_CONSUMERS + 128)  // + a producer warpgroup, one thread of which loads
#define WS_STAGES 5
#define WS_A_BYTES (4 * 4096)                      // A's chunk: four [32, 32] boxes
#define WS_STAGE_BYTES (WS_A_BYTES + WS_BQ * 128)  // + Bt's chunk: 176 rows of 32 floats
#define WS_SMEM_BYTES (WS_STAGES * WS_STAGE_BYTES + 1024 + 16 * WS_STAGES)

// Split sp of S takes chunks [sp T / S, (sp + 1) T / S) of the T token chunks.
static __device__ __forceinline__ int split_first(int sp, int S, int T) { return (int)((long long)sp * T / S); }

// Grid (component blocks nc, column blocks nq, splits S). part: [S, nc * 128, nq * 176]
// partial blocks, or [S, nq * 176, nc * 128] when transposed (D's layout either way, so
// that the reduction reads and writes rows).
static __global__ void __launch_bounds__(WS_THREADS, 1)
    wgrad_stored_kernel(const __grid_constant__ CUtensorMap tm_a, const __grid_constant__ CUtensorMap tm_bt,
                        int chunks, float *__restrict__ part, bool transposed) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t st0 = (raw + 1023) & ~1023u;
    const ring r = {st0, WS_STAGE_BYTES, st0 + WS_STAGES * WS_STAGE_BYTES, WS_STAGES};
    const int c0 = blockIdx.x * WS_BC, q0 = blockIdx.y * WS_BQ;
    const int t0 = split_first(blockIdx.z, gridDim.z, chunks);
    const int nt = split_first(blockIdx.z + 1, gridDim.z, chunks) - t0;
    const int warp_id = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) {
        r.init(WS_CONSUMERS / 32);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (warp_id >= WS_CONSUMERS / 32) {
        producer_regs();
        if (warp_id != WS_CONSUMERS / 32 || lane != 0) return;
        for (int it = 0; it < nt; it++) {
            const int tok0 = (t0 + it) * WS_BT;
            const uint32_t st = r.acquire(it, WS_STAGE_BYTES), bar = r.full(it);
            for (int b = 0; b < 4; b++) tma_load(st + b * 4096, &tm_a, c0 + 32 * b, tok0, bar);
            tma_load(st + WS_A_BYTES, &tm_bt, tok0, q0, bar);
        }
        return;
    }
    consumer_regs();
    const int wg = threadIdx.x >> 7, warp = warp_id & 3, g = lane >> 2, t = lane & 3;
    // Fragment q of k8 step kk: A^T's row (component) 64 wg + 16 warp + g (+ 8 for odd q),
    // column (token) 8 kk + t (+ 4 for q >= 2); a step of 8 tokens is 8 box rows, 1024 bytes
    // further with the same swizzle.
    const int cl = 64 * wg + 16 * warp + g;
    uint32_t f_off[4];
#pragma unroll
    for (int q = 0; q < 4; q++) f_off[q] = tma_box_offset(t + 4 * (q >> 1), cl + 8 * (q & 1));
    float fa[16], fb[16], acc[WS_BQ / 2];  // acc first written by its wgmma (scale-d 0)
    auto load_frags = [&](float *f, int it) {
        const unsigned char *st = smem_raw + (r.stage(it) - raw);
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
#pragma unroll
            for (int q = 0; q < 4; q++) f[4 * kk + q] = to_tf32(*(const float *)(st + f_off[q] + 1024 * kk));
    };
    auto mma = [&](const float *f, int it) {
        const uint64_t desc = smem_desc(r.stage(it) + WS_A_BYTES);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wgmma_acc_rs<WS_BQ>(acc, f[4 * kk], f[4 * kk + 1], f[4 * kk + 2], f[4 * kk + 3], desc + ((32 * kk) >> 4),
                             it > 0 || kk > 0);
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    // The next chunk's fragments are read while this chunk's wgmmas run, and used after
    // they finish (a register defined while a wgmma that reads it is in flight would make
    // ptxas serialize every wgmma, C7513).
    auto iteration = [&](int it, const float *f, float *next) {
        mma(f, it);
        if (it + 1 < nt) {
            r.wait(it + 1);
            fence_regs<16>(next);
            load_frags(next, it + 1);
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        r.release(it, lane);
    };
    r.wait(0);  // every split has a chunk (S <= chunks)
    load_frags(fa, 0);
    for (int it = 0; it < nt; it += 2) {
        iteration(it, fa, fb);
        if (it + 1 < nt) iteration(it + 1, fb, fa);
    }
    fence_regs<WS_BQ / 2>(acc);
    // acc: row (component) cl (+ 8 for i = 1), column 8 j + 2 t (+ 1) in acc[4 j + 2 i (+ 1)].
    const long long pc = (long long)gridDim.x * WS_BC, pq = (long long)gridDim.y * WS_BQ;
    float *blk = part + (long long)blockIdx.z * pc * pq;
#pragma unroll
    for (int j = 0; j < WS_BQ / 8; j++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const long long c = c0 + cl + 8 * i, q = q0 + 8 * j + 2 * t;
            const float v0 = acc[4 * j + 2 * i], v1 = acc[4 * j + 2 * i + 1];
            if (transposed) {
                blk[q * pc + c] = v0;
                blk[(q + 1) * pc + c] = v1;
            } else {
                *(float2 *)(blk + c * pq + q) = make_float2(v0, v1);
            }
        }
#endif
}

// SPD_CUDA_WGRAD_STORED=0 turns it off (for A/B timing against cuBLAS).
static bool env_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WGRAD_STORED", true);
    return env;
}

static int min_n(void) {
    static const int n = (int)spd_env_long_or_die("SPD_CUDA_WGRAD_STORED_MIN_N", 4096, 0, INT_MAX);
    return n;
}

static bool device_is_sm90(void) {
    static bool smem_raised = false;
    if (!spd_cuda_is_sm90()) return false;
    if (!smem_raised) {
        CUDA_CHECK(
            cudaFuncSetAttribute(wgrad_stored_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, WS_SMEM_BYTES));
        smem_raised = true;
    }
    return true;
}

extern "C" bool wgrad_stored_sm90_ok(int N, int C, int Q, const float *A) {
    if (!env_on() || spd_cuda_mode_get() != SPD_CUDA_FUSED || spd_cuda_matmul_precision() != SPD_MATMUL_TF32)
        return false;
    // Q <= 128: cuBLAS's product is as fast or faster (dev/kernels/wgrad_stored/NOTES.md).
    if (N <= 0 || N < min_n() || C <= 0 || C % 4 || Q <= 128 || Q > WS_MAX_Q || !spd_aligned(A, 16)) return false;
    return device_is_sm90();
}

extern "C" void wgrad_stored_sm90(int N, int C, int Q, const float *A, const float *B, int ldb, float *D,
                                  bool transposed, float beta) {
    SPD_ASSERT(C % 4 == 0 && spd_aligned(A, 16) && Q >= 1 && Q <= WS_MAX_Q && ldb >= Q);
    SPD_ASSERT(beta == 0.0f || beta == 1.0f);
    SPD_ASSERT(device_is_sm90());  // also raises the kernels' shared-memory limit where ok() was not asked
    cudaStream_t st = spd_cuda_stream();
    const int nc = (C + WS_BC - 1) / WS_BC, nq = (Q + WS_BQ - 1) / WS_BQ, chunks = (N + WS_BT - 1) / WS_BT;
    // About one CTA per SM (shared memory and registers): the tokens split S ways.
    int S = spd_cuda_sm_count() / (nc * nq);
    if (S > chunks) S = chunks;
    if (S < 1) S = 1;
    const long long pc = (long long)nc * WS_BC, pq = (long long)nq * WS_BQ;
    const int ldt = (N + 3) & ~3;  // the TMA's row strides are multiples of 16 bytes
    float *part = NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&part, (size_t)(S * pc * pq + (long long)Q * ldt) * sizeof(float), st));
    float *Bt = part + S * pc * pq;
    transpose_pad_tf32_cuda(Bt, ldt, B, ldb, N, Q);
    const CUtensorMap tm_a = tma_tensor_map(A, N, C, C, WS_BT), tm_bt = tma_tensor_map(Bt, Q, ldt, ldt, WS_BQ);
    wgrad_stored_kernel<<<dim3((unsigned)nc, (unsigned)nq, (unsigned)S), WS_THREADS, WS_SMEM_BYTES, st>>>(
        tm_a, tm_bt, chunks, part, transposed);
    CUDA_CHECK_LAUNCH();
    // D's rows in the partial blocks: [S, pc, pq], or [S, pq, pc] when transposed.
    const int rows = transposed ? Q : C, cols = transposed ? C : Q;
    spd_cuda_splitk_reduce(D, cols, part, (int)(transposed ? pc : pq), pc * pq, S, rows, cols, 1, beta);
    CUDA_CHECK(cudaFreeAsync(part, st));
}
