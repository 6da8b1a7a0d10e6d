// Causal grouped-query attention on the tensor cores (TF32 mma.sync m16n8k8), for the
// products that run in TF32 or bf16 (--tf32, --bf16). Same contract as attention.cu
// (layouts in attention.h: q [B, S, nh*hd], k, v [B, S, nkv*hd], att [B, nh, S, S] with
// zeros above the diagonal), head dims 32 and 64, S % 4 == 0. float32 products keep the
// exact FMA kernels of attention.cu.
//
// Every kernel is a block of 4 warps over a tile of 64 rows (queries or keys), 16 rows
// per warp; the warp's own 16 rows of q, dout or v stay in registers as mma A operands
// (rounded once), and the 64-row tiles of the other side stream through shared memory
// (cp.async, double-buffered, row stride hd + 4: conflict-free for both fragment reads), read
// as TF32 by truncation (as cuBLAS reads its operands; a cvt per use was ~a third of the
// key-side kernel's instructions).
// A probability tile P (or dS) comes out of one mma in the accumulator layout (row g,
// columns 2t, 2t+1 of each 8, g = lane / 4, t = lane % 4) and goes into the next as the
// A operand unshuffled: its 8 columns are taken in the order 0 2 4 6 1 3 5 7, so the B
// operand reads rows 2t and 2t + 1 of the tile where the plain order reads t and t + 4.
//  - forward, block per (query head, batch, 64 queries): pass 1 keeps each row's running
//    max and sum of exp2 (the scale times log2 e folded into q); pass 2 recomputes the
//    scores, writes P to att (float2 per lane) and sums O += P V.
//  - dq, block per (query head, batch, 64 queries): pass 1 sums D = sum_t P dP (dP = dO V^T,
//    P read from att) into a [B, nh, S] buffer; pass 2 recomputes dP and sums
//    dq += P (dP - D) scale K.
//  - dkv, block per (kv head, batch, 64 keys): for each query head of the group and each
//    query tile at or after the keys, dP^T = V dO^T, P^T from att (the tile staged in
//    shared memory and read transposed), dv += P^T dO, dk += dS^T Q. No atomics.
// Floor at the benchmark's shape (B 64, S 256, nh 4, nkv 2, hd 32; H100): att is 67 MB
// written once and its causal half read twice in the backward, ~22 + 2 x 11 us at 3 TB/s;
// the ~3.7 GFLOP per layer are a few us on the tensor cores. Hence, in fused mode, the
// memory-lean variants further down: no P in memory at all, recomputed in the backward.
#include <math.h>
#include <stdint.h>

#include "cuda/attention_tc.h"
#include "core/env.h"
#include "cuda/cuda_common.h"

#define TC_B 64         // rows per tile
#define TC_THREADS 128  // 4 warps, 16 rows each
#define TC_LDA (TC_B + 4)  // row stride of a staged [64, 64] att tile (dkv)

static __device__ __forceinline__ uint32_t tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// c += a b: one m16n8k8 TF32 product, float32 accumulation.
static __device__ __forceinline__ void mma_tf32(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ void cp_async16(float *dst, const float *src) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}
static __device__ __forceinline__ void cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
static __device__ __forceinline__ void cp_wait_all(void) { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// dst [64, LD] = rows r < nrows of src (row r at src + r*stride, W floats), zeros below.
template <int W, int LD>
static __device__ __forceinline__ void stage_rows(float *dst, const float *src, long long stride, int nrows) {
    constexpr int C4 = W / 4;
    for (int e = threadIdx.x; e < TC_B * C4; e += TC_THREADS) {
        const int r = e / C4, c = (e - r * C4) * 4;
        if (r < nrows) cp_async16(dst + r * LD + c, src + r * stride + c);
        else *(float4 *)(dst + r * LD + c) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
}

// Key tile kt (rows kt*64.. of src, row stride `stride`, S rows in all) into buffer kt % 2 of
// the two [64, HD + 4] buffers at bufs: the double-buffered tile loops of the forward and dq.
template <int HD>
static __device__ __forceinline__ void stage_tile(float *bufs, const float *src, int kt, long long stride, int S) {
    stage_rows<HD, HD + 4>(bufs + (kt & 1) * TC_B * (HD + 4), src + (long long)kt * TC_B * stride, stride,
                           min(TC_B, S - kt * TC_B));
}

// Key tile kt of both K and V (same row stride) into their buffers kt % 2.
template <int HD>
static __device__ __forceinline__ void stage_kv(float *Kb, float *Vb, const float *ksrc, const float *vsrc, int kt,
                                                long long stride, int S) {
    stage_tile<HD>(Kb, ksrc, kt, stride, S);
    stage_tile<HD>(Vb, vsrc, kt, stride, S);
}

// The top of iteration it of every double-buffered loop here (n iterations, stage(i) filling
// buffer i % 2, stage(0) committed before the loop): item it has landed and every warp is
// done with item it - 1, whose buffer then receives item it + 1.
template <typename F>
static __device__ __forceinline__ void next_stage(int it, int n, F &&stage) {
    cp_wait_all();
    __syncthreads();
    if (it + 1 < n) stage(it + 1);
    cp_commit();
}

// The A fragments of this warp's 16 rows (row0 = first of them) of a [rows, HD] matrix with
// row stride `stride`, times mul, rounded (ROUND) or as they are (then truncated by the mma,
// like a staged tile's values); rows >= S read as zero.
template <int HD, bool ROUND = true>
static __device__ __forceinline__ void row_frags(uint32_t a[HD / 8][4], const float *base, long long stride, int row0,
                                                 int S, float mul) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const int ra = row0 + g, rb = ra + 8;
    auto cv = [](float x) { return ROUND ? tf32(x) : __float_as_uint(x); };
#pragma unroll
    for (int ks = 0; ks < HD / 8; ks++) {
        const int c = ks * 8 + t;
        a[ks][0] = cv(ra < S ? base[ra * stride + c] * mul : 0.0f);
        a[ks][1] = cv(rb < S ? base[rb * stride + c] * mul : 0.0f);
        a[ks][2] = cv(ra < S ? base[ra * stride + c + 4] * mul : 0.0f);
        a[ks][3] = cv(rb < S ? base[rb * stride + c + 4] * mul : 0.0f);
    }
}

// acc[j] (j < 8: columns 8j..8j+7 of a [16, 64] tile) = A T^T, T [64, HD] staged with
// row stride HD + 4 (T's rows are the tile's columns).
// SCALED: T's values times mul first (the lean key-side kernel's q * scale * log2 e).
template <int HD, bool SCALED = false>
static __device__ __forceinline__ void frags_times_tile_t(float acc[8][4], const uint32_t a[HD / 8][4],
                                                          const float *T, float mul = 1.0f) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < HD / 8; ks++)
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float *r = T + (j * 8 + g) * (HD + 4) + ks * 8 + t;
            if constexpr (SCALED)
                mma_tf32(acc[j], a[ks], tf32(r[0] * mul), tf32(r[4] * mul));
            else  // read as TF32 by truncation, as cuBLAS's TF32 kernels read their operands
                mma_tf32(acc[j], a[ks], __float_as_uint(r[0]), __float_as_uint(r[4]));
        }
}

