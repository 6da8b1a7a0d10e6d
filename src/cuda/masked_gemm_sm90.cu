// The masked TF32 product of masked_gemm_sm90.h on wgmma. Built for sm_90a only
// (Makefile: *_sm90.cu), so the kernel exists only where the instructions do.
//
// Design (dev/kernels/wgmma_masked/NOTES.md): a 128 x 128 output tile per CTA, two
// warpgroups of 64 x 128 (wgmma m64n128k8, both operands from shared memory, K-major
// as TF32 requires), K in chunks of 32 floats (one 128-byte row per tile row, stored
// with the 128-byte swizzle that the wgmma descriptors describe), loaded with cp.async
// three chunks deep; 96 KB of shared memory so that two CTAs share an SM and one's
// epilogue (the mask read and the stores: the bulk of the bytes) overlaps the
// other's products. Operands are read as TF32 by truncation, as cuBLAS's sm90
// TF32 kernels read them.
#include <stdint.h>

#include <cuda_bf16.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"
#include "cuda/masked_gemm_sm90.h"
#include "cuda/wgmma_sm90.cuh"

#define MG_BM 128
#define MG_BN 128
#define MG_ROW_BYTES 128  // one K chunk per tile row: one 128-byte swizzle row (32 floats, 64 bf16)
#define MG_STAGES 3
#define MG_THREADS 256
#define MG_TILE_BYTES (MG_BM * MG_ROW_BYTES)  // 16 KB, A and B tiles alike (MG_BM == MG_BN)
#define MG_STAGE_BYTES (2 * MG_TILE_BYTES)
#define MG_SMEM_BYTES (MG_STAGES * MG_STAGE_BYTES + 1024)  // + alignment to the 1024-byte swizzle atom
#define MG_MAX_K 512

#ifdef WG_HAVE_WGMMA
// d [64 x 128 per warpgroup] += A (desc a) @ B^T (desc b), one k8 step.
static __device__ __forceinline__ void wgmma_m64n128k8(float *d, uint64_t a, uint64_t b) {
    WG_WGMMA_M64N128_SS("wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32", "1, 1, 1", d, a, b);
}

// The same with bf16 operands, one k16 step (also 32 bytes of each row); no transposes.
static __device__ __forceinline__ void wgmma_m64n128k16_bf16(float *d, uint64_t a, uint64_t b) {
    WG_WGMMA_M64N128_SS("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", "1, 1, 1, 0, 0", d, a, b);
}

// One K chunk of a [128, K] row-major operand (rows from row0, columns from k0) into a
// swizzled tile: 16-byte piece c of tile row r lands at piece c ^ (r % 8) of that row.
// Rows >= rows and columns >= K are zero-filled.
template <typename T>
static __device__ __forceinline__ void load_tile(uint32_t tile, const T *src, int ld, int row0, int rows, int k0,
                                                 int K) {
    constexpr int per_piece = 16 / (int)sizeof(T);
#pragma unroll
    for (int i = 0; i < MG_BM * MG_ROW_BYTES / 16 / MG_THREADS; i++) {
        const int q = threadIdx.x + i * MG_THREADS, r = q >> 3, c = q & 7;
        const int row = row0 + r, k = k0 + per_piece * c;
        const bool valid = row < rows && k < K;
        const T *p = valid ? src + (long long)row * ld + k : src;
        cp_async16(tile + r * 128 + ((c ^ (r & 7)) << 4), p, valid);
    }
}

// The same for a float operand whose rows need not be 16-byte aligned (any lda, K): four
// 4-byte copies per piece.
static __device__ __forceinline__ void load_tile4(uint32_t tile, const float *src, int ld, int row0, int rows,
                                                  int k0, int K) {
#pragma unroll
    for (int i = 0; i < MG_BM * MG_ROW_BYTES / 16 / MG_THREADS; i++) {
        const int q = threadIdx.x + i * MG_THREADS, r = q >> 3, c = q & 7, row = row0 + r;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int k = k0 + 4 * c + e;
            const bool valid = row < rows && k < K;
            const float *p = valid ? src + (long long)row * ld + k : src;
            const uint32_t dst = tile + r * 128 + ((c ^ (r & 7)) << 4) + 4 * e;
            asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(p), "r"(valid ? 4 : 0));
        }
    }
}
#endif

