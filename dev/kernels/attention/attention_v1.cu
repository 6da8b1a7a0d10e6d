// Causal grouped-query softmax attention on the GPU: exact float32 FMA, register-tiled.
//
// Layouts (attention.h): q [B, S, nh*hd], k, v [B, S, nkv*hd], att [B, nh, S, S];
// query head hq reads kv head hq / (nh / nkv); scale 1/sqrt(hd).
//
// Tiling. Every kernel is a block of 256 threads over tiles of 64 rows (queries or keys).
// Two register-tiled products, both from shared memory, cover all the matrix work:
//  - mm_nt: a [64, 64] tile C = A B^T with the reduction over the head dim (scores Q K^T,
//    dP = dO V^T). Threads form a 16 x 16 grid; thread (ty, tx) owns rows ty*4 + i and
//    columns tx + 16 j (i, j < 4), reading float4s along the head dim: per 4 steps of the
//    reduction 8 LDS.128 feed 64 FMA.
//  - mm_nn_update: C [64, 32] += A [64, 64] B [64, 32] with the reduction over a tile of 64
//    keys or queries (P V, dS K, P^T dO, dS^T Q), one 32-column chunk of the head dim at a
//    time. Threads form a 32 x 8 grid of 2 x 4 register tiles; C lives in shared memory
//    (a [64, hd] accumulator), so any head dim works without a compile-time bound.
// Tiles of q, k, v, dout are staged as [64, hd32 + 4] (hd32 = hd rounded up to 32, zero
// padded); the stride of 4 mod 32 keeps both products free of bank conflicts.
//
// Forward: a block per (query head, batch, block of 64 queries), the heaviest (last) query
// blocks first. When the block's scores [64, S] fit in shared memory next to the tiles
// (S <= ~300 at hd 32, the "resident" path), pass 1 stores the scaled scores Q K^T there,
// a warp per row takes the softmax and writes the att row (zeros above the diagonal), and
// pass 2 sums O = P V. Otherwise (the "streaming" path, any S) pass 1 only keeps each row's
// running max and sum in registers, and pass 2 recomputes the scores, writes P to att and
// sums P V: one product more, no S-sized storage.
// Backward: with D[s] = sum_t P[s,t] dP[s,t] (= dout_s . out_s) and dS = P (dP - D) scale,
//  - dq kernel, a block per (query head, batch, query block): dP = dO V^T for the row block,
//    D (written to a [B, nh, S] buffer in the backend's workspace), dS, then dq = dS K.
//    Resident (dP kept for the whole row block) and streaming (dP recomputed) like the forward.
//  - dkv kernel, a block per (kv head, batch, block of 64 keys), heaviest (first) key blocks
//    first: for every query head of the group and every query tile at or after the key
//    block it forms dP^T = V dO^T, reads P^T from att, and sums dv += P^T dO, dk += dS^T Q in
//    shared memory; written once at the end, so there are no atomics and results are
//    deterministic.
//
// Floor at the benchmark's shape (B 64, S 256, nh 4, nkv 2, hd 32; H100): per product
// B nh S^2/2 hd 2 = 0.54 GFLOP (0.67 with whole diagonal tiles); the forward does 2, the
// backward 5 (dP twice), i.e. ~18 us and ~45 us at the ~60 TFLOP/s of float32 FMA. Bytes:
// att 67 MB written (forward), its lower half read twice (backward): ~25 us each at ~3 TB/s.
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/attention.h"
}

#define ATT_B 64                // rows per tile (queries or keys)
#define ATT_THREADS 256         // threads per block
#define ATT_LDP (ATT_B + 4)     // row stride of a [64, 64] tile of P or dS
#define ATT_RESIDENT_SMEM (113 * 1024)  // resident path only when two blocks fit on an SM

