// The back-to-back masked product of masked_b2b_sm90.h. Built for sm_90a only
// (Makefile: *_sm90.cu).
//
// Design (v5, dev/kernels/b2b_wgmma/NOTES.md): one CTA per 128 rows of X and BN = 128
// columns of Y (BN = 176 where K2 is wider: LlamaSimple's 341 in two column tiles, not
// three); two consumer warpgroups of 64 rows and a producer warpgroup, three of whose
// warps load through the tensor memory accelerator (TMA): the CTA's X tile (K1 <= 128,
// read once into the consumers' registers), then per 32-wide chunk of C its At [32, K1], Bt
// [BN, 32] and mask tile [128, 32], each operand into a ring of its own (At 4 stages,
// Bt 3, mask 3; 3, 3, 3 where P is stored; with BN = 176, whose Bt stages are larger,
// 2, 3, 2). Stages are handed
// over with mbarriers (full: the bytes landed; empty: all eight consumer warps are done
// with it), so the two warpgroups never wait for each other, and an At stage is free as
// soon as GEMM1 is done with it. Per chunk and warpgroup: S = X At_chunk^T by wgmma
// m64n32k8 (X from registers, At from shared memory), the mask multiply (and the optional
// N x C outputs: P goes out through a staging buffer and TMA stores) on S's
// registers, then Y += P B_chunk by wgmma m64n128k8 (m64n176k8)
// with P as the register operand; GEMM2 of chunk c runs under the mask pass of chunk
// c + 1. The accumulator holds columns 2t, 2t + 1 of each 8 where the register operand
// wants t, t + 4; the weight copy's column order (0 2 4 6 1 3 5 7) absorbs that, so no
// shuffles. At is read as TF32 by truncation (as cuBLAS's sm90 TF32 kernels read it);
// X, P and the weight copy are rounded. Every tile arrives with the 128-byte swizzle
// that the wgmma descriptors describe (16-byte piece c of row r at c ^ r % 8). Where
// the row blocks alone would leave SMs idle, the CTAs of a tile split C between them
// (grid z), each writing a partial Y that one reduction kernel sums (masked_b2b_splits).
// Up to three problems of one shape run in one launch (grid z = problem x split: k and v,
// gate and up), each with its own operands and outputs, or their products summed into
// one Y (the input gradient of modules that read the same input).
//
// With bf16 operands (X, At and Bt stored as bf16; the mask, S and Y float32) the same
// kernel takes chunks of 64 components, so that a Bt stage row is again 128 bytes: GEMM1
// is m64n64k16, GEMM2 m64nBNk16, and P goes into GEMM2 as bf16 pairs packed from S's
// registers, whose layout is already the k16 register operand's (no column order to
// absorb: the bf16 weight copy is plain B^T).
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <cuda_bf16.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"
#include "cuda/masked_b2b_sm90.h"
#include "cuda/tma_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"

#define BB_BM 128       // rows of X per CTA (two warpgroups of 64)
#define BB_BN 128       // columns of Y per CTA where K2 <= 128
#define BB_BN_WIDE 176  // and where it is wider (two tiles up to 352 columns)
#define BB_MAX_K1 128   // the X tile and the At chunk hold K1 <= 128
#define BB_CONSUMERS 256
#define BB_THREADS (BB_CONSUMERS + 128)  // + a producer warpgroup: one warp for each ring (At, Bt, the mask)
#define BB_SUB 128                       // bytes of one swizzled row: 32 floats or 64 bf16

// The shared-memory plan for element type T and BN columns of Y. A chunk of C is one
// swizzled row of a Bt stage (32 floats, 64 bf16). Stages per ring: a stage of At is
// free once GEMM1 of its chunk is done, one of Bt only after GEMM2, an iteration later,
// so At gets the deeper ring. bf16's mask stages hold 64 components (32 KB): two of them.
// With bf16, BN = 176, or OM (TF32 at BN = 128 with o_mask asked for), o_mask goes out
// through the TMA from a staging buffer of [64 rows, 128 bytes] per warpgroup; beside
// the larger Bt stages of BN = 176 (22 KB) that leaves room for 2 + 3 + 2, and TF32 at
// 128 gives up its fourth At stage for it.
template <typename T, int BN, bool OM>
struct b2b_plan {
    static constexpr bool bf16 = sizeof(T) == 2;
    static constexpr bool stage = bf16 || BN == BB_BN_WIDE || OM;  // o_mask staged for TMA stores
    static constexpr int bc = BB_SUB / (int)sizeof(T);          // C per chunk
    static constexpr int x_bytes = BB_BM * BB_MAX_K1 * (int)sizeof(T);   // [128 rows] sub-tiles
    static constexpr int at_bytes = bc * BB_MAX_K1 * (int)sizeof(T);     // 16 KB: [bc rows] sub-tiles
    static constexpr int mask_bytes = BB_BM * bc * 4;                   // [128 rows] x bc / 32 sub-tiles
    static constexpr int at_stages = BN == BB_BN ? (stage ? 3 : 4) : 2, bt_stages = 3;
    static constexpr int m_stages = bf16 ? 2 : BN == BB_BN ? 3 : 2;
    static constexpr int bt_bytes = BN * BB_SUB;           // [BN rows] x 1 sub-tile
    static constexpr int om_bytes = stage ? 2 * 64 * BB_SUB : 0;  // P's staging, [64 rows] per warpgroup
    static constexpr int barriers = 1 + 2 * (at_stages + bt_stages + m_stages);
    // + alignment to the 1024-byte swizzle atom, + the mbarriers
    static constexpr int smem_bytes = x_bytes + at_stages * at_bytes + bt_stages * bt_bytes + m_stages * mask_bytes +
                                      om_bytes + 1024 + 8 * barriers;
    static_assert(smem_bytes <= 227 * 1024, "the plan must fit an SM's shared memory");
};

