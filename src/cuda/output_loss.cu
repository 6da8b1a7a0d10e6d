// The output divergences on the GPU (ops/output_loss.h): mse through the float64
// reduction of reduce.cu; kl one thread per position (rows are short in the toy
// models), the CPU's float64 row arithmetic, per-row sums then a fixed-order total.
#include "cuda/cuda_common.h"

#include <math.h>

extern "C" {
#include "core/real.h"
#include "ops/output_loss.h"
}

#define T 128

struct row_stats {
    double max, log_sum, inv_sum;
};

static __device__ row_stats stats_of(const float *row, long long dim) {
    double m = -INFINITY;
    for (long long v = 0; v < dim; v++)
        if ((double)row[v] > m) m = row[v];
    double s = 0;
    for (long long v = 0; v < dim; v++) s += exp((double)row[v] - m);
    row_stats r = {m, log(s), 1.0 / s};
    return r;
}

static __global__ void kl_rows_k(double *out, const float *pred, const float *target, long long n_pos,
                                 long long dim) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= n_pos) return;
    const float *pr = pred + n * dim, *tr = target + n * dim;
    row_stats sq = stats_of(pr, dim), sp = stats_of(tr, dim);
    double kl = 0;
    for (long long v = 0; v < dim; v++) {
        double p = exp((double)tr[v] - sp.max) * sp.inv_sum;
        if (p == 0) continue;
        kl += p * log(p) - p * (((double)pr[v] - sq.max) - sq.log_sum);
    }
    out[n] = kl;
}

static __global__ void kl_bwd_k(float *dpred, const float *pred, const float *target, long long n_pos,
                                long long dim, double scale) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= n_pos) return;
    const float *pr = pred + n * dim, *tr = target + n * dim;
    row_stats sq = stats_of(pr, dim), sp = stats_of(tr, dim);
    double gsum = 0;
    for (long long v = 0; v < dim; v++) gsum += -(exp((double)tr[v] - sp.max) * sp.inv_sum) * scale;
    for (long long v = 0; v < dim; v++) {
        double g = -(exp((double)tr[v] - sp.max) * sp.inv_sum) * scale;
        double q = exp(((double)pr[v] - sq.max) - sq.log_sum);
        dpred[n * dim + v] = (float)(g - q * gsum);
    }
}

static __global__ void mse_bwd_k(float *dpred, const float *pred, const float *target, long long n, double scale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dpred[i] = (float)(scale * (2.0 * ((double)pred[i] - (double)target[i])));
}

extern "C" double output_loss_sum_cuda(spd_divergence kind, int64_t *count, const float *pred, const float *target,
                                       int64_t n_pos, int64_t dim) {
    if (kind == SPD_DIVERGENCE_MSE) {
        if (count) *count = n_pos * dim;
        return spd_cuda_sum_sq(pred, target, n_pos * dim);
    }
    SPD_ASSERT(kind == SPD_DIVERGENCE_KL);
    if (count) *count = n_pos;
    if (n_pos <= 0) return 0;
    double *rows = (double *)spd_cuda_scratch((size_t)n_pos * sizeof(double));
    kl_rows_k<<<spd_cuda_blocks(n_pos, T), T, 0, spd_cuda_stream()>>>(rows, pred, target, n_pos, dim);
    CUDA_CHECK_LAUNCH();
    return spd_cuda_sum_f64(rows, n_pos);
}

extern "C" void output_loss_backward_cuda(spd_divergence kind, float *dpred, const float *pred, const float *target,
                                          int64_t n_pos, int64_t dim, double scale) {
    if (kind == SPD_DIVERGENCE_MSE) {
        long long n = n_pos * dim;
        if (n <= 0) return;
        mse_bwd_k<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dpred, pred, target, n, scale);
        CUDA_CHECK_LAUNCH();
        return;
    }
    SPD_ASSERT(kind == SPD_DIVERGENCE_KL);
    if (n_pos <= 0) return;
    kl_bwd_k<<<spd_cuda_blocks(n_pos, T), T, 0, spd_cuda_stream()>>>(dpred, pred, target, n_pos, dim, scale);
    CUDA_CHECK_LAUNCH();
}

static __global__ void hidden_bwd_k(float *dh, const float *h, const float *x, long long n, double scale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dh[i] = (float)(2 * scale * ((double)h[i] - (double)x[i]));
}

extern "C" double hidden_acts_loss_cuda(float *dh, const float *h, const float *x, int64_t n, double scale) {
    if (n <= 0) return 0;
    hidden_bwd_k<<<spd_cuda_blocks(n, 256), 256, 0, spd_cuda_stream()>>>(dh, h, x, n, scale);
    CUDA_CHECK_LAUNCH();
    return spd_cuda_sum_sq(h, x, n);
}
