// The back-to-back masked product of masked_b2b_sm90.h. Built for sm_90a only
// (Makefile: *_sm90.cu).
//
// Design (v4, dev/kernels/b2b_wgmma/NOTES.md): one CTA per 128 rows of X and 128
// columns of Y; two warpgroups of 64 rows. The CTA's X tile (K1 <= 128) stays in shared
// memory; C is walked in chunks of 32. Per chunk: S = X At_chunk^T by wgmma m64n32k8
// (both operands from shared memory), the mask multiply (and the optional N x C
// stores) on S's registers, then Y += P B_chunk by wgmma m64n128k8 with P as the
// register operand. The accumulator holds columns 2t, 2t + 1 of each 8 where the
// register operand wants t, t + 4; the weight copy's column order (0 2 4 6 1 3 5 7)
// absorbs that, so no shuffles. X, At and the weight copy are read as TF32 by
// truncation (as cuBLAS's sm90 TF32 kernels read them); P and the copy are rounded.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/masked_b2b_sm90.h"
#include "cuda/wgmma_sm90.cuh"

#define BB_BM 128      // rows of X per CTA (two warpgroups of 64)
#define BB_BC 32       // C per chunk
#define BB_BN 128      // columns of Y per CTA
#define BB_MAX_K1 128  // the X tile and the At chunk hold K1 <= 128: four 128-byte swizzle rows
#define BB_THREADS 256
#define BB_STAGES 3
#define BB_SUB 128                            // bytes of one swizzled row: 32 floats
#define BB_X_BYTES (BB_BM * BB_MAX_K1 * 4)    // 64 KB: [128 rows] x 4 sub-tiles
#define BB_AT_BYTES (BB_BC * BB_MAX_K1 * 4)   // 16 KB: [32 rows] x 4 sub-tiles
#define BB_BT_BYTES (BB_BN * BB_BC * 4)       // 16 KB: [128 rows] x 1 sub-tile
#define BB_MASK_BYTES (BB_THREADS * BB_BC / 8 * 2 * 8)  // 16 KB: each thread's 8 float2 of one chunk's mask
#define BB_STAGE_BYTES (BB_AT_BYTES + BB_BT_BYTES + BB_MASK_BYTES)
#define BB_SMEM_BYTES (BB_X_BYTES + BB_STAGES * BB_STAGE_BYTES + 1024)  // + alignment to the 1024-byte swizzle atom

#ifdef WG_HAVE_WGMMA
// S [64 x 32 per warpgroup] += A (desc a) @ B^T (desc b), one k8 step.
static __device__ __forceinline__ void wgmma_m64n32k8(float *d, uint64_t a, uint64_t b) {
    WG_WGMMA_M64N32_SS("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32", "1, 1, 1", d, a, b);
}

// Y [64 x 128 per warpgroup] += P (registers) @ B^T (desc b), one k8 step.
static __device__ __forceinline__ void wgmma_m64n128k8_rs(float *d, float a0, float a1, float a2, float a3,
                                                          uint64_t b) {
    WG_WGMMA_M64N128_RS("wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32", "1, 1, 1", d, __float_as_uint(a0),
                        __float_as_uint(a1), __float_as_uint(a2), __float_as_uint(a3), b);
}

static __device__ __forceinline__ float to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
}

// ROWS x 32 floats of a row-major operand (rows row0.., columns k0..k0 + 31) into a
// swizzled sub-tile: 16-byte piece c of row r lands at piece c ^ (r % 8). Rows >= rows
// and columns >= K are zero-filled (K a multiple of 4).
template <int ROWS>
static __device__ __forceinline__ void load_sub(uint32_t tile, const float *src, int ld, int row0, int rows, int k0,
                                                int K) {
    // The thread index read anew (volatile): otherwise every per-thread address of every
    // load in the main loop is kept in registers across it, and the kernel spills.
    uint32_t tid;
    asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(tid));
#pragma unroll
    for (int i = 0; i < ROWS * 8 / BB_THREADS; i++) {
        const int q = (int)tid + i * BB_THREADS, r = q >> 3, c = q & 7;
        const int row = row0 + r, k = k0 + 4 * c;
        const bool valid = row < rows && k < K;
        const float *p = valid ? src + (long long)row * ld + k : src;
        cp_async16(tile + r * BB_SUB + ((c ^ (r & 7)) << 4), p, valid);
    }
}
#endif

