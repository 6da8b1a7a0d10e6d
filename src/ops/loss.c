#include "core/real.h"
#include "ops/loss.h"

// logits [n] -> mean(logits), summed in float64.
void RFN(mean_loss_forward)(real *loss, const real *logits, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += logits[i];
    loss[0] = (real)(sum / (double)n);
}

// dlogits [n] = 1/n (written).
void RFN(mean_loss_backward)(real *dlogits, int64_t n) {
    real g = (real)(1.0 / (double)n);
    for (int64_t i = 0; i < n; i++) dlogits[i] = g;
}

// y, target [n] -> mean((y - target)^2), summed in float64.
void RFN(mse_loss_forward)(real *loss, const real *y, const real *target, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)y[i] - (double)target[i];
        sum += e * e;
    }
    loss[0] = (real)(sum / (double)n);
}

// dy [n] = 2 (y - target) / n (written).
void RFN(mse_loss_backward)(real *dy, const real *y, const real *target, int64_t n) {
    double s = 2.0 / (double)n;
    for (int64_t i = 0; i < n; i++) dy[i] = (real)(s * ((double)y[i] - (double)target[i]));
}

// loss [1] = mean((y - target)^2) and dy [n] = 2 (y - target) / n in one pass.
void RFN(mse_loss_forward_backward)(real *loss, real *dy, const real *y, const real *target, int64_t n) {
    const double s = 2.0 / (double)n;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)y[i] - (double)target[i];
        sum += e * e;
        dy[i] = (real)(s * e);
    }
    loss[0] = (real)(sum / (double)n);
}
