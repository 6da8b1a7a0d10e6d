#include "core/real.h"
#include "ops/output_loss.h"

#include <math.h>

#include "core/error.h"

// The row's softmax pieces in float64, evaluated as torch's CPU kernels do:
// log_softmax = (x - max) - log(sum), softmax = exp(x - max) * (1 / sum).
typedef struct {
    double max, log_sum, inv_sum;
} row_stats;

static row_stats row_softmax_stats(const real *row, int64_t dim) {
    double m = -INFINITY;
    for (int64_t v = 0; v < dim; v++)
        if ((double)row[v] > m) m = row[v];
    double s = 0;
    for (int64_t v = 0; v < dim; v++) s += exp((double)row[v] - m);
    return (row_stats){.max = m, .log_sum = log(s), .inv_sum = 1.0 / s};
}

static double softmax_at(const real *row, row_stats st, int64_t v) { return exp((double)row[v] - st.max) * st.inv_sum; }
static double log_softmax_at(const real *row, row_stats st, int64_t v) {
    return ((double)row[v] - st.max) - st.log_sum;
}

// pred, target [dim] -> KL(softmax(target) || softmax(pred)) as torch's
// kl_div: sum_v xlogy(p_v, p_v) - p_v log q_v, where p_v = 0 adds 0.
static double kl_row(const real *pred, const real *target, int64_t dim) {
    row_stats sq = row_softmax_stats(pred, dim), sp = row_softmax_stats(target, dim);
    double kl = 0;
    for (int64_t v = 0; v < dim; v++) {
        double p = softmax_at(target, sp, v);
        if (p == 0) continue;
        kl += p * log(p) - p * log_softmax_at(pred, sq, v);
    }
    return kl;
}

// pred, target [n_pos, dim] -> sumD (mse: all elements; kl: all positions).
double RFN(output_loss_sum)(spd_divergence kind, int64_t *count, const real *pred, const real *target,
                            int64_t n_pos, int64_t dim) {
    double sum = 0;
    if (kind == SPD_DIVERGENCE_MSE) {
        for (int64_t i = 0; i < n_pos * dim; i++) {
            double e = (double)pred[i] - (double)target[i];
            sum += e * e;
        }
        if (count) *count = n_pos * dim;
    } else {
        SPD_ASSERT(kind == SPD_DIVERGENCE_KL);
        for (int64_t n = 0; n < n_pos; n++) sum += kl_row(pred + n * dim, target + n * dim, dim);
        if (count) *count = n_pos;
    }
    return sum;
}

// dpred [dim] (written) = scale (q_v sum_w p_w - p_v), in autograd's order:
// kl_div's gradient g_v = -p_v scale, then log_softmax's g_v - q_v sum_w g_w
// with q = exp(log_softmax) (sum_w p_w is 1 up to rounding).
static void kl_row_backward(real *dpred, const real *pred, const real *target, int64_t dim, double scale) {
    row_stats sq = row_softmax_stats(pred, dim), sp = row_softmax_stats(target, dim);
    double gsum = 0;
    for (int64_t v = 0; v < dim; v++) gsum += -softmax_at(target, sp, v) * scale;
    for (int64_t v = 0; v < dim; v++) {
        double g = -softmax_at(target, sp, v) * scale;
        double q = exp(log_softmax_at(pred, sq, v));
        dpred[v] = (real)(g - q * gsum);
    }
}

// dpred [n_pos, dim] (written) = scale * d sumD / d pred.
void RFN(output_loss_backward)(spd_divergence kind, real *dpred, const real *pred, const real *target,
                               int64_t n_pos, int64_t dim, double scale) {
    if (kind == SPD_DIVERGENCE_MSE) {
        for (int64_t i = 0; i < n_pos * dim; i++)
            dpred[i] = (real)(scale * (2.0 * ((double)pred[i] - (double)target[i])));
    } else {
        SPD_ASSERT(kind == SPD_DIVERGENCE_KL);
        for (int64_t n = 0; n < n_pos; n++)
            kl_row_backward(dpred + n * dim, pred + n * dim, target + n * dim, dim, scale);
    }
}

double RFN(hidden_acts_loss)(real *dh, const real *h, const real *x, int64_t n, double scale) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)h[i] - (double)x[i];
        sum += d * d;
        dh[i] = (real)(2 * scale * d);
    }
    return sum;
}