#ifdef WG_HAVE_WGMMA
// Y [64 x BN per warpgroup] += P (registers) @ B^T (desc b), one k step (TF32 k8, bf16 k16).
template <typename T, int BN>
static __device__ __forceinline__ void wgmma_y_rs(float *d, float a0, float a1, float a2, float a3, uint64_t b) {
    const uint32_t r0 = __float_as_uint(a0), r1 = __float_as_uint(a1), r2 = __float_as_uint(a2),
                   r3 = __float_as_uint(a3);
    if constexpr (sizeof(T) == 4 && BN == BB_BN)
        WG_WGMMA_M64N128_RS("wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32", "1, 1, 1", d, r0, r1, r2, r3, b);
    else if constexpr (sizeof(T) == 4)
        WG_WGMMA_M64N176_RS("wgmma.mma_async.sync.aligned.m64n176k8.f32.tf32.tf32", "1, 1, 1", d, r0, r1, r2, r3, b);
    else if constexpr (BN == BB_BN)
        WG_WGMMA_M64N128_RS("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", "1, 1, 1, 0", d, r0, r1, r2, r3,
                            b);
    else
        WG_WGMMA_M64N176_RS("wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16", "1, 1, 1, 0", d, r0, r1, r2, r3,
                            b);
}

// S [64 x bc per warpgroup] = a b (first) or += a b: GEMM1's k step, a the four fragment
// registers (bit patterns), b At's descriptor. TF32: m64n32k8; bf16: m64n64k16.
template <typename T, bool first>
static __device__ __forceinline__ void wgmma_s_rs(float *d, const float *a, uint64_t b) {
    if constexpr (sizeof(T) == 4) {
        wgmma_m64n32k8_rs<first>(d, a, b);
    } else {
        const uint32_t r0 = __float_as_uint(a[0]), r1 = __float_as_uint(a[1]), r2 = __float_as_uint(a[2]),
                       r3 = __float_as_uint(a[3]);
        if constexpr (first)
            WG_WGMMA_M64N64_RS("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16", "0, 1, 1, 0", d, r0, r1, r2, r3,
                               b);
        else
            WG_WGMMA_M64N64_RS("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16", "1, 1, 1, 0", d, r0, r1, r2, r3,
                               b);
    }
}

// Two floats as the bit pattern of a bf16 pair (x in the low half: the lower column).
static __device__ __forceinline__ float pack_bf16x2(float x, float y) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return __uint_as_float(*(const uint32_t *)&h);
}
#endif

// T: the operands' type in memory (float: read as TF32; __nv_bfloat16). NK1: K1's
// 128-byte sub-tiles (1 to 4 of 32 floats, 1 or 2 of 64 bf16), fixed at compile time so
// that the first product's steps unroll and its accumulators stay in place. EXTRA:
// o_plain or o_aux may be asked for (the variant without them has the registers not to
// spill). BN: the columns of Y per CTA (BB_BN or BB_BN_WIDE). OM: o_mask is asked for
// (b2b_plan: where it changes the plan).
// The tensor maps (host: tma_tensor_map) cover X [M, K1], At [C, K1], Bt [K2, ldb] (each
// in boxes of 128 bytes' width) and the mask [M, C] (boxes of 32 floats); tm_om covers
// o_mask [M, C] in boxes of [64 rows, 128 bytes] (the TMA stores P; not read without it,
// which a plan that does not stage it must be given).
template <typename T>
struct b2b_member {
    CUtensorMap tm_x, tm_at, tm_bt, tm_mask, tm_om;
    const float *aux;
    float *o_plain;
    T *o_mask;
    float *o_aux;
    float *Y;  // its own Y, or its first split's partial sum
    float beta;
};
// One launch: grid z = problem g x split (S per problem); split z's partial Y at Y + z
// split_y (masked_b2b_splits). Passed whole as one __grid_constant__ parameter, so that a
// CTA indexes its problem's tensor maps in place.
template <typename T>
struct b2b_args {
    b2b_member<T> p[MASKED_B2B_MAX_GROUP];
    int M, C, K2, ldy, S, split_ch;
    long long split_y;
};

