#include "core/real.h"
#include "ops/adamw.h"

#include <math.h>

#include "core/error.h"

// param, grad, m, v [n]; t >= 1 is the step count after this update. Each
// element's update is evaluated in float64 and rounded once into real, in the
// order torch.optim.AdamW applies it: decoupled decay on the old parameter,
// then the moments, then the bias-corrected step.
void RFN(adamw_step)(real *param, const real *grad, real *m, real *v, size_t n, const spd_adamw_config *cfg,
                     int64_t t) {
    SPD_ASSERT(t >= 1);
    const double lr = cfg->lr, b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps;
    const double decay = 1.0 - lr * cfg->weight_decay;
    const double step_size = lr / (1.0 - pow(b1, (double)t));
    const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)t));
    for (size_t i = 0; i < n; i++) {
        double g = grad[i];
        double mi = b1 * (double)m[i] + (1.0 - b1) * g;
        double vi = b2 * (double)v[i] + (1.0 - b2) * g * g;
        double p = (double)param[i] * decay;
        p -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
        m[i] = (real)mi;
        v[i] = (real)vi;
        param[i] = (real)p;
    }
}
