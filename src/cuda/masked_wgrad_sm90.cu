// The weight-gradient kernel of masked_wgrad_sm90.h. Built for sm_90a only
// (Makefile: *_sm90.cu).
//
// Design (v7, dev/kernels/b2b_wgmma/NOTES.md, "Weight gradients"): one CTA per block of
// 64 components and range of tokens, the token range split S ways so that about one CTA
// runs per SM; the CTAs of one split walk the same tokens at about the same time, so x
// and dout are read from L2 after the first block. Each CTA writes a partial block, and
// a fixed-order reduction adds the S of each component block up. Two producer threads
// stream each 32-token tile through the TMA into two rings of stages: x [32, K1],
// dout [32, K2] and the mask [32, 64] into ring A; the transposed x^T [K1, 32] and
// dout^T [K2, 32] (copies made first, below) into ring B. Two consumer warpgroups, one
// per gradient, do the same three steps on their own operands (U side: W = V^T, In = x,
// Out^T = dout^T, acc = dU; V side: W = U, In = dout, Out^T = x^T, acc = dV^T):
//   1. T [64 c, 32 tok] = W_block In^T: wgmma m64n32k8, W from registers (loaded once,
//      rounded to TF32), In from ring A;
//   2. T *= mask^T in registers (the mask tile read transposed: conflict-free), rounded
//      to TF32; the ring A stage is free after this step;
//   3. acc [64 c, K_out] += T Out: wgmma m64nK_outk8 with T as the register operand and
//      Out^T from ring B. The accumulator holds tokens 2t, 2t + 1 of each 8 where the
//      register operand wants t, t + 4; the transposed copies store each 8 tokens in the
//      order 0 2 4 6 1 3 5 7, so T goes in unshuffled (as in masked_b2b_sm90).
// Step 1 of the next tile is issued before step 3 of this one, and step 2 of the next
// runs under step 3. Nothing goes through shared memory but the TMA's tiles.
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/masked_wgrad_sm90.h"
#include "cuda/tma_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"

#define WG_BC 64  // components per CTA
#define WG_BT 32  // tokens per tile
#define WG_CONSUMERS 256
#define WG_THREADS (WG_CONSUMERS + 128)  // + a producer warpgroup (one thread in each of two warps loads)
#define WG_STAGES 3  // per ring
#define WG_SUB 4096  // one [32 rows, 32 floats] swizzled box
// Ring A: x, dout (each at most 128 wide: 4 boxes) and the mask's 64 columns, read by
// steps 1 and 2; ring B: x^T and dout^T, read by step 3 (an A stage is free a step earlier).
#define WG_A_BYTES ((4 + 4 + 2) * WG_SUB)
#define WG_B_BYTES ((4 + 4) * WG_SUB)
#define WG_BARRIERS (4 * WG_STAGES)
#define WG_SMEM_BYTES (WG_STAGES * (WG_A_BYTES + WG_B_BYTES) + 1024 + 8 * WG_BARRIERS)