static __host__ __device__ int att_hd32(int hd) { return (hd + 31) / 32 * 32; }
static __host__ __device__ int att_ldh(int hd) { return att_hd32(hd) + 4; }
// Row stride of the resident [64, S] score block: whole key tiles, 4 mod 32 like the tiles.
static __host__ __device__ int att_lds(int S) { return (S + ATT_B - 1) / ATT_B * ATT_B + 4; }

static __device__ float warp_sum(float x) {
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

static __device__ float warp_max(float x) {
    for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// dst [64, ld] = rows 0 .. nrows-1 of src (row r at src + r*stride, hd floats), zero in
// rows >= nrows and columns hd .. hd32-1. vec: hd % 4 == 0 and src, stride 16-byte aligned.
static __device__ void load_tile(float *dst, int ld, const float *src, long long stride, int nrows, int hd,
                                 bool vec) {
    const int c4n = att_hd32(hd) / 4;
    for (int e = threadIdx.x; e < ATT_B * c4n; e += ATT_THREADS) {
        const int r = e / c4n, c = (e - r * c4n) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < nrows && c < hd) {
            const float *p = src + r * stride + c;
            if (vec) {
                x = __ldg((const float4 *)p);
            } else {
                x.x = p[0];
                if (c + 1 < hd) x.y = p[1];
                if (c + 2 < hd) x.z = p[2];
                if (c + 3 < hd) x.w = p[3];
            }
        }
        *(float4 *)(dst + r * ld + c) = x;
    }
}

// dst [64, hd] (row r at dst + r*stride) = rows r < nrows of the accumulator acc [64, hd32].
static __device__ void store_rows(float *dst, long long stride, const float *acc, int nrows, int hd) {
    const int hd32 = att_hd32(hd);
    for (int e = threadIdx.x; e < nrows * hd; e += ATT_THREADS) {
        const int r = e / hd, c = e - r * hd;
        dst[r * stride + c] = acc[r * hd32 + c];
    }
}

static __device__ void zero_smem(float *p, int n) {
    for (int e = threadIdx.x; e < n; e += ATT_THREADS) p[e] = 0.0f;
}

// acc[i][j] = sum_{d < hd4} A[ty*4+i][d] B[tx+16j][d]: a [64, 64] tile of A B^T.
// A, B: [64, ld] in shared memory, ld = 4 mod 32, columns up to hd4 (a multiple of 4) valid.
static __device__ __forceinline__ void mm_nt(float acc[4][4], const float *A, const float *B, int ld, int hd4) {
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    const float *a = A + ty * 4 * ld, *b = B + tx * ld;
#pragma unroll 2
    for (int d = 0; d < hd4; d += 4) {
        float4 x[4], y[4];
#pragma unroll
        for (int i = 0; i < 4; i++) x[i] = *(const float4 *)(a + i * ld + d);
#pragma unroll
        for (int j = 0; j < 4; j++) y[j] = *(const float4 *)(b + j * 16 * ld + d);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float s = acc[i][j];
                s = fmaf(x[i].x, y[j].x, s);
                s = fmaf(x[i].y, y[j].y, s);
                s = fmaf(x[i].z, y[j].z, s);
                s = fmaf(x[i].w, y[j].w, s);
                acc[i][j] = s;
            }
    }
}

