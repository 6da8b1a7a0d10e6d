// The CUDA backend's settings and shared state, callable from C: the GPU, one
// stream that every kernel and cuBLAS call of spd.c runs on (so a whole step
// can be captured as one CUDA graph), the mode and the matrix precision.
#ifndef SPD_CUDA_BACKEND_H
#define SPD_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SPD_CUDA_UNFUSED,  // one kernel or cuBLAS call per primitive: the honest baseline
    SPD_CUDA_FUSED     // fused kernels, the step captured as a CUDA graph
} spd_cuda_mode;

typedef enum {
    SPD_MATMUL_FP32,  // exact float32 products (the default, as PyTorch's "highest")
    SPD_MATMUL_TF32,  // TF32 tensor cores, float32 accumulation (PyTorch's "high")
    SPD_MATMUL_BF16   // bf16 operands, float32 accumulation
} spd_matmul_precision;

// Picks the GPU, creates the stream and cuBLAS handles; idempotent. Dies with a
// clear message when no GPU is usable.
void spd_cuda_init(void);
const char *spd_cuda_device_name(void);
// Whether the device is compute capability 9.0 (H100 / H200): where the sm_90a kernels run.
bool spd_cuda_is_sm90(void);
void spd_cuda_set_mode(spd_cuda_mode mode);
spd_cuda_mode spd_cuda_mode_get(void);
void spd_cuda_set_matmul_precision(spd_matmul_precision p);
spd_matmul_precision spd_cuda_matmul_precision(void);
const char *spd_cuda_matmul_precision_name(void);
// Bound on the norm-relative error of `spd check --device cuda` in the current
// precision: 1e-5 float32 (the format's default), looser for TF32 and bf16.
double spd_cuda_norm_bound(void);
// High-water mark of spd.c's device allocations, in bytes.
size_t spd_cuda_peak_bytes(void);

// Starts a profiler's collection (cudaProfilerStart): `ncu --profile-from-start off`
// then sees the benchmark's timed steps, not its warm-up run or GEMM tuning.
void spd_cuda_profiler_start(void);

// Step capture: work queued between begin and end becomes a graph that
// spd_cuda_graph_launch replays (used by --mode fused).
void spd_cuda_graph_begin(void);
void spd_cuda_graph_end(void);
void spd_cuda_graph_launch(void);
void spd_cuda_graph_destroy(void);

#ifdef __cplusplus
}
#endif

#endif
