// The CUDA backend's state (device, stream, cuBLAS handles, settings, graph)
// and the device-memory interface of src/core/device.h.
#include <stdio.h>
#include <stdlib.h>

#include <cuda_profiler_api.h>

#include "core/env.h"
#include "cuda/cuda_common.h"

extern "C" {
#include "core/device.h"
}

// A live allocation (spd.c makes a handful: one per role), for the memory account.
struct device_allocation {
    void *p;
    size_t bytes;
};

static struct {
    bool ready;
    int device;
    char name[256];
    bool sm90;  // compute capability 9.0
    int sms;    // streaming multiprocessors
    cudaStream_t stream;
    cublasHandle_t cublas;
    cublasLtHandle_t cublaslt;
    void *workspace;
    size_t workspace_bytes;
    // The side stream (spd_cuda_side_begin): its own cuBLAS workspace, the fork and join events.
    cudaStream_t side_stream;
    void *side_workspace;
    cudaEvent_t fork, join;
    bool on_side, side_pending;
    spd_cuda_mode mode;
    spd_matmul_precision precision;
    size_t live_bytes, peak_bytes;
    cudaGraph_t graph;
    cudaGraphExec_t graph_exec;
    device_allocation *allocs;
    int n_allocs, cap_allocs;
} backend;

void spd_cuda_fail(const char *what, const char *detail, const char *file, int line) {
    spd_die("CUDA: %s failed: %s (%s:%d, device %d %s)", what, detail, file, line, backend.device, backend.name);
}

extern "C" bool spd_device_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

extern "C" void spd_cuda_init(void) {
    if (backend.ready) return;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0)
        spd_die_input("--device cuda: no usable GPU (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    CUDA_CHECK(cudaGetDevice(&backend.device));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, backend.device));
    snprintf(backend.name, sizeof backend.name, "%s", prop.name);
    backend.sm90 = prop.major == 9 && prop.minor == 0;
    backend.sms = prop.multiProcessorCount;
    CUDA_CHECK(cudaStreamCreateWithFlags(&backend.stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&backend.cublas));
    CUBLAS_CHECK(cublasSetStream(backend.cublas, backend.stream));
    CUBLAS_CHECK(cublasLtCreate(&backend.cublaslt));
    backend.workspace_bytes = 32u << 20;
    CUDA_CHECK(cudaMalloc(&backend.workspace, backend.workspace_bytes));
    // A fixed workspace keeps cuBLAS from allocating during graph capture.
    CUBLAS_CHECK(cublasSetWorkspace(backend.cublas, backend.workspace, backend.workspace_bytes));
    CUDA_CHECK(cudaStreamCreateWithFlags(&backend.side_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&backend.side_workspace, backend.workspace_bytes));
    CUDA_CHECK(cudaEventCreateWithFlags(&backend.fork, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&backend.join, cudaEventDisableTiming));
    backend.mode = SPD_CUDA_UNFUSED;
    backend.precision = SPD_MATMUL_FP32;
    backend.ready = true;
}

static void require_ready(void) {
    if (!backend.ready) spd_cuda_init();
}

extern "C" const char *spd_cuda_device_name(void) {
    require_ready();
    return backend.name;
}

extern "C" bool spd_cuda_is_sm90(void) {
    require_ready();
    return backend.sm90;
}

int spd_cuda_sm_count(void) {
    require_ready();
    return backend.sms;
}

cudaStream_t spd_cuda_stream(void) {
    require_ready();
    return backend.on_side ? backend.side_stream : backend.stream;
}

cublasHandle_t spd_cublas(void) {
    require_ready();
    return backend.cublas;
}

cublasLtHandle_t spd_cublaslt(void) {
    require_ready();
    return backend.cublaslt;
}

void *spd_cuda_workspace(size_t *bytes) {
    require_ready();
    *bytes = backend.workspace_bytes;
    return backend.on_side ? backend.side_workspace : backend.workspace;
}

// ---- the side stream -----------------------------------------------------------------

static bool side_enabled(void) {
    static const bool env = spd_env_flag_or_die("SPD_CUDA_SIDE_STREAM", true);
    return env;
}

// Makes `side` the current stream (and its workspace cuBLAS's).
static void set_current(bool side) {
    backend.on_side = side;
    CUBLAS_CHECK(cublasSetStream(backend.cublas, spd_cuda_stream()));
    size_t bytes = 0;
    void *ws = spd_cuda_workspace(&bytes);
    CUBLAS_CHECK(cublasSetWorkspace(backend.cublas, ws, bytes));
}

void spd_cuda_side_begin(void) {
    require_ready();
    if (!side_enabled()) return;
    SPD_ASSERT(!backend.on_side && !backend.side_pending);
    CUDA_CHECK(cudaEventRecord(backend.fork, backend.stream));
    CUDA_CHECK(cudaStreamWaitEvent(backend.side_stream, backend.fork, 0));
    set_current(true);
    backend.side_pending = true;
}

