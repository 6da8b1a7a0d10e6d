// Causal grouped-query softmax attention on the GPU, straightforward kernels:
// a warp per query row for the forward and for dq, a block per tile of 32 keys
// for dk and dv. Keys (or queries) are staged through shared memory in tiles of
// 32 rows padded to hd + 1 floats, so that a lane per key reads its row without
// bank conflicts. Sums run in float32 (the CPU reference sums in float64).
//
// Layouts (attention.h): q [B, S, nh*hd], k, v [B, S, nkv*hd], att [B, nh, S, S];
// query head hq reads kv head hq / (nh / nkv); scale 1/sqrt(hd).
#include <math.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "core/real.h"
#include "ops/attention.h"
}

#define ATT_ROWS 8   // query rows per block in the row kernels: one warp each
#define ATT_TILE 32  // rows per shared-memory tile of keys, values or queries

static __device__ float warp_sum(float x) {
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

static __device__ float warp_max(float x) {
    for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// tile [ATT_TILE, hd + 1] = rows r0 .. r0 + ATT_TILE of head `head` of src [B, S, n_heads*hd]
// for batch b (zeros past S). All threads of the block take part.
static __device__ void load_tile(float *tile, const float *src, int b, int r0, int S, int n_heads, int head, int hd) {
    const int ld = hd + 1;
    for (int e = threadIdx.x; e < ATT_TILE * hd; e += blockDim.x) {
        const int t = e / hd, i = e % hd, r = r0 + t;
        tile[t * ld + i] = r < S ? src[(((long long)b * S + r) * n_heads + head) * hd + i] : 0.0f;
    }
}

// Forward. Grid (ceil(S / ATT_ROWS), nh, B), block ATT_ROWS warps; warp w owns query row
// s = blockIdx.x * ATT_ROWS + w of head hq = blockIdx.y, batch b = blockIdx.z.
// Pass 1: per key tile, lane j scores key kt*32 + j (q row from shared, key row from the
// padded tile) and writes the scaled score into its att row. Softmax: each lane rereads
// only the entries it wrote (keys = lane mod 32), so no synchronization is needed; the
// row is normalized and zeroed above the diagonal. Pass 2: per value tile, the lanes
// split the hd outputs and sum p[t] v[t] with p broadcast from shared memory.
// Shared: qs [ATT_ROWS, hd], tile [ATT_TILE, hd+1], ps [ATT_ROWS, ATT_TILE], os [ATT_ROWS, hd].
static __global__ void attention_forward_kernel(float *out, float *att, const float *q, const float *k,
                                                const float *v, int S, int nh, int nkv, int hd, float scale) {
    extern __shared__ float smem[];
    const int ld = hd + 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.z, hq = blockIdx.y, hk = hq / (nh / nkv);
    const int s0 = blockIdx.x * ATT_ROWS, s = s0 + warp;
    const bool active = s < S;  // warp-uniform
    const int n_tiles = (min(s0 + ATT_ROWS, S) - 1) / ATT_TILE + 1;
    float *qw = smem + warp * hd;
    float *tile = smem + ATT_ROWS * hd;
    float *pw = tile + ATT_TILE * ld + warp * ATT_TILE;
    float *ow = tile + ATT_TILE * ld + ATT_ROWS * ATT_TILE + warp * hd;
    float *prow = att + (((long long)b * nh + hq) * S + s) * S;
    if (active) {
        const float *qrow = q + (((long long)b * S + s) * nh + hq) * hd;
        for (int i = lane; i < hd; i += 32) {
            qw[i] = qrow[i];
            ow[i] = 0.0f;
        }
    }
    float mx = -INFINITY;
    for (int kt = 0; kt < n_tiles; kt++) {
        __syncthreads();
        load_tile(tile, k, b, kt * ATT_TILE, S, nkv, hk, hd);
        __syncthreads();
        const int key = kt * ATT_TILE + lane;
        if (active && key <= s) {
            const float *kr = tile + lane * ld;
            float dot = 0.0f;
            for (int i = 0; i < hd; i++) dot += qw[i] * kr[i];
            const float sc = dot * scale;
            prow[key] = sc;
            mx = fmaxf(mx, sc);
        }
    }
    if (active) {
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int key = lane; key <= s; key += 32) {
            const float e = expf(prow[key] - mx);
            prow[key] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        for (int key = lane; key < S; key += 32) prow[key] = key <= s ? prow[key] / sum : 0.0f;
    }
    for (int kt = 0; kt < n_tiles; kt++) {
        __syncthreads();
        load_tile(tile, v, b, kt * ATT_TILE, S, nkv, hk, hd);
        __syncthreads();
        if (active && kt * ATT_TILE <= s) {
            const int key = kt * ATT_TILE + lane;
            pw[lane] = key <= s ? prow[key] : 0.0f;
            __syncwarp();
            const int nt = min(ATT_TILE, s - kt * ATT_TILE + 1);
            for (int i = lane; i < hd; i += 32) {
                float o = ow[i];
                for (int t = 0; t < nt; t++) o += pw[t] * tile[t * ld + i];
                ow[i] = o;
            }
            __syncwarp();
        }
    }
    if (active) {
        float *orow = out + (((long long)b * S + s) * nh + hq) * hd;
        for (int i = lane; i < hd; i += 32) orow[i] = ow[i];
    }
}

// Backward, query side. Same grid and warp-per-row layout as the forward.
// With P = att row, dP[t] = dout_s . v[t], pdp = sum_t P[t] dP[t]:
// pass 1 sums pdp (saved in pdp_out [B, nh, S] for the key side); pass 2 recomputes
// dP, forms dS[t] = P[t] (dP[t] - pdp) scale and sums dq_s = sum_t dS[t] k[t].
// Shared: gs [ATT_ROWS, hd] (dout rows), vt, kt [ATT_TILE, hd+1], ps [ATT_ROWS, ATT_TILE], os [ATT_ROWS, hd].
static __global__ void attention_backward_dq_kernel(float *dq, float *pdp_out, const float *dout, const float *k,
                                                    const float *v, const float *att, int S, int nh, int nkv, int hd,
                                                    float scale) {
    extern __shared__ float smem[];
    const int ld = hd + 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.z, hq = blockIdx.y, hk = hq / (nh / nkv);
    const int s0 = blockIdx.x * ATT_ROWS, s = s0 + warp;
    const bool active = s < S;
    const int n_tiles = (min(s0 + ATT_ROWS, S) - 1) / ATT_TILE + 1;
    float *gw = smem + warp * hd;
    float *vt = smem + ATT_ROWS * hd;
    float *ktile = vt + ATT_TILE * ld;
    float *pw = ktile + ATT_TILE * ld + warp * ATT_TILE;
    float *ow = ktile + ATT_TILE * ld + ATT_ROWS * ATT_TILE + warp * hd;
    const float *prow = att + (((long long)b * nh + hq) * S + s) * S;
    if (active) {
        const float *grow = dout + (((long long)b * S + s) * nh + hq) * hd;
        for (int i = lane; i < hd; i += 32) {
            gw[i] = grow[i];
            ow[i] = 0.0f;
        }
    }
    float pdp = 0.0f;
    for (int kt = 0; kt < n_tiles; kt++) {
        __syncthreads();
        load_tile(vt, v, b, kt * ATT_TILE, S, nkv, hk, hd);
        __syncthreads();
        const int key = kt * ATT_TILE + lane;
        if (active && key <= s) {
            const float *vr = vt + lane * ld;
            float dp = 0.0f;
            for (int i = 0; i < hd; i++) dp += gw[i] * vr[i];
            pdp += prow[key] * dp;
        }
    }
    if (active) {
        pdp = warp_sum(pdp);
        if (lane == 0) pdp_out[((long long)b * nh + hq) * S + s] = pdp;
    }
    for (int kt = 0; kt < n_tiles; kt++) {
        __syncthreads();
        load_tile(vt, v, b, kt * ATT_TILE, S, nkv, hk, hd);
        load_tile(ktile, k, b, kt * ATT_TILE, S, nkv, hk, hd);
        __syncthreads();
        if (active && kt * ATT_TILE <= s) {
            const int key = kt * ATT_TILE + lane;
            float ds = 0.0f;
            if (key <= s) {
                const float *vr = vt + lane * ld;
                float dp = 0.0f;
                for (int i = 0; i < hd; i++) dp += gw[i] * vr[i];
                ds = prow[key] * (dp - pdp) * scale;
            }
            pw[lane] = ds;
            __syncwarp();
            const int nt = min(ATT_TILE, s - kt * ATT_TILE + 1);
            for (int i = lane; i < hd; i += 32) {
                float o = ow[i];
                for (int t = 0; t < nt; t++) o += pw[t] * ktile[t * ld + i];
                ow[i] = o;
            }
            __syncwarp();
        }
    }
    if (active) {
        float *dqrow = dq + (((long long)b * S + s) * nh + hq) * hd;
        for (int i = lane; i < hd; i += 32) dqrow[i] = ow[i];
    }
}

// Backward, key side. Grid (ceil(S / ATT_TILE), nkv, B), block ATT_ROWS warps: the block
// owns keys kt*32 .. kt*32+31 of kv head hk; warp w handles keys w, w + 8, ... of the tile.
// For every query head of the group and every query tile at or after the key tile, it
// stages q, dout, the att sub-block P [32 queries, 32 keys] and pdp, then per key t, lane
// = query row s: dS = P (dout_s . v_t - pdp_s) scale, and sums dk_t += dS q_s, dv_t += P dout_s
// with the lanes split over hd. Written, not accumulated, at the end (every key has s = t).
// Shared: qt, dt, [ATT_TILE, hd+1]; pt [ATT_TILE, ATT_TILE+1]; pd [ATT_TILE]; vk [ATT_TILE, hd];
// dsw, pvw [ATT_ROWS, ATT_TILE]; dks, dvs [ATT_TILE, hd].
static __global__ void attention_backward_dkv_kernel(float *dk, float *dv, const float *pdp, const float *dout,
                                                     const float *q, const float *v, const float *att, int S, int nh,
                                                     int nkv, int hd, float scale) {
    extern __shared__ float smem[];
    const int ld = hd + 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int b = blockIdx.z, hk = blockIdx.y, rep = nh / nkv;
    const int k0 = blockIdx.x * ATT_TILE;
    float *qt = smem;
    float *dt = qt + ATT_TILE * ld;
    float *pt = dt + ATT_TILE * ld;
    float *pd = pt + ATT_TILE * (ATT_TILE + 1);
    float *vk = pd + ATT_TILE;
    float *dsw = vk + ATT_TILE * hd + warp * ATT_TILE;
    float *pvw = vk + ATT_TILE * hd + ATT_ROWS * ATT_TILE + warp * ATT_TILE;
    float *dks = vk + ATT_TILE * hd + 2 * ATT_ROWS * ATT_TILE;
    float *dvs = dks + ATT_TILE * hd;
    for (int e = threadIdx.x; e < ATT_TILE * hd; e += blockDim.x) {
        const int j = e / hd, i = e % hd, key = k0 + j;
        vk[e] = key < S ? v[(((long long)b * S + key) * nkv + hk) * hd + i] : 0.0f;
        dks[e] = 0.0f;
        dvs[e] = 0.0f;
    }
    const int n_qtiles = (S + ATT_TILE - 1) / ATT_TILE;
    for (int hq = hk * rep; hq < (hk + 1) * rep; hq++) {
        const float *att_h = att + ((long long)b * nh + hq) * S * (long long)S;
        for (int qtile = blockIdx.x; qtile < n_qtiles; qtile++) {
            const int q0 = qtile * ATT_TILE;
            __syncthreads();
            load_tile(qt, q, b, q0, S, nh, hq, hd);
            load_tile(dt, dout, b, q0, S, nh, hq, hd);
            for (int e = threadIdx.x; e < ATT_TILE * ATT_TILE; e += blockDim.x) {
                const int r = e / ATT_TILE, j = e % ATT_TILE, s = q0 + r, key = k0 + j;
                pt[r * (ATT_TILE + 1) + j] = s < S && key < S ? att_h[(long long)s * S + key] : 0.0f;
            }
            if (threadIdx.x < ATT_TILE) {
                const int s = q0 + threadIdx.x;
                pd[threadIdx.x] = s < S ? pdp[((long long)b * nh + hq) * S + s] : 0.0f;
            }
            __syncthreads();
            for (int j = warp; j < ATT_TILE; j += ATT_ROWS) {
                const int key = k0 + j;
                if (key >= S) break;  // warp-uniform
                const int s = q0 + lane;
                const bool valid = s < S && s >= key;
                float ds = 0.0f, p = 0.0f;
                if (valid) {
                    const float *gr = dt + lane * ld, *vr = vk + j * hd;
                    float dp = 0.0f;
                    for (int i = 0; i < hd; i++) dp += gr[i] * vr[i];
                    p = pt[lane * (ATT_TILE + 1) + j];
                    ds = p * (dp - pd[lane]) * scale;
                }
                dsw[lane] = ds;
                pvw[lane] = p;
                __syncwarp();
                for (int i = lane; i < hd; i += 32) {
                    float a = dks[j * hd + i], c = dvs[j * hd + i];
                    for (int r = 0; r < ATT_TILE; r++) {
                        a += dsw[r] * qt[r * ld + i];
                        c += pvw[r] * dt[r * ld + i];
                    }
                    dks[j * hd + i] = a;
                    dvs[j * hd + i] = c;
                }
                __syncwarp();
            }
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < ATT_TILE * hd; e += blockDim.x) {
        const int j = e / hd, i = e % hd, key = k0 + j;
        if (key >= S) continue;
        const long long o = (((long long)b * S + key) * nkv + hk) * hd + i;
        dk[o] = dks[e];
        dv[o] = dvs[e];
    }
}

// Dynamic shared memory above 48 KiB must be opted into, per kernel (only for large hd).
static void ensure_smem(const void *kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return;
    int dev = 0, max_optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (bytes > (size_t)max_optin)
        spd_die("attention: head dim too large for the unfused kernels (%zu bytes of shared memory, at most %d)",
                bytes, max_optin);
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

static void check_shapes(int B, int S, int nh, int nkv, int hd) {
    SPD_ASSERT(nkv >= 1 && nh % nkv == 0 && hd >= 1);
    SPD_ASSERT(B <= 65535 && nh <= 65535);
}

extern "C" void attention_forward_cuda(float *out, float *att, const float *q, const float *k, const float *v, int B,
                                       int S, int nh, int nkv, int hd) {
    check_shapes(B, S, nh, nkv, hd);
    if (B <= 0 || S <= 0 || nh <= 0) return;
    const size_t smem = sizeof(float) * ((size_t)2 * ATT_ROWS * hd + (size_t)ATT_TILE * (hd + 1) + ATT_ROWS * ATT_TILE);
    ensure_smem((const void *)attention_forward_kernel, smem);
    dim3 grid((S + ATT_ROWS - 1) / ATT_ROWS, nh, B);
    attention_forward_kernel<<<grid, ATT_ROWS * 32, smem, spd_cuda_stream()>>>(out, att, q, k, v, S, nh, nkv, hd,
                                                                                 (float)(1.0 / sqrt((double)hd)));
    CUDA_CHECK_LAUNCH();
}

extern "C" void attention_backward_cuda(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                        const float *k, const float *v, const float *att, int B, int S, int nh,
                                        int nkv, int hd) {
    check_shapes(B, S, nh, nkv, hd);
    if (B <= 0 || S <= 0 || nh <= 0) return;
    cudaStream_t st = spd_cuda_stream();
    const float scale = (float)(1.0 / sqrt((double)hd));
    // pdp [B, nh, S] lives in the backend's workspace (no cuBLAS call runs while it is
    // in use), or in a stream-ordered temporary when it does not fit.
    const size_t pdp_bytes = sizeof(float) * (size_t)B * nh * S;
    size_t ws_bytes = 0;
    float *pdp = (float *)spd_cuda_workspace(&ws_bytes);
    const bool own = pdp_bytes > ws_bytes;
    if (own) CUDA_CHECK(cudaMallocAsync((void **)&pdp, pdp_bytes, st));

    const size_t smem_dq =
        sizeof(float) * ((size_t)2 * ATT_ROWS * hd + (size_t)2 * ATT_TILE * (hd + 1) + ATT_ROWS * ATT_TILE);
    ensure_smem((const void *)attention_backward_dq_kernel, smem_dq);
    dim3 grid_dq((S + ATT_ROWS - 1) / ATT_ROWS, nh, B);
    attention_backward_dq_kernel<<<grid_dq, ATT_ROWS * 32, smem_dq, st>>>(dq, pdp, dout, k, v, att, S, nh, nkv, hd,
                                                                          scale);
    CUDA_CHECK_LAUNCH();

    const size_t smem_kv = sizeof(float) * ((size_t)2 * ATT_TILE * (hd + 1) + ATT_TILE * (ATT_TILE + 1) + ATT_TILE +
                                            (size_t)3 * ATT_TILE * hd + 2 * ATT_ROWS * ATT_TILE);
    ensure_smem((const void *)attention_backward_dkv_kernel, smem_kv);
    dim3 grid_kv((S + ATT_TILE - 1) / ATT_TILE, nkv, B);
    attention_backward_dkv_kernel<<<grid_kv, ATT_ROWS * 32, smem_kv, st>>>(dk, dv, pdp, dout, q, v, att, S, nh, nkv,
                                                                           hd, scale);
    CUDA_CHECK_LAUNCH();
    if (own) CUDA_CHECK(cudaFreeAsync(pdp, st));
}
