#include "core/real.h"
#include "ops/grad_clip.h"

#include <math.h>

double RFN(grad_norm)(const real *const *grads, const int64_t *numel, int n_bufs) {
    double sum = 0;
    for (int b = 0; b < n_bufs; b++)
        for (int64_t i = 0; i < numel[b]; i++) sum += (double)grads[b][i] * (double)grads[b][i];
    return sqrt(sum);
}

double RFN(clip_grad_norm)(real *const *grads, const int64_t *numel, int n_bufs, double max_norm) {
    double norm = RFN(grad_norm)((const real *const *)grads, numel, n_bufs);
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;  // torch multiplies by exactly 1 here (NaN falls through)
    const real c = (real)coef;
    for (int b = 0; b < n_bufs; b++)
        for (int64_t i = 0; i < numel[b]; i++) grads[b][i] *= c;
    return norm;
}