void spd_cuda_side_end(void) {
    if (!side_enabled()) return;
    SPD_ASSERT(backend.on_side);
    set_current(false);
}

void spd_cuda_side_join(void) {
    if (!side_enabled()) return;
    SPD_ASSERT(!backend.on_side && backend.side_pending);
    CUDA_CHECK(cudaEventRecord(backend.join, backend.side_stream));
    CUDA_CHECK(cudaStreamWaitEvent(backend.stream, backend.join, 0));
    backend.side_pending = false;
}

bool spd_cuda_on_side(void) { return backend.on_side; }

extern "C" void spd_cuda_set_mode(spd_cuda_mode mode) {
    require_ready();
    backend.mode = mode;
}

extern "C" spd_cuda_mode spd_cuda_mode_get(void) { return backend.mode; }

extern "C" void spd_cuda_set_matmul_precision(spd_matmul_precision p) {
    require_ready();
    backend.precision = p;
    CUBLAS_CHECK(cublasSetMathMode(backend.cublas, p == SPD_MATMUL_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                          : CUBLAS_DEFAULT_MATH));
}

extern "C" spd_matmul_precision spd_cuda_matmul_precision(void) { return backend.precision; }

extern "C" const char *spd_cuda_matmul_precision_name(void) {
    switch (backend.precision) {
    case SPD_MATMUL_TF32: return "tf32";
    case SPD_MATMUL_BF16: return "bf16";
    default: return "fp32";
    }
}

extern "C" double spd_cuda_norm_bound(void) {
    // TF32 keeps 10 mantissa bits (unit roundoff 2^-11 ~ 4.9e-4), bf16 7 bits (2^-8 ~ 3.9e-3);
    // products summed over K of a few hundred keep the norm-relative error near that scale.
    switch (backend.precision) {
    case SPD_MATMUL_TF32: return 5e-3;
    case SPD_MATMUL_BF16: return 3e-2;
    default: return 1e-5;
    }
}

extern "C" size_t spd_cuda_peak_bytes(void) { return backend.peak_bytes; }

extern "C" void *spd_device_malloc(size_t bytes) {
    require_ready();
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        spd_die_input("out of GPU memory: asked for %.1f MiB with %.1f MiB free of %.1f MiB on %s (%zu MiB already "
                      "held by spd)",
                      bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0, backend.name,
                      backend.live_bytes >> 20);
    }
    if (backend.n_allocs == backend.cap_allocs) {
        backend.cap_allocs = backend.cap_allocs ? 2 * backend.cap_allocs : 64;
        backend.allocs = (decltype(backend.allocs))realloc(backend.allocs, backend.cap_allocs * sizeof *backend.allocs);
        if (!backend.allocs) spd_die("out of host memory tracking device allocations");
    }
    backend.allocs[backend.n_allocs++] = {p, bytes};
    backend.live_bytes += bytes;
    if (backend.live_bytes > backend.peak_bytes) backend.peak_bytes = backend.live_bytes;
    return p;
}

extern "C" void spd_device_free(void *p) {
    if (!p) return;
    for (int i = 0; i < backend.n_allocs; i++) {
        if (backend.allocs[i].p != p) continue;
        backend.live_bytes -= backend.allocs[i].bytes;
        backend.allocs[i] = backend.allocs[--backend.n_allocs];
        break;
    }
    CUDA_CHECK(cudaFree(p));
}

extern "C" void spd_device_memset_zero(void *p, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, spd_cuda_stream()));
}

extern "C" void spd_device_upload(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, spd_cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
}

extern "C" void spd_device_download(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, spd_cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
}

extern "C" void spd_device_synchronize(void) {
    SPD_ASSERT(!backend.side_pending);  // the side stream's work is joined into the main stream's
    CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
}

extern "C" void spd_cuda_profiler_start(void) { CUDA_CHECK(cudaProfilerStart()); }

extern "C" void spd_cuda_graph_begin(void) {
    CUDA_CHECK(cudaStreamBeginCapture(spd_cuda_stream(), cudaStreamCaptureModeThreadLocal));
}

extern "C" void spd_cuda_graph_end(void) {
    SPD_ASSERT(!backend.side_pending);
    spd_cuda_graph_destroy();
    CUDA_CHECK(cudaStreamEndCapture(spd_cuda_stream(), &backend.graph));
    CUDA_CHECK(cudaGraphInstantiate(&backend.graph_exec, backend.graph, 0));
}

extern "C" void spd_cuda_graph_launch(void) { CUDA_CHECK(cudaGraphLaunch(backend.graph_exec, spd_cuda_stream())); }

extern "C" void spd_cuda_graph_destroy(void) {
    if (backend.graph_exec) CUDA_CHECK(cudaGraphExecDestroy(backend.graph_exec));
    if (backend.graph) CUDA_CHECK(cudaGraphDestroy(backend.graph));
    backend.graph_exec = NULL;
    backend.graph = NULL;
}