template <typename T, int NK1, bool EXTRA, int BN, bool OM>
static __global__ void __launch_bounds__(BB_THREADS, 1) masked_b2b_kernel(const __grid_constant__ b2b_args<T> args) {
#ifdef WG_HAVE_WGMMA
    const b2b_member<T> &pr = args.p[blockIdx.z / args.S];
    const CUtensorMap *tm_x = &pr.tm_x, *tm_at = &pr.tm_at, *tm_bt = &pr.tm_bt, *tm_mask = &pr.tm_mask,
                      *tm_om = &pr.tm_om;
    const int M = args.M, C = args.C, K2 = args.K2, ldy = args.ldy, split_ch = args.split_ch;
    const int z = blockIdx.z % args.S;
    const float beta = pr.beta;
    float *__restrict__ Y = pr.Y + z * args.split_y;
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    using plan = b2b_plan<T, BN, OM>;
    constexpr bool bf16 = plan::bf16, stage = plan::stage;
    constexpr int BC = plan::bc;  // components per chunk; also the elements of a 128-byte row
    const uint32_t xs = (raw + 1023) & ~1023u, at0 = xs + plan::x_bytes, bt0 = at0 + plan::at_stages * plan::at_bytes;
    const uint32_t mk0 = bt0 + plan::bt_stages * plan::bt_bytes, om0 = mk0 + plan::m_stages * plan::mask_bytes;
    const uint32_t x_full = om0 + plan::om_bytes;
    // The rings: chunk ch in stage ch % stages, its (ch / stages)-th use of that stage.
    const ring at_ring = {at0, plan::at_bytes, x_full + 8, plan::at_stages};
    const ring bt_ring = {bt0, plan::bt_bytes, at_ring.bars + 16 * plan::at_stages, plan::bt_stages};
    const ring mk_ring = {mk0, plan::mask_bytes, bt_ring.bars + 16 * plan::bt_stages, plan::m_stages};
    const int m0 = blockIdx.y * BB_BM, n0 = blockIdx.x * BN;
    const int warp_id = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Split z walks chunks [z split_ch, + split_ch) of C from component c0. ch below counts
    // its chunks.
    const int ch0 = z * split_ch, nch = min((C + BC - 1) / BC - ch0, split_ch), c0 = ch0 * BC;
    if (threadIdx.x == 0) {
        mbar_init(x_full, 1);
        at_ring.init(BB_CONSUMERS / 32);
        bt_ring.init(BB_CONSUMERS / 32);
        mk_ring.init(BB_CONSUMERS / 32);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    // The producers: one thread in each of the first three warps of the last warpgroup,
    // which gives most of its registers to the consumers (BN = 176 needs 88 accumulators).
    if (warp_id >= BB_CONSUMERS / 32) {
        producer_regs();
        const int which = warp_id - BB_CONSUMERS / 32;
        if (lane != 0) return;
        if (which == 0) {  // X, then At
            mbar_expect(x_full, NK1 * BB_BM * BB_SUB);
            for (int s = 0; s < NK1; s++) tma_load(xs + s * (BB_BM * BB_SUB), tm_x, BC * s, m0, x_full);
            for (int ch = 0; ch < nch; ch++) {
                const uint32_t st = at_ring.acquire(ch, NK1 * BC * BB_SUB);
                for (int s = 0; s < NK1; s++)
                    tma_load(st + s * (BC * BB_SUB), tm_at, BC * s, c0 + ch * BC, at_ring.full(ch));
            }
        } else if (which == 1) {
            for (int ch = 0; ch < nch; ch++)
                tma_load(bt_ring.acquire(ch, plan::bt_bytes), tm_bt, c0 + ch * BC, n0, bt_ring.full(ch));
        } else if (which == 2) {  // the mask's chunk in boxes of 32 floats
            for (int ch = 0; ch < nch; ch++) {
                const uint32_t st = mk_ring.acquire(ch, plan::mask_bytes);
                for (int s = 0; s < BC / 32; s++)
                    tma_load(st + s * (BB_BM * BB_SUB), tm_mask, c0 + ch * BC + 32 * s, m0, mk_ring.full(ch));
            }
        }
        return;
    }
    consumer_regs();

    const int wg = threadIdx.x >> 7, warp = warp_id & 3;
    const bool lead = (threadIdx.x & 127) == 0;  // the warpgroup's thread that issues its TMA stores
    // The warpgroup's four warps meet (named barrier 1 + wg; 0 is __syncthreads').
    auto wg_sync = [&]() { asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory"); };
    // The N x C outputs come from the first column tile of Y only (the others recompute S).
    // (A plan without staging is never given o_mask: the host picks OM.) Their pointers are
    // read where used, from the parameter: held in registers, they made the 176-wide
    // variants spill.
    const bool first_tile = blockIdx.x == 0, o_mask = stage && first_tile && pr.o_mask;
    // Accumulator layout of m64nN: warp w of the warpgroup holds rows 16 w .. 16 w + 15;
    // lane l holds rows l / 4 (+ 8 for i = 1), columns 8 j + 2 (l % 4) + {0, 1} as
    // d[4 j + 2 i + {0, 1}].
    const int rl = 64 * wg + 16 * warp + (lane >> 2), col_a = 2 * (lane & 3);
    const int row_a = m0 + rl;
    // Descriptors as a base plus an offset (the address field is the low 14 bits, >> 4,
    // with no carry out inside 228 KB): computed whole at each use, ptxas kept dozens of
    // them live and ran out of registers.
    const uint64_t at_desc0 = smem_desc(at0), bt_desc0 = smem_desc(bt0);
    // The warpgroup's 64 rows of X as GEMM1's register operand, read from the tile once
    // (k step ks, fragment register q: row rl + 8 (q & 1); TF32 k8: column 8 ks + l % 4 +
    // 4 (q >> 1), rounded; bf16 k16: the pair at column 16 ks + 2 (l % 4) + 8 (q >> 1)):
    // GEMM1 then reads only At from shared memory (with both operands from there,
    // m64n32k8 read 3 KB per 16 tensor cycles, more than shared memory's 128 bytes per cycle).
    float xr[4 * NK1][4];
    mbar_wait(x_full, 0);
    {
        const unsigned char *xt = smem_raw + (xs - raw);
#pragma unroll
        for (int ks = 0; ks < 4 * NK1; ks++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int r = rl + 8 * (q & 1);
                if constexpr (bf16) {
                    const int k = 16 * ks + 2 * (lane & 3) + 8 * (q >> 1), cc = k & 63;
                    xr[ks][q] = *(const float *)(xt + (k >> 6) * (BB_BM * BB_SUB) + r * BB_SUB +
                                                 (((cc >> 3) ^ (r & 7)) << 4) + 2 * (cc & 7));
                } else {
                    const int k = 8 * ks + (lane & 3) + 4 * (q >> 1), cc = k & 31;
                    xr[ks][q] = to_tf32(*(const float *)(xt + (k >> 5) * (BB_BM * BB_SUB) + r * BB_SUB +
                                                         (((cc >> 2) ^ (r & 7)) << 4) + 4 * (cc & 3)));
                }
            }
    }
    // S = X At_chunk^T from chunk ch's stage (issued and committed, not waited for).
    auto gemm1 = [&](float *S, int ch) {
        const uint64_t at_desc = at_desc0 + (((ch % plan::at_stages) * plan::at_bytes) >> 4);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int s = 0; s < NK1; s++)
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const uint64_t b = at_desc + ((s * (BC * BB_SUB) + 32 * kk) >> 4);
                if (s == 0 && kk == 0)
                    wgmma_s_rs<T, true>(S, xr[0], b);
                else
                    wgmma_s_rs<T, false>(S, xr[4 * s + kk], b);
            }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    float y[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; i++) y[i] = 0.0f;
    // Y += P B_chunk from chunk ch's stage, four k steps. TF32: k8 step kk is P's column
    // block kk, in the register order (row l/4, slot l%4) = column 2 (l%4), (row l/4, slot
    // l%4 + 4) = column 2 (l%4) + 1. bf16: P arrives packed, step kk's pairs in P[4 kk ..].
    auto gemm2 = [&](const float *P, int ch) {
        const uint64_t bt_desc = bt_desc0 + (((ch % plan::bt_stages) * plan::bt_bytes) >> 4);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            const uint64_t b = bt_desc + ((32 * kk) >> 4);
            if constexpr (bf16)
                wgmma_y_rs<T, BN>(y, P[4 * kk], P[4 * kk + 1], P[4 * kk + 2], P[4 * kk + 3], b);
            else
                wgmma_y_rs<T, BN>(y, P[4 * kk], P[4 * kk + 2], P[4 * kk + 1], P[4 * kk + 3], b);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    };
    // S -> P in place (after the N x C outputs that are asked for), chunk ch; then this
    // warp is done with the chunk's mask stage.
    auto mask_pass = [&](float *S, int ch) {
        mk_ring.wait(ch);
        const unsigned char *mk = smem_raw + (mk_ring.stage(ch) - raw) + rl * BB_SUB;
#pragma unroll
        for (int j = 0; j < BC / 8; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float *v = S + 4 * j + 2 * i;
                const int row = row_a + 8 * i, cc = 8 * j + col_a, col = c0 + ch * BC + cc;
                // row rl + 8 i: the same row % 8 as rl; column cc in the mask's box cc / 32
                const int box = BC == 32 ? 0 : cc >> 5, cb = BC == 32 ? cc : cc & 31;
                const float2 m = *(const float2 *)(mk + box * (BB_BM * BB_SUB) + 8 * i * BB_SUB +
                                                   (((cb >> 2) ^ (rl & 7)) << 4) + 4 * (cb & 3));
                if (EXTRA && first_tile && (pr.o_plain || pr.o_aux) && row < M && col < C) {
                    const long long o = (long long)row * C + col;
                    if (pr.o_plain) *(float2 *)(pr.o_plain + o) = make_float2(v[0], v[1]);
                    if (pr.o_aux) {
                        const float2 g = __ldg((const float2 *)(pr.aux + o));
                        *(float2 *)(pr.o_aux + o) = make_float2(v[0] * g.x, v[1] * g.y);
                    }
                }
                if constexpr (bf16) {
                    v[0] *= m.x;
                    v[1] *= m.y;
                } else {
                    // P rounded to TF32 (not truncated: a truncated operand is biased towards
                    // zero, and the bias adds up in the gradients' sums over tokens).
                    v[0] = to_tf32(v[0] * m.x);
                    v[1] = to_tf32(v[1] * m.y);
                }
            }
        // bf16: the pairs (2 q, 2 q + 1) into S[q], in the order GEMM2 reads them (each
        // write is below the reads that follow it): S[2 j + i] holds row i's columns 8 j +
        // 2 (l % 4), + 1.
        if constexpr (bf16) {
#pragma unroll
            for (int q = 0; q < BC / 4; q++) S[q] = pack_bf16x2(S[2 * q], S[2 * q + 1]);
        }
        mk_ring.release_after_loads(ch, lane);
        // o_mask through the warpgroup's staging buffer and one TMA store (the threads'
        // own scattered stores held the products up: bf16 77.6 against 38.3 us per 128-wide
        // call without them, TF32 73.2 against 44.0): once the previous chunk's store has
        // read the buffer, every thread writes its values (swizzled, so conflict-free; TF32:
        // P as rounded for GEMM2, which the weight gradients' TF32 products read alike),
        // then one thread stores the box.
        if constexpr (stage) {
            if (o_mask) {
                if (lead) tma_store_wait<true>();
                wg_sync();
                unsigned char *stg = smem_raw + (om0 - raw) + wg * (64 * BB_SUB);
#pragma unroll
                for (int j = 0; j < BC / 8; j++)
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        unsigned char *row = stg + (16 * warp + (lane >> 2) + 8 * i) * BB_SUB;  // row % 8 == rl % 8
                        if constexpr (bf16)  // columns 8 j + 2 (l % 4), + 1: 16-byte piece j
                            *(float *)(row + ((j ^ (rl & 7)) << 4) + 4 * (lane & 3)) = S[2 * j + i];
                        else  // piece 2 j + (l % 4) / 2
                            *(float2 *)(row + (((2 * j + ((lane & 3) >> 1)) ^ (rl & 7)) << 4) + 8 * (lane & 1)) =
                                make_float2(S[4 * j + 2 * i], S[4 * j + 2 * i + 1]);
                    }
                fence_async_shared();
                wg_sync();
                if (lead) tma_store(tm_om, om0 + wg * (64 * BB_SUB), c0 + ch * BC, m0 + 64 * wg);
            }
        }
    };

    // Prologue: S of chunk 0 and its mask pass.
    float sa[BC / 2], sb[BC / 2];
    at_ring.wait(0);
    gemm1(sa, 0);
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    at_ring.release(0, lane);
    mask_pass(sa, 0);

    // Iteration c: P of chunk c is in cur; nxt receives chunk c + 1's. GEMM2 of chunk c runs
    // under the mask pass of chunk c + 1.
    auto iteration = [&](int c, float *cur, float *nxt) {
        const bool more = c + 1 < nch;
        if (more) at_ring.wait(c + 1);
        // Past the last chunk GEMM1 reads a stale stage, never used: issued anyway, since
        // with a conditional wgmma ptxas serializes them all (C7514).
        gemm1(nxt, c + 1);
        bt_ring.wait(c);
        gemm2(cur, c);
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");  // GEMM1 of c + 1 (committed first)
        if (more) at_ring.release(c + 1, lane);
        if (c > 0) bt_ring.release(c - 1, lane);  // GEMM2 of c - 1 was committed before GEMM1 of c + 1
        if (more) mask_pass(nxt, c + 1);
    };
    for (int c = 0; c < nch; c += 2) {
        iteration(c, sa, sb);
        if (c + 1 < nch) iteration(c + 1, sb, sa);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    if constexpr (stage) {  // the shared memory the stores read must outlive them
        if (lead && o_mask) tma_store_wait<false>();
    }

    // Y's two columns per fragment (an even column) as one 8-byte access where the address
    // allows it (with an odd ldy, every other row); with beta, every old value is loaded
    // before the first store (one round trip, not 88).
    if (beta != 0.0f) {
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int row = row_a + 8 * i, col = n0 + 8 * j + col_a;
                if (row >= M) continue;
                const float *o = Y + (long long)row * ldy + col;
                if (col + 1 < K2 && ((uintptr_t)o & 7) == 0) {
                    const float2 old = *(const float2 *)o;
                    y[4 * j + 2 * i] += beta * old.x;
                    y[4 * j + 2 * i + 1] += beta * old.y;
                } else {
                    if (col < K2) y[4 * j + 2 * i] += beta * o[0];
                    if (col + 1 < K2) y[4 * j + 2 * i + 1] += beta * o[1];
                }
            }
    }
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int row = row_a + 8 * i, col = n0 + 8 * j + col_a;
            if (row >= M) continue;
            float *o = Y + (long long)row * ldy + col;
            if (col + 1 < K2 && ((uintptr_t)o & 7) == 0) {
                *(float2 *)o = make_float2(y[4 * j + 2 * i], y[4 * j + 2 * i + 1]);
            } else {
                if (col < K2) o[0] = y[4 * j + 2 * i];
                if (col + 1 < K2) o[1] = y[4 * j + 2 * i + 1];
            }
        }
