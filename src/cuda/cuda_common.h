// Shared by the .cu files of the CUDA backend (C++ only): the check macros and
// the backend's stream and library handles. Every CUDA, cuBLAS and cuBLASLt call
// goes through a check that names the statement, file, line and device.
#ifndef SPD_CUDA_COMMON_H
#define SPD_CUDA_COMMON_H

#include <stdint.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/backend.h"

#include "core/error.h"

void spd_cuda_fail(const char *what, const char *detail, const char *file, int line);

#define CUDA_CHECK(call)                                                                    \
    do {                                                                                    \
        cudaError_t err_ = (call);                                                          \
        if (err_ != cudaSuccess) spd_cuda_fail(#call, cudaGetErrorString(err_), __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        cublasStatus_t st_ = (call);                                                        \
        if (st_ != CUBLAS_STATUS_SUCCESS) spd_cuda_fail(#call, cublasGetStatusString(st_), __FILE__, __LINE__); \
    } while (0)

// After every kernel launch.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

cudaStream_t spd_cuda_stream(void);
// The device's streaming multiprocessors.
int spd_cuda_sm_count(void);
cublasHandle_t spd_cublas(void);
cublasLtHandle_t spd_cublaslt(void);
// A workspace for cuBLASLt (and anything else that needs scratch during a step);
// the side stream has its own.
void *spd_cuda_workspace(size_t *bytes);

// A second stream, for a product that does not depend on what the main stream does
// next, so that the two overlap (the backward's dU beside h, g_a, dV and dx):
// spd_cuda_side_begin makes the side stream wait for the main stream's work so far and
// makes it current (spd_cuda_stream, spd_cuda_workspace, cuBLAS); spd_cuda_side_end
// makes the main stream current again; spd_cuda_side_join makes the main stream wait for
// the side's work. In graph capture these are a fork and a join. One side region at a
// time; SPD_CUDA_SIDE_STREAM=0 keeps everything on the main stream.
void spd_cuda_side_begin(void);
void spd_cuda_side_end(void);
void spd_cuda_side_join(void);
bool spd_cuda_on_side(void);

// Deterministic float64 sums read back to the host (they synchronize the
// stream): a fixed grid of per-block partials, then one block in a fixed order
// (src/cuda/reduce.cu). spd_cuda_sum_sq: sum (a - b)^2, or sum a^2 when b is NULL.
double spd_cuda_sum_sq(const float *a, const float *b, long long n);
// sum over buffers of sum a_b^2 with a single read-back.
double spd_cuda_sum_sq_multi(const float *const *a, const int64_t *n, int count);
// The sum of n device doubles.
double spd_cuda_sum_f64(const double *x, long long n);
// out [cols] (device doubles) = the column sums of x [rows, cols] in float64, coalesced
// and deterministic (fixed chunks, fixed order). Uses spd_cuda_scratch: out must not.
void spd_cuda_colsum(double *out, const float *x, long long rows, long long cols);
// A second device scratch for the callers of spd_cuda_colsum (its out).
void *spd_cuda_scratch2(size_t bytes);
// Device scratch of at least `bytes`, owned by reduce.cu, for ops that need a
// temporary between kernels (one user at a time: all work is on one stream).
void *spd_cuda_scratch(size_t bytes);

static inline unsigned spd_cuda_blocks(long long n, int threads) {
    return (unsigned)((n + threads - 1) / threads);
}

// Blocks for a grid-stride loop over n items: one item per thread up to 8192 blocks, a few
// per thread beyond (bandwidth-bound passes over large matrices).
static inline unsigned spd_cuda_blocks_capped(long long n, int threads) {
    const long long b = (n + threads - 1) / threads;
    return (unsigned)(b < 8192 ? b : 8192);
}

// Whether p is a multiple of `bytes` (vector loads, TMA bases, cuBLAS alignment).
static inline bool spd_aligned(const void *p, unsigned bytes) { return (uintptr_t)p % bytes == 0; }

#endif