// Scores s (accumulator layout: rows ra, rb, columns of key tile kt) to -inf above the
// diagonal.
static __device__ __forceinline__ void causal_mask(float s[8][4], int kt, int ra, int rb) {
    const int t = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int key = kt * TC_B + j * 8 + 2 * t;
        if (key > ra) s[j][0] = -INFINITY;
        if (key + 1 > ra) s[j][1] = -INFINITY;
        if (key > rb) s[j][2] = -INFINITY;
        if (key + 1 > rb) s[j][3] = -INFINITY;
    }
}

// Max (MAX) or sum over the four lanes that hold one row.
template <bool MAX>
static __device__ __forceinline__ float quad_reduce(float x) {
#pragma unroll
    for (int o = 1; o < 4; o *= 2) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = MAX ? fmaxf(x, y) : x + y;
    }
    return x;
}

// out[n] (n < HD/8: columns 8n.. of a [16, HD] result) += X T, X [16, 64] in the accumulator
// layout of frags_times_tile_t (x[j], columns taken 0 2 4 6 1 3 5 7), T [64, HD] staged with
// row stride HD + 4.
template <int HD>
static __device__ __forceinline__ void acc_times_tile(float out[HD / 8][4], const float x[8][4], const float *T) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const uint32_t a[4] = {tf32(x[j][0]), tf32(x[j][2]), tf32(x[j][1]), tf32(x[j][3])};
        const float *r = T + (j * 8 + 2 * t) * (HD + 4) + g;
#pragma unroll
        for (int n = 0; n < HD / 8; n++)  // T read by truncation, as frags_times_tile_t reads it
            mma_tf32(out[n], a, __float_as_uint(r[n * 8]), __float_as_uint(r[n * 8 + HD + 4]));
    }
}

// Rows row0 + g and + 8 of a [16, HD] accumulator to dst (row r at dst + r*stride), rows < S.
template <int HD>
static __device__ __forceinline__ void store_acc(float *dst, long long stride, const float acc[HD / 8][4], int row0,
                                                 int S) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const int ra = row0 + g, rb = ra + 8;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        if (ra < S) *(float2 *)(dst + ra * stride + n * 8 + 2 * t) = make_float2(acc[n][0], acc[n][1]);
        if (rb < S) *(float2 *)(dst + rb * stride + n * 8 + 2 * t) = make_float2(acc[n][2], acc[n][3]);
    }
}

// P entries of this thread in tile kt of rows ra, rb (accumulator layout), zero outside [S, S].
static __device__ __forceinline__ void load_p(float p[8][4], const float *att_bh, int ra, int rb, int kt, int S) {
    const int t = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int key = kt * TC_B + j * 8 + 2 * t;  // S % 4 == 0: key, key + 1 both in or both out
        float2 x = make_float2(0.0f, 0.0f), y = x;
        if (key < S) {
            if (ra < S) x = __ldg((const float2 *)(att_bh + (long long)ra * S + key));
            if (rb < S) y = __ldg((const float2 *)(att_bh + (long long)rb * S + key));
        }
        p[j][0] = x.x, p[j][1] = x.y, p[j][2] = y.x, p[j][3] = y.y;
    }
}

// ---- forward ----------------------------------------------------------------------------