#ifdef WG_HAVE_WGMMA
// One consumer warpgroup. KW: width of In (and of W's rows), KO: width of Out (64 or
// 128). u_side: W = V^T (V [KW, C]), In = x, Out = dout, acc = dU; else W = U ([C, KW]),
// In = dout, Out = x, acc = dV^T. in_off / mask_off: where In and the mask start within
// a stage of ring A, ot_off: where Out^T starts within one of ring B. The CTA's tiles:
// ntiles from ring item 0, of components c0 .. c0 + 63; acc is stored into its partial
// block part.
template <int KW, int KO, bool u_side>
static __device__ __forceinline__ void consumer(const unsigned char *sm, uint32_t sm_addr, const ring &ra,
                                                const ring &rb, uint32_t in_off, uint32_t ot_off, uint32_t mask_off,
                                                const float *__restrict__ W, int C, int c0, int ntiles,
                                                float *__restrict__ part, int lane, int warp) {
    const int g = lane >> 2, t = lane & 3;
    // Accumulator layout of m64nN: row 16 warp + g (+ 8 for i = 1), column 8 j + 2 t + e
    // in d[4 j + 2 i + e].
    const int cl = 16 * warp + g;
    float w[KW / 8][4];
    // Step 1's register operand: W_block [64 c, KW], rows c = c0 + cl (+ 8), k8 step ks
    // columns 8 ks + t (+ 4); zero past C.
    auto load_w = [&](int c0) {
#pragma unroll
        for (int ks = 0; ks < KW / 8; ks++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int c = c0 + cl + 8 * (q & 1), k = 8 * ks + t + 4 * (q >> 1);
                const float v =
                    c >= C ? 0.0f : u_side ? __ldg(W + (long long)k * C + c) : __ldg(W + (long long)c * KW + k);
                w[ks][q] = to_tf32(v);
            }
    };
    float Ta[16], Tb[16], acc[KO / 2];  // first written by their wgmmas (scale-d 0)
    auto step1 = [&](float *T, int it) {
        const uint64_t in_desc = smem_desc(ra.stage(it) + in_off);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
        wgmma_m64n32k8_rs<true>(T, w[0], in_desc);
#pragma unroll
        for (int ks = 1; ks < KW / 8; ks++)
            wgmma_m64n32k8_rs<false>(T, w[ks], in_desc + ((((ks >> 2) * WG_SUB) + 32 * (ks & 3)) >> 4));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    // Step 2: the mask at (token 2 t + e + 8 j, component cl + 8 i); moving 8 tokens (8 rows
    // of a box) adds 1024 bytes and keeps the swizzle.
    uint32_t mk_off[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) mk_off[i][e] = mask_off + tma_box_offset(2 * t + e, cl + 8 * i);
    auto mask_pass = [&](float *T, int it) {
        const unsigned char *st = sm + (ra.stage(it) - sm_addr);
#pragma unroll
        for (int j = 0; j < WG_BT / 8; j++)
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    T[4 * j + 2 * i + e] =
                        to_tf32(T[4 * j + 2 * i + e] * *(const float *)(st + mk_off[i][e] + 1024 * j));
    };
    // Step 3: k8 step kk is T's token block kk, register order as in the header comment.
    auto step3 = [&](const float *T, int it) {
        const uint64_t ot_desc = smem_desc(rb.stage(it) + ot_off);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < WG_BT / 8; kk++)
            wgmma_acc_rs<KO>(acc, T[4 * kk], T[4 * kk + 2], T[4 * kk + 1], T[4 * kk + 3],
                             ot_desc + ((32 * kk) >> 4), it > 0 || kk > 0);
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    load_w(c0);
    ra.wait(0);
    step1(Ta, 0);
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    fence_regs<16>(Ta);
    mask_pass(Ta, 0);
    ra.release_after_loads(0, lane);
    // Tile it: T of it, masked, in cur; step 3 of it - 1 may still be reading nxt and
    // its ring B stage.
    auto iteration = [&](int it, float *cur, float *nxt) {
        const bool more = it + 1 < ntiles;
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");  // step 3 of it - 1
        if (it > 0) rb.release(it - 1, lane);
        // Past the last tile step 1 reads a stale stage, never used: issued anyway, since a
        // conditional wgmma makes ptxas serialize them all (C7514).
        if (more) ra.wait(it + 1);
        step1(nxt, it + 1);
        rb.wait(it);
        step3(cur, it);
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // step 1 of it + 1
        fence_regs<16>(nxt);
        if (more) {
            mask_pass(nxt, it + 1);
            ra.release_after_loads(it + 1, lane);
        }
    };
    for (int it = 0; it < ntiles; it += 2) {
        iteration(it, Ta, Tb);
        if (it + 1 < ntiles) iteration(it + 1, Tb, Ta);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    fence_regs<KO / 2>(acc);
    rb.release(ntiles - 1, lane);
    // acc (rows cl (+ 8), columns 8 j + 2 t (+ 1)) -> part: [64, KO] on the U side (dU's
    // layout), [KO, 64] on the V side (dV's), so that the reduction reads and writes rows.
#pragma unroll
    for (int j = 0; j < KO / 8; j++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int c = cl + 8 * i, k = 8 * j + 2 * t;
            if (u_side) {
                *(float2 *)(part + c * KO + k) = make_float2(acc[4 * j + 2 * i], acc[4 * j + 2 * i + 1]);
            } else {
                part[k * WG_BC + c] = acc[4 * j + 2 * i];
                part[(k + 1) * WG_BC + c] = acc[4 * j + 2 * i + 1];
            }
        }
}
#endif

// Split sp of S takes tiles [sp T / S, (sp + 1) T / S) of the T token tiles.
static __device__ __forceinline__ int split_first(int sp, int S, int T) { return (int)((long long)sp * T / S); }

// One module of a launch: tensor maps of x, dout, the mask and the transposed copies,
// its weights and its partial blocks part_dU [S, nc, 64, K2] and part_dV [S, nc, K1, 64].
struct wgrad_member {
    CUtensorMap tm_x, tm_dout, tm_mask, tm_xT, tm_doutT;
    const float *V, *U;
    float *part_dU, *part_dV;
};
struct wgrad_args {
    wgrad_member m[MASKED_WGRAD_MAX_GROUP];
    int C, tiles;
};

// NK1, NK2: K1 / 32 and K2 / 32 (2 or 4). Grid (component blocks nc, splits S, modules G).
template <int NK1, int NK2>
static __global__ void __launch_bounds__(WG_THREADS, 1) masked_wgrad_kernel(const __grid_constant__ wgrad_args args) {
#ifdef WG_HAVE_WGMMA
    const wgrad_member &pm = args.m[blockIdx.z];
    const CUtensorMap *tm_x = &pm.tm_x, *tm_dout = &pm.tm_dout, *tm_mask = &pm.tm_mask, *tm_xT = &pm.tm_xT,
                      *tm_doutT = &pm.tm_doutT;
    const int C = args.C, tiles = args.tiles;
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t st0 = (raw + 1023) & ~1023u;
    const uint32_t bars = st0 + WG_STAGES * (WG_A_BYTES + WG_B_BYTES);
    const ring ra = {st0, WG_A_BYTES, bars, WG_STAGES};
    const ring rb = {st0 + WG_STAGES * WG_A_BYTES, WG_B_BYTES, bars + 16 * WG_STAGES, WG_STAGES};
    const int c0 = blockIdx.x * WG_BC, t0 = split_first(blockIdx.y, gridDim.y, tiles);
    const int ntiles = split_first(blockIdx.y + 1, gridDim.y, tiles) - t0;
    const int warp_id = threadIdx.x >> 5, lane = threadIdx.x & 31;
    constexpr uint32_t x_off = 0, dout_off = NK1 * WG_SUB, mask_off = (NK1 + NK2) * WG_SUB;  // ring A
    constexpr uint32_t xT_off = 0, doutT_off = NK1 * WG_SUB;                                  // ring B
    if (threadIdx.x == 0) {
        ra.init(WG_CONSUMERS / 32);
        rb.init(WG_CONSUMERS / 32);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    // Registers: the producer warpgroup gives most of its share to the consumers; one
    // thread of its first warp fills ring A, one of its second ring B.
    if (warp_id >= WG_CONSUMERS / 32) {
        producer_regs();
        if (lane != 0) return;
        if (warp_id == WG_CONSUMERS / 32) {
            for (int it = 0; it < ntiles; it++) {
                const int tok0 = (t0 + it) * WG_BT;
                const uint32_t st = ra.acquire(it, (NK1 + NK2 + 2) * WG_SUB), bar = ra.full(it);
                for (int s = 0; s < NK1; s++) tma_load(st + x_off + s * WG_SUB, tm_x, 32 * s, tok0, bar);
                for (int s = 0; s < NK2; s++) tma_load(st + dout_off + s * WG_SUB, tm_dout, 32 * s, tok0, bar);
                for (int b = 0; b < 2; b++)
                    tma_load(st + mask_off + b * WG_SUB, tm_mask, c0 + 32 * b, tok0, bar);
            }
        } else if (warp_id == WG_CONSUMERS / 32 + 1) {
            for (int it = 0; it < ntiles; it++) {
                const int tok0 = (t0 + it) * WG_BT;
                const uint32_t st = rb.acquire(it, (NK1 + NK2) * WG_SUB), bar = rb.full(it);
                tma_load(st + xT_off, tm_xT, tok0, 0, bar);
                tma_load(st + doutT_off, tm_doutT, tok0, 0, bar);
            }
        }
        return;
    }
    consumer_regs();
    const int wg = threadIdx.x >> 7, warp = warp_id & 3;
    const long long b = (long long)blockIdx.y * gridDim.x + blockIdx.x;
    if (wg == 0)
        consumer<32 * NK1, 32 * NK2, true>(smem_raw, raw, ra, rb, x_off, doutT_off, mask_off, pm.V, C, c0, ntiles,
                                           pm.part_dU + b * WG_BC * (32 * NK2), lane, warp);
    else
        consumer<32 * NK2, 32 * NK1, false>(smem_raw, raw, ra, rb, dout_off, xT_off, mask_off, pm.U, C, c0, ntiles,
                                            pm.part_dV + b * WG_BC * (32 * NK1), lane, warp);
#endif
}

// The gradients of a launch's modules and their partial blocks.
struct wgrad_sums {
    float *dU[MASKED_WGRAD_MAX_GROUP], *dV[MASKED_WGRAD_MAX_GROUP];
    const float *part_dU[MASKED_WGRAD_MAX_GROUP], *part_dV[MASKED_WGRAD_MAX_GROUP];
};

// One output element per thread, both gradients in one launch (each is ~1 us of bytes
// and a launch's worth of fixed cost): first dU [C, K2], then dV [K1, C] (either may be
// NULL) of module blockIdx.y; the S partial blocks ([64, K2] or [K1, 64]) of its component
// block added in split order onto it.
static __global__ void add_partials_kernel(const __grid_constant__ wgrad_sums w, int C, int K1, int K2, int nc,
                                           int S) {
    float *const dU = w.dU[blockIdx.y], *const dV = w.dV[blockIdx.y];
    const float *const part_dU = w.part_dU[blockIdx.y], *const part_dV = w.part_dV[blockIdx.y];
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const bool du = i < (long long)C * K2;
    if (!du) i -= (long long)C * K2;
    const int K = du ? K2 : K1;
    float *dst = du ? dU : dV;
    const float *part = du ? part_dU : part_dV;
    if (!dst || i >= (long long)C * K) return;
    const int c = du ? (int)(i / K) : (int)(i % C), k = du ? (int)(i % K) : (int)(i / C);
    const long long at = du ? (long long)(c % WG_BC) * K + k : (long long)k * WG_BC + c % WG_BC;
    float s = dst[i];
    for (int sp = 0; sp < S; sp++) s += part[((long long)sp * nc + c / WG_BC) * WG_BC * K + at];
    dst[i] = s;
}

// dst [K, ld] (ld = N rounded up to 8) = src^T for src [N, K], each 8 columns in the
// order of tokens 0 2 4 6 1 3 5 7, zero past N; blockIdx.z picks the matrix (x and each
// module's dout in one launch). Block: a 32 x 32 tile, 32 x 8 threads.
#define WG_MAX_TRANSPOSED (1 + MASKED_WGRAD_MAX_GROUP)
struct token_transposes {
    float *dst[WG_MAX_TRANSPOSED];
    const float *src[WG_MAX_TRANSPOSED];
    int K[WG_MAX_TRANSPOSED];
};

static __global__ void transpose_tokens_kernel(const __grid_constant__ token_transposes tt, int ld, int N) {
    __shared__ float tile[32][33];
    float *dst = tt.dst[blockIdx.z];
    const float *src = tt.src[blockIdx.z];
    const int K = tt.K[blockIdx.z];
    const int n0 = blockIdx.x * 32, k0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
    if (k0 >= K) return;
    for (int r = ty; r < 32; r += 8) {
        const int n = n0 + r, k = k0 + tx;
        tile[r][tx] = n < N && k < K ? src[(long long)n * K + k] : 0.0f;
    }
    __syncthreads();
    const int n = n0 + tx, q = n & 7;
    const int pos = (n & ~7) | (q >> 1) | ((q & 1) << 2);  // token 2 t -> slot t, 2 t + 1 -> t + 4
    if (pos >= ld) return;
    for (int r = ty; r < 32; r += 8) {
        const int k = k0 + r;
        if (k < K) dst[(long long)k * ld + pos] = tile[tx][r];
    }
}

// SPD_CUDA_WGRAD=0 turns it off (for A/B timing against the cuBLAS products).
static bool env_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WGRAD", true);
    return env;
}

// The fewest tokens that run here (SPD_CUDA_WGRAD_MIN_N, default 0). Alone this kernel
// lost at 32x256 (session 7: 7.09 against 6.78 ms per step), and beside the unsplit
// back-to-back kernel it lost with 32 row blocks (32x128: 4.46 against 4.22 ms); beside
// the split one it wins there too (session 17, H100: 32x128 3.35 against 3.61 ms with the
// stored products, 16x128 2.49 against 2.62).
static int min_n(void) {
    static const int n = (int)spd_env_long_or_die("SPD_CUDA_WGRAD_MIN_N", 0, 0, INT_MAX);
    return n;
}

typedef void (*wgrad_kernel_fn)(const wgrad_args);
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

// src [rows, cols] into a new 16-byte-aligned stream-ordered buffer (freed by the caller).
static float *aligned_copy(const float *src, long long n) {
    float *dst = NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&dst, (size_t)n * sizeof(float) + 16, spd_cuda_stream()));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, spd_cuda_stream()));
    return dst;
}