// C [64, 32] += A [64, 64] B [64, 32]; C (ldc), A (lda = 4 mod 8), B (ldb) in shared memory.
// Thread (r2, c8) of a 32 x 8 grid owns rows 2*r2 + i (i < 2) and columns 4*c8 .. 4*c8+3;
// it alone reads and writes those elements of C, so no barrier is needed around C.
static __device__ __forceinline__ void mm_nn_update(float *C, int ldc, const float *A, int lda, const float *B,
                                                    int ldb) {
    const int r2 = threadIdx.x >> 3, c8 = threadIdx.x & 7;
    const float *a0 = A + 2 * r2 * lda, *a1 = a0 + lda, *b = B + 4 * c8;
    float *c0 = C + 2 * r2 * ldc + 4 * c8, *c1 = c0 + ldc;
    float4 o0 = *(float4 *)c0, o1 = *(float4 *)c1;
#pragma unroll 4
    for (int t = 0; t < ATT_B; t += 4) {
        const float4 x0 = *(const float4 *)(a0 + t), x1 = *(const float4 *)(a1 + t);
        const float xa[4] = {x0.x, x0.y, x0.z, x0.w}, xb[4] = {x1.x, x1.y, x1.z, x1.w};
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const float4 y = *(const float4 *)(b + (t + u) * ldb);
            o0.x = fmaf(xa[u], y.x, o0.x);
            o0.y = fmaf(xa[u], y.y, o0.y);
            o0.z = fmaf(xa[u], y.z, o0.z);
            o0.w = fmaf(xa[u], y.w, o0.w);
            o1.x = fmaf(xb[u], y.x, o1.x);
            o1.y = fmaf(xb[u], y.y, o1.y);
            o1.z = fmaf(xb[u], y.z, o1.z);
            o1.w = fmaf(xb[u], y.w, o1.w);
        }
    }
    *(float4 *)c0 = o0;
    *(float4 *)c1 = o1;
}

// C [64, hd32] += A [64, 64] B [64, hd32], chunk by chunk of 32 columns.
static __device__ __forceinline__ void mm_nn_update_all(float *C, const float *A, int lda, const float *B, int hd) {
    const int hd32 = att_hd32(hd), ldh = att_ldh(hd);
    for (int c = 0; c < hd32; c += 32) mm_nn_update(C + c, hd32, A, lda, B + c, ldh);
}

// Four consecutive att entries t .. t+3 of a row (zeros past S); vec: S % 4 == 0, aligned.
static __device__ __forceinline__ float4 load4(const float *row, int t, int S, bool vec) {
    if (vec) return __ldg((const float4 *)(row + t));
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (t < S) x.x = row[t];
    if (t + 1 < S) x.y = row[t + 1];
    if (t + 2 < S) x.z = row[t + 2];
    if (t + 3 < S) x.w = row[t + 3];
    return x;
}

static __device__ __forceinline__ void store4(float *row, int t, int S, float4 x, bool vec) {
    if (vec) {
        *(float4 *)(row + t) = x;
        return;
    }
    if (t < S) row[t] = x.x;
    if (t + 1 < S) row[t + 1] = x.y;
    if (t + 2 < S) row[t + 2] = x.z;
    if (t + 3 < S) row[t + 3] = x.w;
}

// ---- forward -------------------------------------------------------------------------

