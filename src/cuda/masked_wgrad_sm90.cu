// The weight-gradient kernel of masked_wgrad_sm90.h. Built for sm_90a only
// (Makefile: *_sm90.cu).
//
// Design (v1, dev/kernels/b2b_wgmma/NOTES.md): one CTA per 64 components and a range of
// 32-token tiles (the token range is split so that the grid fills the SMs; each split
// writes its own partial sums, and a fixed-order reduction adds them up). A producer
// warp streams each tile's x [32, K1], dout [32, K2] and mask [32, 64] through the TMA
// into a ring of stages. Two consumer warpgroups, one per gradient, do the same four
// steps on their own operands (U side: W = V^T, In = x, Out = dout; V side: W = U,
// In = dout, Out = x):
//   1. T^T [64 c, 32 tok] = W_block In^T: wgmma m64n32k8, W from registers (loaded
//      once, rounded to TF32), In from the stage;
//   2. T^T *= mask^T in registers (the mask tile read transposed: conflict-free);
//   3. T^T stored, rounded to TF32, into the warpgroup's own [64, 32] tile in the
//      layout of a K-major wgmma operand;
//   4. acc [K_out, 64 c] += Out^T T: wgmma m64n64k8, Out^T from registers (read
//      transposed from the stage), T^T from step 3.
// Step 1 of the next tile is issued behind step 4 of this one. At the end acc is dU^T
// (U side) or dV (V side) for the CTA's components and tokens.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/masked_wgrad_sm90.h"
#include "cuda/tma_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"

#define WG_BC 64  // components per CTA
#define WG_BT 32  // tokens per tile
#define WG_CONSUMERS 256
#define WG_THREADS (WG_CONSUMERS + 128)  // + a producer warpgroup (one thread of it loads)
#define WG_STAGES 4
#define WG_SUB 4096                            // one [32 rows, 32 floats] swizzled box
#define WG_STAGE_BYTES ((4 + 4 + 2) * WG_SUB)  // x and dout (at most 128 wide), the mask's 64 columns
#define WG_T_BYTES (WG_BC * 128)               // step 3's tile: [64 c, 32 tok], two per warpgroup
#define WG_BARRIERS (2 * WG_STAGES)
#define WG_SMEM_BYTES (WG_STAGES * WG_STAGE_BYTES + 4 * WG_T_BYTES + 1024 + 8 * WG_BARRIERS)

#ifdef WG_HAVE_WGMMA
// d = a b (first: d not read, so no instruction has to zero it while other wgmmas are in
// flight) or d += a b.
template <bool first>
static __device__ __forceinline__ void wgmma_m64n32k8_rs(float *d, const float *a, uint64_t b) {
    const uint32_t a0 = __float_as_uint(a[0]), a1 = __float_as_uint(a[1]), a2 = __float_as_uint(a[2]),
                   a3 = __float_as_uint(a[3]);
    if constexpr (first)
        WG_WGMMA_M64N32_RS("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32", "0, 1, 1", d, a0, a1, a2, a3, b);
    else
        WG_WGMMA_M64N32_RS("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32", "1, 1, 1", d, a0, a1, a2, a3, b);
}

// d = a b + (accumulate ? d : 0): the first tile starts the sums without an instruction
// zeroing d (which would serialize the wgmmas, C7515).
static __device__ __forceinline__ void wgmma_m64n64k8_rs(float *d, const float *a, uint64_t b, int accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 " WG_ACC32_REGS
                 ", {%32, %33, %34, %35}, %36, p, 1, 1;\n}\n"
                 : WG_ACC32(d)
                 : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])),
                   "r"(__float_as_uint(a[3])), "l"(b), "r"(accumulate));
}

// Byte offset of element (row r, column c) in boxes of [32 rows, 32 floats] with the
// 128-byte swizzle, box b holding columns 32 b .. 32 b + 31.
static __device__ __forceinline__ uint32_t swz(int r, int c) {
    return (uint32_t)((c >> 5) * WG_SUB + r * 128 + ((((c & 31) >> 2) ^ (r & 7)) << 4) + (c & 3) * 4);
}

static __device__ __forceinline__ float lds(uint32_t addr) {
    float v;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
    return v;
}

static __device__ __forceinline__ void sts2(uint32_t addr, float a, float b) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(a), "f"(b) : "memory");
}