// Grid (nh, B, ceil(S/64)), heaviest query blocks first. Shared: K and V tiles, 2 each.
template <int HD>
static __global__ void __launch_bounds__(TC_THREADS)
    attention_forward_tc_kernel(float *out, float *att, const float *q, const float *k, const float *v, int S, int nh,
                                int nkv, float qmul) {
    constexpr int LD = HD + 4, TILE = TC_B * LD;
    extern __shared__ float4 smem4[];
    float *Kb = (float *)smem4, *Vb = Kb + 2 * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int q0 = qb * TC_B, nkt = qb + 1, row0 = q0 + warp * 16, ra = row0 + g, rb = ra + 8;
    const long long qstride = (long long)nh * HD, kstride = (long long)nkv * HD;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * HD, *vsrc = v + ((long long)b * S * nkv + hk) * HD;
    float *att_bh = att + ((long long)b * nh + hq) * S * S;

    uint32_t qa[HD / 8][4];
    row_frags<HD>(qa, q + ((long long)b * S * nh + hq) * HD, qstride, row0, S, qmul);
    // Scores of tile kt (log2 units), -inf above the diagonal.
    auto scores = [&](float s[8][4], int kt, const float *K) {
        frags_times_tile_t<HD>(s, qa, K);
        if (kt == qb) causal_mask(s, kt, ra, rb);
    };

    // Pass 1: running max and sum of exp2 over this thread's columns, merged over the quad.
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    stage_tile<HD>(Kb, ksrc, 0, kstride, S);
    cp_commit();
    for (int kt = 0; kt < nkt; kt++) {
        next_stage(kt, nkt, [&](int i) { stage_tile<HD>(Kb, ksrc, i, kstride, S); });
        float s[8][4];
        scores(s, kt, Kb + (kt & 1) * TILE);
        float ta = ma, tb = mb;
#pragma unroll
        for (int j = 0; j < 8; j++) ta = fmaxf(ta, fmaxf(s[j][0], s[j][1])), tb = fmaxf(tb, fmaxf(s[j][2], s[j][3]));
        la *= exp2f(ma - ta);  // ma = -inf at first: exp2(-inf) = 0, and la is 0 anyway
        lb *= exp2f(mb - tb);
#pragma unroll
        for (int j = 0; j < 8; j++) la += exp2f(s[j][0] - ta) + exp2f(s[j][1] - ta), lb += exp2f(s[j][2] - tb) + exp2f(s[j][3] - tb);
        ma = ta, mb = tb;
    }
#pragma unroll
    for (int o = 1; o < 4; o *= 2) {
        const float mao = __shfl_xor_sync(0xffffffffu, ma, o), lao = __shfl_xor_sync(0xffffffffu, la, o);
        const float mbo = __shfl_xor_sync(0xffffffffu, mb, o), lbo = __shfl_xor_sync(0xffffffffu, lb, o);
        const float Ma = fmaxf(ma, mao), Mb = fmaxf(mb, mbo);
        la = (ma == -INFINITY ? 0.0f : la * exp2f(ma - Ma)) + (mao == -INFINITY ? 0.0f : lao * exp2f(mao - Ma));
        lb = (mb == -INFINITY ? 0.0f : lb * exp2f(mb - Mb)) + (mbo == -INFINITY ? 0.0f : lbo * exp2f(mbo - Mb));
        ma = Ma, mb = Mb;
    }
    const float inva = 1.0f / la, invb = 1.0f / lb;  // every row has key 0: l >= 1

    // Pass 2: P to att, O += P V.
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    __syncthreads();  // pass 1's last tile is read by every warp before buffer 0 is refilled
    stage_kv<HD>(Kb, Vb, ksrc, vsrc, 0, kstride, S);
    cp_commit();
    for (int kt = 0; kt < nkt; kt++) {
        next_stage(kt, nkt, [&](int i) { stage_kv<HD>(Kb, Vb, ksrc, vsrc, i, kstride, S); });
        float p[8][4];
        scores(p, kt, Kb + (kt & 1) * TILE);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            p[j][0] = exp2f(p[j][0] - ma) * inva, p[j][1] = exp2f(p[j][1] - ma) * inva;
            p[j][2] = exp2f(p[j][2] - mb) * invb, p[j][3] = exp2f(p[j][3] - mb) * invb;
            const int key = kt * TC_B + j * 8 + 2 * t;
            if (key < S) {
                if (ra < S) *(float2 *)(att_bh + (long long)ra * S + key) = make_float2(p[j][0], p[j][1]);
                if (rb < S) *(float2 *)(att_bh + (long long)rb * S + key) = make_float2(p[j][2], p[j][3]);
            }
        }
        acc_times_tile<HD>(o, p, Vb + (kt & 1) * TILE);
    }
    store_acc<HD>(out + ((long long)b * S * nh + hq) * HD, qstride, o, row0, S);
    // Zeros above the diagonal beyond the last key tile (float4: S % 4 == 0).
    const int c0 = nkt * TC_B, nq = min(TC_B, S - q0);
    if (c0 < S) {
        const int w4 = (S - c0) / 4;
        for (int e = threadIdx.x; e < nq * w4; e += TC_THREADS) {
            const int r = e / w4, c = c0 + (e - r * w4) * 4;
            *(float4 *)(att_bh + (long long)(q0 + r) * S + c) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    }
}