// The epilogues: straight from the fragments (float2 stores), staged through shared
// memory with float4 stores (N % 4 == 0, 16-byte rows), or staged with one float per lane
// and store, consecutive lanes on consecutive columns (o_plain only, rows at any
// alignment: the 4019-wide logits).
#define MG_EPI_FRAGMENTS 0
#define MG_EPI_STAGED 1
#define MG_EPI_SCALAR 2

// The staged epilogue's tile: 128 rows of 136 floats (8 mod 32 banks: the float2 writes
// of a fragment's 8 rows x 4 lanes fill 32 banks per half warp), in the pipeline's memory.
#define MG_STAGE_LD 136

// o_mask [i] = v * m, as float or rounded to bf16.
static __device__ __forceinline__ void store2(float *o, float x, float y) { *(float2 *)o = make_float2(x, y); }
static __device__ __forceinline__ void store2(__nv_bfloat16 *o, float x, float y) {
    *(__nv_bfloat162 *)o = __floats2bfloat162_rn(x, y);
}
static __device__ __forceinline__ void store4(float *o, float4 v) { *(float4 *)o = v; }
static __device__ __forceinline__ void store4(__nv_bfloat16 *o, float4 v) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
    *(uint2 *)o = make_uint2(*(const uint32_t *)&lo, *(const uint32_t *)&hi);
}

// T: the operands' type (float read as TF32, or bf16) and o_mask's.
// A4: A read by load_tile4 (float only).
template <typename T, int EPI, bool A4>
static __global__ void __launch_bounds__(MG_THREADS, 2)
    masked_gemm_kernel(int M, int N, int K, const T *__restrict__ A, int lda, const T *__restrict__ B, int ldb,
                       const float *__restrict__ mask, const float *__restrict__ aux, float *__restrict__ o_plain,
                       T *__restrict__ o_mask, float *__restrict__ o_aux) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t smem = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023) & ~1023u;
    const int m0 = blockIdx.y * MG_BM, n0 = blockIdx.x * MG_BN;
    const int wg = threadIdx.x >> 7;  // warpgroup: rows 64 wg .. 64 wg + 63 of the tile
    constexpr int BK = MG_ROW_BYTES / (int)sizeof(T);  // K per chunk
    const int nk = (K + BK - 1) / BK;

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; i++) d[i] = 0.0f;

