#include "core/real.h"
#include "ops/bias_act.h"

void RFN(bias_add)(real *y, const real *b, int N, int d) {
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < d; j++) y[n * d + j] += b[j];
}

void RFN(bias_grad)(real *db, const real *dy, int N, int d) {
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < d; j++) db[j] += dy[n * d + j];
}

void RFN(relu_forward)(real *y, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

void RFN(relu_backward)(real *dx, const real *dy, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
}