// ---- backward, query side ----------------------------------------------------------------

// Grid (nh, B, ceil(S/64)): dq of 64 queries and D [B, nh, S]. Shared: V and K tiles, 2 each.
template <int HD>
static __global__ void __launch_bounds__(TC_THREADS)
    attention_dq_tc_kernel(float *dq, float *Dg, const float *dout, const float *k, const float *v, const float *att,
                           int S, int nh, int nkv, float scale) {
    constexpr int LD = HD + 4, TILE = TC_B * LD;
    extern __shared__ float4 smem4[];
    float *Vb = (float *)smem4, *Kb = Vb + 2 * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int q0 = qb * TC_B, nkt = qb + 1, row0 = q0 + warp * 16, ra = row0 + g, rb = ra + 8;
    const long long bh = (long long)b * nh + hq, qstride = (long long)nh * HD, kstride = (long long)nkv * HD;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * HD, *vsrc = v + ((long long)b * S * nkv + hk) * HD;
    const float *att_bh = att + bh * S * S;

    uint32_t ga[HD / 8][4];
    row_frags<HD>(ga, dout + ((long long)b * S * nh + hq) * HD, qstride, row0, S, 1.0f);

    // Pass 1: D = sum_t P dP per row.
    float Da = 0.0f, Db = 0.0f;
    stage_tile<HD>(Vb, vsrc, 0, kstride, S);
    cp_commit();
    for (int kt = 0; kt < nkt; kt++) {
        float p[8][4];
        load_p(p, att_bh, ra, rb, kt, S);
        next_stage(kt, nkt, [&](int i) { stage_tile<HD>(Vb, vsrc, i, kstride, S); });
        float dp[8][4];
        frags_times_tile_t<HD>(dp, ga, Vb + (kt & 1) * TILE);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            Da = fmaf(p[j][0], dp[j][0], fmaf(p[j][1], dp[j][1], Da));
            Db = fmaf(p[j][2], dp[j][2], fmaf(p[j][3], dp[j][3], Db));
        }
    }
#pragma unroll
    for (int o = 1; o < 4; o *= 2) Da += __shfl_xor_sync(0xffffffffu, Da, o), Db += __shfl_xor_sync(0xffffffffu, Db, o);
    if (t == 0) {
        if (ra < S) Dg[bh * S + ra] = Da;
        if (rb < S) Dg[bh * S + rb] = Db;
    }

    // Pass 2: dq += P (dP - D) scale K.
    float acc[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    __syncthreads();
    stage_kv<HD>(Kb, Vb, ksrc, vsrc, 0, kstride, S);
    cp_commit();
    for (int kt = 0; kt < nkt; kt++) {
        float p[8][4];
        load_p(p, att_bh, ra, rb, kt, S);
        next_stage(kt, nkt, [&](int i) { stage_kv<HD>(Kb, Vb, ksrc, vsrc, i, kstride, S); });
        float dp[8][4];
        frags_times_tile_t<HD>(dp, ga, Vb + (kt & 1) * TILE);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            dp[j][0] = p[j][0] * (dp[j][0] - Da) * scale, dp[j][1] = p[j][1] * (dp[j][1] - Da) * scale;
            dp[j][2] = p[j][2] * (dp[j][2] - Db) * scale, dp[j][3] = p[j][3] * (dp[j][3] - Db) * scale;
        }
        acc_times_tile<HD>(acc, dp, Kb + (kt & 1) * TILE);
    }
    store_acc<HD>(dq + ((long long)b * S * nh + hq) * HD, qstride, acc, row0, S);
}

// ---- backward, key side ------------------------------------------------------------------