#pragma unroll
    for (int s = 0; s < MG_STAGES - 1; s++) {
        if (s < nk) {
            if constexpr (A4)
                load_tile4(smem + s * MG_STAGE_BYTES, A, lda, m0, M, s * BK, K);
            else
                load_tile(smem + s * MG_STAGE_BYTES, A, lda, m0, M, s * BK, K);
            load_tile(smem + s * MG_STAGE_BYTES + MG_TILE_BYTES, B, ldb, n0, N, s * BK, K);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    }
    for (int kt = 0; kt < nk; kt++) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(MG_STAGES - 2));
        // cp.async wrote through the generic proxy; the tensor cores read through the async one.
        asm volatile("fence.proxy.async.shared::cta;\n" ::);
        __syncthreads();
        const int next = kt + MG_STAGES - 1;  // its stage was read at kt - 1, finished by every warpgroup
        if (next < nk) {
            const uint32_t st = smem + (next % MG_STAGES) * MG_STAGE_BYTES;
            if constexpr (A4)
                load_tile4(st, A, lda, m0, M, next * BK, K);
            else
                load_tile(st, A, lda, m0, M, next * BK, K);
            load_tile(st + MG_TILE_BYTES, B, ldb, n0, N, next * BK, K);
        }
        asm volatile("cp.async.commit_group;\n" ::);
        const uint32_t a_tile = smem + (kt % MG_STAGES) * MG_STAGE_BYTES + wg * (64 * 128);
        const uint32_t b_tile = smem + (kt % MG_STAGES) * MG_STAGE_BYTES + MG_TILE_BYTES;
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {  // k8 (TF32) / k16 (bf16) steps: 32 bytes further along the swizzled rows
            if constexpr (sizeof(T) == 4)
                wgmma_m64n128k8(d, smem_desc(a_tile + 32 * kk), smem_desc(b_tile + 32 * kk));
            else
                wgmma_m64n128k16_bf16(d, smem_desc(a_tile + 32 * kk), smem_desc(b_tile + 32 * kk));
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    }

    // Epilogue. Accumulator layout of m64nN: warp w of the warpgroup holds rows 16 w ..
    // 16 w + 15; lane l holds rows l / 4 and l / 4 + 8, columns 8 j + 2 (l % 4) + {0, 1}
    // as d[4 j + 2 i + {0, 1}] for row half i.
    const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    if (EPI != MG_EPI_FRAGMENTS) {
        // Through shared memory, so that each warp reads and writes whole 512-byte row
        // pieces with float4 (the fragment layout gives 32-byte pieces of 8 rows: 4x the
        // memory instructions for the same bytes). Needs N % 4 == 0 and 16-byte rows.
        asm volatile("cp.async.wait_all;\n" ::);
        __syncthreads();  // every warpgroup is done reading the pipeline's stages
        float *tile = (float *)(smem_raw + (smem - (uint32_t)__cvta_generic_to_shared(smem_raw)));
#pragma unroll
        for (int j = 0; j < 16; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = 64 * wg + 16 * warp + (lane >> 2) + 8 * i, c = 8 * j + 2 * (lane & 3);
                *(float2 *)(tile + r * MG_STAGE_LD + c) = make_float2(d[4 * j + 2 * i], d[4 * j + 2 * i + 1]);
            }
        __syncthreads();
        const int w8 = threadIdx.x >> 5, col = n0 + 4 * lane;
        if constexpr (EPI == MG_EPI_SCALAR) {
            for (int r = w8; r < MG_BM; r += 8) {
                const int row = m0 + r;
                if (row >= M) break;
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int c = n0 + 32 * q + lane;
                    if (c < N) o_plain[(long long)row * N + c] = tile[r * MG_STAGE_LD + 32 * q + lane];
                }
            }
        } else {
#pragma unroll
            for (int r0 = 0; r0 < MG_BM; r0 += 64) {  // 8 rows per warp at a time: 8 float4 loads in flight
                float4 mv[8], av[8];
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    const int row = m0 + r0 + w8 + 8 * q;
                    const bool in = row < M && col < N;
                    const long long o = (long long)row * N + col;
                    mv[q] = mask && in ? __ldg((const float4 *)(mask + o)) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
                    av[q] = aux && in ? __ldg((const float4 *)(aux + o)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                }
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    const int r = r0 + w8 + 8 * q, row = m0 + r;
                    if (row >= M || col >= N) continue;
                    const long long o = (long long)row * N + col;
                    const float4 v = *(const float4 *)(tile + r * MG_STAGE_LD + 4 * lane);
                    if (o_plain) *(float4 *)(o_plain + o) = v;
                    if (o_mask)
                        store4(o_mask + o, make_float4(v.x * mv[q].x, v.y * mv[q].y, v.z * mv[q].z, v.w * mv[q].w));
                    if (o_aux)
                        *(float4 *)(o_aux + o) =
                            make_float4(v.x * av[q].x, v.y * av[q].y, v.z * av[q].z, v.w * av[q].w);
                }
            }
        }
        return;
    }
    const int row_base = m0 + 64 * wg + 16 * warp + (lane >> 2);
    const int col_base = n0 + 2 * (lane & 3);