#endif
}

// SPD_CUDA_B2B=0 turns it off (for A/B timing against masked_gemm_sm90 + cuBLAS).
static bool env_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_B2B", true);
    return env;
}

// The widest Y that runs here: each column tile past the first recomputes S (and rereads
// the mask). Two of 176: LlamaSimple's 341-wide MLP (gate and up forward, down's dx).
static int max_k2(void) {
    static const int k2 = (int)spd_env_long_or_die("SPD_CUDA_B2B_MAX_K2", 2 * BB_BN_WIDE, 0, INT_MAX);
    return k2;
}

// Columns of Y per CTA: one tile of 128 up to 128, else tiles of 176.
static int tile_n(int K2) { return K2 <= BB_BN ? BB_BN : BB_BN_WIDE; }

// The fewest rows that run here (SPD_CUDA_B2B_MIN_M). Where the row blocks alone would
// leave SMs idle, C is split among more CTAs (masked_b2b_splits), so any M may run.
extern "C" int masked_b2b_sm90_min_m(void) {
    static const int m = (int)spd_env_long_or_die("SPD_CUDA_B2B_MIN_M", 0, 0, INT_MAX);
    return m;
}

template <typename T>
using b2b_kernel_fn = void (*)(const b2b_args<T>);
#define B2B_KERNELS(BN, OM)                                                                                        \
    {masked_b2b_kernel<float, 1, false, BN, OM>, masked_b2b_kernel<float, 2, false, BN, OM>,                       \
     masked_b2b_kernel<float, 3, false, BN, OM>, masked_b2b_kernel<float, 4, false, BN, OM>,                       \
     masked_b2b_kernel<float, 1, true, BN, OM>,  masked_b2b_kernel<float, 2, true, BN, OM>,                        \
     masked_b2b_kernel<float, 3, true, BN, OM>,  masked_b2b_kernel<float, 4, true, BN, OM>}