// Grid (nh, B, ceil(S/64)), 256 threads. Shared memory, resident: Qs, KVs [64, ldh],
// Os [64, hd32], sc [64, lds]; streaming: Qs, Ks, Vs [64, ldh], Os [64, hd32], Pt [64, 68].
template <bool RESIDENT>
static __global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_forward_kernel(float *out, float *att, const float *q, const float *k, const float *v, int S, int nh,
                             int nkv, int hd, float scale, bool vec_in, bool vec_att) {
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4, warp = tid >> 5, lane = tid & 31;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int hd32 = att_hd32(hd), ldh = att_ldh(hd), hd4 = (hd + 3) / 4 * 4;
    const int q0 = qb * ATT_B, nq = min(ATT_B, S - q0), nkt = qb + 1, ncols = nkt * ATT_B;
    const long long bh = (long long)b * nh + hq, qstride = (long long)nh * hd, kstride = (long long)nkv * hd;
    const float *qsrc = q + ((long long)b * S * nh + hq) * hd;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * hd, *vsrc = v + ((long long)b * S * nkv + hk) * hd;
    float *Qs = smem, *Ks = Qs + ATT_B * ldh;
    float *Vs = RESIDENT ? Ks : Ks + ATT_B * ldh;
    float *Os = Vs + ATT_B * ldh, *sc = Os + ATT_B * hd32;

    load_tile(Qs, ldh, qsrc + q0 * qstride, qstride, nq, hd, vec_in);
    zero_smem(Os, ATT_B * hd32);
    if (RESIDENT) {
        const int lds = att_lds(S);
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Qs, Ks, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) sc[(ty * 4 + i) * lds + kt * ATT_B + tx + 16 * j] = acc[i][j] * scale;
        }
        __syncthreads();
        // Softmax, a warp per row: max, exp and sum, then normalize and write the att row.
        for (int r = warp; r < nq; r += ATT_THREADS / 32) {
            const int s = q0 + r;
            float *row = sc + r * lds;
            float mx = -INFINITY;
            for (int t = lane * 4; t <= s; t += 128) {
                const float4 x = *(const float4 *)(row + t);
                mx = fmaxf(mx, x.x);
                if (t + 1 <= s) mx = fmaxf(mx, x.y);
                if (t + 2 <= s) mx = fmaxf(mx, x.z);
                if (t + 3 <= s) mx = fmaxf(mx, x.w);
            }
            mx = warp_max(mx);
            float sum = 0.0f;
            for (int t = lane * 4; t < ncols; t += 128) {
                float4 x = *(const float4 *)(row + t);
                x.x = t <= s ? expf(x.x - mx) : 0.0f;
                x.y = t + 1 <= s ? expf(x.y - mx) : 0.0f;
                x.z = t + 2 <= s ? expf(x.z - mx) : 0.0f;
                x.w = t + 3 <= s ? expf(x.w - mx) : 0.0f;
                sum += (x.x + x.y) + (x.z + x.w);
                *(float4 *)(row + t) = x;
            }
            const float inv = 1.0f / warp_sum(sum);
            float *arow = att + (bh * S + s) * S;
            const int tend = max(S, ncols);
            for (int t = lane * 4; t < tend; t += 128) {
                float4 p = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (t < ncols) {
                    p = *(const float4 *)(row + t);
                    p.x *= inv;
                    p.y *= inv;
                    p.z *= inv;
                    p.w *= inv;
                    *(float4 *)(row + t) = p;
                }
                if (t < S) store4(arow, t, S, p, vec_att);
            }
        }
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            __syncthreads();
            mm_nn_update_all(Os, sc + kt * ATT_B, lds, Vs, hd);
        }
    } else {
        // Pass 1: running max m and sum l of exp(score - m) per row, over this thread's
        // columns, then merged across the 16 threads (tx) that share the rows.
        float m[4], l[4];
#pragma unroll
        for (int i = 0; i < 4; i++) m[i] = -INFINITY, l[i] = 0.0f;
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Qs, Ks, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int s = q0 + ty * 4 + i;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int key = kt * ATT_B + tx + 16 * j;
                    if (key <= s && s < S) {
                        const float x = acc[i][j] * scale;
                        if (x > m[i]) {
                            l[i] = l[i] * expf(m[i] - x) + 1.0f;
                            m[i] = x;
                        } else {
                            l[i] += expf(x - m[i]);
                        }
                    }
                }
            }
        }
        float inv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            for (int o = 1; o < 16; o *= 2) {
                const float mo = __shfl_xor_sync(0xffffffffu, m[i], o), lo = __shfl_xor_sync(0xffffffffu, l[i], o);
                const float M = fmaxf(m[i], mo);
                if (M != -INFINITY) l[i] = l[i] * expf(m[i] - M) + lo * expf(mo - M);
                m[i] = M;
            }
            inv[i] = 1.0f / l[i];
        }
        // Pass 2: recompute the scores, P to att and to shared memory, O += P V.
        float *Pt = sc;
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            const int nk = min(ATT_B, S - kt * ATT_B);
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Qs, Ks, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int s = q0 + ty * 4 + i;
                float *arow = att + (bh * S + s) * S;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int key = kt * ATT_B + tx + 16 * j;
                    const float p = key <= s && s < S ? expf(acc[i][j] * scale - m[i]) * inv[i] : 0.0f;
                    Pt[(ty * 4 + i) * ATT_LDP + tx + 16 * j] = p;
                    if (s < S && key < S) arow[key] = p;
                }
            }
            __syncthreads();
            mm_nn_update_all(Os, Pt, ATT_LDP, Vs, hd);
        }
        // Zeros above the diagonal beyond the last key tile.
        const int ntail = S - ncols;
        if (ntail > 0)
            for (int e = tid; e < nq * ntail; e += ATT_THREADS) {
                const int r = e / ntail, t = ncols + e - r * ntail;
                att[(bh * S + q0 + r) * S + t] = 0.0f;
            }
    }
    __syncthreads();
    store_rows(out + ((long long)b * S * nh + hq) * hd + q0 * qstride, qstride, Os, nq, hd);
}

