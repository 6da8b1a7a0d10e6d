// CI from pre_sigmoid and the stochastic / PGD masks on the GPU (ops/masks.h).
// Every Philox draw is computed by core/philox.h, shared with the CPU, so the
// GPU's masks are bit-identical to the CPU's: draw i is word i % 4 of block i / 4.
#include "cuda/cuda_common.h"

extern "C" {
#include "core/philox.h"
#include "core/real.h"
#include "ops/masks.h"
}
#include "cuda/reduce_dev.h"
#include "cuda/sigmoid_dev.h"

#define T 256

static __device__ __forceinline__ float draw_u(uint64_t seed, uint64_t stream, long long i) {
    uint32_t w[4];
    spd_philox_block(seed, stream, (uint64_t)i / 4, w);
    return spd_u32_to_uniform_f32(w[i % 4]);
}

static __device__ __forceinline__ float draw_r(spd_mask_sampling sampling, uint64_t seed, uint64_t stream,
                                               long long i) {
    float u = draw_u(seed, stream, i);
    return sampling == SPD_MASK_BINOMIAL ? (u >= 0.5f ? 1.0f : 0.0f) : u;
}

// raw_lower = 1.05 pre - 0.05 u in float32, unfused as the CPU.
static __device__ __forceinline__ float jittered(float pre, float u) {
    return __fsub_rn(__fmul_rn(1.05f, pre), __fmul_rn(0.05f, u));
}

static __device__ __forceinline__ float interp(float v, float s) { return __fadd_rn(v, __fmul_rn(1.0f - v, s)); }

static void check_sampling(spd_mask_sampling s) {
    SPD_ASSERT(s == SPD_MASK_CONTINUOUS || s == SPD_MASK_BINOMIAL);
}

#define LAUNCH(kernel, n, ...)                                                                  \
    do {                                                                                        \
        if ((n) > 0) {                                                                          \
            kernel<<<spd_cuda_blocks((n), T), T, 0, spd_cuda_stream()>>>(__VA_ARGS__);          \
            CUDA_CHECK_LAUNCH();                                                                \
        }                                                                                       \
    } while (0)

// ---- draws ----------------------------------------------------------------------------

static __global__ void draws_k(float *r, long long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) r[i] = draw_r(sampling, seed, stream, i);
}

extern "C" void sample_draws_cuda(float *r, long n, spd_mask_sampling sampling, uint64_t seed, uint64_t stream) {
    check_sampling(sampling);
    LAUNCH(draws_k, n, r, n, sampling, seed, stream);
}

// ---- CI -------------------------------------------------------------------------------

// mode: 0 no jitter, 1 jitter from the tensor, 2 jitter from Philox.
static __global__ void ci_fwd_k(float *lower, float *upper, const float *pre, const float *jitter, int mode,
                                uint64_t seed, uint64_t stream, long long n, spd_sigmoid_pair sig) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = pre[i];
    if (upper) upper[i] = dev_sigmoid(sig.upper, p);
    if (lower) {
        float raw = mode == 0 ? p : jittered(p, mode == 1 ? jitter[i] : draw_u(seed, stream, i));
        lower[i] = dev_sigmoid(sig.lower, raw);
    }
}

static __global__ void ci_bwd_k(float *dpre, const float *dlower, const float *dupper, const float *pre,
                                const float *jitter, int mode, uint64_t seed, uint64_t stream, long long n,
                                spd_sigmoid_pair sig) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = pre[i];
    float d = dupper ? dev_sigmoid_backward(sig.upper, dupper[i], p) : 0.0f;
    if (dlower) {
        float raw = mode == 0 ? p : jittered(p, mode == 1 ? jitter[i] : draw_u(seed, stream, i));
        float t = dev_sigmoid_backward(sig.lower, dlower[i], raw);
        d = __fadd_rn(d, mode ? __fmul_rn(1.05f, t) : t);
    }
    dpre[i] = d;
}

extern "C" void ci_forward_cuda(float *ci_lower, float *ci_upper, const float *pre, const float *jitter, long n,
                                spd_sigmoid_pair sig) {
    LAUNCH(ci_fwd_k, n, ci_lower, ci_upper, pre, jitter, jitter ? 1 : 0, 0, 0, n, sig);
}

extern "C" void ci_backward_cuda(float *dpre, const float *dci_lower, const float *dci_upper, const float *pre,
                                 const float *jitter, long n, spd_sigmoid_pair sig) {
    LAUNCH(ci_bwd_k, n, dpre, dci_lower, dci_upper, pre, jitter, jitter ? 1 : 0, 0, 0, n, sig);
}

extern "C" void ci_forward_philox_cuda(float *ci_lower, float *ci_upper, const float *pre, long n,
                                       spd_sigmoid_pair sig, spd_mask_sampling sampling, uint64_t seed,
                                       uint64_t stream) {
    check_sampling(sampling);
    int mode = sampling == SPD_MASK_BINOMIAL ? 2 : 0;
    LAUNCH(ci_fwd_k, n, ci_lower, ci_upper, pre, (const float *)NULL, mode, seed, stream, n, sig);
}

extern "C" void ci_backward_philox_cuda(float *dpre, const float *dci_lower, const float *dci_upper,
                                        const float *pre, long n, spd_sigmoid_pair sig, spd_mask_sampling sampling,
                                        uint64_t seed, uint64_t stream) {
    check_sampling(sampling);
    int mode = sampling == SPD_MASK_BINOMIAL ? 2 : 0;
    LAUNCH(ci_bwd_k, n, dpre, dci_lower, dci_upper, pre, (const float *)NULL, mode, seed, stream, n, sig);
}