// NK1: K1's 32-float sub-tiles (1 to 4), fixed at compile time so that the first
// product's steps unroll and its accumulators stay in place. EXTRA: o_plain or o_aux
// may be asked for (the variant without them has the registers not to spill).
//
// Schedule per warpgroup, iteration c: GEMM1 of chunk c + 1 and GEMM2 of chunk c are
// issued back to back; once GEMM1 is done, chunk c + 1's mask pass runs on its S while
// the tensor cores work through GEMM2 (S in two register buffers, sa / sb). A ring of
// three stages holds one chunk each (At, Bt and the mask); chunk c + 2 loads during
// iteration c, so every load has a whole iteration to land.
template <int NK1, bool EXTRA>
static __global__ void __launch_bounds__(BB_THREADS, 1)
    masked_b2b_kernel(int M, int C, int K1, int K2, const float *__restrict__ X, int ldx, const float *__restrict__ At,
                      int lda, const float *__restrict__ Bt, int ldb, const float *__restrict__ mask,
                      const float *__restrict__ aux, float *__restrict__ o_plain, float *__restrict__ o_mask,
                      float *__restrict__ o_aux, float *__restrict__ Y, int ldy, float beta) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t xs = (raw + 1023) & ~1023u, st0 = xs + BB_X_BYTES;
    const int m0 = blockIdx.y * BB_BM, n0 = blockIdx.x * BB_BN;
    const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int nch = (C + BB_BC - 1) / BB_BC;
    // The N x C outputs come from the first column tile of Y only (the others recompute S).
    if (blockIdx.x != 0) o_plain = o_mask = o_aux = NULL;
    // Accumulator layout of m64nN: warp w of the warpgroup holds rows 16 w .. 16 w + 15;
    // lane l holds rows l / 4 (+ 8 for i = 1), columns 8 j + 2 (l % 4) + {0, 1} as
    // d[4 j + 2 i + {0, 1}].
    const int row_a = m0 + 64 * wg + 16 * warp + (lane >> 2), col_a = 2 * (lane & 3);

    // Chunk ch into stage ch % 3 (nothing past the last chunk), as one cp.async group:
    // At rows ch * BB_BC.., Bt rows n0.. (columns ch * BB_BC..), and this thread's mask
    // values [j][i] (rows row_a + 8 i, columns ch * BB_BC + 8 j + col_a + {0, 1}; zero
    // outside) into its own slots [k][thread] (conflict-free, and read back by this
    // thread only: no barrier).
    auto load_chunk = [&](int ch) {
        if (ch < nch) {
            const uint32_t st = st0 + (ch % BB_STAGES) * BB_STAGE_BYTES;
#pragma unroll
            for (int s = 0; s < NK1; s++)
                load_sub<BB_BC>(st + s * (BB_BC * BB_SUB), At, lda, ch * BB_BC, C, 32 * s, K1);
            load_sub<BB_BN>(st + BB_AT_BYTES, Bt, ldb, n0, K2, ch * BB_BC, ldb);
            const uint32_t slot = st + BB_AT_BYTES + BB_BT_BYTES + threadIdx.x * 8;
#pragma unroll
            for (int j = 0; j < BB_BC / 8; j++)
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int row = row_a + 8 * i, col = ch * BB_BC + 8 * j + col_a;
                    const bool valid = row < M && col < C;
                    cp_async8(slot + (2 * j + i) * (BB_THREADS * 8), valid ? mask + (long long)row * C + col : mask,
                              valid);
                }
        }
        asm volatile("cp.async.commit_group;\n" ::);  // an empty group past the end keeps the counts uniform
    };
    // Descriptors as a base plus an offset (the address field is the low 14 bits, >> 4,
    // with no carry out inside 228 KB): computed whole at each use, ptxas kept dozens of
    // them live and ran out of registers.
    const uint64_t x_desc = smem_desc(xs + wg * (64 * BB_SUB)), st_desc = smem_desc(st0);
    // S = X At_chunk^T from chunk ch's stage (issued and committed, not waited for).
    auto gemm1 = [&](float *S, int ch) {
        const uint64_t at_desc = st_desc + (((ch % BB_STAGES) * BB_STAGE_BYTES) >> 4);
#pragma unroll
        for (int i = 0; i < 16; i++) S[i] = 0.0f;
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int s = 0; s < NK1; s++)
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wgmma_m64n32k8(S, x_desc + ((s * (BB_BM * BB_SUB) + 32 * kk) >> 4),
                               at_desc + ((s * (BB_BC * BB_SUB) + 32 * kk) >> 4));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    float y[64];