// Grid (nkv, B, ceil(S/64)), heaviest key blocks first: dk, dv of 64 keys. Iterations run
// over (query head of the group, query tile at or after the keys); each stages that
// tile's q and dout rows, its [64 queries, 64 keys] block of att and its D, twice buffered.
template <int HD>
static __global__ void __launch_bounds__(TC_THREADS)
    attention_dkv_tc_kernel(float *dk, float *dv, const float *Dg, const float *dout, const float *q, const float *v,
                            const float *att, int S, int nh, int nkv, float scale) {
    constexpr int LD = HD + 4, TILE = TC_B * LD, STAGE = 2 * TILE + TC_B * TC_LDA + TC_B;
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hk = blockIdx.x, b = blockIdx.y, kb = blockIdx.z, rep = nh / nkv;
    const int k0 = kb * TC_B, nqt = (S + TC_B - 1) / TC_B, nqk = nqt - kb, n_it = rep * nqk;
    const int row0 = k0 + warp * 16;  // this warp's first key
    const long long qstride = (long long)nh * HD, kstride = (long long)nkv * HD;

    uint32_t va[HD / 8][4];
    row_frags<HD>(va, v + ((long long)b * S * nkv + hk) * HD, kstride, row0, S, 1.0f);

    auto stage = [&](int it, int buf) {
        float *Qs = smem + buf * STAGE, *Gs = Qs + TILE, *As = Gs + TILE, *Ds = As + TC_B * TC_LDA;
        const int hq = hk * rep + it / nqk, q0 = (kb + it % nqk) * TC_B, nq = min(TC_B, S - q0);
        const long long bh = (long long)b * nh + hq;
        stage_rows<HD, LD>(Qs, q + ((long long)b * S * nh + hq) * HD + (long long)q0 * qstride, qstride, nq);
        stage_rows<HD, LD>(Gs, dout + ((long long)b * S * nh + hq) * HD + (long long)q0 * qstride, qstride, nq);
        // att rows q0.., columns k0..k0+63 (S % 4 == 0: a float4 is all in or all out).
        const float *arow = att + (bh * S + q0) * S + k0;
        for (int e = threadIdx.x; e < TC_B * (TC_B / 4); e += TC_THREADS) {
            const int r = e / (TC_B / 4), c = (e - r * (TC_B / 4)) * 4;
            if (r < nq && k0 + c < S) cp_async16(As + r * TC_LDA + c, arow + (long long)r * S + c);
            else *(float4 *)(As + r * TC_LDA + c) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        for (int r = threadIdx.x; r < TC_B; r += TC_THREADS) Ds[r] = r < nq ? Dg[bh * S + q0 + r] : 0.0f;
    };

    float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) dka[n][i] = dva[n][i] = 0.0f;
    stage(0, 0);
    cp_commit();
    for (int it = 0; it < n_it; it++) {
        next_stage(it, n_it, [&](int i) { stage(i, i & 1); });
        const float *Qs = smem + (it & 1) * STAGE, *Gs = Qs + TILE, *As = Gs + TILE, *Ds = As + TC_B * TC_LDA;
        float dpt[8][4];  // dP^T = V dO^T: rows = this warp's keys, columns = the tile's queries
        frags_times_tile_t<HD>(dpt, va, Gs);
        float pt[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int qa = j * 8 + 2 * t, kl = warp * 16 + g;  // query (tile-local), key (block-local)
            pt[j][0] = As[qa * TC_LDA + kl], pt[j][1] = As[(qa + 1) * TC_LDA + kl];
            pt[j][2] = As[qa * TC_LDA + kl + 8], pt[j][3] = As[(qa + 1) * TC_LDA + kl + 8];
            const float d0 = Ds[qa], d1 = Ds[qa + 1];
            dpt[j][0] = pt[j][0] * (dpt[j][0] - d0) * scale, dpt[j][1] = pt[j][1] * (dpt[j][1] - d1) * scale;
            dpt[j][2] = pt[j][2] * (dpt[j][2] - d0) * scale, dpt[j][3] = pt[j][3] * (dpt[j][3] - d1) * scale;
        }
        acc_times_tile<HD>(dva, pt, Gs);
        acc_times_tile<HD>(dka, dpt, Qs);
    }
    const long long o = ((long long)b * S * nkv + hk) * HD;
    store_acc<HD>(dk + o, kstride, dka, row0, S);
    store_acc<HD>(dv + o, kstride, dva, row0, S);
}

// ---- memory-lean variants (--mode fused) ---------------------------------------------------
// No P in memory: the forward keeps each row's log2-sum-exp2 L (scores in log2 units) in
// lse [B, nh, S], and the backward recomputes P = exp2(s - L) from q and k; D = dout . out
// per row, from the forward's output. att's 67 MB per layer at the benchmark's shape (written
// once, read three times) become 0.26 MB.

// Grid (nh, B, ceil(S/64)), heaviest query blocks first. One pass, online softmax: per key
// tile the running max moves to the tile's, O and the sums are rescaled, O += exp2(s - max) V.
template <int HD>
static __global__ void __launch_bounds__(TC_THREADS)
    attention_forward_lean_kernel(float *out, float *lse, const float *q, const float *k, const float *v, int S,
                                  int nh, int nkv, float qmul) {
    constexpr int LD = HD + 4, TILE = TC_B * LD;
    extern __shared__ float4 smem4[];
    float *Kb = (float *)smem4, *Vb = Kb + 2 * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int q0 = qb * TC_B, nkt = qb + 1, row0 = q0 + warp * 16, ra = row0 + g, rb = ra + 8;
    const long long bh = (long long)b * nh + hq, qstride = (long long)nh * HD, kstride = (long long)nkv * HD;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * HD, *vsrc = v + ((long long)b * S * nkv + hk) * HD;

    uint32_t qa[HD / 8][4];
    row_frags<HD>(qa, q + ((long long)b * S * nh + hq) * HD, qstride, row0, S, qmul);
    // Every row's max is finite from the first tile on (key 0 is in every row), so no
    // -inf - -inf below.
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    stage_kv<HD>(Kb, Vb, ksrc, vsrc, 0, kstride, S);
    cp_commit();
    for (int kt = 0; kt < nkt; kt++) {
        next_stage(kt, nkt, [&](int i) { stage_kv<HD>(Kb, Vb, ksrc, vsrc, i, kstride, S); });
        float p[8][4];
        frags_times_tile_t<HD>(p, qa, Kb + (kt & 1) * TILE);
        if (kt == qb) causal_mask(p, kt, ra, rb);
        float ta = ma, tb = mb;
#pragma unroll
        for (int j = 0; j < 8; j++) ta = fmaxf(ta, fmaxf(p[j][0], p[j][1])), tb = fmaxf(tb, fmaxf(p[j][2], p[j][3]));
        ta = quad_reduce<true>(ta), tb = quad_reduce<true>(tb);
        const float ca = exp2f(ma - ta), cb = exp2f(mb - tb);  // 0 at the first tile
        la *= ca, lb *= cb;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) o[n][0] *= ca, o[n][1] *= ca, o[n][2] *= cb, o[n][3] *= cb;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            p[j][0] = exp2f(p[j][0] - ta), p[j][1] = exp2f(p[j][1] - ta);
            p[j][2] = exp2f(p[j][2] - tb), p[j][3] = exp2f(p[j][3] - tb);
            la += p[j][0] + p[j][1], lb += p[j][2] + p[j][3];
        }
        ma = ta, mb = tb;
        acc_times_tile<HD>(o, p, Vb + (kt & 1) * TILE);
    }
    la = quad_reduce<false>(la), lb = quad_reduce<false>(lb);  // >= 1: the max's own term
    const float inva = 1.0f / la, invb = 1.0f / lb;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] *= inva, o[n][1] *= inva, o[n][2] *= invb, o[n][3] *= invb;
    store_acc<HD>(out + ((long long)b * S * nh + hq) * HD, qstride, o, row0, S);
    if (t == 0) {
        if (ra < S) lse[bh * S + ra] = ma + log2f(la);
        if (rb < S) lse[bh * S + rb] = mb + log2f(lb);
    }
}

