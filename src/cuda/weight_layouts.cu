// The weight layouts of weight_layouts.h and components_weights_prepare (ops/components.h).
//
// The fused kernels read V and U in layouts of their own (transposed, padded, columns
// reordered, rounded to TF32), copied from the weights every step since AdamW changes them.
// One copy per module and layout was a launch of a few microseconds for at most 1.6 MB:
// LlamaSimple's 28 modules made 44 of them per step (about 0.17 ms at 64x256, 0.25 ms with
// the padded copies at 16x128). Here a module's first step makes its own copies as before
// and asks for the layouts (weight_layout_get), which are then kept in buffers of their own;
// from the next forward on, the model's forward makes all of them in one launch
// (components_weights_prepare), and the calls of that forward and its backward find them.
//
// Validity: a layout is found only in the generation that made it. The forward's prepare
// starts a generation, the backward's release ends it, so a layout is never read after its
// weights may have changed (AdamW runs after the backward; a forward without prepare, or a
// second model's forward in between, finds none and copies as before). Under graph capture
// the prepare's launch is captured with the rest, so every replay makes the layouts again.
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/masked_b2b_sm90.h"
#include "cuda/weight_layouts.h"

extern "C" {
#include "core/real.h"
#include "ops/components.h"
}

#define WL_THREADS 256
#define WL_JOBS 64  // copies per launch (the parameter block stays under 4 KB)

typedef struct {
    weight_layout_kind kind;
    const float *W;
    int rows, cols;
    float *buf;
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

// Row stride and row count of the layout.
static void layout_shape(weight_layout_kind kind, int rows, int cols, int *ld, int *n_rows) {
    const bool transposed = kind == WL_VT || kind == WL_BT_U;
    *n_rows = transposed ? cols : rows;
    *ld = kind == WL_VT ? pad4(rows) : kind == WL_PAD_U ? pad4(cols) : masked_b2b_ldb(kind == WL_BT_U ? rows : cols);
}

typedef struct {
    float *dst;
    const float *src;
    int kind, rows, cols, ld;
} layout_job;

typedef struct {
    layout_job job[WL_JOBS];
    unsigned off[WL_JOBS + 1];  // job j makes elements [off[j], off[j + 1]) of the launch
    int n;
} layout_jobs;

// One element of a layout; the formulas are masked_b2b_weight's and transpose_pad's / copy2d's.
static __device__ float layout_value(const layout_job &j, unsigned r, unsigned q) {
    switch (j.kind) {
    case WL_VT:  // row r = component, q = input feature
        return q < (unsigned)j.rows ? j.src[(long long)q * j.cols + r] : 0.0f;
    case WL_PAD_U:
        return q < (unsigned)j.cols ? j.src[(long long)r * j.cols + q] : 0.0f;
    default: {  // the b2b copies: each 8 columns in the order 0 2 4 6 1 3 5 7, rounded to TF32
        const unsigned t = q & 7, c = (q & ~7u) + (t < 4 ? 2 * t : 2 * (t - 4) + 1);
        float v;
        if (j.kind == WL_BT_U)  // U [C, d_out] read down its columns: c < C = rows
            v = c < (unsigned)j.rows ? j.src[(long long)c * j.cols + r] : 0.0f;
        else  // V [d_in, C] along its rows: c < C = cols
            v = c < (unsigned)j.cols ? j.src[(long long)r * j.cols + c] : 0.0f;
        uint32_t b;
        asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(b) : "f"(v));
        return __uint_as_float(b);
    }
    }
}

static __global__ void layouts_kernel(const __grid_constant__ layout_jobs js) {
    const unsigned total = js.off[js.n];
    for (unsigned i = blockIdx.x * WL_THREADS + threadIdx.x; i < total; i += gridDim.x * WL_THREADS) {
        int lo = 0, hi = js.n - 1;  // the last job starting at or before i
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (js.off[mid] <= i) lo = mid;
            else hi = mid - 1;
        }
        const layout_job &j = js.job[lo];
        const unsigned e = i - js.off[lo], r = e / (unsigned)j.ld, q = e - r * (unsigned)j.ld;
        j.dst[e] = layout_value(j, r, q);
    }
}

static void launch(layout_jobs *js) {
    if (js->n == 0) return;
    const unsigned total = js->off[js->n];
    layouts_kernel<<<spd_cuda_blocks_capped(total, WL_THREADS), WL_THREADS, 0, spd_cuda_stream()>>>(*js);
    CUDA_CHECK_LAUNCH();
    js->n = 0;
    js->off[0] = 0;
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

const float *weight_layout_get(weight_layout_kind kind, const float *W, int rows, int cols) {
    for (int i = 0; i < n_entries; i++) {
        const layout_entry *e = &entries[i];
        if (e->kind == kind && e->W == W && e->rows == rows && e->cols == cols)
            return e->gen == generation ? e->buf : NULL;
    }
    // Remembered for the next prepare (not while capturing: no allocation inside a graph).
    if (!listed(W, n_model_weights, model_weights) || capturing()) return NULL;
    int ld, n_rows;
    layout_shape(kind, rows, cols, &ld, &n_rows);
    if ((long long)ld * n_rows >= (1LL << 31)) return NULL;  // the kernel indexes in 32 bits
    if (n_entries == cap_entries) {
        cap_entries = cap_entries ? 2 * cap_entries : 64;
        layout_entry *grown = (layout_entry *)spd_malloc((size_t)cap_entries * sizeof *grown);
        if (n_entries) memcpy(grown, entries, (size_t)n_entries * sizeof *grown);
        free(entries);
        entries = grown;
    }
    layout_entry *e = &entries[n_entries++];
    *e = (layout_entry){kind, W, rows, cols, NULL, 0};
    CUDA_CHECK(cudaMalloc((void **)&e->buf, (size_t)ld * n_rows * sizeof(float)));
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
    js.off[0] = 0;
    made = 0;
    for (int i = 0; i < n_entries; i++) {
        layout_entry *e = &entries[i];
        if (!listed(e->W, n, W)) continue;
        int ld, n_rows;
        layout_shape(e->kind, e->rows, e->cols, &ld, &n_rows);
        const unsigned elems = (unsigned)ld * (unsigned)n_rows;
        if (js.n == WL_JOBS || (unsigned long long)js.off[js.n] + elems >= (1ULL << 31)) launch(&js);
        js.job[js.n] = (layout_job){e->buf, e->W, (int)e->kind, e->rows, e->cols, ld};
        js.off[js.n + 1] = js.off[js.n] + elems;
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