#pragma unroll
    for (int j0 = 0; j0 < 16; j0 += 4) {  // four column blocks at a time: 8 loads in flight per input
        float2 mv[4][2], av[4][2];
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int row = row_base + 8 * i, col = col_base + 8 * (j0 + j);
                const bool in = row < M && col < N;
                const long long o = (long long)row * N + col;
                mv[j][i] = mask && in ? __ldg((const float2 *)(mask + o)) : make_float2(1.0f, 1.0f);
                av[j][i] = aux && in ? __ldg((const float2 *)(aux + o)) : make_float2(0.0f, 0.0f);
            }
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int row = row_base + 8 * i, col = col_base + 8 * (j0 + j);
                if (row >= M || col >= N) continue;
                const long long o = (long long)row * N + col;
                const float2 v = make_float2(d[4 * (j0 + j) + 2 * i], d[4 * (j0 + j) + 2 * i + 1]);
                if (o_plain) *(float2 *)(o_plain + o) = v;
                if (o_mask) store2(o_mask + o, v.x * mv[j][i].x, v.y * mv[j][i].y);
                if (o_aux) *(float2 *)(o_aux + o) = make_float2(v.x * av[j][i].x, v.y * av[j][i].y);
            }
    }
#endif
}

static bool env_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WGMMA", true);
    return env;
}

// SPD_CUDA_WGMMA_STAGED=0: the epilogue straight from the fragments (for A/B timing).
static bool staged_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WGMMA_STAGED", true);
    return env;
}

template <typename T, int EPI, bool A4>
static void allow_smem_one(void) {
    CUDA_CHECK(cudaFuncSetAttribute(masked_gemm_kernel<T, EPI, A4>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    MG_SMEM_BYTES));
}
template <typename T>
static void allow_smem(void) {
    allow_smem_one<T, MG_EPI_FRAGMENTS, false>();
    allow_smem_one<T, MG_EPI_STAGED, false>();
}

// On an sm_90 device, with the kernels' shared-memory limit raised (once).
static bool device_is_sm90(void) {
    static bool smem_raised = false;
    if (!spd_cuda_is_sm90()) return false;
    if (!smem_raised) {
        allow_smem<float>();
        allow_smem<__nv_bfloat16>();
        allow_smem_one<float, MG_EPI_SCALAR, false>();
        allow_smem_one<float, MG_EPI_SCALAR, true>();
        allow_smem_one<float, MG_EPI_STAGED, true>();
        smem_raised = true;
    }
    return true;
}

// The checks shared by both precisions; `per_piece` elements make one 16-byte piece.
static bool shapes_ok(spd_matmul_precision want, int per_piece, int M, int N, int K, const void *A, int lda,
                      const void *B, int ldb, const void *const mn[5], unsigned mn_align) {
    if (!env_on() || spd_cuda_mode_get() != SPD_CUDA_FUSED || spd_cuda_matmul_precision() != want) return false;
    if (M <= 0 || N <= 0 || K <= 0 || K > MG_MAX_K || K % per_piece || lda % per_piece || ldb % per_piece || N % 2)
        return false;
    if (!spd_aligned(A, 16) || !spd_aligned(B, 16)) return false;
    for (int i = 0; i < 5; i++)
        if (mn[i] && !spd_aligned(mn[i], mn_align)) return false;
    return device_is_sm90();
}

extern "C" bool masked_gemm_sm90_ok(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                    const float *mask, const float *aux, const float *o_plain, const float *o_mask,
                                    const float *o_aux) {
    const void *mn[5] = {mask, aux, o_plain, o_mask, o_aux};
    return shapes_ok(SPD_MATMUL_TF32, 4, M, N, K, A, lda, B, ldb, mn, 8);
}

extern "C" bool masked_gemm_sm90_bf16_ok(int M, int N, int K, const void *A16, int lda, const void *B16, int ldb,
                                         const float *mask, const float *aux, const float *o_plain, const void *o_mask16,
                                         const float *o_aux) {
    const void *mn[5] = {mask, aux, o_plain, o_mask16, o_aux};
    return shapes_ok(SPD_MATMUL_BF16, 8, M, N, K, A16, lda, B16, ldb, mn, 8);
}