extern "C" void masked_wgrad_sm90_group(int G, int N, int C, int K1, int K2, const float *x,
                                        const float *const *dout, const float *const *V, const float *const *U,
                                        const float *const *mask, float *const *dU, float *const *dV) {
    SPD_ASSERT(G >= 1 && G <= MASKED_WGRAD_MAX_GROUP);
    cudaStream_t st = spd_cuda_stream();
    // Operands the TMA cannot read in place (16-byte alignment) are copied first.
    float *copies[1 + 2 * MASKED_WGRAD_MAX_GROUP] = {NULL};
    int n_copies = 0;
    auto aligned = [&](const float *p, long long n) -> const float * {
        if (spd_aligned(p, 16)) return p;
        return copies[n_copies++] = aligned_copy(p, n);
    };
    const float *xa = aligned(x, (long long)N * K1), *da[MASKED_WGRAD_MAX_GROUP], *ma[MASKED_WGRAD_MAX_GROUP];
    for (int g = 0; g < G; g++) {
        da[g] = aligned(dout[g], (long long)N * K2);
        ma[g] = aligned(mask[g], (long long)N * C);
    }
    const int nc = (C + WG_BC - 1) / WG_BC, tiles = (N + WG_BT - 1) / WG_BT;
    // About one CTA per SM (shared memory): the token range split S ways.
    int S = spd_cuda_sm_count() / (nc * G);
    if (S > tiles) S = tiles;
    if (S < 1) S = 1;
    const long long nU = (long long)S * nc * WG_BC * K2, nV = (long long)S * nc * WG_BC * K1;
    // x^T (once: the modules share x) and each dout^T, with the tokens of each 8 in the order
    // of step 3's register operand.
    const int ldt = (N + 7) & ~7;
    float *part = NULL;
    const long long per = nU + nV + (long long)K2 * ldt;
    CUDA_CHECK(cudaMallocAsync((void **)&part, (size_t)(G * per + (long long)K1 * ldt) * sizeof(float), st));
    float *xT = part + G * per;
    token_transposes tt;
    memset(&tt, 0, sizeof tt);
    tt.dst[0] = xT;
    tt.src[0] = xa;
    tt.K[0] = K1;
    wgrad_args a;
    memset(&a, 0, sizeof a);
    a.C = C;
    a.tiles = tiles;
    wgrad_sums w;
    memset(&w, 0, sizeof w);
    const CUtensorMap tm_x = tma_tensor_map(xa, N, K1, K1, WG_BT), tm_xT = tma_tensor_map(xT, K1, ldt, ldt, K1);
    for (int g = 0; g < G; g++) {
        float *pU = part + g * per, *pV = pU + nU, *doutT = pV + nV;
        tt.dst[1 + g] = doutT;
        tt.src[1 + g] = da[g];
        tt.K[1 + g] = K2;
        wgrad_member *m = &a.m[g];
        m->tm_x = tm_x;
        m->tm_xT = tm_xT;
        m->tm_dout = tma_tensor_map(da[g], N, K2, K2, WG_BT);
        m->tm_mask = tma_tensor_map(ma[g], N, C, C, WG_BT);
        m->tm_doutT = tma_tensor_map(doutT, K2, ldt, ldt, K2);
        m->V = V[g];
        m->U = U[g];
        m->part_dU = pU;
        m->part_dV = pV;
        w.dU[g] = dU[g];
        w.dV[g] = dV[g];
        w.part_dU[g] = pU;
        w.part_dV[g] = pV;
    }
    const int K = K1 > K2 ? K1 : K2;
    transpose_tokens_kernel<<<dim3((unsigned)((ldt + 31) / 32), (unsigned)((K + 31) / 32), (unsigned)(1 + G)),
                              dim3(32, 8), 0, st>>>(tt, ldt, N);
    CUDA_CHECK_LAUNCH();
    const wgrad_kernel_fn kernel = kernels[(K1 == 128) * 2 + (K2 == 128)];
    kernel<<<dim3((unsigned)nc, (unsigned)S, (unsigned)G), WG_THREADS, WG_SMEM_BYTES, st>>>(a);
    CUDA_CHECK_LAUNCH();
    const long long n = (long long)C * (K1 + K2);
    add_partials_kernel<<<dim3((unsigned)spd_cuda_blocks(n, 256), (unsigned)G), 256, 0, st>>>(w, C, K1, K2, nc, S);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaFreeAsync(part, st));
    for (int i = 0; i < n_copies; i++) CUDA_CHECK(cudaFreeAsync(copies[i], st));
}

extern "C" void masked_wgrad_sm90(int N, int C, int K1, int K2, const float *x, const float *dout, const float *V,
                                  const float *U, const float *mask, float *dU, float *dV) {
    if (!dU && !dV) return;
    masked_wgrad_sm90_group(1, N, C, K1, K2, x, &dout, &V, &U, &mask, &dU, &dV);
}