// dout . out of rows ra, rb (zero past S), summed over the quad: each lane takes HD / 4
// consecutive features.
template <int HD>
static __device__ __forceinline__ void row_dots(float &Da, float &Db, const float *dout, const float *out,
                                                long long stride, int ra, int rb, int S) {
    const int t = threadIdx.x & 3;
    Da = Db = 0.0f;
#pragma unroll
    for (int c = t * (HD / 4); c < (t + 1) * (HD / 4); c += 4) {
        if (ra < S) {
            const float4 x = *(const float4 *)(dout + ra * stride + c), y = *(const float4 *)(out + ra * stride + c);
            Da += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
        }
        if (rb < S) {
            const float4 x = *(const float4 *)(dout + rb * stride + c), y = *(const float4 *)(out + rb * stride + c);
            Db += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
        }
    }
    Da = quad_reduce<false>(Da), Db = quad_reduce<false>(Db);
}

// Grid (nh, B, ceil(S/64)): dq of 64 queries, and D [B, nh, S] for the key side. One pass:
// per key tile, P = exp2(q K^T - L), dP = dO V^T, dq += P (dP - D) scale K.
// At hd 32 in 128 registers without spills: 4 blocks per SM rather than 3.
template <int HD>
static __global__ void __launch_bounds__(TC_THREADS, HD == 32 ? 4 : 1)
    attention_dq_lean_kernel(float *dq, float *Dg, const float *dout, const float *out, const float *q,
                             const float *k, const float *v, const float *lse, int S, int nh, int nkv, float qmul,
                             float scale) {
    constexpr int LD = HD + 4, TILE = TC_B * LD;
    extern __shared__ float4 smem4[];
    float *Kb = (float *)smem4, *Vb = Kb + 2 * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int q0 = qb * TC_B, nkt = qb + 1, row0 = q0 + warp * 16, ra = row0 + g, rb = ra + 8;
    const long long bh = (long long)b * nh + hq, qstride = (long long)nh * HD, kstride = (long long)nkv * HD;
    const long long qoff = ((long long)b * S * nh + hq) * HD;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * HD, *vsrc = v + ((long long)b * S * nkv + hk) * HD;

    stage_kv<HD>(Kb, Vb, ksrc, vsrc, 0, kstride, S);
    cp_commit();
    uint32_t qa[HD / 8][4], ga[HD / 8][4];
    row_frags<HD>(qa, q + qoff, qstride, row0, S, qmul);
    row_frags<HD>(ga, dout + qoff, qstride, row0, S, 1.0f);
    const float La = ra < S ? lse[bh * S + ra] : 0.0f, Lb = rb < S ? lse[bh * S + rb] : 0.0f;
    float Da, Db;
    row_dots<HD>(Da, Db, dout + qoff, out + qoff, qstride, ra, rb, S);
    if (t == 0) {
        if (ra < S) Dg[bh * S + ra] = Da;
        if (rb < S) Dg[bh * S + rb] = Db;
    }

    float acc[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    for (int kt = 0; kt < nkt; kt++) {
        next_stage(kt, nkt, [&](int i) { stage_kv<HD>(Kb, Vb, ksrc, vsrc, i, kstride, S); });
        float p[8][4], dp[8][4];
        frags_times_tile_t<HD>(p, qa, Kb + (kt & 1) * TILE);
        if (kt == qb) causal_mask(p, kt, ra, rb);
        frags_times_tile_t<HD>(dp, ga, Vb + (kt & 1) * TILE);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            dp[j][0] = exp2f(p[j][0] - La) * (dp[j][0] - Da) * scale;
            dp[j][1] = exp2f(p[j][1] - La) * (dp[j][1] - Da) * scale;
            dp[j][2] = exp2f(p[j][2] - Lb) * (dp[j][2] - Db) * scale;
            dp[j][3] = exp2f(p[j][3] - Lb) * (dp[j][3] - Db) * scale;
        }
        acc_times_tile<HD>(acc, dp, Kb + (kt & 1) * TILE);
    }
    store_acc<HD>(dq + qoff, qstride, acc, row0, S);
}