template <typename T>
static void launch(int M, int N, int K, const T *A, int lda, const T *B, int ldb, const float *mask,
                   const float *aux, float *o_plain, T *o_mask, float *o_aux) {
    const dim3 grid((unsigned)((N + MG_BN - 1) / MG_BN), (unsigned)((M + MG_BM - 1) / MG_BM));
    const void *mn[5] = {mask, aux, o_plain, o_mask, o_aux};
    bool staged = N % 4 == 0 && staged_on();
    for (int i = 0; i < 5; i++) staged = staged && spd_aligned(mn[i], i == 3 ? 4 * sizeof(T) : 16);  // 4 per store
    if (staged)
        masked_gemm_kernel<T, MG_EPI_STAGED, false><<<grid, MG_THREADS, MG_SMEM_BYTES, spd_cuda_stream()>>>(
            M, N, K, A, lda, B, ldb, mask, aux, o_plain, o_mask, o_aux);
    else
        masked_gemm_kernel<T, MG_EPI_FRAGMENTS, false><<<grid, MG_THREADS, MG_SMEM_BYTES, spd_cuda_stream()>>>(
            M, N, K, A, lda, B, ldb, mask, aux, o_plain, o_mask, o_aux);
    CUDA_CHECK_LAUNCH();
}

extern "C" void masked_gemm_sm90(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                 const float *mask, const float *aux, float *o_plain, float *o_mask, float *o_aux) {
    launch<float>(M, N, K, A, lda, B, ldb, mask, aux, o_plain, o_mask, o_aux);
}

extern "C" void masked_gemm_sm90_bf16(int M, int N, int K, const void *A16, int lda, const void *B16, int ldb,
                                      const float *mask, const float *aux, float *o_plain, void *o_mask16,
                                      float *o_aux) {
    launch<__nv_bfloat16>(M, N, K, (const __nv_bfloat16 *)A16, lda, (const __nv_bfloat16 *)B16, ldb, mask, aux,
                          o_plain, (__nv_bfloat16 *)o_mask16, o_aux);
}

// ---- plain products that cuBLASLt runs only with its align1 kernels ----------------
// C [M, N] = A [M, K] @ op(B) where A's or C's rows are not 16-byte aligned: the
// 4019-wide logits (C, from K = 128) and their gradient (A, K = 4019), which cuBLASLt
// ran with align1 kernels at 150-250 us each (dev/kernels/README.md, session 9).
// SPD_CUDA_WGMMA_NT=0 leaves them to cuBLAS.
static bool nt_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WGMMA_NT", true);
    return env;
}

extern "C" bool gemm_nt_sm90_ok(int M, int N, int K, const float *A, int lda, const float *C, int ldc) {
    if (!env_on() || !nt_on() || spd_cuda_mode_get() != SPD_CUDA_FUSED ||
        spd_cuda_matmul_precision() != SPD_MATMUL_TF32)
        return false;
    if (M <= 0 || N <= 0 || K <= 0 || ldc != N || (double)M * N * K < (double)(1 << 24)) return false;
    const bool a_rows16 = lda % 4 == 0 && spd_aligned(A, 16), c_rows16 = N % 4 == 0 && spd_aligned(C, 16);
    if (a_rows16 && c_rows16) return false;  // cuBLASLt's aligned kernels
    // For A alone (C aligned) only with a CTA for most SMs: the logits' gradient (N = 128,
    // K = 4019) won 15 us here at 64x256 (128 row blocks) but lost 0.1 ms per step at 16x128
    // (16 row blocks, each walking all of K).
    if (c_rows16 && (long long)((M + MG_BM - 1) / MG_BM) * ((N + MG_BN - 1) / MG_BN) < spd_cuda_sm_count() * 7 / 8)
        return false;
    return device_is_sm90();
}

