#include "core/real.h"
#include "ops/faithfulness.h"

#include "core/error.h"

static int64_t total_numel(const int64_t *numel, int n_modules) {
    int64_t total = 0;
    for (int l = 0; l < n_modules; l++) total += numel[l];
    SPD_ASSERT(total > 0);
    return total;
}

// deltas[l] [numel[l]] -> sum of squares over all of them / their total size.
double RFN(faithfulness_loss_forward)(const real *const *deltas, const int64_t *numel, int n_modules) {
    double sum = 0;
    for (int l = 0; l < n_modules; l++)
        for (int64_t i = 0; i < numel[l]; i++) sum += (double)deltas[l][i] * (double)deltas[l][i];
    return sum / (double)total_numel(numel, n_modules);
}

// ddeltas[l] += scale * 2 delta_l / total numel.
void RFN(faithfulness_loss_backward)(real *const *ddeltas, const real *const *deltas, const int64_t *numel,
                                     int n_modules, double scale) {
    const double g = scale * 2.0 / (double)total_numel(numel, n_modules);
    for (int l = 0; l < n_modules; l++)
        for (int64_t i = 0; i < numel[l]; i++) ddeltas[l][i] = (real)((double)ddeltas[l][i] + g * (double)deltas[l][i]);
}