// One consumer warpgroup. KW: width of In (and of W's rows), KO: width of Out (64 or
// 128). u_side: W = V^T (V [KW, C]), In = x, Out = dout, acc = dU^T, stored into
// part [C, KO]; else W = U ([C, KW]), In = dout, Out = x, acc = dV, stored into
// part [KO, C]. in_off / out_off: where In and Out start within a stage.
template <int KW, int KO, bool u_side>
static __device__ __forceinline__ void consumer(const ring &rg, uint32_t t_tile, uint32_t in_off, uint32_t out_off,
                                                uint32_t mask_off, const float *__restrict__ W, int C, int c0,
                                                int ntiles, float *__restrict__ part, int lane, int warp) {
    const int g = lane >> 2, t = lane & 3;
    // Step 1's register operand: W_block [64 c, KW], rows c = 16 warp + g (+ 8), k8 step
    // ks columns 8 ks + t (+ 4); zero past C.
    float w[KW / 8][4];
#pragma unroll
    for (int ks = 0; ks < KW / 8; ks++)
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int c = c0 + 16 * warp + g + 8 * (q & 1), k = 8 * ks + t + 4 * (q >> 1);
            const float v = c >= C ? 0.0f : u_side ? __ldg(W + (long long)k * C + c) : __ldg(W + (long long)c * KW + k);
            w[ks][q] = to_tf32(v);
        }
    float Ta[16], Tb[16], acc[KO / 64][32];  // first written by their wgmmas (scale-d 0)
    auto step1 = [&](float *T, int it) {
        const uint64_t in_desc = smem_desc(rg.stage(it) + in_off);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
        wgmma_m64n32k8_rs<true>(T, w[0], in_desc);
#pragma unroll
        for (int ks = 1; ks < KW / 8; ks++)
            wgmma_m64n32k8_rs<false>(T, w[ks], in_desc + ((((ks >> 2) * WG_SUB) + 32 * (ks & 3)) >> 4));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    // Accumulator layout of m64nN: row 16 warp + g (+ 8 for i = 1), column 8 j + 2 t + e
    // in d[4 j + 2 i + e].
    const int cl = 16 * warp + g;
    // Steps 2 and 3 of tile it: T (in registers) times the mask into T^T tile it % 2.
    auto mask_pass = [&](const float *T, int it) {
        const uint32_t st = rg.stage(it), tt = t_tile + (it & 1) * WG_T_BYTES;
#pragma unroll
        for (int j = 0; j < WG_BT / 8; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int c = cl + 8 * i, tok = 8 * j + 2 * t;
                const float m0 = lds(st + mask_off + swz(tok, c)), m1 = lds(st + mask_off + swz(tok + 1, c));
                sts2(tt + swz(c, tok), to_tf32(T[4 * j + 2 * i] * m0), to_tf32(T[4 * j + 2 * i + 1] * m1));
            }
    };
    rg.wait(0);
    step1(Ta, 0);
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    mask_pass(Ta, 0);
    // Tile it: step 4 of it, with step 1 of it + 1 issued before it so that waiting for all
    // but the latest group waits for step 1 only; then steps 2 and 3 of it + 1 run under
    // step 4 of it (the T^T tiles alternate). T of it + 1 goes to nxt (two register sets,
    // read only right after the wait: otherwise ptxas serializes the wgmmas, C7514).
    auto iteration = [&](int it, float *nxt) {
        const bool more = it + 1 < ntiles;
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");  // step 4 of it - 1: a is free
        // Step 4's register operand: Out^T [KO, 32 tok], rows 64 mt + 16 warp + g (+ 8),
        // k8 step kk columns (tokens) 8 kk + t (+ 4).
        const uint32_t st = rg.stage(it);
        float a[KO / 64][WG_BT / 8][4];
#pragma unroll
        for (int mt = 0; mt < KO / 64; mt++)
#pragma unroll
            for (int kk = 0; kk < WG_BT / 8; kk++)
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int r = 64 * mt + cl + 8 * (q & 1), tok = 8 * kk + t + 4 * (q >> 1);
                    a[mt][kk][q] = to_tf32(lds(st + out_off + swz(tok, r)));
                }
        rg.release(it, lane);
        // Step 3's stores before the tensor cores read them (async proxy), warpgroup-wide.
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + (int)u_side) : "memory");
        // Past the last tile step 1 reads a stale stage, never used: issued anyway, since a
        // conditional wgmma makes ptxas serialize them all (C7514).
        if (more) rg.wait(it + 1);
        step1(nxt, it + 1);
        const uint64_t t_desc = smem_desc(t_tile + (it & 1) * WG_T_BYTES);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int mt = 0; mt < KO / 64; mt++)
