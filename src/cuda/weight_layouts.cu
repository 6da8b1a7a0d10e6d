// The weight layouts of weight_layouts.h and components_weights_prepare (ops/components.h).
//
// The fused kernels read V and U in layouts of their own (transposed, padded, columns
// reordered, rounded to TF32 or bf16), copied from the weights every step since AdamW changes
// them. One copy per module and layout was a launch of a few microseconds for at most 1.7 MB:
// with TF32, LlamaSimple's 28 modules made 44 of them per step (about 0.17 ms at 16x128 and
// at 64x256 alike, H100). Here a module's first step makes its own copies as before and asks for the
// layouts (weight_layout_get), which are then kept in buffers of their own; from the next
// forward on, the model's forward makes all of them in a launch per 64 layouts
// (components_weights_prepare: 80 layouts, 2 launches, 83 us at 16x128), and the calls of
// that forward and its backward find them. Session 19 (H100): TF32 16x128 2.35 -> 2.29 ms,
// 64x256 8.88 -> 8.81; bf16 16x128 2.16 -> 2.05, 64x256 7.49 -> 7.38 (dev/kernels/b2b_wgmma/NOTES.md).
//
// Validity: a layout is found only in the generation that made it. The forward's prepare
// starts a generation, the backward's release ends it, so a layout is never read after its
// weights may have changed (AdamW runs after the backward; a forward without prepare, or a
// second model's forward in between, finds none and copies as before). Under graph capture
// the prepare's launch is captured with the rest, so every replay makes the layouts again.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>

#include "core/env.h"
#include "cuda/cuda_common.h"
#include "cuda/gemm.h"
#include "cuda/masked_b2b_sm90.h"
#include "cuda/weight_layouts.h"

extern "C" {
#include "core/real.h"
#include "ops/components.h"
}

#define WL_JOBS 64  // copies per launch (the parameter block stays under 4 KB)

typedef struct {
    weight_layout_kind kind;
    const float *W;
    int rows, cols;
    void *buf;
    unsigned long long gen;  // the generation its content was made in
} layout_entry;

static layout_entry *entries;
static int n_entries, cap_entries;
static unsigned long long generation = 1;  // entries made in another are stale
static int made;                           // by the last prepare
// The weights the last prepare listed: only theirs are remembered (a test's or a toy
// model's weights, never prepared, get no buffers).
static const float **model_weights;
static int n_model_weights;

static int pad4(int d) { return (d + 3) & ~3; }

static __host__ __device__ bool is_bf16(int kind) { return kind >= WL_VT16; }

// Row stride and row count of the layout.
static void layout_shape(weight_layout_kind kind, int rows, int cols, int *ld, int *n_rows) {
    const int k = is_bf16(kind) ? kind - WL_VT16 : kind;  // the TF32 kind of the same role
    const bool transposed = k == WL_VT || k == WL_BT_U;
    *n_rows = transposed ? cols : rows;
    if (k == WL_VT) *ld = is_bf16(kind) ? spd_bf16_ld(rows) : pad4(rows);
    else if (k == WL_PAD_U) *ld = is_bf16(kind) ? spd_bf16_ld(cols) : pad4(cols);
    else *ld = masked_b2b_ldb(k == WL_BT_U ? rows : cols);
}

typedef struct {
    void *dst;
    const float *src;
    int kind, rows, cols;  // src [rows, cols]
    int ld, n_rows;        // dst [n_rows, ld]
} layout_job;

typedef struct {
    layout_job job[WL_JOBS];
    unsigned tile0[WL_JOBS + 1];  // job j makes tiles [tile0[j], tile0[j + 1]) of the launch
    int n;
} layout_jobs;

#define WL_TILE 32

static int tiles_of(const layout_job &j) {
    return ((j.n_rows + WL_TILE - 1) / WL_TILE) * ((j.ld + WL_TILE - 1) / WL_TILE);
}

// One 32 x 32 tile of a layout per block (32 x 8 threads), through shared memory so that
// the weight is read along its rows and the layout written along its rows, also where one is
// the other's transpose. dst (r, q) = src [q', r] (V^T, U's copy) or src [r, q'] (V's copy,
// U padded), with q' = q, or, for the b2b copies, q's place in the order 0 2 4 6 1 3 5 7 of
// its 8 columns (rounded to TF32); zero outside src. bf16 kinds: rounded to bf16, in plain order.
static __global__ void layouts_kernel(const __grid_constant__ layout_jobs js) {
    __shared__ float t[WL_TILE][WL_TILE + 1];
    int lo = 0, hi = js.n - 1;  // the last job starting at or before this tile
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (js.tile0[mid] <= blockIdx.x) lo = mid;
        else hi = mid - 1;
    }
    const layout_job &j = js.job[lo];
    const int tile = (int)(blockIdx.x - js.tile0[lo]), tiles_q = (j.ld + WL_TILE - 1) / WL_TILE;
    const int R = WL_TILE * (tile / tiles_q), Q = WL_TILE * (tile % tiles_q);
    const bool bf16 = is_bf16(j.kind);
    const int k = bf16 ? j.kind - WL_VT16 : j.kind;  // the role
    const bool transposed = k == WL_VT || k == WL_BT_U, b2b = !bf16 && (k == WL_BT_U || k == WL_BT_V);
    // t [a][b] = src [A + a, B + b]: the tile's source block, read along its rows.
    const int A = transposed ? Q : R, B = transposed ? R : Q;
    for (int a = threadIdx.y; a < WL_TILE; a += blockDim.y) {
        const int row = A + a, col = B + threadIdx.x;
        t[a][threadIdx.x] = row < j.rows && col < j.cols ? j.src[(long long)row * j.cols + col] : 0.0f;
    }
    __syncthreads();
    const int x = threadIdx.x, tq = x & 7;
    const int xs = b2b ? (x & ~7) + (tq < 4 ? 2 * tq : 2 * (tq - 4) + 1) : x;  // q' - Q
    for (int y = threadIdx.y; y < WL_TILE; y += blockDim.y) {
        const int r = R + y, q = Q + x;
        if (r >= j.n_rows || q >= j.ld) continue;
        float v = transposed ? t[xs][y] : t[y][xs];
        const long long o = (long long)r * j.ld + q;
        if (bf16) {
            ((__nv_bfloat16 *)j.dst)[o] = __float2bfloat16_rn(v);
            continue;
        }
        if (b2b) {
            uint32_t b;
            asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(b) : "f"(v));
            v = __uint_as_float(b);
        }
        ((float *)j.dst)[o] = v;
    }
}

