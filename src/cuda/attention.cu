// Causal grouped-query softmax attention on the GPU: exact float32 FMA, register-tiled.
// With TF32 or bf16 products the tensor-core kernels of attention_tc.cu take head dims
// 32 and 64 instead (attention_tc_ok).
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
// padded); the stride of 4 mod 32 keeps both products free of bank conflicts. They are
// double-buffered with cp.async: the next tile loads while the current one is used.
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
// Measured there (H100 80GB HBM3, CUDA events, median of 50): forward 111 us, backward
// 189 us (dq 84, dkv 105 under ncu). The limit is shared memory, not DRAM (ncu: FMA pipe
// 33-39%, short-scoreboard stalls dominant): 4 x 4 (mm_nt) and 2 x 4 (mm_nn) register tiles
// issue one LDS.128 per 8 (4) FMA. 8 x 8 tiles per thread are the next step
// (dev/kernels/attention/NOTES.md).
#include <math.h>
#include <stdint.h>

#include "cuda/attention_tc.h"
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

// Asynchronous 16-byte copies global -> shared (cp.async, sm_80+), so that the next tile
// loads while the current one is in use; a group is waited for before the barrier that
// publishes it.
static __device__ __forceinline__ void cp_async16(float *dst, const float *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
static __device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
static __device__ __forceinline__ void cp_async_wait_all(void) { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// dst [64, ld] = rows 0 .. nrows-1 of src (row r at src + r*stride, hd floats), zero in
// rows >= nrows and columns hd .. hd32-1. vec (hd % 4 == 0, src and stride 16-byte
// aligned): the copies are asynchronous (cp.async; commit and wait before use), otherwise
// plain loads.
static __device__ void load_tile(float *dst, int ld, const float *src, long long stride, int nrows, int hd,
                                 bool vec) {
    const int c4n = att_hd32(hd) / 4;
    for (int e = threadIdx.x; e < ATT_B * c4n; e += ATT_THREADS) {
        const int r = e / c4n, c = (e - r * c4n) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < nrows && c < hd) {
            const float *p = src + r * stride + c;
            if (vec) {
                cp_async16(dst + r * ld + c, p);
                continue;
            }
            x.x = p[0];
            if (c + 1 < hd) x.y = p[1];
            if (c + 2 < hd) x.z = p[2];
            if (c + 3 < hd) x.w = p[3];
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

// Grid (nh, B, ceil(S/64)), 256 threads. Shared memory: Qs, T0, T1 [64, ldh] (T0/T1: the
// double-buffered k and v tiles; K and V in the streaming path), Os [64, hd32], then
// sc [64, lds] (resident) or Pt [64, 68] (streaming).
// Pipelined tile loop: each iteration waits for its tile, passes one barrier (after which
// every thread is done with the previous tile, so the other buffer is free), issues the
// next tile's copies and computes.
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
    float *Qs = smem, *T0 = Qs + ATT_B * ldh, *T1 = T0 + ATT_B * ldh;
    float *Os = Qs + 3 * ATT_B * ldh, *sc = Os + ATT_B * hd32;
#define TBUF(kt) (((kt) & 1) ? T1 : T0)  // select, not a run-time-indexed array (local memory)
#define TILE(src, kt) load_tile(TBUF(kt), ldh, (src) + (long long)(kt) * ATT_B * kstride, kstride, \
                                min(ATT_B, S - (kt) * ATT_B), hd, vec_in)

    load_tile(Qs, ldh, qsrc + q0 * qstride, qstride, nq, hd, vec_in);
    zero_smem(Os, ATT_B * hd32);
    if (RESIDENT) {
        const int lds = att_lds(S);
        TILE(ksrc, 0);
        cp_async_commit();
        for (int kt = 0; kt < nkt; kt++) {
            cp_async_wait_all();
            __syncthreads();
            if (kt + 1 < nkt) TILE(ksrc, kt + 1);
            cp_async_commit();
            float acc[4][4];
            mm_nt(acc, Qs, TBUF(kt), ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) sc[(ty * 4 + i) * lds + kt * ATT_B + tx + 16 * j] = acc[i][j] * scale;
        }
        __syncthreads();
        TILE(vsrc, 0);  // lands while the softmax runs
        cp_async_commit();
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
            cp_async_wait_all();
            __syncthreads();
            if (kt + 1 < nkt) TILE(vsrc, kt + 1);
            cp_async_commit();
            mm_nn_update_all(Os, sc + kt * ATT_B, lds, TBUF(kt), hd);
        }
    } else {
        float *Ks = T0, *Vs = T1, *Pt = sc;
        // Pass 1: running max m and sum l of exp(score - m) per row, over this thread's
        // columns, then merged across the 16 threads (tx) that share the rows.
        float m[4], l[4];
#pragma unroll
        for (int i = 0; i < 4; i++) m[i] = -INFINITY, l[i] = 0.0f;
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            cp_async_commit();
            cp_async_wait_all();
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
        for (int kt = 0; kt < nkt; kt++) {
            __syncthreads();
            const int nk = min(ATT_B, S - kt * ATT_B);
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            cp_async_commit();
            cp_async_wait_all();
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

// P entries of this thread's 4 x 4 elements (rows q0 + ty*4 + i, keys kt*64 + tx + 16j),
// zero where masked (key > row or row >= S).
static __device__ __forceinline__ void load_p(float p[4][4], const float *att_bh, int q0, int kt, int S) {
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int s = q0 + ty * 4 + i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int key = kt * ATT_B + tx + 16 * j;
            p[i][j] = key <= s && s < S ? __ldg(att_bh + (long long)s * S + key) : 0.0f;
        }
    }
}

// Grid (nh, B, ceil(S/64)), 256 threads: dq for a block of 64 queries of one head, and
// D [B, nh, S]. Shared memory as the forward (Gs, the dout rows, in place of Qs).
// Resident: pass 1 streams v tiles: dP into sc, D from this thread's P dP (P read from att
// in registers, issued before the tile's product so that its latency hides behind it);
// pass 2 streams k tiles: sc tile kt+1 is turned into dS (P reread) while tile kt's
// dq += dS K runs. Streaming: pass 1 only sums D, pass 2 recomputes dP.
template <bool RESIDENT>
static __global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_backward_dq_kernel(float *dq, float *Dg, const float *dout, const float *k, const float *v,
                                 const float *att, int S, int nh, int nkv, int hd, float scale, bool vec_in,
                                 bool vec_att) {
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int hq = blockIdx.x, b = blockIdx.y, qb = gridDim.z - 1 - blockIdx.z, hk = hq / (nh / nkv);
    const int hd32 = att_hd32(hd), ldh = att_ldh(hd), hd4 = (hd + 3) / 4 * 4;
    const int q0 = qb * ATT_B, nq = min(ATT_B, S - q0), nkt = qb + 1;
    const long long bh = (long long)b * nh + hq, qstride = (long long)nh * hd, kstride = (long long)nkv * hd;
    const float *gsrc = dout + ((long long)b * S * nh + hq) * hd, *att_bh = att + bh * S * S;
    const float *ksrc = k + ((long long)b * S * nkv + hk) * hd, *vsrc = v + ((long long)b * S * nkv + hk) * hd;
    float *Gs = smem, *T0 = Gs + ATT_B * ldh, *T1 = T0 + ATT_B * ldh;
    float *Os = Gs + 3 * ATT_B * ldh, *sc = Os + ATT_B * hd32;

    load_tile(Gs, ldh, gsrc + q0 * qstride, qstride, nq, hd, vec_in);
    zero_smem(Os, ATT_B * hd32);
    float D[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (RESIDENT) {
        const int lds = att_lds(S);
        TILE(vsrc, 0);
        cp_async_commit();
        for (int kt = 0; kt < nkt; kt++) {
            float p[4][4];
            load_p(p, att_bh, q0, kt, S);
            cp_async_wait_all();
            __syncthreads();
            if (kt + 1 < nkt) TILE(vsrc, kt + 1);
            cp_async_commit();
            float acc[4][4];
            mm_nt(acc, Gs, TBUF(kt), ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    sc[(ty * 4 + i) * lds + kt * ATT_B + tx + 16 * j] = acc[i][j];
                    D[i] = fmaf(p[i][j], acc[i][j], D[i]);
                }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            for (int o = 1; o < 16; o *= 2) D[i] += __shfl_xor_sync(0xffffffffu, D[i], o);
            const int s = q0 + ty * 4 + i;
            if (tx == 0 && s < S) Dg[bh * S + s] = D[i];
        }
        __syncthreads();
        TILE(ksrc, 0);
        cp_async_commit();
        // dS = P (dP - D) scale, in place, on this thread's own elements of tile kt.
        auto to_ds = [&](int kt) {
            float p[4][4];
            load_p(p, att_bh, q0, kt, S);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float *x = sc + (ty * 4 + i) * lds + kt * ATT_B + tx + 16 * j;
                    *x = p[i][j] * (*x - D[i]) * scale;
                }
        };
        to_ds(0);
        for (int kt = 0; kt < nkt; kt++) {
            cp_async_wait_all();
            __syncthreads();
            if (kt + 1 < nkt) TILE(ksrc, kt + 1);
            cp_async_commit();
            mm_nn_update_all(Os, sc + kt * ATT_B, lds, TBUF(kt), hd);
            if (kt + 1 < nkt) to_ds(kt + 1);
        }
    } else {
        float *Ks = T0, *Vs = T1, *Pt = sc;
        // Pass 1: D per row from this thread's columns, merged across tx.
        for (int kt = 0; kt < nkt; kt++) {
            float p[4][4];
            load_p(p, att_bh, q0, kt, S);
            __syncthreads();
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, min(ATT_B, S - kt * ATT_B), hd, vec_in);
            cp_async_commit();
            cp_async_wait_all();
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Gs, Vs, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) D[i] = fmaf(p[i][j], acc[i][j], D[i]);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            for (int o = 1; o < 16; o *= 2) D[i] += __shfl_xor_sync(0xffffffffu, D[i], o);
            const int s = q0 + ty * 4 + i;
            if (tx == 0 && s < S) Dg[bh * S + s] = D[i];
        }
        // Pass 2: recompute dP, dS to shared memory, dq += dS K.
        for (int kt = 0; kt < nkt; kt++) {
            float p[4][4];
            load_p(p, att_bh, q0, kt, S);
            __syncthreads();
            const int nk = min(ATT_B, S - kt * ATT_B);
            load_tile(Vs, ldh, vsrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            load_tile(Ks, ldh, ksrc + kt * ATT_B * kstride, kstride, nk, hd, vec_in);
            cp_async_commit();
            cp_async_wait_all();
            __syncthreads();
            float acc[4][4];
            mm_nt(acc, Gs, Vs, ldh, hd4);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    Pt[(ty * 4 + i) * ATT_LDP + tx + 16 * j] = p[i][j] * (acc[i][j] - D[i]) * scale;
            __syncthreads();
            mm_nn_update_all(Os, Pt, ATT_LDP, Ks, hd);
        }
    }
    __syncthreads();
    store_rows(dq + ((long long)b * S * nh + hq) * hd + q0 * qstride, qstride, Os, nq, hd);
}
#undef TILE
#undef TBUF

// ---- backward, key side ------------------------------------------------------------------

// Grid (nkv, B, ceil(S/64)), 256 threads: dk, dv for a block of 64 keys k0.. of kv head hk.
// Iterations run over (query head of the group, query tile at or after the key block).
// Thread (ty, tx) owns keys ty*4 + i and queries tx + 16 j of each [64 keys, 64 queries]
// tile: dP^T = V dO^T (mm_nt), P^T read from att as one float4 of 4 keys per query row.
// Shared memory: Vs [64, ldh]; nbuf x (Qs, Gs [64, ldh]); Pt, St [64, 68]; nbuf x Dq [64];
// dKs, dVs [64, hd32]. nbuf = 2 double-buffers the q and dout tiles (when it fits).
static __global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_backward_dkv_kernel(float *dk, float *dv, const float *Dg, const float *dout, const float *q,
                                  const float *v, const float *att, int S, int nh, int nkv, int hd, float scale,
                                  bool vec_in, bool vec_att, int nbuf) {
    extern __shared__ float4 smem4[];
    float *smem = (float *)smem4;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int hk = blockIdx.x, b = blockIdx.y, kb = blockIdx.z, rep = nh / nkv;
    const int hd32 = att_hd32(hd), ldh = att_ldh(hd), hd4 = (hd + 3) / 4 * 4;
    const int k0 = kb * ATT_B, nk = min(ATT_B, S - k0), nqt = (S + ATT_B - 1) / ATT_B;
    const int nqk = nqt - kb, n_it = rep * nqk;
    const long long qstride = (long long)nh * hd, kstride = (long long)nkv * hd;
    float *Vs = smem, *Qb = Vs + ATT_B * ldh, *Gb = Qb + nbuf * ATT_B * ldh, *Pt = Gb + nbuf * ATT_B * ldh;
    float *St = Pt + ATT_B * ATT_LDP, *Db = St + ATT_B * ATT_LDP, *dKs = Db + nbuf * ATT_B,
          *dVs = dKs + ATT_B * hd32;

    // Stage iteration it's q and dout tiles and D into buffer buf.
    auto stage = [&](int it, int buf) {
        const int hq = hk * rep + it / nqk, q0 = (kb + it % nqk) * ATT_B, nq = min(ATT_B, S - q0);
        const long long off = ((long long)b * S * nh + hq) * hd + q0 * qstride;
        load_tile(Qb + buf * ATT_B * ldh, ldh, q + off, qstride, nq, hd, vec_in);
        load_tile(Gb + buf * ATT_B * ldh, ldh, dout + off, qstride, nq, hd, vec_in);
        if (tid < ATT_B) Db[buf * ATT_B + tid] = tid < nq ? Dg[((long long)b * nh + hq) * S + q0 + tid] : 0.0f;
        cp_async_commit();
    };
    load_tile(Vs, ldh, v + (((long long)b * S + k0) * nkv + hk) * hd, kstride, nk, hd, vec_in);
    zero_smem(dKs, 2 * ATT_B * hd32);
    stage(0, 0);
    const int key0 = k0 + ty * 4;  // this thread's first key
    for (int it = 0; it < n_it; it++) {
        const int hq = hk * rep + it / nqk, q0 = (kb + it % nqk) * ATT_B, buf = nbuf == 2 ? it & 1 : 0;
        const float *att_bh = att + ((long long)b * nh + hq) * S * S;
        // P^T entries, issued before the wait so that their latency overlaps the product.
        float4 p[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int s = q0 + tx + 16 * j;
            p[j] = s < S && key0 < S ? load4(att_bh + (long long)s * S, key0, S, vec_att)
                                     : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        if (nbuf == 1 && it > 0) {
            __syncthreads();  // every thread is done with the single buffer
            stage(it, 0);
        }
        cp_async_wait_all();
        __syncthreads();
        if (nbuf == 2 && it + 1 < n_it) stage(it + 1, (it + 1) & 1);
        const float *Qs = Qb + buf * ATT_B * ldh, *Gs = Gb + buf * ATT_B * ldh, *Dq = Db + buf * ATT_B;
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
    return sizeof(float) * (3 * tiles + acc + (size_t)ATT_B * (resident ? att_lds(S) : ATT_LDP));
}

static size_t dkv_smem(int nbuf, int hd) {
    return sizeof(float) * ((size_t)(1 + 2 * nbuf) * ATT_B * att_ldh(hd) + (size_t)2 * ATT_B * ATT_LDP +
                            (size_t)nbuf * ATT_B + (size_t)2 * ATT_B * att_hd32(hd));
}

static void check_shapes(int B, int S, int nh, int nkv, int hd) {
    SPD_ASSERT(nkv >= 1 && nh % nkv == 0 && hd >= 1);
    SPD_ASSERT(B <= 65535 && (S + ATT_B - 1) / ATT_B <= 65535);
}

extern "C" void attention_forward_cuda(float *out, float *att, const float *q, const float *k, const float *v, int B,
                                       int S, int nh, int nkv, int hd) {
    check_shapes(B, S, nh, nkv, hd);
    if (B <= 0 || S <= 0 || nh <= 0) return;
    const void *ptrs[] = {out, att, q, k, v};
    if (attention_tc_ok(S, hd, ptrs, 5)) {
        attention_forward_tc(out, att, q, k, v, B, S, nh, nkv, hd);
        return;
    }
    const bool vec_in = hd % 4 == 0 && spd_aligned(q, 16) && spd_aligned(k, 16) && spd_aligned(v, 16);
    const bool vec_att = S % 4 == 0 && spd_aligned(att, 16);
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
                                        const float *k, const float *v, const float *out, const float *att, int B,
                                        int S, int nh, int nkv, int hd) {
    check_shapes(B, S, nh, nkv, hd);
    if (B <= 0 || S <= 0 || nh <= 0) return;
    cudaStream_t st = spd_cuda_stream();
    const float scale = (float)(1.0 / sqrt((double)hd));
    const bool vec_in =
        hd % 4 == 0 && spd_aligned(q, 16) && spd_aligned(k, 16) && spd_aligned(v, 16) && spd_aligned(dout, 16);
    const bool vec_att = S % 4 == 0 && spd_aligned(att, 16);
    // D [B, nh, S] lives in the backend's workspace (no cuBLAS call runs while it is in
    // use), or in a stream-ordered temporary when it does not fit.
    const size_t d_bytes = sizeof(float) * (size_t)B * nh * S;
    size_t ws_bytes = 0;
    float *D = (float *)spd_cuda_workspace(&ws_bytes);
    const bool own = d_bytes > ws_bytes;
    if (own) CUDA_CHECK(cudaMallocAsync((void **)&D, d_bytes, st));
    const void *ptrs[] = {q, k, v, out, att, dq, dk, dv, dout};
    // The forward saved only row statistics where it ran lean (its five buffers aligned):
    // then the tensor-core kernels must take the backward too.
    if (attention_tc_lean(S, hd) && attention_tc_ok(S, hd, ptrs, 5) && !attention_tc_ok(S, hd, ptrs, 9))
        spd_die("attention backward: dq, dk, dv and dout must be 16-byte aligned after the memory-lean forward");
    if (attention_tc_ok(S, hd, ptrs, 9)) {
        attention_backward_tc(dq, dk, dv, D, dout, q, k, v, out, att, B, S, nh, nkv, hd);
        if (own) CUDA_CHECK(cudaFreeAsync(D, st));
        return;
    }

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

    const int nbuf = dkv_smem(2, hd) <= ATT_RESIDENT_SMEM ? 2 : 1;
    const size_t smem_kv = dkv_smem(nbuf, hd);
    ensure_smem((const void *)attention_backward_dkv_kernel, smem_kv, hd);
    const dim3 grid_kv(nkv, B, (S + ATT_B - 1) / ATT_B);
    attention_backward_dkv_kernel<<<grid_kv, ATT_THREADS, smem_kv, st>>>(dk, dv, D, dout, q, v, att, S, nh, nkv, hd,
                                                                         scale, vec_in, vec_att, nbuf);
    CUDA_CHECK_LAUNCH();
    if (own) CUDA_CHECK(cudaFreeAsync(D, st));
}