// [plan: 128 wide, 176 wide, 128 wide staging o_mask][EXTRA][NK1 - 1]
static const b2b_kernel_fn<float> kernels[3][8] = {B2B_KERNELS(BB_BN, false), B2B_KERNELS(BB_BN_WIDE, false),
                                                    B2B_KERNELS(BB_BN, true)};
static const int smem_bytes[3] = {b2b_plan<float, BB_BN, false>::smem_bytes,
                                  b2b_plan<float, BB_BN_WIDE, false>::smem_bytes,
                                  b2b_plan<float, BB_BN, true>::smem_bytes};
#define B2B_KERNELS_BF16(BN)                                                                                       \
    {masked_b2b_kernel<__nv_bfloat16, 1, false, BN, false>, masked_b2b_kernel<__nv_bfloat16, 2, false, BN, false>, \
     masked_b2b_kernel<__nv_bfloat16, 1, true, BN, false>, masked_b2b_kernel<__nv_bfloat16, 2, true, BN, false>}
// [BN == BB_BN_WIDE][EXTRA][NK1 - 1]
static const b2b_kernel_fn<__nv_bfloat16> kernels_bf16[2][4] = {B2B_KERNELS_BF16(BB_BN),
                                                                 B2B_KERNELS_BF16(BB_BN_WIDE)};
static const int smem_bytes_bf16[2] = {b2b_plan<__nv_bfloat16, BB_BN, false>::smem_bytes,
                                       b2b_plan<__nv_bfloat16, BB_BN_WIDE, false>::smem_bytes};