// Grid (nkv, B, ceil(S/64)), heaviest key blocks first: dk, dv of 64 keys, iterating as
// attention_dkv_tc_kernel does; each stage holds the query tile's q and dout rows, its L and
// D. P^T = exp2(K (q scale log2 e)^T - L), zero where the key is after the query or the
// query is past S.
template <int HD>
static __global__ void __launch_bounds__(TC_THREADS)
    attention_dkv_lean_kernel(float *dk, float *dv, const float *Dg, const float *lse, const float *dout,
                              const float *q, const float *k, const float *v, int S, int nh, int nkv, float qmul,
                              float scale) {
    constexpr int LD = HD + 4, TILE = TC_B * LD, STAGE = 2 * TILE + 2 * TC_B;
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hk = blockIdx.x, b = blockIdx.y, kb = blockIdx.z, rep = nh / nkv;
    const int k0 = kb * TC_B, nqt = (S + TC_B - 1) / TC_B, nqk = nqt - kb, n_it = rep * nqk;
    const int row0 = k0 + warp * 16, ka_row = row0 + g, kb_row = ka_row + 8;  // this lane's two keys
    const long long qstride = (long long)nh * HD, kstride = (long long)nkv * HD;
    const long long kvoff = ((long long)b * S * nkv + hk) * HD;

    auto stage = [&](int it, int buf) {
        float *Qs = smem + buf * STAGE, *Gs = Qs + TILE, *Ls = Gs + TILE, *Ds = Ls + TC_B;
        const int hq = hk * rep + it / nqk, q0 = (kb + it % nqk) * TC_B, nq = min(TC_B, S - q0);
        const long long bh = (long long)b * nh + hq;
        stage_rows<HD, LD>(Qs, q + ((long long)b * S * nh + hq) * HD + (long long)q0 * qstride, qstride, nq);
        stage_rows<HD, LD>(Gs, dout + ((long long)b * S * nh + hq) * HD + (long long)q0 * qstride, qstride, nq);
        for (int r = threadIdx.x; r < TC_B; r += TC_THREADS) {
            Ls[r] = r < nq ? lse[bh * S + q0 + r] : 0.0f;
            Ds[r] = r < nq ? Dg[bh * S + q0 + r] : 0.0f;
        }
    };
    stage(0, 0);
    cp_commit();
    uint32_t kfr[HD / 8][4], va[HD / 8][4];
    // K as the forward's scores read it (a staged tile, truncated), and q * qmul rounded
    // (frags_times_tile_t<HD, true>), so that P^T has the forward's operands.
    row_frags<HD, false>(kfr, k + kvoff, kstride, row0, S, 1.0f);
    row_frags<HD>(va, v + kvoff, kstride, row0, S, 1.0f);

    float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) dka[n][i] = dva[n][i] = 0.0f;
    for (int it = 0; it < n_it; it++) {
        next_stage(it, n_it, [&](int i) { stage(i, i & 1); });
        const float *Qs = smem + (it & 1) * STAGE, *Gs = Qs + TILE, *Ls = Gs + TILE, *Ds = Ls + TC_B;
        const int q0 = (kb + it % nqk) * TC_B;
        float pt[8][4], dpt[8][4];  // rows = this warp's keys, columns = the tile's queries
        frags_times_tile_t<HD, true>(pt, kfr, Qs, qmul);
        frags_times_tile_t<HD>(dpt, va, Gs);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int ql = j * 8 + 2 * t, qg = q0 + ql;  // query (tile-local, global)
            const float L0 = Ls[ql], L1 = Ls[ql + 1], d0 = Ds[ql], d1 = Ds[ql + 1];
            pt[j][0] = ka_row <= qg && qg < S ? exp2f(pt[j][0] - L0) : 0.0f;
            pt[j][1] = ka_row <= qg + 1 && qg + 1 < S ? exp2f(pt[j][1] - L1) : 0.0f;
            pt[j][2] = kb_row <= qg && qg < S ? exp2f(pt[j][2] - L0) : 0.0f;
            pt[j][3] = kb_row <= qg + 1 && qg + 1 < S ? exp2f(pt[j][3] - L1) : 0.0f;
            dpt[j][0] = pt[j][0] * (dpt[j][0] - d0) * scale, dpt[j][1] = pt[j][1] * (dpt[j][1] - d1) * scale;
            dpt[j][2] = pt[j][2] * (dpt[j][2] - d0) * scale, dpt[j][3] = pt[j][3] * (dpt[j][3] - d1) * scale;
        }
        acc_times_tile<HD>(dva, pt, Gs);
        acc_times_tile<HD>(dka, dpt, Qs);
    }
    store_acc<HD>(dk + kvoff, kstride, dka, row0, S);
    store_acc<HD>(dv + kvoff, kstride, dva, row0, S);
}

// ---- launchers -----------------------------------------------------------------------------