#pragma unroll
            for (int kk = 0; kk < WG_BT / 8; kk++)
                wgmma_m64n64k8_rs(acc[mt], a[mt][kk], t_desc + ((32 * kk) >> 4), it > 0 || kk > 0);
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // step 1 of it + 1
        if (more) mask_pass(nxt, it + 1);
    };
    for (int it = 0; it < ntiles; it += 2) {
        iteration(it, Tb);
        if (it + 1 < ntiles) iteration(it + 1, Ta);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    // acc [KO rows, 64 c] -> part: dU^T transposed into [C, KO], dV as [KO, C].
#pragma unroll
    for (int mt = 0; mt < KO / 64; mt++)
#pragma unroll
        for (int j = 0; j < WG_BC / 8; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = 64 * mt + cl + 8 * i, c = c0 + 8 * j + 2 * t;
                if (c >= C) continue;  // C % 4 == 0: c + 1 < C too
                const float v0 = acc[mt][4 * j + 2 * i], v1 = acc[mt][4 * j + 2 * i + 1];
                if (u_side) {
                    part[(long long)c * KO + r] = v0;
                    part[(long long)(c + 1) * KO + r] = v1;
                } else {
                    *(float2 *)(part + (long long)r * C + c) = make_float2(v0, v1);
                }
            }
}
#endif

// NK1, NK2: K1 / 32 and K2 / 32 (2 or 4). Block (x: components c0 = 64 x, y: split);
// the split's tiles are [y * tiles / splits, (y + 1) * tiles / splits). part_dU [splits, C, K2],
// part_dV [splits, K1, C].
template <int NK1, int NK2>
static __global__ void __launch_bounds__(WG_THREADS, 1)
    masked_wgrad_kernel(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_dout,
                        const __grid_constant__ CUtensorMap tm_mask, int C, int tiles, const float *__restrict__ V,
                        const float *__restrict__ U, float *__restrict__ part_dU, float *__restrict__ part_dV) {
#ifdef WG_HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t st0 = (raw + 1023) & ~1023u, tt0 = st0 + WG_STAGES * WG_STAGE_BYTES;
    const ring rg = {st0, WG_STAGE_BYTES, tt0 + 4 * WG_T_BYTES, WG_STAGES};
    const int splits = gridDim.y, split = blockIdx.y, c0 = blockIdx.x * WG_BC;
    const int first = (int)((long long)split * tiles / splits), ntiles = (int)((long long)(split + 1) * tiles / splits) - first;
    const int warp_id = threadIdx.x >> 5, lane = threadIdx.x & 31;
    constexpr uint32_t x_off = 0, dout_off = NK1 * WG_SUB, mask_off = (NK1 + NK2) * WG_SUB;
    if (threadIdx.x == 0) {
        rg.init(WG_CONSUMERS / 32);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    // Registers: the producer warpgroup gives most of its share to the consumers.
    if (warp_id >= WG_CONSUMERS / 32) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (warp_id != WG_CONSUMERS / 32 || lane != 0) return;
        for (int it = 0; it < ntiles; it++) {
            const int tok0 = (first + it) * WG_BT;
            const uint32_t st = rg.acquire(it, (NK1 + NK2 + 2) * WG_SUB), bar = rg.full(it);
            for (int s = 0; s < NK1; s++) tma_load(st + x_off + s * WG_SUB, &tm_x, 32 * s, tok0, bar);
            for (int s = 0; s < NK2; s++) tma_load(st + dout_off + s * WG_SUB, &tm_dout, 32 * s, tok0, bar);
            for (int b = 0; b < 2; b++) tma_load(st + mask_off + b * WG_SUB, &tm_mask, c0 + 32 * b, tok0, bar);
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
    const int wg = threadIdx.x >> 7, warp = warp_id & 3;
    const long long C_ = C;
    if (wg == 0)
        consumer<32 * NK1, 32 * NK2, true>(rg, tt0, x_off, dout_off, mask_off, V, C, c0, ntiles,
                                           part_dU + split * C_ * (32 * NK2), lane, warp);
    else
        consumer<32 * NK2, 32 * NK1, false>(rg, tt0 + 2 * WG_T_BYTES, dout_off, x_off, mask_off, U, C, c0, ntiles,
                                            part_dV + split * C_ * (32 * NK1), lane, warp);
#endif
}

// dst [n] += sum over s of part [s, n], in a fixed order (the gradients need not be
// 16-byte aligned inside a flat parameter buffer: one float per thread).
static __global__ void add_partials_kernel(float *dst, const float *part, int splits, long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = dst[i];
    for (int k = 0; k < splits; k++) s += part[k * n + i];
    dst[i] = s;
}

// SPD_CUDA_WGRAD=0 turns it off (for A/B timing against the cuBLAS products).
static bool env_on(void) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("SPD_CUDA_WGRAD");
        env = !(e && strcmp(e, "0") == 0);
    }
    return env;
}