// ---- masks ----------------------------------------------------------------------------

static __global__ void interp_fwd_k(float *m, const float *ci, const float *s, int C, int ld, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long row = i / C, c = i % C;
    m[i] = interp(ci[i], s[row * ld + c]);
}

extern "C" void mask_interpolate_forward_cuda(float *m, const float *ci, const float *s, int N, int C, int ld) {
    SPD_ASSERT(ld == 0 || ld >= C);
    long long n = (long long)N * C;
    LAUNCH(interp_fwd_k, n, m, ci, s, C, ld, n);
}

static __global__ void interp_bwd_k(float *dci, float *ds, const float *dm, const float *ci, const float *s, int C,
                                    int ld, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long row = i / C, c = i % C;
    float g = dm[i];
    if (dci) dci[i] = __fsub_rn(g, __fmul_rn(g, s[row * ld + c]));
    if (ds) ds[row * ld + c] = __fmul_rn(g, 1.0f - ci[i]);
}

// ld = 0: ds [C] = sum_n dm (1 - ci) in float64, one block per component.
static __global__ void interp_bwd_shared_k(float *ds, const float *dm, const float *ci, int N, int C) {
    const int c = blockIdx.x;
    double acc = 0;
    for (long long n = threadIdx.x; n < N; n += blockDim.x) acc += (double)__fmul_rn(dm[n * C + c], 1.0f - ci[n * C + c]);
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) ds[c] = (float)s;
}

extern "C" void mask_interpolate_backward_cuda(float *dci, float *ds, const float *dm, const float *ci,
                                               const float *s, int N, int C, int ld) {
    SPD_ASSERT(ld == 0 || ld >= C);
    long long n = (long long)N * C;
    if (ld > 0 || !ds) {
        LAUNCH(interp_bwd_k, n, dci, ld > 0 ? ds : NULL, dm, ci, s, C, ld, n);
        return;
    }
    if (dci) LAUNCH(interp_bwd_k, n, dci, (float *)NULL, dm, ci, s, C, ld, n);
    if (C > 0) {
        interp_bwd_shared_k<<<C, REDUCE_THREADS, 0, spd_cuda_stream()>>>(ds, dm, ci, N, C);
        CUDA_CHECK_LAUNCH();
    }
}

static __global__ void mask_sample_k(float *m, const float *ci, long long n, spd_mask_sampling sampling,
                                     uint64_t seed, uint64_t stream) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) m[i] = interp(ci[i], draw_r(sampling, seed, stream, i));
}

static __global__ void mask_sample_bwd_k(float *dci, const float *dm, long long n, spd_mask_sampling sampling,
                                         uint64_t seed, uint64_t stream) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = dm[i];
    dci[i] = __fsub_rn(g, __fmul_rn(g, draw_r(sampling, seed, stream, i)));
}

extern "C" void mask_sample_cuda(float *m, const float *ci, long n, spd_mask_sampling sampling, uint64_t seed,
                                 uint64_t stream) {
    check_sampling(sampling);
    LAUNCH(mask_sample_k, n, m, ci, n, sampling, seed, stream);
}

extern "C" void mask_sample_backward_cuda(float *dci, const float *dm, long n, spd_mask_sampling sampling,
                                          uint64_t seed, uint64_t stream) {
    check_sampling(sampling);
    LAUNCH(mask_sample_bwd_k, n, dci, dm, n, sampling, seed, stream);
}

extern "C" void delta_mask_sample_cuda(float *m_delta, long N, uint64_t seed, uint64_t stream) {
    sample_draws_cuda(m_delta, N, SPD_MASK_CONTINUOUS, seed, stream);
}

// ---- PGD sources ----------------------------------------------------------------------

static __global__ void pgd_step_k(float *s, const float *g, long long n, double step_size) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    double v = (double)s[i] + step_size * (double)((gi > 0) - (gi < 0));
    s[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
}

extern "C" void pgd_source_step_cuda(float *s, const float *g, long n, double step_size) {
    LAUNCH(pgd_step_k, n, s, g, n, step_size);
}

static __global__ void pgd_gather_k(float *m_delta, const float *s, int N, int C, int ld) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) m_delta[n] = s[ld ? n * ld + C : C];
}

extern "C" void pgd_delta_mask_gather_cuda(float *m_delta, const float *s, int N, int C, int ld) {
    LAUNCH(pgd_gather_k, N, m_delta, s, N, C, ld);
}

static __global__ void pgd_scatter_k(float *ds, const float *ddelta, int N, int C, int ld) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) ds[n * ld + C] = ddelta[n];
}

static __global__ void pgd_scatter_shared_k(float *ds, const float *ddelta, int N, int C) {
    double acc = 0;
    for (long long n = threadIdx.x; n < N; n += blockDim.x) acc += (double)ddelta[n];
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) ds[C] = (float)s;
}

extern "C" void pgd_delta_grad_scatter_cuda(float *ds, const float *ddelta, int N, int C, int ld) {
    if (ld) {
        LAUNCH(pgd_scatter_k, N, ds, ddelta, N, C, ld);
        return;
    }
    pgd_scatter_shared_k<<<1, REDUCE_THREADS, 0, spd_cuda_stream()>>>(ds, ddelta, N, C);
    CUDA_CHECK_LAUNCH();
}