// ---- backward, query side ----------------------------------------------------------------

// Grid (nh, B, ceil(S/64)), 256 threads: dq for a block of 64 queries of one head, and
// D [B, nh, S]. Shared memory as the forward (dOs in place of Qs).
template <bool RESIDENT>
static __global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_backward_dq_kernel(float *dq, float *Dg, const float *dout, const float *k, const float *v,
                                 const float *att, int S, int nh, int nkv, int hd, float scale, bool vec_in,
                                 bool vec_att) {
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4, warp = tid >> 5, lane = tid & 31;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int hd32 = att_hd32(hd), ldh = att_ldh(hd), hd4 = (hd + 3) / 4 * 4;
    const int q0 = qb * ATT_B, nq = min(ATT_B, S - q0), nkt = qb + 1, ncols = nkt * ATT_B;
    const long long bh = (long long)b * nh + hq, qstride = (long long)nh * hd, kstride = (long long)nkv * hd;
    const float *gsrc = dout + ((long long)b * S * nh + hq) * hd;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * hd, *vsrc = v + ((long long)b * S * nkv + hk) * hd;
    float *Gs = smem, *Ks = Gs + ATT_B * ldh;
    float *Vs = RESIDENT ? Ks : Ks + ATT_B * ldh;
    float *Os = Vs + ATT_B * ldh, *sc = Os + ATT_B * hd32;

    load_tile(Gs, ldh, gsrc + q0 * qstride, qstride, nq, hd, vec_in);
    zero_smem(Os, ATT_B * hd32);
    if (RESIDENT) {
        const int lds = att_lds(S);
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Gs, Vs, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) sc[(ty * 4 + i) * lds + kt * ATT_B + tx + 16 * j] = acc[i][j];
        }
        __syncthreads();
        // A warp per row: D = sum_t P dP, then dS = P (dP - D) scale in place of dP.
        for (int r = warp; r < nq; r += ATT_THREADS / 32) {
            const int s = q0 + r;
            float *row = sc + r * lds;
            const float *prow = att + (bh * S + s) * S;
            float d = 0.0f;
            for (int t = lane * 4; t <= s; t += 128) {
                const float4 p = load4(prow, t, S, vec_att), x = *(const float4 *)(row + t);
                d = fmaf(p.x, x.x, d);
                if (t + 1 <= s) d = fmaf(p.y, x.y, d);
                if (t + 2 <= s) d = fmaf(p.z, x.z, d);
                if (t + 3 <= s) d = fmaf(p.w, x.w, d);
            }
            d = warp_sum(d);
            if (lane == 0) Dg[bh * S + s] = d;
            for (int t = lane * 4; t < ncols; t += 128) {
                float4 x = *(const float4 *)(row + t);
                const float4 p = t <= s ? load4(prow, t, S, vec_att) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                x.x = t <= s ? p.x * (x.x - d) * scale : 0.0f;
                x.y = t + 1 <= s ? p.y * (x.y - d) * scale : 0.0f;
                x.z = t + 2 <= s ? p.z * (x.z - d) * scale : 0.0f;
                x.w = t + 3 <= s ? p.w * (x.w - d) * scale : 0.0f;
                *(float4 *)(row + t) = x;
            }
        }
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            __syncthreads();
            mm_nn_update_all(Os, sc + kt * ATT_B, lds, Ks, hd);
        }
    } else {
        // Pass 1: D per row from this thread's columns, merged across tx.
        float D[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Gs, Vs, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int s = q0 + ty * 4 + i;
                const float *prow = att + (bh * S + s) * S;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int key = kt * ATT_B + tx + 16 * j;
                    if (key <= s && s < S) D[i] = fmaf(prow[key], acc[i][j], D[i]);
                }
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            for (int o = 1; o < 16; o *= 2) D[i] += __shfl_xor_sync(0xffffffffu, D[i], o);
            const int s = q0 + ty * 4 + i;
            if (tx == 0 && s < S) Dg[bh * S + s] = D[i];
        }
        // Pass 2: recompute dP, dS to shared memory, dq += dS K.
        float *Pt = sc;
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            const int nk = min(ATT_B, S - kt * ATT_B);
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Gs, Vs, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int s = q0 + ty * 4 + i;
                const float *prow = att + (bh * S + s) * S;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int key = kt * ATT_B + tx + 16 * j;
                    Pt[(ty * 4 + i) * ATT_LDP + tx + 16 * j] =
                        key <= s && s < S ? prow[key] * (acc[i][j] - D[i]) * scale : 0.0f;
                }
            }
            __syncthreads();
            mm_nn_update_all(Os, Pt, ATT_LDP, Ks, hd);
        }
    }
    __syncthreads();
    store_rows(dq + ((long long)b * S * nh + hq) * hd + q0 * qstride, qstride, Os, nq, hd);
}

