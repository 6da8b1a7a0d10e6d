// Routing on the GPU (ops/routing.h): the routers draw the same Philox floats as
// the CPU's (so the same masks), and the routed select of a site's outputs.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/philox.h"
#include "core/real.h"
#include "ops/routing.h"
}

#define T 256

static __device__ __forceinline__ float draw_u(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t w[4];
    spd_philox_block(seed, stream, i / 4, w);
    return spd_u32_to_uniform_f32(w[i % 4]);
}

// One thread per position: k from draw n, module i's noise from draw N + i N + n,
// rank ties to the lower index (router.c).
static __global__ void uniform_k_k(uint8_t *routed, int L, long long N, uint64_t seed, uint64_t stream) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    float u0 = draw_u(seed, stream, (uint64_t)n);
    long long k = 1 + (long long)(((uint64_t)(u0 * 16777216.0f) * (uint64_t)L) >> 24);
    for (int i = 0; i < L; i++) {
        float ui = draw_u(seed, stream, (uint64_t)(N + (long long)i * N + n));
        int rank = 0;
        for (int j = 0; j < L; j++) {
            float uj = draw_u(seed, stream, (uint64_t)(N + (long long)j * N + n));
            rank += uj < ui || (uj == ui && j < i);
        }
        routed[(long long)i * N + n] = rank < k;
    }
}

static __global__ void static_p_k(uint8_t *routed, long long n, float p, uint64_t seed, uint64_t stream) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) routed[i] = draw_u(seed, stream, (uint64_t)i) < p;
}

extern "C" void route_sample_cuda(const spd_router *router, uint8_t *routed, int L, long N, uint64_t seed,
                                  uint64_t stream) {
    cudaStream_t st = spd_cuda_stream();
    long long n = (long long)L * N;
    if (n <= 0) return;
    switch (router->kind) {
    case SPD_ROUTE_ALL: CUDA_CHECK(cudaMemsetAsync(routed, 1, (size_t)n, st)); break;
    case SPD_ROUTE_LAYER:
        SPD_ASSERT(router->layer >= 0 && router->layer < L);
        CUDA_CHECK(cudaMemsetAsync(routed, 0, (size_t)n, st));
        CUDA_CHECK(cudaMemsetAsync(routed + (size_t)router->layer * N, 1, (size_t)N, st));
        break;
    case SPD_ROUTE_UNIFORM_K_SUBSET:
        uniform_k_k<<<spd_cuda_blocks(N, T), T, 0, st>>>(routed, L, N, seed, stream);
        CUDA_CHECK_LAUNCH();
        break;
    case SPD_ROUTE_STATIC_PROBABILITY:
        static_p_k<<<spd_cuda_blocks(n, T), T, 0, st>>>(routed, n, (float)router->p, seed, stream);
        CUDA_CHECK_LAUNCH();
        break;
    default: spd_die("route_sample: bad router type %d", (int)router->kind);
    }
}

static __global__ void select_fwd_k(float *y, const float *y_comp, const float *y_target, const uint8_t *routed,
                                    long long n, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = (!routed || routed[i / d]) ? y_comp[i] : y_target[i];
}

static __global__ void select_bwd_k(float *dy_comp, float *dy_target, const float *dy, const uint8_t *routed,
                                    long long n, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = dy[i];
    int r = !routed || routed[i / d];
    if (dy_comp) dy_comp[i] = r ? g : 0.0f;
    if (dy_target) dy_target[i] = r ? 0.0f : g;
}

extern "C" void routed_select_forward_cuda(float *y, const float *y_comp, const float *y_target,
                                           const uint8_t *routed, long N, int d) {
    long long n = (long long)N * d;
    if (n <= 0) return;
    select_fwd_k<<<spd_cuda_blocks(n, T), T, 0, spd_cuda_stream()>>>(y, y_comp, y_target, routed, n, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void routed_select_backward_cuda(float *dy_comp, float *dy_target, const float *dy,
                                            const uint8_t *routed, long N, int d) {
    long long n = (long long)N * d;
    if (n <= 0) return;
    select_bwd_k<<<spd_cuda_blocks(n, T), T, 0, spd_cuda_stream()>>>(dy_comp, dy_target, dy, routed, n, d);
    CUDA_CHECK_LAUNCH();
}