#pragma unroll
    for (int i = 0; i < 64; i++) y[i] = 0.0f;
    // Y += P B_chunk from chunk ch's stage: k8 step kk is P's column block kk, in the register
    // order (row l/4, slot l%4) = column 2 (l%4), (row l/4, slot l%4 + 4) = column 2 (l%4) + 1.
    auto gemm2 = [&](const float *P, int ch) {
        const uint64_t bt_desc = st_desc + (((ch % BB_STAGES) * BB_STAGE_BYTES + BB_AT_BYTES) >> 4);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < BB_BC / 8; kk++)
            wgmma_m64n128k8_rs(y, P[4 * kk], P[4 * kk + 2], P[4 * kk + 1], P[4 * kk + 3], bt_desc + ((32 * kk) >> 4));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    // S -> P in place (after the N x C outputs that are asked for), chunk ch.
    auto mask_pass = [&](float *S, int ch) {
        const float2 *slot = (const float2 *)(smem_raw + (st0 - raw) + (ch % BB_STAGES) * BB_STAGE_BYTES +
                                              BB_AT_BYTES + BB_BT_BYTES) +
                             threadIdx.x;
#pragma unroll
        for (int j = 0; j < BB_BC / 8; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float *v = S + 4 * j + 2 * i;
                const int row = row_a + 8 * i, col = ch * BB_BC + 8 * j + col_a;
                const float2 m = slot[(2 * j + i) * BB_THREADS];
                if ((o_mask || (EXTRA && (o_plain || o_aux))) && row < M && col < C) {
                    const long long o = (long long)row * C + col;
                    if (EXTRA && o_plain) *(float2 *)(o_plain + o) = make_float2(v[0], v[1]);
                    if (EXTRA && o_aux) {
                        const float2 g = __ldg((const float2 *)(aux + o));
                        *(float2 *)(o_aux + o) = make_float2(v[0] * g.x, v[1] * g.y);
                    }
                    if (o_mask) *(float2 *)(o_mask + o) = make_float2(v[0] * m.x, v[1] * m.y);
                }
                // P rounded to TF32 (not truncated: a truncated operand is biased towards
                // zero, and the bias adds up in the gradients' sums over tokens).
                v[0] = to_tf32(v[0] * m.x);
                v[1] = to_tf32(v[1] * m.y);
            }
    };

    // Prologue: X with chunk 0, then chunk 1; S of chunk 0 and its mask pass.
#pragma unroll
    for (int s = 0; s < NK1; s++) load_sub<BB_BM>(xs + s * (BB_BM * BB_SUB), X, ldx, m0, M, 32 * s, K1);
    load_chunk(0);
    load_chunk(1);
    asm volatile("cp.async.wait_group 1;\n" ::);
    // cp.async wrote through the generic proxy; the tensor cores read through the async one.
    asm volatile("fence.proxy.async.shared::cta;\n" ::);
    __syncthreads();
    float sa[16], sb[16];
    gemm1(sa, 0);
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    mask_pass(sa, 0);

    // Iteration c: P of chunk c is in cur; nxt receives chunk c + 1's.
    auto iteration = [&](int c, float *cur, float *nxt) {
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");  // GEMM2 of c - 1: nxt is free
        asm volatile("cp.async.wait_group 0;\n" ::);                        // chunk c + 1 has landed
        asm volatile("fence.proxy.async.shared::cta;\n" ::);
        __syncthreads();  // every warpgroup is done with chunk c - 1: its stage takes c + 2
        load_chunk(c + 2);
        gemm1(nxt, c + 1);  // past the last chunk: stale data, never used (no GEMM2 follows, stores guarded)
        gemm2(cur, c);
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // GEMM1 of c + 1 (committed first)
        mask_pass(nxt, c + 1);
    };
    for (int c = 0; c < nch; c += 2) {
        iteration(c, sa, sb);
        if (c + 1 < nch) iteration(c + 1, sb, sa);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");

#pragma unroll
    for (int j = 0; j < BB_BN / 8; j++)
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int row = row_a + 8 * i, col = n0 + 8 * j + col_a + e;
                if (row >= M || col >= K2) continue;
                float *o = Y + (long long)row * ldy + col;
                *o = beta == 0.0f ? y[4 * j + 2 * i + e] : beta * *o + y[4 * j + 2 * i + e];
            }
#endif
}

// Off unless SPD_CUDA_B2B=1: it does not yet beat masked_gemm_sm90 + cuBLAS (NOTES.md).
static bool env_on(void) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("SPD_CUDA_B2B");
        env = e && strcmp(e, "1") == 0;
    }
    return env;
}

// The widest Y that runs here: each 128 columns past the first recompute S (and reread the mask).
static int max_k2(void) {
    static int k2 = -1;
    if (k2 < 0) {
        const char *e = getenv("SPD_CUDA_B2B_MAX_K2");
        k2 = e && *e ? atoi(e) : BB_BN;
    }
    return k2;
}

// The fewest rows that run here: one CTA per 128 rows walks all of C, so a short X
// leaves SMs idle and the two-kernel path (masked_gemm_sm90 + cuBLAS) wins.
static int min_m(void) {
    static int m = -1;
    if (m < 0) {
        const char *e = getenv("SPD_CUDA_B2B_MIN_M");
        m = e && *e ? atoi(e) : 8192;
    }
    return m;
}