// ---- backward, key side ------------------------------------------------------------------

// Grid (nkv, B, ceil(S/64)), 256 threads: dk, dv for a block of 64 keys k0.. of kv head hk.
// Thread (ty, tx) owns keys ty*4 + i and queries tx + 16 j of each [64 keys, 64 queries]
// tile: dP^T = V dO^T (mm_nt), P^T read from att as one float4 of 4 keys per query row.
// Shared memory: Vs, Qs, Gs [64, ldh]; Pt, St [64, 68]; Dq [64]; dKs, dVs [64, hd32].
static __global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_backward_dkv_kernel(float *dk, float *dv, const float *Dg, const float *dout, const float *q,
                                  const float *v, const float *att, int S, int nh, int nkv, int hd, float scale,
                                  bool vec_in, bool vec_att) {
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int hk = blockIdx.x, b = blockIdx.y, kb = blockIdx.z, rep = nh / nkv;
    const int hd32 = att_hd32(hd), ldh = att_ldh(hd), hd4 = (hd + 3) / 4 * 4;
    const int k0 = kb * ATT_B, nk = min(ATT_B, S - k0), nqt = (S + ATT_B - 1) / ATT_B;
    const long long qstride = (long long)nh * hd, kstride = (long long)nkv * hd;
    float *Vs = smem, *Qs = Vs + ATT_B * ldh, *Gs = Qs + ATT_B * ldh, *Pt = Gs + ATT_B * ldh;
    float *St = Pt + ATT_B * ATT_LDP, *Dq = St + ATT_B * ATT_LDP, *dKs = Dq + ATT_B, *dVs = dKs + ATT_B * hd32;

    load_tile(Vs, ldh, v + (((long long)b * S + k0) * nkv + hk) * hd, kstride, nk, hd, vec_in);
    zero_smem(dKs, 2 * ATT_B * hd32);
    const int key0 = k0 + ty * 4;  // this thread's first key
    for (int hq = hk * rep; hq < (hk + 1) * rep; hq++) {
        const long long bh = (long long)b * nh + hq;
        const float *qsrc = q + ((long long)b * S * nh + hq) * hd, *gsrc = dout + ((long long)b * S * nh + hq) * hd;
        for (int qt = kb; qt < nqt; qt++) {
            const int q0 = qt * ATT_B, nq = min(ATT_B, S - q0);
            // P^T entries, issued before the barrier so that their latency overlaps the tiles.
            float4 p[4];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int s = q0 + tx + 16 * j;
                p[j] = s < S && key0 < S ? load4(att + (bh * S + s) * S, key0, S, vec_att)
                                         : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
            __syncthreads();
            load_tile(Qs, ldh, qsrc + q0 * qstride, qstride, nq, hd, vec_in);
            load_tile(Gs, ldh, gsrc + q0 * qstride, qstride, nq, hd, vec_in);
            if (tid < ATT_B) Dq[tid] = tid < nq ? Dg[bh * S + q0 + tid] : 0.0f;
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Vs, Gs, ldh, hd4);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int s = q0 + tx + 16 * j;
                const float d = Dq[tx + 16 * j];
                const float pj[4] = {p[j].x, p[j].y, p[j].z, p[j].w};
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const float pv = key0 + i <= s && s < S ? pj[i] : 0.0f;
                    Pt[(ty * 4 + i) * ATT_LDP + tx + 16 * j] = pv;
                    St[(ty * 4 + i) * ATT_LDP + tx + 16 * j] = pv * (acc[i][j] - d) * scale;
                }
            }
            __syncthreads();
            mm_nn_update_all(dVs, Pt, ATT_LDP, Gs, hd);
            mm_nn_update_all(dKs, St, ATT_LDP, Qs, hd);
        }
    }
    __syncthreads();
    const long long o = (((long long)b * S + k0) * nkv + hk) * hd;
    store_rows(dk + o, kstride, dKs, nk, hd);
    store_rows(dv + o, kstride, dVs, nk, hd);
}

