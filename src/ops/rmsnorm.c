#include "core/real.h"
#include "ops/rmsnorm.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

// x [N, d], w [d] -> out [N, d] = w * (x * rstd), rstd [N] = 1 / sqrt(mean(x^2) + eps)
// (saved). The mean of squares is summed in float64; as in LlamaSimple the
// normalised x is rounded before the weight multiplies it.
void RFN(rmsnorm_forward)(real *out, real *rstd, const real *x, const real *w, int N, int d, double eps) {
    for (long n = 0; n < N; n++) {
        const real *xn = x + n * d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)xn[i] * xn[i];
        real r = (real)(1.0 / sqrt(ss / d + eps));
        rstd[n] = r;
        for (int i = 0; i < d; i++) out[n * d + i] = w[i] * (real)(xn[i] * r);
    }
}

// dout [N, d] -> dx [N, d] = rstd * (w*dout - x * rstd^2 * mean(w*dout*x)) (written, or
// added to where add_dx; rounded before the add, as a separate add would see it),
// dw [d] += sum_n dout * x * rstd (accumulated in float64; NULL when w is frozen).
void RFN(rmsnorm_backward)(real *dx, real *dw, const real *dout, const real *x, const real *w, const real *rstd,
                           int N, int d, bool add_dx) {
    double *dw_acc = dw ? spd_calloc((size_t)d, sizeof(double)) : NULL;
    for (long n = 0; n < N; n++) {
        const real *xn = x + n * d, *gn = dout + n * d;
        double r = rstd[n], dot = 0;
        for (int i = 0; i < d; i++) dot += (double)w[i] * gn[i] * xn[i];
        double c = r * r * dot / d;
        for (int i = 0; i < d; i++) {
            const real v = (real)(r * ((double)w[i] * gn[i] - (double)xn[i] * c));
            dx[n * d + i] = add_dx ? dx[n * d + i] + v : v;
        }
        if (dw_acc)
            for (int i = 0; i < d; i++) dw_acc[i] += (double)gn[i] * xn[i] * r;
    }
    if (dw_acc) {
        for (int i = 0; i < d; i++) dw[i] += (real)dw_acc[i];
        free(dw_acc);
    }
}