typedef void (*b2b_kernel_fn)(int, int, int, int, const float *, int, const float *, int, const float *, int,
                              const float *, const float *, float *, float *, float *, float *, int, float);
// [EXTRA][NK1 - 1]
static const b2b_kernel_fn kernels[8] = {masked_b2b_kernel<1, false>, masked_b2b_kernel<2, false>,
                                         masked_b2b_kernel<3, false>, masked_b2b_kernel<4, false>,
                                         masked_b2b_kernel<1, true>,  masked_b2b_kernel<2, true>,
                                         masked_b2b_kernel<3, true>,  masked_b2b_kernel<4, true>};

// On an sm_90 device, with the kernels' shared-memory limit raised (once).
static bool device_is_sm90(void) {
    static bool smem_raised = false;
    if (!spd_cuda_is_sm90()) return false;
    if (!smem_raised) {
        for (int i = 0; i < 8; i++)
            CUDA_CHECK(cudaFuncSetAttribute(kernels[i], cudaFuncAttributeMaxDynamicSharedMemorySize, BB_SMEM_BYTES));
        smem_raised = true;
    }
    return true;
}

static bool aligned(const void *p, unsigned bytes) { return (uintptr_t)p % bytes == 0; }

extern "C" bool masked_b2b_sm90_ok(int M, int C, int K1, int K2, const float *X, int ldx, const float *mask,
                                   const float *aux, const float *o_plain, const float *o_mask, const float *o_aux) {
    if (!env_on() || spd_cuda_mode_get() != SPD_CUDA_FUSED || spd_cuda_matmul_precision() != SPD_MATMUL_TF32)
        return false;
    if (M <= 0 || M < min_m() || C <= 0 || K1 <= 0 || K2 <= 0 || K1 > BB_MAX_K1 || K1 % 4 || ldx % 4 || C % 2 ||
        K2 > max_k2())
        return false;
    if (!mask || !aligned(X, 16)) return false;
    const void *mc[5] = {mask, aux, o_plain, o_mask, o_aux};
    for (int i = 0; i < 5; i++)
        if (mc[i] && !aligned(mc[i], 8)) return false;
    return device_is_sm90();
}

extern "C" int masked_b2b_ldb(int C) { return (C + 7) & ~7; }

extern "C" void masked_b2b_sm90(int M, int C, int K1, int K2, const float *X, int ldx, const float *At, int lda,
                                const float *Bt, const float *mask, const float *aux, float *o_plain, float *o_mask,
                                float *o_aux, float *Y, int ldy, float beta) {
    SPD_ASSERT(lda % 4 == 0 && aligned(At, 16) && aligned(Bt, 16) && (beta == 0.0f || beta == 1.0f));
    SPD_ASSERT(!o_aux || aux);
    const dim3 grid((unsigned)((K2 + BB_BN - 1) / BB_BN), (unsigned)((M + BB_BM - 1) / BB_BM));
    const b2b_kernel_fn kernel = kernels[(o_plain || o_aux ? 4 : 0) + (K1 + 31) / 32 - 1];
    kernel<<<grid, BB_THREADS, BB_SMEM_BYTES, spd_cuda_stream()>>>(M, C, K1, K2, X, ldx, At, lda, Bt, masked_b2b_ldb(C),
                                                                   mask, aux, o_plain, o_mask, o_aux, Y, ldy, beta);
    CUDA_CHECK_LAUNCH();
}

// Bt [n, q] for q < ldb: B [c, n] with c = the column that slot q % 8 of its group holds.
static __global__ void b2b_weight_kernel(float *Bt, int ldb, const float *src, int lds, int C, int K2, int c_major) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)K2 * ldb) return;
    const int n = (int)(i / ldb), q = (int)(i % ldb), t = q & 7;
    const int c = (q & ~7) + (t < 4 ? 2 * t : 2 * (t - 4) + 1);
    const float v = c >= C ? 0.0f : c_major ? src[(long long)c * lds + n] : src[(long long)n * lds + c];
    uint32_t r;  // rounded to TF32 here, once, rather than truncated by the tensor cores
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    Bt[i] = __uint_as_float(r);
}

extern "C" void masked_b2b_weight_cuda(float *Bt, const float *src, int lds, int C, int K2, bool c_major) {
    const long long n = (long long)K2 * masked_b2b_ldb(C);
    if (n <= 0) return;
    b2b_weight_kernel<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(Bt, masked_b2b_ldb(C), src, lds, C, K2,
                                                                             c_major);
    CUDA_CHECK_LAUNCH();
}