extern "C" bool attention_tc_ok(int S, int hd, const void *const *ptrs, int n_ptrs) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_ATT_TC", true);
    const spd_matmul_precision p = spd_cuda_matmul_precision();
    if (!env || p == SPD_MATMUL_FP32 || (hd != 32 && hd != 64) || S % 4 != 0) return false;
    for (int i = 0; i < n_ptrs; i++)
        if (!spd_aligned(ptrs[i], 16)) return false;
    return true;
}

static size_t fwd_smem(int hd) { return sizeof(float) * 4 * TC_B * (hd + 4); }
static size_t dkv_smem(int hd) { return sizeof(float) * 2 * (2 * TC_B * (hd + 4) + TC_B * TC_LDA + TC_B); }
static size_t dkv_lean_smem(int hd) { return sizeof(float) * 2 * (2 * TC_B * (hd + 4) + 2 * TC_B); }

// --mode fused, SPD_CUDA_ATT_LEAN not "0": the memory-lean kernels (att holds L only).
extern "C" bool attention_tc_lean(int S, int hd) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_ATT_LEAN", true);
    const void *none[1] = {NULL};
    return env && spd_cuda_mode_get() == SPD_CUDA_FUSED && attention_tc_ok(S, hd, none, 0);
}

// Dynamic shared memory above 48 KiB is opted into once per kernel (before any capture).
static void opt_in(const void *kernel, size_t bytes) {
    if (bytes > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int HD>
static void setup_once(void) {
    static bool done = false;
    if (done) return;
    opt_in((const void *)attention_forward_tc_kernel<HD>, fwd_smem(HD));
    opt_in((const void *)attention_dq_tc_kernel<HD>, fwd_smem(HD));
    opt_in((const void *)attention_dkv_tc_kernel<HD>, dkv_smem(HD));
    opt_in((const void *)attention_forward_lean_kernel<HD>, fwd_smem(HD));
    opt_in((const void *)attention_dq_lean_kernel<HD>, fwd_smem(HD));
    opt_in((const void *)attention_dkv_lean_kernel<HD>, dkv_lean_smem(HD));
    done = true;
}

template <int HD>
static void forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int S, int nh,
                    int nkv) {
    setup_once<HD>();
    const float qmul = (float)(1.4426950408889634 / sqrt((double)HD));  // scale * log2(e)
    const dim3 grid(nh, B, (S + TC_B - 1) / TC_B);
    if (attention_tc_lean(S, HD))
        attention_forward_lean_kernel<HD><<<grid, TC_THREADS, fwd_smem(HD), spd_cuda_stream()>>>(out, att, q, k, v, S,
                                                                                                nh, nkv, qmul);
    else
        attention_forward_tc_kernel<HD><<<grid, TC_THREADS, fwd_smem(HD), spd_cuda_stream()>>>(out, att, q, k, v, S,
                                                                                              nh, nkv, qmul);
    CUDA_CHECK_LAUNCH();
}

template <int HD>
static void backward(float *dq, float *dk, float *dv, float *D, const float *dout, const float *q, const float *k,
                     const float *v, const float *out, const float *att, int B, int S, int nh, int nkv) {
    setup_once<HD>();
    const float scale = (float)(1.0 / sqrt((double)HD));
    cudaStream_t st = spd_cuda_stream();
    const dim3 grid_q(nh, B, (S + TC_B - 1) / TC_B), grid_k(nkv, B, (S + TC_B - 1) / TC_B);
    if (attention_tc_lean(S, HD)) {
        const float qmul = (float)(1.4426950408889634 / sqrt((double)HD));  // as the forward's
        attention_dq_lean_kernel<HD><<<grid_q, TC_THREADS, fwd_smem(HD), st>>>(dq, D, dout, out, q, k, v, att, S, nh,
                                                                               nkv, qmul, scale);
        CUDA_CHECK_LAUNCH();
        attention_dkv_lean_kernel<HD><<<grid_k, TC_THREADS, dkv_lean_smem(HD), st>>>(dk, dv, D, att, dout, q, k, v, S,
                                                                                     nh, nkv, qmul, scale);
        CUDA_CHECK_LAUNCH();
        return;
    }
    attention_dq_tc_kernel<HD><<<grid_q, TC_THREADS, fwd_smem(HD), st>>>(dq, D, dout, k, v, att, S, nh, nkv, scale);
    CUDA_CHECK_LAUNCH();
    attention_dkv_tc_kernel<HD><<<grid_k, TC_THREADS, dkv_smem(HD), st>>>(dk, dv, D, dout, q, v, att, S, nh, nkv,
                                                                          scale);
    CUDA_CHECK_LAUNCH();
}

extern "C" void attention_forward_tc(float *out, float *att, const float *q, const float *k, const float *v, int B,
                                     int S, int nh, int nkv, int hd) {
    if (hd == 32) forward<32>(out, att, q, k, v, B, S, nh, nkv);
    else forward<64>(out, att, q, k, v, B, S, nh, nkv);
}

extern "C" void attention_backward_tc(float *dq, float *dk, float *dv, float *D, const float *dout, const float *q,
                                      const float *k, const float *v, const float *out, const float *att, int B,
                                      int S, int nh, int nkv, int hd) {
    if (hd == 32) backward<32>(dq, dk, dv, D, dout, q, k, v, out, att, B, S, nh, nkv);
    else backward<64>(dq, dk, dv, D, dout, q, k, v, out, att, B, S, nh, nkv);
}