static void launch(layout_jobs *js) {
    if (js->n == 0) return;
    layouts_kernel<<<js->tile0[js->n], dim3(WL_TILE, 8), 0, spd_cuda_stream()>>>(*js);
    CUDA_CHECK_LAUNCH();
    js->n = 0;
    js->tile0[0] = 0;
}

// SPD_CUDA_WEIGHT_LAYOUTS=0: every call makes its own copies (for A/B timing).
static bool env_on(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_WEIGHT_LAYOUTS", true);
    return env;
}

static bool capturing(void) {
    cudaStreamCaptureStatus s;
    CUDA_CHECK(cudaStreamIsCapturing(spd_cuda_stream(), &s));
    return s != cudaStreamCaptureStatusNone;
}

static bool listed(const float *W, int n, const float *const *list) {
    for (int i = 0; i < n; i++)
        if (list[i] == W) return true;
    return false;
}

const void *weight_layout_get(weight_layout_kind kind, const float *W, int rows, int cols) {
    for (int i = 0; i < n_entries; i++) {
        const layout_entry *e = &entries[i];
        if (e->kind == kind && e->W == W && e->rows == rows && e->cols == cols)
            return e->gen == generation ? e->buf : NULL;
    }
    // Remembered for the next prepare (not while capturing: no allocation inside a graph).
    if (!env_on() || !listed(W, n_model_weights, model_weights) || capturing()) return NULL;
    int ld, n_rows;
    layout_shape(kind, rows, cols, &ld, &n_rows);
    if (n_entries == cap_entries) {
        cap_entries = cap_entries ? 2 * cap_entries : 64;
        layout_entry *grown = (layout_entry *)spd_malloc((size_t)cap_entries * sizeof *grown);
        if (n_entries) memcpy(grown, entries, (size_t)n_entries * sizeof *grown);
        free(entries);
        entries = grown;
    }
    layout_entry *e = &entries[n_entries++];
    *e = (layout_entry){kind, W, rows, cols, NULL, 0};
    CUDA_CHECK(cudaMalloc(&e->buf, (size_t)ld * n_rows * (is_bf16(kind) ? 2 : 4)));
    return NULL;
}

extern "C" void components_weights_prepare_cuda(int n, const float *const *W) {
    generation++;
    free(model_weights);
    model_weights = (const float **)spd_malloc((size_t)(n + 1) * sizeof *model_weights);
    if (n) memcpy(model_weights, W, (size_t)n * sizeof *W);
    n_model_weights = n;
    layout_jobs js;
    js.n = 0;
    js.tile0[0] = 0;
    made = 0;
    for (int i = 0; i < n_entries; i++) {
        layout_entry *e = &entries[i];
        if (!listed(e->W, n, W)) continue;
        layout_job job = {e->buf, e->W, (int)e->kind, e->rows, e->cols, 0, 0};
        layout_shape(e->kind, e->rows, e->cols, &job.ld, &job.n_rows);
        if (js.n == WL_JOBS || (long long)js.tile0[js.n] + tiles_of(job) > INT_MAX) launch(&js);
        js.job[js.n] = job;
        js.tile0[js.n + 1] = js.tile0[js.n] + (unsigned)tiles_of(job);
        js.n++;
        e->gen = generation;
        made++;
    }
    launch(&js);
}

extern "C" int weight_layouts_made(void) { return made; }

extern "C" void components_weights_release_cuda(void) { generation++; }

extern "C" void components_weights_forget_cuda(int n, const float *const *W) {
    int kept = 0;
    for (int i = 0; i < n_entries; i++) {
        if (listed(entries[i].W, n, W))
            CUDA_CHECK(cudaFree(entries[i].buf));
        else
            entries[kept++] = entries[i];
    }
    n_entries = kept;
    kept = 0;
    for (int i = 0; i < n_model_weights; i++)
        if (!listed(model_weights[i], n, W)) model_weights[kept++] = model_weights[i];
    n_model_weights = kept;
}