extern "C" void gemm_nt_sm90(int M, int N, int K, const float *A, int lda, const float *B, int ldb, bool trans_b,
                             float *C) {
    cudaStream_t st = spd_cuda_stream();
    // B as the kernel reads it: [N, K] in rows of 16 bytes, zero past K (A's columns past
    // K load as zeros, but junk there could be a NaN): a padded or transposed copy where
    // op(B) is not that already.
    const float *Bk = B;
    int ldk = ldb;
    float *Bc = NULL;
    if (!trans_b || ldb % 4 || K % 4 || !spd_aligned(B, 16)) {
        ldk = (K + 3) & ~3;
        CUDA_CHECK(cudaMallocAsync((void **)&Bc, (size_t)N * ldk * sizeof(float), st));
        if (trans_b)
            copy2d_cuda(Bc, ldk, N, ldk, B, ldb, N, K, 0);
        else
            transpose_pad_cuda(Bc, ldk, B, ldb, K, N);
        Bk = Bc;
    }
    const bool a4 = lda % 4 != 0 || K % 4 != 0 || !spd_aligned(A, 16), scalar = N % 4 != 0 || !spd_aligned(C, 16);
    // C aligned: A is why the product is here, so read in 4-byte pieces.
    const auto kernel = !scalar ? masked_gemm_kernel<float, MG_EPI_STAGED, true>
                        : a4    ? masked_gemm_kernel<float, MG_EPI_SCALAR, true>
                                : masked_gemm_kernel<float, MG_EPI_SCALAR, false>;
    const dim3 grid((unsigned)((N + MG_BN - 1) / MG_BN), (unsigned)((M + MG_BM - 1) / MG_BM));
    kernel<<<grid, MG_THREADS, MG_SMEM_BYTES, st>>>(M, N, K, A, lda, Bk, ldk, NULL, NULL, C, NULL, NULL);
    CUDA_CHECK_LAUNCH();
    if (Bc) CUDA_CHECK(cudaFreeAsync(Bc, st));
}

// dst [c, k] = src [k, c] for k < rows, 0 for rows <= k < ldd; 32 x 32 tiles through shared
// memory, 32 x TP_ROWS threads. tf32: each value rounded to TF32 first. A thread's four
// loads are all issued before the first store (with a runtime row step the loop kept one
// load in flight: ~1.9 TB/s on an H100 at [16384, 341], session 12).
#define TP_ROWS 8
template <typename T, bool tf32>
static __global__ void transpose_pad_kernel(T *dst, int ldd, const float *src, int lds, int rows, int cols) {
    __shared__ float t[32][33];
    const int k0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
    float v[32 / TP_ROWS];
#pragma unroll
    for (int j = 0; j < 32 / TP_ROWS; j++) {
        const int k = k0 + threadIdx.y + TP_ROWS * j, c = c0 + threadIdx.x;
        v[j] = k < rows && c < cols ? src[(long long)k * lds + c] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 32 / TP_ROWS; j++) {
        if constexpr (tf32) {
            uint32_t r;
            asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v[j]));
            v[j] = __uint_as_float(r);
        }
        t[threadIdx.y + TP_ROWS * j][threadIdx.x] = v[j];
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 32 / TP_ROWS; j++) {
        const int i = threadIdx.y + TP_ROWS * j, c = c0 + i, k = k0 + threadIdx.x;
        if (c < cols && k < ldd) dst[(long long)c * ldd + k] = (T)t[threadIdx.x][i];
    }
}

template <typename T, bool tf32 = false>
static void transpose_pad(T *dst, int ldd, const float *src, int lds, int rows, int cols) {
    if (cols <= 0 || ldd <= 0) return;
    const dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((ldd + 31) / 32)), block(32, TP_ROWS);
    transpose_pad_kernel<T, tf32><<<grid, block, 0, spd_cuda_stream()>>>(dst, ldd, src, lds, rows, cols);
    CUDA_CHECK_LAUNCH();
}

extern "C" void transpose_pad_cuda(float *dst, int ldd, const float *src, int lds, int rows, int cols) {
    transpose_pad<float>(dst, ldd, src, lds, rows, cols);
}

extern "C" void transpose_pad_tf32_cuda(float *dst, int ldd, const float *src, int lds, int rows, int cols) {
    transpose_pad<float, true>(dst, ldd, src, lds, rows, cols);
}

extern "C" void transpose_pad_bf16_cuda(void *dst16, int ldd, const float *src, int lds, int rows, int cols) {
    transpose_pad<__nv_bfloat16>((__nv_bfloat16 *)dst16, ldd, src, lds, rows, cols);
}
