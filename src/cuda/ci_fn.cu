// The CI functions on the GPU (ops/ci_fn.h), in the CPU's layouts: hidden
// activations [N, C, h] for the parallel types, vector_mlp's first layer as one
// GEMM through the permuted weight in f->work, the later parallel layers as
// one thread per output element. Bias gradients: float64 column sums
// (spd_cuda_colsum); the parallel layers' weight gradients: one strided batched
// GEMM over the components (float32 products and sums, cuBLAS's order).
#include "cuda/cuda_common.h"

extern "C" {
#include "core/philox.h"
#include "core/real.h"
#include "ops/ci_fn.h"
#include "ops/gelu.h"
#include "ops/matmul.h"
}

#define T 256

// W0 [C, d_in, h] -> Wt [d_in, C*h]
static __global__ void permute_k(float *Wt, const float *W0, int C, int d_in, int h) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long n = (long long)C * d_in * h;
    if (j >= n) return;
    long long o = j % h, ci = j / h, i = ci % d_in, c = ci / d_in;  // j = (c * d_in + i) * h + o
    Wt[(i * C + c) * h + o] = W0[j];
}

static void permute_first_layer(float *Wt, const float *W0, int C, int d_in, int h) {
    long long n = (long long)C * d_in * h;
    permute_k<<<spd_cuda_blocks(n, T), T, 0, spd_cuda_stream()>>>(Wt, W0, C, d_in, h);
    CUDA_CHECK_LAUNCH();
}

static __global__ void add_bias_k(float *y, const float *b, long long n, long long cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(y[i], b[i % cols]);
}

static void add_bias(float *y, const float *b, int N, long cols) {
    long long n = (long long)N * cols;
    if (n <= 0) return;
    add_bias_k<<<spd_cuda_blocks(n, T), T, 0, spd_cuda_stream()>>>(y, b, n, cols);
    CUDA_CHECK_LAUNCH();
}

static __global__ void add_sums_k(float *db, const double *s, long long cols) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j < cols) db[j] = __fadd_rn(db[j], (float)s[j]);
}

// db [cols] += sum over rows of g [N, cols] in float64
static void bias_grad(float *db, const float *g, int N, long cols) {
    if (cols <= 0) return;
    double *s = (double *)spd_cuda_scratch2((size_t)cols * sizeof(double));
    spd_cuda_colsum(s, g, N, cols);
    add_sums_k<<<spd_cuda_blocks(cols, T), T, 0, spd_cuda_stream()>>>(db, s, cols);
    CUDA_CHECK_LAUNCH();
}

// in [N, C, wi], W [C, wi, wo], b [C, wo] -> out [N, C, wo]; one thread per output.
static __global__ void parallel_fwd_k(float *out, const float *in, const float *W, const float *b, int N, int C,
                                      int wi, int wo) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= (long long)N * C * wo) return;
    long long o = j % wo, nc = j / wo, c = nc % C;
    const float *xi = in + nc * wi, *Wc = W + c * wi * wo;
    float s = 0;
    for (int i = 0; i < wi; i++) s = __fadd_rn(s, __fmul_rn(xi[i], Wc[(long long)i * wo + o]));
    out[j] = __fadd_rn(s, b[c * wo + o]);
}

// gin [N, C, wi] = g W^T
static __global__ void parallel_gin_k(float *gin, const float *g, const float *W, int N, int C, int wi, int wo) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= (long long)N * C * wi) return;
    long long i = j % wi, nc = j / wi, c = nc % C;
    const float *gc = g + nc * wo, *Wc = W + c * wi * wo;
    float s = 0;
    for (int o = 0; o < wo; o++) s = __fadd_rn(s, __fmul_rn(gc[o], Wc[i * wo + o]));
    gin[j] = s;
}

// dW [C, wi, wo] += sum_n in[n, c, i] g[n, c, o] in float64
// dW [C, wi, wo] += per component c: in_c^T g_c, in_c [N, wi] (row stride C wi), g_c [N, wo]
// (row stride C wo). Column-major for cuBLAS: dW_c^T [wo, wi] += g_c^T [wo, N] in_c [N, wi],
// batched over c with strides wo, wi and wi wo.
static void parallel_dw(float *dW, const float *g, const float *in, int N, int C, int wi, int wo) {
    const float one = 1.0f;
    CUBLAS_CHECK(cublasSgemmStridedBatched(spd_cublas(), CUBLAS_OP_N, CUBLAS_OP_T, wo, wi, N, &one, g, C * wo, wo, in,
                                           C * wi, wi, &one, dW, wo, (long long)wi * wo, C));
}

// dW0 [C, wi, wo] += work [wi, C*wo] scattered back
static __global__ void scatter_first_k(float *dW, const float *work, int C, int wi, int wo) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= (long long)C * wi * wo) return;
    long long o = j % wo, ci = j / wo, i = ci % wi, c = ci / wi;
    dW[j] = __fadd_rn(dW[j], work[(i * C + c) * wo + o]);
}

#define LAUNCH(kernel, n, ...)                                                         \
    do {                                                                               \
        long long n_ = (n);                                                            \
        if (n_ > 0) {                                                                  \
            kernel<<<spd_cuda_blocks(n_, T), T, 0, spd_cuda_stream()>>>(__VA_ARGS__); \
            CUDA_CHECK_LAUNCH();                                                       \
        }                                                                              \
    } while (0)