// On an sm_90 device, with the kernels' shared-memory limit raised (once).
static bool device_is_sm90(void) {
    static bool smem_raised = false;
    if (!spd_cuda_is_sm90()) return false;
    if (!smem_raised) {
        for (int w = 0; w < 3; w++)
            for (int i = 0; i < 8; i++)
                CUDA_CHECK(cudaFuncSetAttribute(kernels[w][i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                smem_bytes[w]));
        for (int w = 0; w < 2; w++)
            for (int i = 0; i < 4; i++)
                CUDA_CHECK(cudaFuncSetAttribute(kernels_bf16[w][i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                smem_bytes_bf16[w]));
        smem_raised = true;
    }
    return true;
}

// Splits of C: with fewer CTAs than SMs (fewer than 132 row blocks on an H100 for the
// 128-wide tiles: up to 32x512 tokens), each CTA walked all of C, and the idle SMs made
// this kernel lose to masked_gemm_sm90 + cuBLAS below 7/16 of them (session 8). Now S
// CTAs per tile each walk a share of the chunks (at least B2B_SPLIT_MIN_CH) into a partial
// Y of their own, and spd_cuda_splitk_reduce sums the partials in a fixed order (the same
// bits every run). SPD_CUDA_B2B_SPLIT: 0 (default) chooses S to fill the SMs, 1 never
// splits, S > 1 takes S (as does masked_b2b_sm90_force_split, the tests' hook).
#define B2B_SPLIT_MIN_CH 4
static int split_forced;

extern "C" void masked_b2b_sm90_force_split(int S) { split_forced = S; }

// S for `tiles` CTAs of nch chunks each; *split_ch = the chunks per split (no split empty).
static int masked_b2b_splits(int tiles, int nch, int *split_ch) {
    static const int env = (int)spd_env_long_or_die("SPD_CUDA_B2B_SPLIT", 0, 0, INT_MAX);
    int S = split_forced ? split_forced : env;
    if (S == 0) {
        S = spd_cuda_sm_count() / tiles;
        if (S > nch / B2B_SPLIT_MIN_CH) S = nch / B2B_SPLIT_MIN_CH;
    }
    if (S > nch) S = nch;
    if (S < 1) S = 1;
    *split_ch = (nch + S - 1) / S;
    return (nch + *split_ch - 1) / *split_ch;
}

// The launch of G problems, split or not: Y's tiles of bn columns, chunks of bc
// components. a.p[g] holds problem g's tensor maps and outputs, its Y and beta the
// caller's (sum_y: the first problem's, for all); the rest of a is set here. Partial sums
// where C is split, or where the problems' products are summed: [G, S] slices of [M, ldp].
template <typename T>
static void launch(b2b_kernel_fn<T> kernel, int smem, int bn, int bc, b2b_args<T> a, int G, int M, int C, int K2,
                   int ldy, bool sum_y) {
    SPD_ASSERT(G >= 1 && G <= MASKED_B2B_MAX_GROUP);
    const int tiles_n = (K2 + bn - 1) / bn, tiles_m = (M + BB_BM - 1) / BB_BM;
    int split_ch;
    const int S = masked_b2b_splits(G * tiles_n * tiles_m, (C + bc - 1) / bc, &split_ch);
    const bool partials = S > 1 || (sum_y && G > 1);
    cudaStream_t st = spd_cuda_stream();
    const int ldp = (K2 + 3) & ~3;
    const long long slice = partials ? (long long)M * ldp : 0;
    float *part = NULL, *Y[MASKED_B2B_MAX_GROUP];
    float beta[MASKED_B2B_MAX_GROUP];
    if (partials) CUDA_CHECK(cudaMallocAsync((void **)&part, (size_t)G * S * slice * sizeof(float), st));
    for (int g = 0; g < G; g++) {
        Y[g] = a.p[g].Y;
        beta[g] = a.p[g].beta;
        if (partials) {
            a.p[g].Y = part + (long long)g * S * slice;
            a.p[g].beta = 0.0f;
        }
    }
    a.M = M;
    a.C = C;
    a.K2 = K2;
    a.ldy = partials ? ldp : ldy;
    a.S = S;
    a.split_ch = split_ch;
    a.split_y = slice;
    const dim3 grid((unsigned)tiles_n, (unsigned)tiles_m, (unsigned)(G * S));
    kernel<<<grid, BB_THREADS, smem, st>>>(a);
    CUDA_CHECK_LAUNCH();
    if (!partials) return;
    if (sum_y) {
        spd_cuda_splitk_reduce(Y[0], ldy, part, ldp, slice, G * S, M, K2, 1, beta[0]);
    } else {
        for (int g = 0; g < G; g++)
            spd_cuda_splitk_reduce(Y[g], ldy, part + (long long)g * S * slice, ldp, slice, S, M, K2, 1, beta[g]);
    }
    CUDA_CHECK(cudaFreeAsync(part, st));
}

// What both element types need: fused mode, the kernel on, M, K2 and C in range (C % 4:
// the mask's rows are read by the TMA, whose row strides are multiples of 16 bytes), the
// mask there and 16-byte aligned, the other [M, C] float buffers 8-byte aligned.
static bool shapes_ok(int M, int C, int K1, int K2, const float *mask, const float *aux, const float *o_plain,
                      const float *o_aux) {
    if (!env_on() || spd_cuda_mode_get() != SPD_CUDA_FUSED) return false;
    if (M <= 0 || M < masked_b2b_sm90_min_m() || C <= 0 || K1 <= 0 || K2 <= 0 || K1 > BB_MAX_K1 || C % 4 ||
        K2 > max_k2())
        return false;
    if (!mask || !spd_aligned(mask, 16)) return false;
    const void *mc[3] = {aux, o_plain, o_aux};
    for (int i = 0; i < 3; i++)
        if (mc[i] && !spd_aligned(mc[i], 8)) return false;
    return true;
}

extern "C" bool masked_b2b_sm90_ok(int M, int C, int K1, int K2, const float *X, int ldx, const float *mask,
                                   const float *aux, const float *o_plain, const float *o_mask, const float *o_aux) {
    if (spd_cuda_matmul_precision() != SPD_MATMUL_TF32 || !shapes_ok(M, C, K1, K2, mask, aux, o_plain, o_aux))
        return false;
    if (K1 % 4 || ldx % 4 || !spd_aligned(X, 16) || (o_mask && !spd_aligned(o_mask, 16))) return false;
    return device_is_sm90();
}

extern "C" bool masked_b2b_sm90_bf16_ok(int M, int C, int K1, int K2, int ldx, const float *mask, const float *aux,
                                        const float *o_plain, const float *o_aux) {
    if (spd_cuda_matmul_precision() != SPD_MATMUL_BF16 || !shapes_ok(M, C, K1, K2, mask, aux, o_plain, o_aux))
        return false;
    if (ldx % 8 || ldx < K1 || C % 8) return false;
    return device_is_sm90();
}

extern "C" int masked_b2b_ldb(int C) { return (C + 7) & ~7; }

// Whether any problem asks for o_plain or o_aux (the EXTRA variant), or for o_mask.
static bool any_extra(int G, const masked_b2b_problem *p) {
    for (int g = 0; g < G; g++)
        if (p[g].o_plain || p[g].o_aux) return true;
    return false;
}

static bool any_o_mask(int G, const masked_b2b_problem *p) {
    for (int g = 0; g < G; g++)
        if (p[g].o_mask) return true;
    return false;
}

// Problem g's outputs into the kernel's argument (its tensor maps are the caller's).
template <typename T>
static void set_outputs(b2b_member<T> *m, const masked_b2b_problem *p) {
    SPD_ASSERT((p->beta == 0.0f || p->beta == 1.0f) && (!p->o_aux || p->aux));
    m->aux = p->aux;
    m->o_plain = p->o_plain;
    m->o_mask = (T *)p->o_mask;
    m->o_aux = p->o_aux;
    m->Y = p->Y;
    m->beta = p->beta;
}

extern "C" void masked_b2b_sm90_group(int G, const masked_b2b_problem *p, int M, int C, int K1, int K2, int ldx,
                                      int lda, int ldy, bool sum_y) {
    SPD_ASSERT(G >= 1 && G <= MASKED_B2B_MAX_GROUP && lda % 4 == 0);
    const bool om = any_o_mask(G, p);
    const int bn = tile_n(K2), plan = bn == BB_BN_WIDE ? 1 : om ? 2 : 0;
    const b2b_kernel_fn<float> kernel = kernels[plan][(any_extra(G, p) ? 4 : 0) + (K1 + 31) / 32 - 1];
    b2b_args<float> a;
    memset(&a, 0, sizeof a);
    for (int g = 0; g < G; g++) {
        SPD_ASSERT(spd_aligned(p[g].At, 16) && spd_aligned(p[g].Bt, 16));
        SPD_ASSERT(!p[g].o_mask || spd_aligned(p[g].o_mask, 16));
        b2b_member<float> *m = &a.p[g];
        m->tm_x = tma_tensor_map((const float *)p[g].X, M, K1, ldx, BB_BM);
        m->tm_at = tma_tensor_map((const float *)p[g].At, C, K1, lda, 32);
        m->tm_bt = tma_tensor_map((const float *)p[g].Bt, K2, masked_b2b_ldb(C), masked_b2b_ldb(C), bn);
        m->tm_mask = tma_tensor_map(p[g].mask, M, C, C, BB_BM);
        // P's stores: boxes of [64 rows, 32 columns] (one warpgroup's rows of a chunk).
        m->tm_om = p[g].o_mask ? tma_tensor_map((const float *)p[g].o_mask, M, C, C, 64) : m->tm_mask;
        set_outputs(m, &p[g]);
    }
    launch<float>(kernel, smem_bytes[plan], bn, 32, a, G, M, C, K2, ldy, sum_y);
}

extern "C" void masked_b2b_sm90_bf16_group(int G, const masked_b2b_problem *p, int M, int C, int K1, int K2, int ldx,
                                           int lda, int ldy, bool sum_y) {
    SPD_ASSERT(G >= 1 && G <= MASKED_B2B_MAX_GROUP && lda % 8 == 0);
    const int bn = tile_n(K2), wide = bn == BB_BN_WIDE;
    const b2b_kernel_fn<__nv_bfloat16> kernel = kernels_bf16[wide][(any_extra(G, p) ? 2 : 0) + (K1 + 63) / 64 - 1];
    const int bc = b2b_plan<__nv_bfloat16, BB_BN, false>::bc;
    b2b_args<__nv_bfloat16> a;
    memset(&a, 0, sizeof a);
    for (int g = 0; g < G; g++) {
        SPD_ASSERT(spd_aligned(p[g].X, 16) && spd_aligned(p[g].At, 16) && spd_aligned(p[g].Bt, 16));
        SPD_ASSERT(!p[g].o_mask || (spd_aligned(p[g].o_mask, 16) && C % 8 == 0));
        b2b_member<__nv_bfloat16> *m = &a.p[g];
        m->tm_x = tma_tensor_map_bf16(p[g].X, M, K1, ldx, BB_BM);
        m->tm_at = tma_tensor_map_bf16(p[g].At, C, K1, lda, bc);
        m->tm_bt = tma_tensor_map_bf16(p[g].Bt, K2, masked_b2b_ldb(C), masked_b2b_ldb(C), bn);
        m->tm_mask = tma_tensor_map(p[g].mask, M, C, C, BB_BM);
        // P's stores: boxes of [64 rows, 64 columns] (one warpgroup's rows of a chunk).
        m->tm_om = p[g].o_mask ? tma_tensor_map_bf16(p[g].o_mask, M, C, C, 64) : m->tm_mask;
        set_outputs(m, &p[g]);
    }
    launch<__nv_bfloat16>(kernel, smem_bytes_bf16[wide], bn, bc, a, G, M, C, K2, ldy, sum_y);
}

extern "C" void masked_b2b_sm90(int M, int C, int K1, int K2, const float *X, int ldx, const float *At, int lda,
                                const float *Bt, const float *mask, const float *aux, float *o_plain, float *o_mask,
                                float *o_aux, float *Y, int ldy, float beta) {
    const masked_b2b_problem p = {X, At, Bt, mask, aux, o_plain, o_mask, o_aux, Y, beta};
    masked_b2b_sm90_group(1, &p, M, C, K1, K2, ldx, lda, ldy, false);
}

extern "C" void masked_b2b_sm90_bf16(int M, int C, int K1, int K2, const void *X16, int ldx, const void *At16,
                                     int lda, const void *Bt16, const float *mask, const float *aux, float *o_plain,
                                     void *o_mask16, float *o_aux, float *Y, int ldy, float beta) {
    const masked_b2b_problem p = {X16, At16, Bt16, mask, aux, o_plain, o_mask16, o_aux, Y, beta};
    masked_b2b_sm90_bf16_group(1, &p, M, C, K1, K2, ldx, lda, ldy, false);
}

// Bt [n, q] for q < ldb: B [c, n], zero for c >= C, with c = q for bf16 and, for TF32, the
// column that slot q % 8 of its group holds (rounded to TF32 here, once, rather than
// truncated by the tensor cores). The first n_at threads instead copy At [c, k] = V [k, c]
// for At [C, K1] with row stride lda (the forward's other operand, in the same launch: each
// copy alone is mostly a launch's fixed cost). blockIdx.y picks the problem of a group.
template <typename T>
struct b2b_weight_set {
    T *Bt[MASKED_B2B_MAX_GROUP], *At[MASKED_B2B_MAX_GROUP];
    const float *src[MASKED_B2B_MAX_GROUP], *V[MASKED_B2B_MAX_GROUP];
};

template <typename T>
static __global__ void b2b_weight_kernel(const __grid_constant__ b2b_weight_set<T> w, int ldb, int lds, int C,
                                         int K2, int c_major, int lda, int K1) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    T *const Bt = w.Bt[blockIdx.y], *const At = w.At[blockIdx.y];
    const float *const src = w.src[blockIdx.y], *const V = w.V[blockIdx.y];
    const long long n_at = At ? (long long)C * K1 : 0;
    if (i < n_at) {
        const long long c = i / K1, k = i % K1;
        if constexpr (sizeof(T) == 2)
            At[c * lda + k] = __float2bfloat16_rn(V[k * C + c]);
        else
            At[c * lda + k] = V[k * C + c];
        return;
    }
    i -= n_at;
    if (i >= (long long)K2 * ldb) return;
    const int n = (int)(i / ldb), q = (int)(i % ldb), t = q & 7;
    const int c = sizeof(T) == 2 ? q : (q & ~7) + (t < 4 ? 2 * t : 2 * (t - 4) + 1);
    const float v = c >= C ? 0.0f : c_major ? src[(long long)c * lds + n] : src[(long long)n * lds + c];
    if constexpr (sizeof(T) == 2) {
        Bt[i] = __float2bfloat16_rn(v);
    } else {
        uint32_t r;
        asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
        Bt[i] = __uint_as_float(r);
    }
}

// G problems' copies (At[g] NULL: Bt only; At NULL: none has it).
template <typename T>
static void b2b_weights(int G, void *const *Bt, const float *const *src, int lds, int C, int K2, bool c_major,
                        void *const *At, int lda, const float *const *V, int K1) {
    SPD_ASSERT(G >= 1 && G <= MASKED_B2B_MAX_GROUP);
    b2b_weight_set<T> w;
    memset(&w, 0, sizeof w);
    bool any_at = false;
    for (int g = 0; g < G; g++) {
        w.Bt[g] = (T *)Bt[g];
        w.src[g] = src[g];
        w.At[g] = At ? (T *)At[g] : NULL;
        w.V[g] = V ? V[g] : NULL;
        any_at = any_at || w.At[g];
    }
    const long long n = (long long)K2 * masked_b2b_ldb(C) + (any_at ? (long long)C * K1 : 0);
    if (n <= 0) return;
    const dim3 grid((unsigned)spd_cuda_blocks(n, 256), (unsigned)G);
    b2b_weight_kernel<T><<<grid, 256, 0, spd_cuda_stream()>>>(w, masked_b2b_ldb(C), lds, C, K2, c_major, lda, K1);
    CUDA_CHECK_LAUNCH();
}

extern "C" void masked_b2b_weight_cuda(float *Bt, const float *src, int lds, int C, int K2, bool c_major) {
    void *bt = Bt;
    b2b_weights<float>(1, &bt, &src, lds, C, K2, c_major, NULL, 0, NULL, 0);
}

extern "C" void masked_b2b_weights_cuda(float *At, const float *V, int K1, float *Bt, const float *src, int lds, int C,
                                        int K2, bool c_major) {
    void *bt = Bt, *at = At;
    b2b_weights<float>(1, &bt, &src, lds, C, K2, c_major, &at, K1, &V, K1);
}

extern "C" void masked_b2b_weight_bf16_cuda(void *Bt16, const float *src, int lds, int C, int K2, bool c_major) {
    b2b_weights<__nv_bfloat16>(1, &Bt16, &src, lds, C, K2, c_major, NULL, 0, NULL, 0);
}

extern "C" void masked_b2b_weights_bf16_cuda(void *At16, int lda, const float *V, int K1, void *Bt16,
                                             const float *src, int lds, int C, int K2, bool c_major) {
    b2b_weights<__nv_bfloat16>(1, &Bt16, &src, lds, C, K2, c_major, &At16, lda, &V, K1);
}

extern "C" void masked_b2b_weights_group_cuda(int G, void *const *At, int lda, const float *const *V, int K1,
                                              void *const *Bt, const float *const *src, int lds, int C, int K2,
                                              bool c_major, bool bf16) {
    if (bf16)
        b2b_weights<__nv_bfloat16>(G, Bt, src, lds, C, K2, c_major, At, lda, V, K1);
    else
        b2b_weights<float>(G, Bt, src, lds, C, K2, c_major, At, lda, V, K1);
}