static int min_n(void) {
    static int n = -1;
    if (n < 0) {
        const char *e = getenv("SPD_CUDA_WGRAD_MIN_N");
        n = e && *e ? atoi(e) : 1;
    }
    return n;
}

typedef void (*wgrad_kernel_fn)(const CUtensorMap, const CUtensorMap, const CUtensorMap, int, int, const float *,
                                const float *, float *, float *);
// [K1 == 128][K2 == 128]
static const wgrad_kernel_fn kernels[4] = {masked_wgrad_kernel<2, 2>, masked_wgrad_kernel<2, 4>,
                                           masked_wgrad_kernel<4, 2>, masked_wgrad_kernel<4, 4>};

static bool device_is_sm90(void) {
    static bool smem_raised = false;
    if (!spd_cuda_is_sm90()) return false;
    if (!smem_raised) {
        for (int i = 0; i < 4; i++)
            CUDA_CHECK(cudaFuncSetAttribute(kernels[i], cudaFuncAttributeMaxDynamicSharedMemorySize, WG_SMEM_BYTES));
        smem_raised = true;
    }
    return true;
}

extern "C" bool masked_wgrad_sm90_ok(int N, int C, int K1, int K2) {
    if (!env_on() || spd_cuda_mode_get() != SPD_CUDA_FUSED || spd_cuda_matmul_precision() != SPD_MATMUL_TF32)
        return false;
    if (N <= 0 || N < min_n() || C <= 0 || C % 4 || (K1 != 64 && K1 != 128) || (K2 != 64 && K2 != 128)) return false;
    return device_is_sm90();
}

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

// src [rows, cols] into a new 16-byte-aligned stream-ordered buffer (freed by the caller).
static float *aligned_copy(const float *src, long long n) {
    float *dst = NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&dst, (size_t)n * sizeof(float) + 16, spd_cuda_stream()));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, spd_cuda_stream()));
    return dst;
}

extern "C" void masked_wgrad_sm90(int N, int C, int K1, int K2, const float *x, const float *dout, const float *V,
                                  const float *U, const float *mask, float *dU, float *dV) {
    if (!dU && !dV) return;
    cudaStream_t st = spd_cuda_stream();
    const float *xa = aligned16(x) ? x : aligned_copy(x, (long long)N * K1);
    const float *da = aligned16(dout) ? dout : aligned_copy(dout, (long long)N * K2);
    const float *ma = aligned16(mask) ? mask : aligned_copy(mask, (long long)N * C);
    const int nc = (C + WG_BC - 1) / WG_BC, tiles = (N + WG_BT - 1) / WG_BT;
    // One CTA per SM (shared memory), the token range split so that the grid fills them.
    int splits = spd_cuda_sm_count() / nc;
    if (splits > tiles) splits = tiles;
    if (splits < 1) splits = 1;
    float *part = NULL;
    const long long nU = (long long)C * K2, nV = (long long)K1 * C;
    CUDA_CHECK(cudaMallocAsync((void **)&part, (size_t)splits * (nU + nV) * sizeof(float), st));
    const CUtensorMap tm_x = tma_tensor_map(xa, N, K1, K1, WG_BT), tm_dout = tma_tensor_map(da, N, K2, K2, WG_BT),
                      tm_mask = tma_tensor_map(ma, N, C, C, WG_BT);
    const wgrad_kernel_fn kernel = kernels[(K1 == 128) * 2 + (K2 == 128)];
    kernel<<<dim3((unsigned)nc, (unsigned)splits), WG_THREADS, WG_SMEM_BYTES, st>>>(tm_x, tm_dout, tm_mask, C, tiles,
                                                                                  V, U, part, part + splits * nU);
    CUDA_CHECK_LAUNCH();
    float *dst[2] = {dU, dV};
    const long long n[2] = {nU, nV};
    for (int k = 0; k < 2; k++) {
        if (!dst[k]) continue;
        add_partials_kernel<<<spd_cuda_blocks(n[k], 256), 256, 0, st>>>(dst[k], part + (k ? splits * nU : 0), splits,
                                                                        n[k]);
        CUDA_CHECK_LAUNCH();
    }
    CUDA_CHECK(cudaFreeAsync(part, st));
    if (xa != x) CUDA_CHECK(cudaFreeAsync((void *)xa, st));
    if (da != dout) CUDA_CHECK(cudaFreeAsync((void *)da, st));
    if (ma != mask) CUDA_CHECK(cudaFreeAsync((void *)ma, st));
}