static void layer_forward(ci_fn *f, int k, float *out, const float *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    int wi = a->width[k], wo = a->width[k + 1], C = a->C;
    if (a->kind == SPD_CI_SHARED_MLP) {
        matmul_cuda(out, in, f->W[k], N, wo, wi, false, false, 1, 0);
        add_bias(out, f->b[k], N, wo);
    } else if (a->kind == SPD_CI_VECTOR_MLP && k == 0) {
        permute_first_layer(f->work, f->W[0], C, wi, wo);
        matmul_cuda(out, in, f->work, N, C * wo, wi, false, false, 1, 0);
        add_bias(out, f->b[0], N, (long)C * wo);
    } else {
        LAUNCH(parallel_fwd_k, (long long)N * C * wo, out, in, f->W[k], f->b[k], N, C, wi, wo);
    }
}

extern "C" void ci_fn_forward_cuda(ci_fn *f, float *pre_sigmoid, const float *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    SPD_ASSERT(a->n_layers >= 1 && a->n_layers <= SPD_CI_FN_MAX_LAYERS);
    const float *x = in;
    for (int k = 0; k < a->n_layers - 1; k++) {
        layer_forward(f, k, f->pre[k], x, N);
        gelu_forward_cuda(f->post[k], f->pre[k], (long)spd_ci_fn_hidden_elems(a, N, k));
        x = f->post[k];
    }
    layer_forward(f, a->n_layers - 1, pre_sigmoid, x, N);
}

static void layer_backward(ci_fn *f, int k, float *gin, const float *g, const float *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    int wi = a->width[k], wo = a->width[k + 1], C = a->C;
    if (a->kind == SPD_CI_SHARED_MLP) {
        if (f->dW[k]) matmul_cuda(f->dW[k], in, g, wi, wo, N, true, false, 1, 1);
        if (f->db[k]) bias_grad(f->db[k], g, N, wo);
        if (gin) matmul_cuda(gin, g, f->W[k], N, wi, wo, false, true, 1, 0);
    } else if (a->kind == SPD_CI_VECTOR_MLP && k == 0) {
        if (f->db[0]) bias_grad(f->db[0], g, N, (long)C * wo);
        if (gin) {
            permute_first_layer(f->work, f->W[0], C, wi, wo);
            matmul_cuda(gin, g, f->work, N, wi, C * wo, false, true, 1, 0);
        }
        if (f->dW[0]) {
            matmul_cuda(f->work, in, g, wi, C * wo, N, true, false, 1, 0);
            LAUNCH(scatter_first_k, (long long)C * wi * wo, f->dW[0], f->work, C, wi, wo);
        }
    } else {
        if (f->dW[k] && N > 0) parallel_dw(f->dW[k], g, in, N, C, wi, wo);
        if (gin) LAUNCH(parallel_gin_k, (long long)N * C * wi, gin, g, f->W[k], N, C, wi, wo);
        if (f->db[k]) bias_grad(f->db[k], g, N, (long)C * wo);
    }
}

extern "C" void ci_fn_backward_cuda(ci_fn *f, float *din, const float *dpre_sigmoid, const float *in, int N) {
    const spd_ci_fn_arch *a = &f->arch;
    int L = a->n_layers;
    SPD_ASSERT(L >= 1 && L <= SPD_CI_FN_MAX_LAYERS);
    size_t off = a->kind == SPD_CI_VECTOR_MLP ? (size_t)a->d_in * a->C * a->width[1] : 0;
    size_t max_hidden = 0;
    for (int k = 0; k < L - 1; k++) {
        size_t e = spd_ci_fn_hidden_elems(a, N, k);
        if (e > max_hidden) max_hidden = e;
    }
    float *g[2] = {f->work + off, f->work + off + max_hidden};
    const float *gout = dpre_sigmoid;
    for (int k = L - 1; k >= 0; k--) {
        const float *x = k == 0 ? in : f->post[k - 1];
        float *gin = k == 0 ? din : g[(k - 1) % 2];
        layer_backward(f, k, gin, gout, x, N);
        if (k > 0) {
            gelu_backward_cuda(gin, gin, f->pre[k - 1], (long)spd_ci_fn_hidden_elems(a, N, k - 1));
            gout = gin;
        }
    }
}

// Drawn on the host (float64 Philox normals, rounded), then uploaded.
extern "C" void ci_fn_init_params_cuda(const spd_ci_fn_arch *arch, float *const *W, float *const *b, uint64_t seed,
                                       uint64_t stream) {
    for (int k = 0; k < arch->n_layers; k++) {
        int64_t shape[3];
        int nd = spd_ci_fn_param_shape(arch, k, false, shape);
        size_t n = (size_t)spd_numel(nd, shape);
        double *tmp = (double *)spd_malloc(n * sizeof(double));
        float *host = (float *)spd_malloc(n * sizeof(float));
        spd_philox_fill_normal_f64(seed, stream + (uint64_t)k, n, spd_ci_fn_init_std(arch, k), tmp);
        for (size_t i = 0; i < n; i++) host[i] = (float)tmp[i];
        CUDA_CHECK(cudaMemcpyAsync(W[k], host, n * sizeof(float), cudaMemcpyHostToDevice, spd_cuda_stream()));
        CUDA_CHECK(cudaStreamSynchronize(spd_cuda_stream()));
        free(tmp);
        free(host);
        if (b && b[k]) {
            nd = spd_ci_fn_param_shape(arch, k, true, shape);
            CUDA_CHECK(cudaMemsetAsync(b[k], 0, (size_t)spd_numel(nd, shape) * sizeof(float), spd_cuda_stream()));
        }
    }
}