// ---- launchers -------------------------------------------------------------------------

static int max_smem_optin(void) {
    static int max_optin = 0;
    if (!max_optin) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    }
    return max_optin;
}

// Dynamic shared memory above 48 KiB must be opted into, per kernel; each kernel's limit
// is raised once, to the most it has been asked for (so calls under graph capture make
// no attribute calls after the first).
static void ensure_smem(const void *kernel, size_t bytes, int hd) {
    static const void *kernels[8];
    static size_t granted[8];
    if (bytes > (size_t)max_smem_optin())
        spd_die("attention: head dim %d too large for the GPU kernels (%zu bytes of shared memory, at most %d)", hd,
                bytes, max_smem_optin());
    if (bytes <= 48 * 1024) return;
    int i = 0;
    while (i < 8 && kernels[i] && kernels[i] != kernel) i++;
    SPD_ASSERT(i < 8);
    if (kernels[i] == kernel && granted[i] >= bytes) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    kernels[i] = kernel;
    granted[i] = bytes;
}

// Shared memory of the forward and dq kernels: resident or streaming.
static size_t rows_smem(bool resident, int S, int hd) {
    const size_t tiles = (size_t)ATT_B * att_ldh(hd), acc = (size_t)ATT_B * att_hd32(hd);
    return sizeof(float) * (resident ? 2 * tiles + acc + (size_t)ATT_B * att_lds(S)
                                     : 3 * tiles + acc + (size_t)ATT_B * ATT_LDP);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static void check_shapes(int B, int S, int nh, int nkv, int hd) {
    SPD_ASSERT(nkv >= 1 && nh % nkv == 0 && hd >= 1);
    SPD_ASSERT(B <= 65535 && (S + ATT_B - 1) / ATT_B <= 65535);
}

extern "C" void attention_forward_cuda(float *out, float *att, const float *q, const float *k, const float *v, int B,
                                       int S, int nh, int nkv, int hd) {
    check_shapes(B, S, nh, nkv, hd);
    if (B <= 0 || S <= 0 || nh <= 0) return;
    const bool vec_in = hd % 4 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
    const bool vec_att = S % 4 == 0 && aligned16(att);
    const float scale = (float)(1.0 / sqrt((double)hd));
    const dim3 grid(nh, B, (S + ATT_B - 1) / ATT_B);
    const size_t smem_res = rows_smem(true, S, hd);
    if (smem_res <= ATT_RESIDENT_SMEM) {
        ensure_smem((const void *)attention_forward_kernel<true>, smem_res, hd);
        attention_forward_kernel<true><<<grid, ATT_THREADS, smem_res, spd_cuda_stream()>>>(
            out, att, q, k, v, S, nh, nkv, hd, scale, vec_in, vec_att);
    } else {
        const size_t smem = rows_smem(false, S, hd);
        ensure_smem((const void *)attention_forward_kernel<false>, smem, hd);
        attention_forward_kernel<false><<<grid, ATT_THREADS, smem, spd_cuda_stream()>>>(
            out, att, q, k, v, S, nh, nkv, hd, scale, vec_in, vec_att);
    }
    CUDA_CHECK_LAUNCH();
}

extern "C" void attention_backward_cuda(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                        const float *k, const float *v, const float *att, int B, int S, int nh,
                                        int nkv, int hd) {
    check_shapes(B, S, nh, nkv, hd);
    if (B <= 0 || S <= 0 || nh <= 0) return;
    cudaStream_t st = spd_cuda_stream();
    const float scale = (float)(1.0 / sqrt((double)hd));
    const bool vec_in = hd % 4 == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout);
    const bool vec_att = S % 4 == 0 && aligned16(att);
    // D [B, nh, S] lives in the backend's workspace (no cuBLAS call runs while it is in
    // use), or in a stream-ordered temporary when it does not fit.
    const size_t d_bytes = sizeof(float) * (size_t)B * nh * S;
    size_t ws_bytes = 0;
    float *D = (float *)spd_cuda_workspace(&ws_bytes);
    const bool own = d_bytes > ws_bytes;
    if (own) CUDA_CHECK(cudaMallocAsync((void **)&D, d_bytes, st));

    const dim3 grid_dq(nh, B, (S + ATT_B - 1) / ATT_B);
    const size_t smem_res = rows_smem(true, S, hd);
    if (smem_res <= ATT_RESIDENT_SMEM) {
        ensure_smem((const void *)attention_backward_dq_kernel<true>, smem_res, hd);
        attention_backward_dq_kernel<true><<<grid_dq, ATT_THREADS, smem_res, st>>>(
            dq, D, dout, k, v, att, S, nh, nkv, hd, scale, vec_in, vec_att);
    } else {
        const size_t smem = rows_smem(false, S, hd);
        ensure_smem((const void *)attention_backward_dq_kernel<false>, smem, hd);
        attention_backward_dq_kernel<false><<<grid_dq, ATT_THREADS, smem, st>>>(dq, D, dout, k, v, att, S, nh, nkv,
                                                                                hd, scale, vec_in, vec_att);
    }
    CUDA_CHECK_LAUNCH();

    const size_t smem_kv =
        sizeof(float) * ((size_t)3 * ATT_B * att_ldh(hd) + (size_t)2 * ATT_B * ATT_LDP + ATT_B +
                         (size_t)2 * ATT_B * att_hd32(hd));
    ensure_smem((const void *)attention_backward_dkv_kernel, smem_kv, hd);
    const dim3 grid_kv(nkv, B, (S + ATT_B - 1) / ATT_B);
    attention_backward_dkv_kernel<<<grid_kv, ATT_THREADS, smem_kv, st>>>(dk, dv, D, dout, q, v, att, S, nh, nkv, hd,
                                                                         scale, vec_in, vec_att);
    CUDA_CHECK_LAUNCH();
    if (own) CUDA_CHECK(cudaFreeAsync(D, st));
}
